// Keep-alive HTTP/1.1 connections to one upstream origin, for requests without a body (the common
// GET/HEAD/DELETE case) and with a Content-Length body (a POST from an API client). undici carries
// chunked bodies. Measured reason (docs/hot-path.md): at a fixed rate undici 8 writes each request on
// a reused connection one event-loop phase late (setImmediate) and spends more CPU per request than
// the proxy can afford next to HAProxy; with a 4 KiB body, undici's Pool was most of the gateway's
// 2.7× HAProxy's CPU per request (issue 19).
//
// A body is written as it arrives from the client, with backpressure both ways. It starts only once
// the connection is up, so a refused connection has read nothing of it and the request can still go
// to another pod. A connection whose response ended before its request body did is not reused.
//
// One request per connection at a time (no pipelining, as queue-proxy counts concurrency per
// connection). It speaks undici's DispatchHandler/DispatchController interface, so the Exchange
// drives either client the same way.
//
// A connection is reused only when its response ended exactly where its framing said and nothing
// else arrived: bytes a pod sends while its connection is idle, or after a response's end, close
// that connection, so they can never be read as the answer to someone else's request.
import net from 'node:net'
import type { Readable } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import type { Dispatcher } from 'undici'
import { DispatchControl, UpstreamError } from '../../dispatch-control.ts'
import { ResponseParser } from './response-parser.ts'
import type { ResponseHeaders, ResponseSink } from './response-parser.ts'
import { copyChunk } from './chunk-pool.ts'
import { READ_BUFFER } from '../read-buffer.ts'
import { putHeaderLine, putLatin1 } from '../head-bytes.ts'

type Handler = Dispatcher.DispatchHandler

export interface H1PoolOptions {
  connectTimeoutMs: number
  /** Idle connections close after this; a shorter `Keep-Alive: timeout=N` from the pod wins. */
  keepAliveTimeoutMs: number
  /**
   * TLS to the origin (system-internal-tls): makes each connection's socket. A connection counts as
   * connected, and its request as sent, only once the handshake is verified.
   */
  secure?: { connect(host: string, port: number, onread: net.OnReadOpts): TLSSocket }
}

/** What the Exchange passes: the request line and a flat [name, value, ...] header list. */
export interface H1Request {
  method: string
  path: string
  headers?: unknown
  /** A body whose length the headers state (Content-Length), streamed; null or absent: none. */
  body?: unknown
}

const NO_TRAILERS: Record<string, string> = Object.freeze({}) as Record<string, string>

// Idle connections expire by the clock, not by a socket timer: a socket timer re-armed on every
// request costs a Timeout object and two timer-list operations per request. A dispatch checks the
// idle time of the connection it takes; one sweep a second closes the ones nobody took.
const SWEEP_MS = 1000
const sweeping = new Set<H1Pool>()
let sweeper: NodeJS.Timeout | undefined

function sweepAll(): void {
  const now = performance.now()
  for (const pool of sweeping) if (pool.sweep(now) === 0) sweeping.delete(pool)
  if (sweeping.size === 0) {
    clearInterval(sweeper)
    sweeper = undefined
  }
}

function watchIdle(pool: H1Pool): void {
  sweeping.add(pool)
  if (sweeper === undefined) {
    sweeper = setInterval(sweepAll, SWEEP_MS)
    sweeper.unref()
  }
}

// Reads from every upstream socket land in the shared READ_BUFFER (net's `onread`), which skips the
// Readable stream machinery per read. The parser copies head and trailer text into strings, and body
// bytes are copied out (below).

/**
 * Characters that would let a header or the path break out of its line, and characters that do
 * not fit in one byte (the head is written as latin1, which would silently drop their high byte;
 * undici refuses them too).
 */
const UNSAFE = /[\r\n\0\u0100-\uffff]/


export class H1Pool {
  readonly host: string
  readonly port: number
  /** Host header for a request that has none (an HTTP/1.0 client). */
  readonly hostHeader: string
  readonly opts: H1PoolOptions
  private readonly idle: UpstreamConnection[] = []
  private readonly all = new Set<UpstreamConnection>()
  private closing: (() => void) | undefined
  closed = false

  constructor(origin: string, opts: H1PoolOptions) {
    const u = new URL(origin)
    this.host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname
    this.port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80
    this.hostHeader = u.host
    this.opts = opts
  }

  /** Number of open connections (busy or idle). */
  get connections(): number {
    return this.all.size
  }

  dispatch(opts: H1Request, handler: Handler): boolean {
    if (this.closed) {
      handler.onResponseError?.(DETACHED, new UpstreamError('the upstream pool is closed', 'UND_ERR_CLOSED'))
      return false
    }
    const head = requestHead(opts, this.hostHeader)
    if (head === undefined) {
      handler.onResponseError?.(DETACHED, new UpstreamError('the request path or a header holds CR, LF, NUL or a character above U+00FF', 'UND_ERR_INVALID_ARG'))
      return false
    }
    const body = (opts.body ?? null) as Readable | null
    let conn = this.idle.pop()
    if (conn !== undefined) {
      const now = performance.now()
      if (conn.idleExpired(now)) {
        // The pod may be closing it right now. The ones below it on the stack are older still.
        conn.destroy()
        this.sweep(now)
        conn = undefined
      }
    }
    if (conn === undefined) {
      conn = new UpstreamConnection(this)
      this.all.add(conn)
    }
    conn.begin(opts.method === 'HEAD', head, handler, body)
    return true
  }

  release(conn: UpstreamConnection): void {
    if (this.closed) return conn.destroy()
    conn.idleSince = performance.now()
    if (this.idle.push(conn) === 1) watchIdle(this)
  }

  /** Closes connections idle past their timeout; returns how many idle ones are left. */
  sweep(now: number): number {
    const idle = this.idle
    // Oldest first: the stack's bottom has been idle longest.
    while (idle.length > 0 && idle[0]!.idleExpired(now)) idle.shift()!.destroy()
    return idle.length
  }

  forget(conn: UpstreamConnection): void {
    if (!this.all.delete(conn)) return
    const i = this.idle.lastIndexOf(conn)
    if (i >= 0) this.idle.splice(i, 1)
    if (this.closing && this.all.size === 0) this.closing()
  }

  /** Closes idle connections now and busy ones when their response ends. */
  close(): Promise<void> {
    this.closed = true
    for (const c of this.idle.splice(0)) c.destroy()
    if (this.all.size === 0) return Promise.resolve()
    return new Promise((resolve) => (this.closing = resolve))
  }

  /** Closes every connection now; requests on them fail. */
  destroy(): Promise<void> {
    this.closed = true
    for (const c of [...this.all]) c.destroy()
    return Promise.resolve()
  }
}

/**
 * The request head, written straight into one buffer (no intermediate strings: this runs for every
 * request). undefined when a byte could split the head or would not survive latin1 (as undici).
 */
function requestHead(opts: H1Request, defaultHost: string): Buffer | undefined {
  const path = opts.path
  const method = opts.method
  if (UNSAFE.test(path) || path.length === 0) return undefined
  // `METHOD SP path SP HTTP/1.1 CRLF` ... `CRLF`: every character is one byte (UNSAFE refused the rest).
  let length = method.length + 1 + path.length + 11 + 2
  let hasHost = false
  const headers = opts.headers as string[] | null | undefined
  if (headers) {
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!
      const value = headers[i + 1]!
      if (UNSAFE.test(value) || UNSAFE.test(name)) return undefined
      if (!hasHost && name.length === 4 && name.toLowerCase() === 'host') hasHost = true
      length += name.length + value.length + 4
    }
  }
  if (!hasHost) length += 6 + defaultHost.length + 2
  const buf = Buffer.allocUnsafe(length)
  let off = putLatin1(buf, 0, method)
  buf[off++] = 32
  off = putLatin1(buf, off, path)
  off = putLatin1(buf, off, ' HTTP/1.1\r\n')
  if (headers) for (let i = 0; i < headers.length; i += 2) off = putHeaderLine(buf, off, headers[i]!, headers[i + 1]!)
  if (!hasHost) off = putHeaderLine(buf, off, 'host', defaultHost)
  buf[off++] = 13
  buf[off] = 10
  return buf
}

type PoolSocket = net.Socket & { conn: UpstreamConnection }

/**
 * One request's controller. Its own object, not the connection: a call that comes late (a drain
 * listener firing after its response ended) must not pause, resume or abort the next request on
 * the same connection.
 */
class RequestControl extends DispatchControl {
  readonly conn: UpstreamConnection
  readonly handler: Handler

  constructor(conn: UpstreamConnection, handler: Handler) {
    super()
    this.conn = conn
    this.handler = handler
  }

  abort(reason: Error): void {
    if (this._aborted || this.conn.current !== this) return
    this._aborted = true
    this._reason = reason
    this.conn.abortCurrent(reason)
  }

  pause(): void {
    if (this._paused || this.conn.current !== this) return
    this._paused = true
    this.conn.socket.pause()
  }

  resume(): void {
    if (!this._paused) return
    this._paused = false
    if (this.conn.current === this) this.conn.socket.resume()
  }
}

/** Writes one request's body to its connection as the client sends it, with backpressure. */
class BodyPump {
  private readonly conn: UpstreamConnection
  private readonly body: Readable
  private started = false
  private done = false
  private readonly onData = (chunk: Buffer): void => {
    if (!this.conn.socket.write(chunk)) {
      this.body.pause()
      this.conn.socket.once('drain', this.onDrain)
    }
  }
  private readonly onDrain = (): void => {
    if (!this.done) this.body.resume()
  }
  private readonly onEnd = (): void => {
    this.done = true
    this.detach()
  }

  constructor(conn: UpstreamConnection, body: Readable) {
    this.conn = conn
    this.body = body
  }

  /** The connection is up: the body flows. */
  start(): void {
    if (this.started || this.done) return
    this.started = true
    this.body.on('data', this.onData)
    this.body.once('end', this.onEnd)
    this.body.resume()
  }

  /** Stops writing; returns whether the whole body had been written. The client's unsent rest is read and dropped, so its connection can go on. */
  stop(): boolean {
    if (this.done) return true
    this.done = true
    this.detach()
    if (this.started) this.body.resume()
    return false
  }

  private detach(): void {
    this.body.off('data', this.onData)
    this.body.off('end', this.onEnd)
    this.conn.socket.off('drain', this.onDrain)
  }
}

class UpstreamConnection implements ResponseSink {
  readonly pool: H1Pool
  readonly socket: PoolSocket
  readonly parser = new ResponseParser()
  /** The request in flight, if any. */
  current: RequestControl | null = null
  /** Its body, while it is being written. */
  body: BodyPump | null = null
  connected = false
  private complete = false
  private trailers: ResponseHeaders | null = null
  private error: Error | undefined
  idleTimeoutMs: number
  idleSince = 0

  /** Idle past its keep-alive timeout (the pod may close it any moment). */
  idleExpired(now: number): boolean {
    return now - this.idleSince >= this.idleTimeoutMs
  }

  constructor(pool: H1Pool) {
    this.pool = pool
    this.idleTimeoutMs = pool.opts.keepAliveTimeoutMs
    const onread = { buffer: READ_BUFFER, callback: onRead }
    const secure = pool.opts.secure
    const s = (secure === undefined ? net.connect({ host: pool.host, port: pool.port, noDelay: true, onread }) : secure.connect(pool.host, pool.port, onread)) as PoolSocket
    s.conn = this
    s.setTimeout(pool.opts.connectTimeoutMs)
    s.on(secure === undefined ? 'connect' : 'secureConnect', onConnect)
    s.on('timeout', onTimeout)
    s.on('error', onError)
    s.on('close', onClose)
    this.socket = s
  }

  begin(headRequest: boolean, head: Buffer, handler: Handler, body: Readable | null): void {
    const c = new RequestControl(this, handler)
    this.current = c
    this.complete = false
    this.trailers = null
    this.parser.reset(headRequest)
    handler.onRequestStart?.(c, null)
    if (this.current !== c) return // aborted from onRequestStart
    if (body !== null) this.body = new BodyPump(this, body)
    // The client's body is usually buffered already (it came in the head's packet) and flows on
    // the next tick, after start(): corked until the tick after that, head and body leave in one write.
    const cork = this.connected && body !== null
    if (cork) this.socket.cork()
    this.socket.write(head)
    if (this.connected) {
      this.body?.start()
      if (cork) process.nextTick(uncorkSocket, this.socket)
      handler.onRequestSent?.()
    }
  }

  abortCurrent(reason: Error): void {
    const c = this.current!
    this.current = null
    this.destroy()
    c.handler.onResponseError?.(c, reason)
  }

  /** The request is over: stop writing its body; a body not fully sent is drained from the client. */
  private stopBody(): boolean {
    const b = this.body
    if (b === null) return true
    this.body = null
    return b.stop()
  }

  // ---- ResponseSink ----

  onHead(status: number, statusText: string, headers: ResponseHeaders): void {
    const ka = headers['keep-alive']
    if (typeof ka === 'string') this.applyKeepAlive(ka)
    const c = this.current
    c?.handler.onResponseStart?.(c, status, headers, statusText)
  }

  onBody(chunk: Buffer): void {
    // A copy: the chunk is a view of READ_BUFFER, and the client's socket may hold it until later.
    // Large ones come from the chunk pool; the Exchange gives them back after writing them.
    const c = this.current
    c?.handler.onResponseData?.(c, copyChunk(chunk))
  }

  onEnd(trailers: ResponseHeaders | null): void {
    this.complete = true
    this.trailers = trailers
  }

  // ---- socket events ----

  connectedNow(): void {
    this.connected = true
    this.socket.setTimeout(0)
    this.body?.start()
    this.current?.handler.onRequestSent?.()
  }

  data(chunk: Buffer): void {
    if (this.current === null) {
      // Nothing was asked: a pod talking out of turn loses the connection (see the file comment).
      this.destroy()
      return
    }
    let end: number
    try {
      end = this.parser.execute(chunk, this)
    } catch (err) {
      this.fail(err as Error)
      return
    }
    // The handler may have aborted during execute (the client left): the connection is gone then.
    if (this.complete && this.current !== null) this.ended(end === chunk.length && this.parser.keepAlive)
  }

  closed(): void {
    this.pool.forget(this)
    if (this.current === null) return
    if (this.error === undefined && this.parser.untilClose) {
      try {
        this.parser.eof(this)
      } catch (err) {
        this.fail(err as Error)
        return
      }
      if (this.complete) return this.ended(false)
    }
    const err = this.error ?? new UpstreamError(this.parser.started ? 'upstream closed the connection in the middle of a response' : 'other side closed', 'UND_ERR_SOCKET')
    this.fail(err)
  }

  /** The socket timeout is armed only while connecting. */
  timedOut(): void {
    if (this.connected) return
    this.error = new UpstreamError(`connect timeout after ${this.pool.opts.connectTimeoutMs} ms`, 'UND_ERR_CONNECT_TIMEOUT')
    this.socket.destroy()
  }

  failed(err: Error): void {
    this.error ??= err
  }

  // ---- endings ----

  private ended(reusable: boolean): void {
    const c = this.current!
    const trailers = this.trailers
    this.current = null
    // A response that ended before its request's body was all written (a pod answering early, e.g.
    // 413): the rest of the body would reach the next request on this connection.
    if (!this.stopBody()) reusable = false
    if (reusable && !this.pool.closed) {
      if (c.paused) this.socket.resume()
      this.pool.release(this)
    } else this.destroy()
    c.handler.onResponseEnd?.(c, (trailers ?? NO_TRAILERS) as Record<string, string>)
  }

  private fail(err: Error): void {
    const c = this.current
    this.current = null
    this.destroy()
    c?.handler.onResponseError?.(c, err)
  }

  destroy(): void {
    this.stopBody()
    this.socket.destroy()
    this.pool.forget(this)
  }

  /** `Keep-Alive: timeout=N`: the pod closes idle connections after N s; stop reusing them 1 s before. */
  private applyKeepAlive(v: string): void {
    const i = v.indexOf('timeout=')
    if (i < 0) return
    const s = Number.parseInt(v.slice(i + 8), 10)
    if (!(s > 0)) return
    const ms = Math.max(1000, s * 1000 - 1000)
    if (ms < this.idleTimeoutMs) this.idleTimeoutMs = ms
  }
}

function uncorkSocket(socket: net.Socket): void {
  socket.uncork()
}

function onConnect(this: PoolSocket): void {
  this.conn.connectedNow()
}

function onRead(this: PoolSocket, nread: number, buf: Buffer): boolean {
  const conn = this.conn
  conn.data(buf.subarray(0, nread))
  // false pauses the socket: keep it paused if the request's handler asked for that.
  return !(conn.current?.paused ?? false)
}

function onTimeout(this: PoolSocket): void {
  this.conn.timedOut()
}

function onError(this: PoolSocket, err: Error): void {
  this.conn.failed(err)
}

function onClose(this: PoolSocket): void {
  this.conn.closed()
}

/** The controller handed out for a request refused before it reached a connection. */
const DETACHED: Dispatcher.DispatchController = {
  aborted: true,
  paused: false,
  reason: null,
  abort() {},
  pause() {},
  resume() {},
}
