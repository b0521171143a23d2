// HTTP/1.1 and HTTP/2 cleartext (prior knowledge) on one port. Node's HTTP/2 server refuses
// HTTP/1.1 even with allowHTTP1 (that option is for TLS only), so a plain TCP server reads the first
// bytes of each connection: the HTTP/2 connection preface goes to the HTTP/2 server, anything else to
// HTTP/1.1 (our own server side, h1/server/server.ts, or node:http). Only the first bytes of a connection
// are inspected; keep-alive requests that follow cost nothing.
import net from 'node:net'
import type http from 'node:http'
import type http2 from 'node:http2'

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')

export interface SniffOptions {
  /** A connection that sends nothing for this long is closed (the HTTP servers' own limits apply after). */
  firstByteTimeoutMs: number
}

/** Takes an HTTP/1.x connection and the bytes already read from it. */
export type Http1Taker = (socket: net.Socket, seen: Buffer | undefined) => void

/** node:http's server takes the connection as if it had accepted it. */
export function nodeHttp1(h1: http.Server): Http1Taker {
  return (socket, seen) => {
    // node:http reads buffered JS data before it consumes the socket itself: unshift is enough.
    if (seen) socket.unshift(seen)
    h1.emit('connection', socket)
    socket.resume()
  }
}

/**
 * `before` runs first on each connection (reading a PROXY header) and calls `go` with any bytes it
 * read past what it took; without it, sniffing starts at once.
 */
export function createSniffingServer(h1: Http1Taker, h2: http2.Http2Server, opts: SniffOptions, before?: (socket: net.Socket, go: (rest: Buffer | undefined) => void) => void): net.Server {
  return net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => {
    if (before) before(socket, (rest) => sniff(socket, h1, h2, opts, rest))
    else sniff(socket, h1, h2, opts, undefined)
  })
}

function sniff(socket: net.Socket, h1: Http1Taker, h2: http2.Http2Server, opts: SniffOptions, first: Buffer | undefined): void {
  let seen: Buffer | undefined
  const timer = setTimeout(() => socket.destroy(), opts.firstByteTimeoutMs)
  timer.unref()
  let decided = false
  const handOver = (isHttp2: boolean): void => {
    decided = true
    clearTimeout(timer)
    socket.off('data', onData)
    socket.off('error', onError)
    socket.pause()
    if (!isHttp2) return h1(socket, seen)
    // node:http2 reads what is buffered on the socket first and then consumes its native handle
    // itself, so the bytes read here go back onto the socket. (It used to get a Duplex replaying
    // them, which put every later read and write of the connection through JS streams: h2c cost
    // more CPU per request than HTTP/2 over TLS. docs/hot-path.md, issue 19.)
    if (seen) socket.unshift(seen)
    h2.emit('connection', socket)
  }
  const onData = (chunk: Buffer): void => {
    seen = seen ? Buffer.concat([seen, chunk]) : chunk
    const n = Math.min(seen.length, PREFACE.length)
    if (seen.compare(PREFACE, 0, n, 0, n) !== 0) return handOver(false)
    if (seen.length >= PREFACE.length) return handOver(true)
    // A partial preface: wait for the rest.
  }
  const onError = (): void => {
    clearTimeout(timer)
    socket.destroy()
  }
  socket.on('data', onData)
  socket.on('error', onError)
  // Bytes a PROXY header came with are the first the client sent: they may decide it already.
  if (first) onData(first)
  if (!decided) socket.resume()
}
