// The benchmark's HTTP/2 app: h2c only (no HTTP/1.1 fallback, so a proxy that does not speak h2c to
// it gets errors, not answers), the same small body as backend.mjs for every stream.
import http2 from 'node:http2'

const port = Number(process.argv[2] ?? 18003)
const small = Buffer.from('hello world\n')
http2
  .createServer()
  .on('stream', (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': small.length })
    stream.end(small)
  })
  .listen(port, '127.0.0.1')
