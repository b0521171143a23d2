// Floors for the HTTP/2 traffic rows (issue 19): the least Node's HTTP/2 costs per request, measured
// beside the proxies in the same run. Neither is a usable proxy; each shows what any proxy written on
// node:http2 pays before doing its own work.
//   answer      node:http2's core stream API, cleartext (h2c): every stream answered by the server
//               itself, the benchmark's small body. No upstream at all.
//   answer-tls  the same over TLS with ALPN h2, on the certificate the proxies use (PEM_FILE).
//   proxy       h2c in, h2c out: each stream forwarded on one node:http2 client session to the h2c
//               backend and its answer relayed (headers, body), nothing else.
import fs from 'node:fs'
import http2 from 'node:http2'

const [port, kind, backendPort, pemFile] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4]), process.argv[5]]
const small = Buffer.from('hello world\n')
const settings = { maxConcurrentStreams: 1000 }

function answer(stream) {
  stream.respond({ ':status': 200, 'content-type': 'text/plain', 'content-length': small.length })
  stream.end(small)
}

if (kind === 'answer') http2.createServer({ settings }).on('stream', answer).listen(port, '127.0.0.1')
else if (kind === 'answer-tls') {
  const pem = fs.readFileSync(pemFile)
  http2.createSecureServer({ key: pem, cert: pem, settings, ALPNProtocols: ['h2'] }).on('stream', answer).listen(port, '127.0.0.1')
} else if (kind === 'proxy') {
  const upstream = http2.connect(`http://127.0.0.1:${backendPort}`)
  http2
    .createServer({ settings })
    .on('stream', (stream, headers) => {
      const up = upstream.request({ ':method': headers[':method'], ':path': headers[':path'], ':authority': headers[':authority'] }, { endStream: true })
      up.on('response', (h) => {
        if (stream.destroyed) return up.close()
        const out = { ':status': h[':status'] }
        for (const name in h) if (name[0] !== ':') out[name] = h[name]
        stream.respond(out)
      })
      up.pipe(stream)
      up.on('error', () => stream.destroy())
      stream.on('error', () => up.close())
    })
    .listen(port, '127.0.0.1')
} else throw new Error(`floor-h2.mjs: unknown kind ${kind}`)
