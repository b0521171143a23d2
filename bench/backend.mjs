// The benchmark's app: answers every request with a small body, or 1 MiB streamed for /1m, or the
// small body chunked (no Content-Length) for /chunked. A request body is read to its end first.
// Kept to node:http so "direct" measures the same server every proxy talks to.
import http from 'node:http'

const port = Number(process.argv[2] ?? 18000)
const small = Buffer.from('hello world\n')
const chunk = Buffer.alloc(64 * 1024, 120)

function answer(req, res) {
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
  if (req.url === '/chunked') {
    // Headers without a length, then the body as a chunk: node:http sends Transfer-Encoding: chunked.
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write(small)
    res.end()
    return
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': small.length })
  res.end(small)
}

http
  .createServer((req, res) => {
    if (req.method === 'GET' || req.method === 'HEAD') return answer(req, res)
    // A POST is answered once its body has arrived, as an app that reads its input would.
    req.on('end', () => answer(req, res))
    req.resume()
  })
  .listen(port, '127.0.0.1')
