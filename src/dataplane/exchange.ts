// One proxied HTTP request, from resolved route to finished response. A single object per request
// carries all its state and is itself the dispatch handler (undici's interface, which our own
// HTTP/1.1 client in h1/ speaks too), so the hot path allocates little:
// no per-request closures besides the client-close listener.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import type { BackendSpec, Snapshot } from '../model/snapshot.ts'
import type { PodSlot } from '../activator/throttler.ts'
import { HeldForPod } from './held.ts'
import { isPooled, releaseChunk } from './h1/chunk-pool.ts'
import type { Resolution } from './resolve.ts'
import { RESPONSE_DROP, upstreamHeadersFor } from './upstream-headers.ts'
import { reply } from './reply.ts'
import type { AnyResponse, Reason } from './reply.ts'
import type { DataPlane } from './data-plane.ts'
import { idleLimitMs, nextDeadline, timeoutDetail } from './deadlines.ts'
import type { Deadline, TimedState } from './deadlines.ts'

type DispatchController = Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestStart']>>[0]

/** Errors that prove the pod saw nothing of the request: safe to try another pod. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'UND_ERR_SOCKET', 'EPIPE'])

/** Resolver failures (getaddrinfo): the upstream's name, not its connection, is the problem. */
const DNS_ERRORS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA'])

const COLD_START_HEADER = 'x-edge-cold-start-ms'

/** One preallocated reason for aborting an upstream request: an Error per abort costs a stack trace. */
const CLIENT_GONE = new Error('the client closed the request')

export class Exchange extends HeldForPod implements Dispatcher.DispatchHandler, TimedState {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly plane: DataPlane
  readonly snapshot: Snapshot
  /** Both change only when a held request follows the configuration (see reroute). */
  resolution: Resolution
  backend: BackendSpec
  readonly secure: boolean
  /** The client speaks HTTP/2 (h2c or h2): the response is an Http2ServerResponse. */
  readonly h2: boolean
  /** A long-lived stream (gRPC request, or an event-stream response): idle timeout, no total timeout. */
  streaming: boolean
  readonly startedAt: number
  pod: PodSlot | undefined
  controller: DispatchController | null = null
  /** undici finished with this request (ended or failed): nothing left to abort. */
  upstreamDone = false
  attempts = 0
  sent = false
  responded = false
  finished = false
  status = 0
  timer: NodeJS.Timeout | undefined
  /** When the armed timer fires (ms, performance.now). */
  timerAt = 0
  lastActivity = 0

  constructor(plane: DataPlane, snapshot: Snapshot, req: IncomingMessage, res: ServerResponse, resolution: Resolution, secure: boolean) {
    super()
    this.plane = plane
    this.snapshot = snapshot
    this.req = req
    this.res = res
    this.resolution = resolution
    this.backend = resolution.inner?.split.backend ?? resolution.split.backend
    this.secure = secure
    this.h2 = req.httpVersionMajor === 2
    this.streaming = typeof req.headers['content-type'] === 'string' && req.headers['content-type'].startsWith('application/grpc')
    this.startedAt = performance.now()
  }

  start(): void {
    const backend = this.backend
    const rev = backend.revision
    res_onClose(this)
    if (rev) {
      this.plane.demandIn(rev)
      this.rearm()
    }
    if (backend.kind === 'external') {
      this.dispatch(`http://${backend.externalHost}:${backend.externalPort}`)
      return
    }
    if (backend.problem) {
      this.fail(503, 'no-backend', backend.problem)
      return
    }
    const throttler = this.plane.throttlerFor(backend)
    this.throttler = throttler
    if (!rev && throttler.podCount === 0) {
      this.fail(503, 'no-backend', `Service ${backend.namespace}/${backend.serviceName} has no ready endpoints`)
      return
    }
    this.acquire()
  }

  protected granted(pod: PodSlot): void {
    if (this.finished) {
      this.throttler!.release(pod)
      return
    }
    this.pod = pod
    if (this.queuedAt > 0) this.rearm()
    // The origin string is built once per pod, not per request.
    this.dispatch((pod.origin ??= pod.endpoint.host.includes(':') ? `http://[${pod.endpoint.host}]:${pod.endpoint.port}` : `http://${pod.endpoint.address}`))
  }

  private dispatch(origin: string): void {
    this.attempts++
    this.upstreamDone = false
    this.controller = null
    const req = this.req
    const headers = upstreamHeadersFor(req, this.resolution, this.secure, this.backend.revision !== undefined, false)
    const method = req.method ?? 'GET'
    // HTTP/2 carries a body whenever the HEADERS frame did not end the stream (gRPC sends no length).
    const hasBody = this.h2
      ? !(req as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders
      : req.headers['content-length'] !== undefined
        ? req.headers['content-length'] !== '0'
        : req.headers['transfer-encoding'] !== undefined
    this.plane.pools.get(origin, this.backend.protocol, hasBody).dispatch(
      {
        path: req.url ?? '/',
        method,
        headers,
        body: hasBody ? req : null,
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
    this.status = statusCode
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
      if (this.coldStartMs >= 0) res.setHeader(COLD_START_HEADER, Math.round(this.coldStartMs))
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
      // server's response (h1/server.ts) has no socket here: it writes head and body as one buffer.
      const socket = res.socket
      if (socket) {
        socket.cork()
        process.nextTick(uncork, socket)
      }
      // One flat [name, value, ...] list: writeHead stores it as is, with no per-header setHeader.
      const flat: string[] = []
      for (const name in headers) {
        if (RESPONSE_DROP.has(name)) continue
        const v = headers[name]
        if (v === undefined) continue
        if (typeof v === 'string') flat.push(name, v)
        else for (const one of v) flat.push(name, one)
      }
      if (this.coldStartMs >= 0) flat.push(COLD_START_HEADER, String(Math.round(this.coldStartMs)))
      if (this.plane.draining) flat.push('connection', 'close')
      res.writeHead(statusCode, statusMessage || undefined, flat)
    }
    this.touch()
    if (this.backend.revision) this.rearm()
  }

  onResponseData(controller: DispatchController, chunk: Buffer): void {
    this.touch()
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
    if (!this.responded && !this.sent && CONNECT_ERRORS.has(code) && !this.req.readableDidRead && this.pod && this.canRetry()) {
      // Nothing reached the pod: try again on a pod that is ready (the first request after a
      // scale from zero must not fail because the gateway was early).
      const pod = this.pod
      this.pod = undefined
      this.throttler!.markFailed(pod, this.plane.retryBackoffMs)
      this.throttler!.release(pod)
      this.plane.metrics.retried(this.backend)
      this.acquire()
      return
    }
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

  private canRetry(): boolean {
    return this.backend.revision !== undefined && performance.now() - this.startedAt < this.plane.coldStartBudgetMs
  }

  // ---- timeouts ----
  // One timer holds the earliest deadline that applies in the current state (deadlines.ts); it is
  // re-armed when the state changes (queued → on a pod → responding), and on firing it re-checks,
  // since activity moves the idle one.

  /** TimedState: holds a pod now. */
  get onPod(): boolean {
    return this.pod !== undefined
  }

  private deadline(now: number): Deadline | undefined {
    const rev = this.backend.revision
    return rev ? nextDeadline(this, rev, this.plane, now) : undefined
  }

  protected rearm(): void {
    if (this.finished || !this.backend.revision) return
    const now = performance.now()
    const d = this.deadline(now)
    if (this.timer) {
      // A timer that fires no later than the new deadline stays: timeout() re-checks and re-arms.
      // So the usual request (timeoutSeconds from its start, whatever its state) arms one timer,
      // not a new one when its response starts.
      if (d && this.timerAt <= d.at) return
      clearTimeout(this.timer)
    }
    if (!d) {
      this.timer = undefined
      return
    }
    // Whole milliseconds: Node keeps one timer list per distinct delay, and a fractional delay made a
    // new list (and a priority-queue insert) for every request. Firing up to 1 ms late is harmless:
    // timeout() re-checks the deadline.
    const delay = Math.ceil(d.at - now)
    this.timerAt = now + delay
    this.timer = setTimeout(onTimer, delay, this)
    this.timer.unref()
  }

  /** Only an idle limit reads lastActivity: the clock is not read for every chunk of every response. */
  private touch(): void {
    const rev = this.backend.revision
    if (rev !== undefined && idleLimitMs(this, rev, this.plane) !== undefined) this.lastActivity = performance.now()
  }

  timeout(): void {
    this.timer = undefined
    if (this.finished) return
    const now = performance.now()
    const d = this.deadline(now)
    // Activity may have pushed the idle deadline on, or the state moved past the one that was armed.
    if (!d || d.at > now + 1) {
      this.rearm()
      return
    }
    this.fail(504, d.reason, timeoutDetail(d.reason, this.backend.revision!, this.plane))
  }

  // ---- endings ----

  fail(status: number, reason: Reason, detail: string, headers?: Record<string, string>): void {
    if (this.finished) return
    if (!this.sent && this.rerouteInstead(reason, detail)) return
    this.status = status
    if (this.inQueue) this.leaveQueue()
    reply(this.res as AnyResponse, status, reason, detail, headers)
    // done() marks the exchange finished and only then aborts the upstream request. Never abort
    // before that: undici reports the abort synchronously through onResponseError, which would
    // then answer 502 upstream-reset instead of this 504/503.
    this.done()
  }

  /** A held request follows the configuration (HeldForPod.reroute): demand and deadlines move with it. */
  protected retarget(backend: BackendSpec): void {
    const before = this.backend.revision
    if (before) this.plane.demandOut(before)
    this.backend = backend
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (backend.revision) this.plane.demandIn(backend.revision)
    this.rearm()
  }

  /** The client went away (or the response finished): release everything exactly once. */
  done(): void {
    if (this.finished) return
    this.finished = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (this.pod) {
      this.throttler!.release(this.pod)
      this.pod = undefined
    } else if (this.inQueue) this.leaveQueue()
    // Only an unfinished upstream exchange is aborted: after onResponseEnd the connection is clean
    // and goes back to the pool.
    if (this.controller && !this.upstreamDone && !this.controller.aborted) this.controller.abort(CLIENT_GONE)
    if (this.backend.revision) this.plane.demandOut(this.backend.revision)
    this.plane.finished(this)
  }
}

function uncork(socket: NonNullable<ServerResponse['socket']>): void {
  socket.uncork()
}

function onTimer(x: Exchange): void {
  x.timeout()
}

function onClose(this: ServerResponse & { exchange?: Exchange }): void {
  const x = this.exchange
  if (x && !x.finished) {
    if (!this.writableFinished) x.status = x.status || 499
    x.done()
  }
}

function res_onClose(x: Exchange): void {
  ;(x.res as ServerResponse & { exchange?: Exchange }).exchange = x
  // `on`, not `once`: once() wraps the listener in a new closure per request; the response is
  // closed only once anyway.
  x.res.on('close', onClose)
}
