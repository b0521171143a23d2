// HTTP/2 to pods (h2c revisions: gRPC and HTTP/2 apps): one node:http2 session per origin, each
// request a stream opened on it directly through the core API. It replaced undici's H2CClient, which
// cost about 155 µs of CPU per request against an h2c pod, several times HAProxy's whole per-request
// cost (docs/hot-path.md, "Issue 19"). It speaks undici's DispatchHandler/DispatchController
// interface, as our HTTP/1.1 client does, so the Exchange drives every client the same way.
//
// Errors carry the codes the Exchange already reads (undici's where undici has one): the socket's
// own (ECONNREFUSED, ECONNRESET, ...) when the connection failed, UND_ERR_CONNECT_TIMEOUT, and
// UND_ERR_SOCKET for a stream the pod reset or refused. A stream the pod refused (REFUSED_STREAM, or
// above a GOAWAY's last stream id) was never processed, which is what makes a retry safe.
import http2 from 'node:http2'
import net from 'node:net'
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders, IncomingHttpStatusHeader, OutgoingHttpHeaders } from 'node:http2'
import { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { DispatchControl, UpstreamError } from '../dispatch-control.ts'

type Handler = Dispatcher.DispatchHandler

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM, NGHTTP2_NO_ERROR } = http2.constants

export interface H2ClientOptions {
  /** Upper bound on connecting (TCP, and the TLS handshake for an https: origin). */
  connectTimeoutMs: number
}

/** What the Exchange passes: the request line and a flat [name, value, ...] header list. */
export interface H2Request {
  method: string
  path: string
  headers?: unknown
  /** The client's request body, a stream (the only kind the Exchange sends); null: the HEADERS frame ends the stream. */
  body?: unknown
}


/** How often a session closing after a GOAWAY is checked for being done with its socket. */
const REAP_MS = 250

const NO_TRAILERS: Record<string, string> = Object.freeze({}) as Record<string, string>

/** One request on a session: the Exchange's controller, and the stream's listeners' target. */
class H2Call extends DispatchControl {
  readonly handler: Handler
  stream: ClientHttp2Stream | undefined
  /** The handler was told the end (response end or error): nothing more is reported. */
  settled = false
  responded = false
  trailers: Record<string, string | string[]> | undefined

  constructor(handler: Handler) {
    super()
    this.handler = handler
  }

  abort(reason: Error): void {
    if (this._aborted || this.settled) return
    this._aborted = true
    this._reason = reason
    const s = this.stream
    if (s !== undefined && !s.destroyed) s.close(NGHTTP2_CANCEL)
    this.fail(reason)
  }

  pause(): void {
    if (this._paused) return
    this._paused = true
    this.stream?.pause()
  }

  resume(): void {
    if (!this._paused) return
    this._paused = false
    this.stream?.resume()
  }

  fail(err: Error): void {
    if (this.settled) return
    this.settled = true
    this.handler.onResponseError?.(this, err)
  }
}

export class H2Client {
  readonly origin: string
  private readonly scheme: string
  private readonly host: string
  private readonly port: number
  private readonly opts: H2ClientOptions
  private session: ClientHttp2Session | undefined
  private readonly sessions = new Set<ClientHttp2Session>()
  private closed = false

  constructor(origin: string, opts: H2ClientOptions) {
    this.origin = origin
    const url = new URL(origin)
    this.scheme = url.protocol === 'https:' ? 'https' : 'http'
    this.host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
    this.port = Number(url.port) || (this.scheme === 'https' ? 443 : 80)
    this.opts = opts
  }

  dispatch(opts: H2Request, handler: Handler): boolean {
    const call = new H2Call(handler)
    if (this.closed) {
      call.fail(new UpstreamError('the upstream client is closed', 'UND_ERR_CLOSED'))
      return false
    }
    handler.onRequestStart?.(call, null)
    if (call.settled) return true // aborted from onRequestStart
    const body = opts.body ?? null
    if (body !== null && !(body instanceof Readable)) {
      call.fail(new UpstreamError('a request body must be a stream', 'UND_ERR_INVALID_ARG'))
      return false
    }
    const headers = requestHeaders(opts, this.scheme)
    let stream: ClientHttp2Stream
    try {
      stream = this.current().request(headers, { endStream: body === null })
    } catch (err) {
      // A header HTTP/2 forbids (a route's header set may name one), or a session closing under us.
      const e = err as NodeJS.ErrnoException
      call.fail(new UpstreamError(`cannot send the request over HTTP/2: ${e.message}`, e.code === 'ERR_HTTP2_GOAWAY_SESSION' ? 'UND_ERR_SOCKET' : 'UND_ERR_INVALID_ARG'))
      return false
    }
    call.stream = stream
    ;(stream as StreamWithCall).call = call
    stream.on('response', onResponse)
    stream.on('data', onData)
    stream.on('trailers', onTrailers)
    stream.on('end', onEnd)
    stream.on('error', onStreamError)
    stream.on('close', onStreamClose)
    if (body === null) {
      if (stream.pending) stream.once('ready', onSent)
      else handler.onRequestSent?.()
    } else {
      ;(body as BodyWithCall).call = call
      body.once('end', onBodyEnd)
      body.pipe(stream)
    }
    return true
  }

  /** Sessions not closed yet: the current one, and any still finishing streams after a GOAWAY. */
  get openSessions(): number {
    return this.sessions.size
  }

  /** The open session, or a new one: a session that closed or got a GOAWAY takes no new streams. */
  private current(): ClientHttp2Session {
    const s = this.session
    if (s !== undefined && !s.closed && !s.destroyed) return s
    let socket: net.Socket | undefined
    const session = http2.connect(this.origin, this.scheme === 'http' ? { createConnection: () => (socket = net.connect({ host: this.host, port: this.port, noDelay: true })) } : {})
    const timer = setTimeout(connectTimedOut, this.opts.connectTimeoutMs, session, this.origin)
    let reaper: NodeJS.Timeout | undefined
    session.once('connect', () => clearTimeout(timer))
    // The session's errors reach its streams (each gets its own 'error'); this keeps one from
    // being an uncaught exception when no stream is open.
    session.on('error', ignore)
    // A GOAWAY: streams in flight finish, new ones go to a new session; this one closes after them.
    // Node then ends its side of the socket and waits for the pod to end its own, and a pod that
    // never does (node:http2's own server, Node 24.21) would keep the socket, and this session,
    // open for good: once the session is done, the socket is closed here.
    session.once('goaway', () => {
      this.retire(session)
      if (!session.closed) session.close()
      reaper = setInterval(() => {
        if (session.destroyed) socket?.destroy()
      }, REAP_MS)
      reaper.unref()
    })
    session.once('close', () => {
      clearTimeout(timer)
      clearInterval(reaper)
      this.retire(session)
      this.sessions.delete(session)
    })
    this.sessions.add(session)
    this.session = session
    return session
  }

  private retire(session: ClientHttp2Session): void {
    if (this.session === session) this.session = undefined
  }

  /** Graceful: streams in flight finish, then each session closes. */
  close(): Promise<void> {
    this.closed = true
    this.session = undefined
    const all = [...this.sessions]
    return Promise.all(all.map((s) => new Promise<void>((resolve) => (s.closed ? resolve() : s.close(resolve))))).then(() => {})
  }

  destroy(): Promise<void> {
    this.closed = true
    this.session = undefined
    for (const s of this.sessions) s.destroy()
    this.sessions.clear()
    return Promise.resolve()
  }
}

type StreamWithCall = ClientHttp2Stream & { call: H2Call }
type BodyWithCall = Readable & { call: H2Call }

function ignore(): void {}

function connectTimedOut(session: ClientHttp2Session, origin: string): void {
  session.destroy(new UpstreamError(`connecting to ${origin} timed out`, 'UND_ERR_CONNECT_TIMEOUT'))
}

/** The pseudo-headers from the request line, then the flat list; `host` becomes `:authority`. */
function requestHeaders(opts: H2Request, scheme: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': opts.method, ':path': opts.path, ':scheme': scheme }
  const flat = opts.headers as readonly string[] | undefined
  if (flat === undefined) return out
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase()
    const value = flat[i + 1]!
    if (name === 'host') {
      out[':authority'] = value
      continue
    }
    const prev = out[name]
    if (prev === undefined) out[name] = value
    else if (Array.isArray(prev)) prev.push(value)
    else out[name] = [prev as string, value]
  }
  return out
}

/** The response's headers without the pseudo-headers. */
function withoutPseudo(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    if (name.charCodeAt(0) === 58 /* : */) continue
    const v = headers[name]
    if (v !== undefined) out[name] = v
  }
  return out
}

function onSent(this: StreamWithCall): void {
  this.call.handler.onRequestSent?.()
}

function onBodyEnd(this: BodyWithCall): void {
  this.call.handler.onRequestSent?.()
}

function onResponse(this: StreamWithCall, headers: IncomingHttpHeaders & IncomingHttpStatusHeader): void {
  const call = this.call
  if (call.settled) return
  call.responded = true
  call.handler.onResponseStart?.(call, headers[':status'] ?? 502, withoutPseudo(headers), '')
}

function onData(this: StreamWithCall, chunk: Buffer): void {
  const call = this.call
  if (!call.settled) call.handler.onResponseData?.(call, chunk)
}

function onTrailers(this: StreamWithCall, trailers: IncomingHttpHeaders): void {
  this.call.trailers = withoutPseudo(trailers)
}

function onEnd(this: StreamWithCall): void {
  const call = this.call
  if (call.settled) return
  if (!call.responded) {
    call.fail(new UpstreamError('the upstream stream ended without a response', 'UND_ERR_SOCKET'))
    return
  }
  call.settled = true
  call.handler.onResponseEnd?.(call, call.trailers ?? NO_TRAILERS)
}

function onStreamError(this: StreamWithCall, err: NodeJS.ErrnoException): void {
  const call = this.call
  if (call.settled) return
  // A session that failed (refused, reset, timed out) cancels its streams with its own error as the
  // cause, which carries the socket's code; a stream error (ERR_HTTP2_STREAM_ERROR) says only that
  // the pod reset this stream.
  const cause = (err as { cause?: unknown }).cause
  if (err.code === 'ERR_HTTP2_STREAM_CANCEL' && cause instanceof Error) call.fail(cause)
  else if (err.code === 'ERR_HTTP2_STREAM_ERROR' || err.code === 'ERR_HTTP2_SESSION_ERROR' || err.code === 'ERR_HTTP2_GOAWAY_SESSION') call.fail(new UpstreamError(`upstream reset the HTTP/2 stream: ${err.message}`, 'UND_ERR_SOCKET'))
  else call.fail(err)
}

function onStreamClose(this: StreamWithCall): void {
  const call = this.call
  if (call.settled) return
  const code = this.rstCode
  // Closed with no error event and no end: reset by the pod (NO_ERROR before a response counts too).
  const why = code === NGHTTP2_REFUSED_STREAM ? 'refused the stream' : code === NGHTTP2_NO_ERROR ? 'closed the stream before responding' : `reset the stream (HTTP/2 error code ${code})`
  call.fail(new UpstreamError(`upstream ${why}`, 'UND_ERR_SOCKET'))
}
