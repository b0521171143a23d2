// The benchmark's app: answers every request with a small body, or 1 MiB streamed for /1m.
// Kept to node:http so "direct" measures the same server every proxy talks to.
import http from 'node:http'

const port = Number(process.argv[2] ?? 18000)
const small = Buffer.from('hello world\n')
const chunk = Buffer.alloc(64 * 1024, 120)
http
  .createServer((req, res) => {
    if (req.url === '/1m') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 16 * chunk.length })
      let left = 16
      const pump = () => {
        while (left-- > 0) if (!res.write(chunk)) return void res.once('drain', pump)
        res.end()
      }
      pump()
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': small.length })
    res.end(small)
  })
  .listen(port, '127.0.0.1')
