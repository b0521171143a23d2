// The forward stage for requests and HTTP/2 streams: one proxied request, from a pod (or external
// host) to the end of its response. Admission (admit.ts) has found the pod; this sends the request
// through the origin's pool and relays the response. A single object per request carries all its
// state and is itself the dispatch handler (undici's interface, which our own HTTP/1.1 client in
// h1/client/ speaks too), so the hot path allocates little: no per-request closures besides the
// client-close listener.
import type { Dispatcher } from 'undici'
import { Admission } from './admit.ts'
import type { AdmitContext } from './admit.ts'
import { bodyStream } from './client.ts'
import type { ClientRequest, ClientResponse, HasH2Stream } from './client.ts'
import { isPooled, releaseChunk } from './h1/client/chunk-pool.ts'
import type { Resolution } from './resolve.ts'
import { RESPONSE_DROP, upstreamHeadersFor } from './upstream-headers.ts'
import { reply } from './reply.ts'
import type { Reason } from './reply.ts'
import type { PoolRegistry, RequestBody } from './pools.ts'
import { noteAnswer } from './request-record.ts'
import { isTlsFailure } from './upstream-tls.ts'
import type { RequestRecord } from './request-record.ts'

type DispatchController = Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestStart']>>[0]

/** Errors that prove the pod saw nothing of the request: safe to try another pod. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE'])

/** Resolver failures (getaddrinfo): the upstream's name, not its connection, is the problem. */
const DNS_ERRORS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA'])

const COLD_START_HEADER = 'x-edge-cold-start-ms'
const SERVER_TIMING = 'server-timing'

/** One preallocated reason for aborting an upstream request: an Error per abort costs a stack trace. */
const CLIENT_GONE = new Error('the client closed the request')

/** What forwarding a request needs beyond admission. */
export interface ForwardContext extends AdmitContext {
  readonly pools: PoolRegistry
  /** Shutting down: HTTP/1.1 responses say Connection: close. */
  readonly draining: boolean
}

export class Exchange extends Admission implements Dispatcher.DispatchHandler {
  readonly res: ClientResponse
  declare readonly ctx: ForwardContext
  readonly secure: boolean
  /** The client speaks HTTP/2 (h2c or h2): the response is an H2StreamResponse. */
  readonly h2: boolean
  /** A long-lived stream (gRPC request, or an event-stream response): idle timeout, no total timeout. */
  streaming: boolean
  controller: DispatchController | null = null
  /** undici finished with this request (ended or failed): nothing left to abort. */
  upstreamDone = false
  sent = false
  /** The origin of the current attempt (a pod's plain or TLS side, or an external host). */
  dialled = ''

  constructor(ctx: ForwardContext, req: ClientRequest, res: ClientResponse, resolution: Resolution, secure: boolean, record: RequestRecord) {
    super(ctx, req, resolution, record)
    this.res = res
    this.secure = secure
    this.h2 = req.httpVersionMajor === 2
    const ct = req.headers['content-type']
    this.streaming = typeof ct === 'string' && ct.startsWith('application/grpc')
  }

  start(): void {
    res_onClose(this)
    this.admit()
  }

  protected forward(host: string, port: number, origin: string): void {
    this.dialled = origin
    this.upstreamDone = false
    this.controller = null
    const req = this.req
    const t = this.record.trace
    const headers = upstreamHeadersFor(req, this.resolution, this.secure, this.backend.revision !== undefined, false, t === undefined ? undefined : t.dispatch(host, port), this.record.edits)
    const method = req.method ?? 'GET'
    const body = requestBody(req, this.h2)
    const hasBody = body !== 'none'
    this.ctx.pools.get(origin, this.backend.protocol, body, this.backend.namespace).dispatch(
      {
        path: req.url ?? '/',
        method,
        headers,
        // A request with a body is always a stream (node:http's or node:http2's, never our own server's).
        body: hasBody ? (bodyStream(req) ?? null) : null,
        // Never let undici retry or reorder: a request that reached a pod is never sent twice.
        idempotent: false,
        headersTimeout: 0,
        bodyTimeout: 0,
      },
      this,
    )
  }

  // ---- undici DispatchHandler ----

  onRequestStart(controller: DispatchController): void {
    this.controller = controller
    if (this.finished) controller.abort(CLIENT_GONE)
  }

  onRequestSent(): void {
    this.sent = true
    this.record.trace?.event('request sent')
  }

  onBodySent(): void {
    this.sent = true
  }

  onResponseStart(controller: DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (statusCode < 200) return // 1xx: Node answers Expect: 100-continue to the client itself
    const ct = headers['content-type']
    if (typeof ct === 'string' && ct.startsWith('text/event-stream')) this.streaming = true
    this.sent = true
    this.responded = true
    this.record.status = statusCode
    this.record.firstByteAt = performance.now()
    const res = this.res
    if (this.finished || res.destroyed) {
      controller.abort(CLIENT_GONE)
      return
    }
    if (this.h2) {
      for (const name in headers) {
        if (RESPONSE_DROP.has(name)) continue
        const v = headers[name]
        if (v !== undefined) res.setHeader(name, v)
      }
      if (this.coldStartMs >= 0) {
        res.setHeader(COLD_START_HEADER, Math.round(this.coldStartMs))
        res.setHeader(SERVER_TIMING, this.serverTiming())
      }
      const edits = this.record.edits
      if (edits !== undefined) for (const h of edits.respond) res.setHeader(h.lower, h.value)
      // An HTTP/1.1 body with a length has no trailers: the stream may end with its data.
      if (this.backend.protocol === 'http1' && headers['content-length'] !== undefined) res.noTrailers = true
      // HTTP/2: the head goes out with the first data, or with the end. A response with no body
      // then leaves as one HEADERS frame that ends the stream, as it arrived: gRPC's trailers-only
      // error responses depend on it.
      res.statusCode = statusCode
    } else {
      // Cork the socket for the rest of this tick: undici usually delivers head, body and end
      // together, and they then leave in one write instead of three. A streamed chunk is never held
      // past the tick. The socket, not the response: node:http's ServerResponse.cork() buffers the
      // chunks of a chunked response and end() writes its terminator before them (Node 24.21), so a
      // pod's length-less body in two chunks reached the client cut after the first. Our own
      // server's response (h1/server/server.ts) has no socket here: it writes head and body as one buffer.
      const socket = res.socket
      if (socket) {
        socket.cork()
        process.nextTick(uncork, socket)
      }
      // One flat [name, value, ...] list: writeHead stores it as is, with no per-header setHeader.
      const flat: string[] = []
      const edits = this.record.edits
      for (const name in headers) {
        if (RESPONSE_DROP.has(name)) continue
        if (edits !== undefined && edits.respond.some((h) => h.lower === name)) continue
        const v = headers[name]
        if (v === undefined) continue
        if (typeof v === 'string') flat.push(name, v)
        else for (const one of v) flat.push(name, one)
      }
      if (this.coldStartMs >= 0) flat.push(COLD_START_HEADER, String(Math.round(this.coldStartMs)), SERVER_TIMING, this.serverTiming())
      // An authorizer's headers for the client (Envoy's response_headers_to_add), in place of the pod's.
      if (edits !== undefined) for (const h of edits.respond) flat.push(h.name, h.value)
      if (this.ctx.draining) flat.push('connection', 'close')
      res.writeHead(statusCode, statusMessage || undefined, flat)
    }
    this.touch()
    if (this.backend.revision) this.rearm()
  }

  /**
   * Where a held request's time went, for `curl -v` and a browser's devtools: `hold` (the wait for a
   * pod: a cold start, or every pod at its containerConcurrency), `scale` (a cold start: the
   * revision's scale from zero, from the first request that found no pod to the first pod ready) and
   * `upstream` (from the pod taking the request to its response head).
   */
  private serverTiming(): string {
    let v = `hold;dur=${ms(this.coldStartMs)};desc="${this.waitedForScale ? 'cold start' : 'no capacity'}"`
    if (this.waitedForScale) v += `, scale;dur=${ms(this.throttler?.lastScaleMs() ?? this.coldStartMs)};desc="revision scale from zero"`
    if (this.dispatchedAt > 0) v += `, upstream;dur=${ms(this.record.firstByteAt - this.dispatchedAt)};desc="pod to response head"`
    return v
  }

  onResponseData(controller: DispatchController, chunk: Buffer): void {
    this.touch()
    this.record.bytesOut += chunk.length
    if (this.h2 && !this.res.headersSent) this.res.writeHead(this.res.statusCode)
    // A large chunk from our h1 client is pooled memory: it goes back once the bytes have left.
    if (!this.res.write(chunk, isPooled(chunk) ? () => releaseChunk(chunk) : undefined)) {
      controller.pause()
      this.res.once('drain', () => controller.resume())
    }
  }

  onResponseEnd(_controller: DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    this.upstreamDone = true
    const res = this.res
    // Trailers (gRPC's grpc-status) reach HTTP/2 clients always, HTTP/1.1 clients when chunked.
    if (trailers && (this.h2 || res.chunkedEncoding)) {
      for (const _ in trailers) {
        res.addTrailers(trailers as Record<string, string>)
        break
      }
    }
    res.end()
    this.done()
  }

  onResponseError(_controller: DispatchController, err: Error): void {
    this.upstreamDone = true
    if (this.finished) {
      this.done()
      return
    }
    const code = (err as NodeJS.ErrnoException).code ?? ''
    this.record.trace?.failed(code || err.message)
    // A pod whose TLS cannot be trusted is a configuration fault, not a transient one: no retry.
    if (!this.responded && this.ctx.upstreamTls !== undefined && this.dialled.startsWith('https:') && isTlsFailure(err)) {
      // The address dialled: the pod's TLS port (the origin without `https://`).
      return this.fail(502, 'upstream-tls-failed', this.ctx.upstreamTls.failed(this.backend.key, this.dialled.slice(this.dialled.indexOf('//') + 2), err))
    }
    // Nothing reached the pod: try again on a pod that is ready.
    if (!this.responded && !this.sent && CONNECT_ERRORS.has(code) && !this.req.readableDidRead && this.retryElsewhere()) return
    if (this.responded) {
      // Mid-response failure: only this client sees it, as a cut stream.
      this.res.destroy(err)
      this.done()
      return
    }
    const where = this.pod ? this.pod.endpoint.address : this.backend.externalHost ?? this.backend.serviceName
    // A response the client could not parse, or one ambiguous about where it ends (our h1 client's
    // UND_ERR_PROTOCOL, llhttp's HPE_* from undici): the pod answered, but not in HTTP.
    if (code === 'UND_ERR_PROTOCOL' || code.startsWith('HPE_')) this.fail(502, 'upstream-bad-response', `upstream ${where} sent a malformed response: ${err.message}`)
    else if (code === 'UND_ERR_CONNECT_TIMEOUT') this.fail(504, 'upstream-timeout', `connecting to ${where} timed out`)
    // Issue 7: an ExternalName that does not resolve says so (a DNS failure, not a refused connection).
    else if (DNS_ERRORS.has(code)) this.fail(502, 'upstream-connect-failed', `cannot resolve upstream host ${where}: DNS lookup failed (${code})`)
    else if (this.sent) this.fail(502, 'upstream-reset', `upstream ${where} closed the connection before responding (${code || err.message})`)
    else this.fail(502, 'upstream-connect-failed', `cannot connect to upstream ${where}: ${code || err.message}`)
  }

  // ---- endings ----

  fail(status: number, reason: Reason, detail: string, headers?: Record<string, string>): void {
    if (this.finished) return
    this.record.status = status
    this.record.reason = reason
    if (this.inQueue) this.leaveQueue()
    if (!this.res.headersSent) noteAnswer(this.record, detail)
    reply(this.res, status, reason, detail, headers)
    // done() marks the exchange finished and only then aborts the upstream request. Never abort
    // before that: undici reports the abort synchronously through onResponseError, which would
    // then answer 502 upstream-reset instead of this 504/503.
    this.done()
  }

  /** The client went away (or the response finished): release everything exactly once. */
  done(): void {
    if (!this.settle()) return
    // Only an unfinished upstream exchange is aborted: after onResponseEnd the connection is clean
    // and goes back to the pool.
    if (this.controller && !this.upstreamDone && !this.controller.aborted) this.controller.abort(CLIENT_GONE)
    this.ctx.answered(this.record)
    this.ctx.left(this.record)
  }
}

/**
 * What body a request has: none, one of a stated length, or a stream of unknown length. HTTP/2
 * carries a body whenever the HEADERS frame did not end the stream (gRPC sends no length); a
 * Content-Length stated over HTTP/2 was checked against the data by node:http2.
 */
function requestBody(req: ClientRequest, h2: boolean): RequestBody {
  const length = req.headers['content-length']
  if (h2) {
    if ((req as ClientRequest & HasH2Stream).stream.endAfterHeaders) return 'none'
    return length === undefined ? 'stream' : 'length'
  }
  if (length !== undefined) return length === '0' ? 'none' : 'length'
  return req.headers['transfer-encoding'] !== undefined ? 'stream' : 'none'
}

/** Milliseconds with one decimal, as Server-Timing durations are written. */
function ms(v: number): string {
  return (Math.round(v * 10) / 10).toString()
}

function uncork(socket: { uncork(): void }): void {
  socket.uncork()
}

/** The response's 'close': the client went away, or the response was sent. */
function onClose(this: ClientResponse & { exchange?: Exchange }): void {
  const x = this.exchange
  if (x && !x.finished) {
    if (!this.writableFinished) x.record.status = x.record.status || 499
    x.done()
  }
}

/** The Exchange forwarding to this response, if one started. */
export function exchangeOf(res: ClientResponse): Exchange | undefined {
  return (res as ClientResponse & { exchange?: Exchange }).exchange
}

function res_onClose(x: Exchange): void {
  ;(x.res as ClientResponse & { exchange?: Exchange }).exchange = x
  // `on`, not `once`: once() wraps the listener in a new closure per request; the response is
  // closed only once anyway.
  x.res.on('close', onClose)
}
