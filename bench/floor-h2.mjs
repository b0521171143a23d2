// Floors for the HTTP/2 traffic rows (issue 19): the least Node's HTTP/2 costs per request, measured
// beside the proxies in the same run. Neither is a usable proxy; each shows what any proxy written on
// node:http2 pays before doing its own work.
//   answer      node:http2's core stream API, cleartext (h2c): every stream answered by the server
//               itself, the benchmark's small body. No upstream at all.
//   answer-tls  the same over TLS with ALPN h2, on the certificate the proxies use (PEM_FILE).
//   proxy       h2c in, h2c out: each stream forwarded on one node:http2 client session to the h2c
//               backend and its answer relayed (headers, body), nothing else.
//   proxy-h1    h2c in, HTTP/1.1 out (the h2c row's shape): each stream sent as a fixed GET on an
//               idle keep-alive socket to the HTTP/1.1 backend, its Content-Length answer read with
//               the least parsing that works for this backend, and relayed. No routing, no header
//               handling, no timeouts, no limits: what node:http2 plus one socket exchange cost.
//   proxy-h1-tls the same over TLS with ALPN h2 (the h2 row's shape).
import fs from 'node:fs'
import http2 from 'node:http2'
import net from 'node:net'

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
} else if (kind === 'proxy-h1' || kind === 'proxy-h1-tls') {
  const send = h1Sockets(backendPort)
  const relay = (stream, headers) => {
    send(headers[':path'], headers[':authority'], (status, body) => {
      if (stream.destroyed) return
      stream.respond({ ':status': status, 'content-type': 'text/plain', 'content-length': body.length })
      stream.end(body)
    })
  }
  if (kind === 'proxy-h1') http2.createServer({ settings }).on('stream', relay).listen(port, '127.0.0.1')
  else {
    const pem = fs.readFileSync(pemFile)
    http2.createSecureServer({ key: pem, cert: pem, settings, ALPNProtocols: ['h2'] }).on('stream', relay).listen(port, '127.0.0.1')
  }
} else throw new Error(`floor-h2.mjs: unknown kind ${kind}`)

/**
 * Idle keep-alive sockets to the HTTP/1.1 backend; one request at a time on each. A socket the
 * backend closes (node:http closes keep-alive connections idle for 5 s, e.g. between rounds) leaves
 * the idle list; a request on it when it closed gets a 502.
 */
function h1Sockets(port) {
  const idle = []
  function onClose() {
    const i = idle.indexOf(this)
    if (i >= 0) idle.splice(i, 1)
    const p = this.exchange
    this.exchange = undefined
    p?.done(502, Buffer.alloc(0))
  }
  function onData(chunk) {
    const p = this.exchange
    p.buf = p.buf === undefined ? chunk : Buffer.concat([p.buf, chunk])
    const end = p.buf.indexOf('\r\n\r\n')
    if (end < 0) return
    const head = p.buf.toString('latin1', 0, end)
    const m = /\r\ncontent-length: *(\d+)/i.exec(head)
    if (!m) throw new Error('floor-h2.mjs proxy-h1: the backend answered without Content-Length')
    const len = Number(m[1])
    if (p.buf.length < end + 4 + len) return
    this.exchange = undefined
    idle.push(this)
    p.done(Number(head.slice(9, 12)), p.buf.subarray(end + 4, end + 4 + len))
  }
  return (path, authority, done) => {
    let s = idle.pop()
    if (s === undefined) {
      s = net.connect(port, '127.0.0.1')
      s.setNoDelay(true)
      s.on('data', onData)
      s.on('close', onClose)
      s.on('error', () => {})
    }
    s.exchange = { done, buf: undefined }
    s.write(`GET ${path} HTTP/1.1\r\nhost: ${authority}\r\n\r\n`)
  }
}
