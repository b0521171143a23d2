// HTTP/1.1 Upgrade (WebSocket) through any route: resolved like a request, then the two sockets are
// spliced byte for byte (no re-framing). The client gets its 101 from the pod itself, so a dead
// upstream yields an HTTP error, never a 101 followed by a close.
//
// An upgrade is held, throttled, timed and re-routed like a request (exchange.ts): it waits for a pod
// of a revision at zero within the cold-start budget; until the pod's first byte the revision's
// timeoutSeconds and responseStartTimeoutSeconds apply (a pod that accepts the connection and never
// answers gets a 504); once the pod has answered it is a stream, closed only after idleTimeoutSeconds
// (else --stream-idle-timeout) without a byte in either direction, as gRPC and event streams are.
import net from 'node:net'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { DataPlane, ListenerKind } from './data-plane.ts'
import type { PodSlot } from '../activator/throttler.ts'
import { HeldForPod } from './held.ts'
import type { BackendSpec, RevisionRef } from '../model/snapshot.ts'
import { lookupHost, normaliseHostHeader } from './host.ts'
import { resolve } from './resolve.ts'
import type { Resolution } from './resolve.ts'
import { upstreamHeadersFor } from './upstream-headers.ts'
import { rawReply } from './reply.ts'
import type { Reason } from './reply.ts'
import { nextDeadline, timeoutDetail } from './deadlines.ts'
import type { TimedState } from './deadlines.ts'
import { UPSTREAM_CONNECT_TIMEOUT_MS } from './pools.ts'

/** Routes one upgrade request and splices it to a pod; `done` runs once when it is over. */
export function proxyUpgrade(plane: DataPlane, req: IncomingMessage, socket: Duplex, head: Buffer, listener: ListenerKind, secure: boolean, done: () => void): void {
  new Upgrade(plane, req, socket, head, secure, done).start(listener)
}

export class Upgrade extends HeldForPod implements TimedState {
  readonly plane: DataPlane
  protected readonly req: IncomingMessage
  private readonly socket: Duplex
  private readonly head: Buffer
  private readonly secure: boolean
  private readonly done: () => void
  resolution: Resolution | undefined
  backend: BackendSpec | undefined
  private pod: PodSlot | undefined
  private upstream: net.Socket | undefined
  private timer: NodeJS.Timeout | undefined
  /** The revision this upgrade counts as demand for (demandIn done, demandOut owed). */
  private demand: RevisionRef | undefined
  finished = false
  /** The handshake's answer is in the request count (see count()). */
  private counted = false
  readonly startedAt = performance.now()
  /** The pod sent its first byte (its 101, or an HTTP error the client gets as is). */
  responded = false
  /** The pod's first bytes while fewer than a status line's first 12 (`HTTP/1.1 101`) have come. */
  private statusBytes: Buffer | undefined
  lastActivity = 0

  constructor(plane: DataPlane, req: IncomingMessage, socket: Duplex, head: Buffer, secure: boolean, done: () => void) {
    super()
    this.plane = plane
    this.req = req
    this.socket = socket
    this.head = head
    this.secure = secure
    this.done = done
    socket.on('error', () => socket.destroy())
    socket.once('close', () => this.finish())
  }

  get onPod(): boolean {
    return this.pod !== undefined
  }

  /** TimedState: once the pod has answered, the connection is a stream (no total timeout, an idle one). */
  get streaming(): boolean {
    return this.responded
  }

  start(listener: ListenerKind): void {
    const snap = this.plane.snapshot
    const req = this.req
    const rawHost = req.headers.host
    if (!rawHost) return this.fail(400, 'bad-request', 'the request has no Host header')
    const entry = lookupHost(listener === 'public' ? snap.publicHosts : snap.localHosts, rawHost)
    if (!entry) return this.fail(404, 'host-not-found', `no route for host ${normaliseHostHeader(rawHost) ?? ''} on the ${listener} listener`)
    if (!this.secure && listener === 'public' && entry.ingress.httpOption === 'Redirected') return this.fail(400, 'https-redirect', `use wss://${entry.host}${req.url ?? '/'}`)
    const url = req.url ?? '/'
    const r = resolve(snap, entry, url, req.headers)
    if ('failure' in r) return this.fail(404, 'path-not-found', `no path of host ${r.entry.host} matches ${url.split('?')[0]}`)
    const backend = r.inner?.split.backend ?? r.split.backend
    this.resolution = r
    this.backend = backend
    if (backend.kind === 'external') return this.connect(backend.externalHost!, backend.externalPort!)
    if (backend.problem) return this.fail(503, 'no-backend', backend.problem)
    const throttler = this.plane.throttlerFor(backend)
    this.throttler = throttler
    if (!backend.revision && throttler.podCount === 0) return this.fail(503, 'no-backend', `Service ${backend.namespace}/${backend.serviceName} has no ready endpoints`)
    this.demandFor(backend.revision)
    this.acquire()
  }

  // ---- waiting for a pod (the queueing itself is HeldForPod's) ----

  protected granted(pod: PodSlot): void {
    if (this.finished || this.socket.destroyed) {
      this.throttler!.release(pod)
      return
    }
    this.pod = pod
    this.rearm()
    this.connect(pod.endpoint.host, pod.endpoint.port)
  }

  /** A held upgrade follows the configuration (HeldForPod.reroute): its demand moves with it. */
  protected retarget(backend: BackendSpec): void {
    this.backend = backend
    this.demandFor(backend.revision)
  }

  // ---- the splice ----

  private connect(host: string, port: number): void {
    const req = this.req
    const headers = upstreamHeadersFor(req, this.resolution!, this.secure, this.backend!.revision !== undefined, true)
    let lines = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`
    for (let i = 0; i < headers.length; i += 2) lines += `${headers[i]}: ${headers[i + 1]}\r\n`
    lines += '\r\n'
    const socket = this.socket
    const upstream = net.connect({ host, port, noDelay: true })
    this.upstream = upstream
    let connected = false
    // Handlers of a connection given up for a retry must not touch the one that replaced it.
    const current = (): boolean => this.upstream === upstream
    upstream.setTimeout(UPSTREAM_CONNECT_TIMEOUT_MS)
    upstream.once('timeout', () => {
      if (!connected) upstream.destroy(Object.assign(new Error(`no connection within ${UPSTREAM_CONNECT_TIMEOUT_MS / 1000}s`), { code: 'ETIMEDOUT' }))
    })
    upstream.once('connect', () => {
      connected = true
      upstream.setTimeout(0)
      upstream.write(lines)
      if (this.head.length > 0) upstream.write(this.head)
      // The pod's end is handled below: before its first byte the client gets a 502, not a close.
      upstream.pipe(socket as NodeJS.WritableStream, { end: false })
      ;(socket as NodeJS.ReadableStream).pipe(upstream)
      // Activity listeners only once both pipes exist: a 'data' listener makes a stream flow, and
      // bytes it read before its pipe would be lost.
      upstream.on('data', (chunk: Buffer) => {
        this.lastActivity = performance.now()
        if (!this.responded) {
          this.responded = true
          this.rearm()
        }
        if (!this.counted) this.countPodStatus(chunk)
      })
      socket.on('data', () => (this.lastActivity = performance.now()))
    })
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (!current()) return
      const why = err.code ?? err.message
      if (!connected) {
        if (this.retryElsewhere()) return
        if (err.code === 'ETIMEDOUT') this.fail(504, 'upstream-timeout', `connecting to ${host}:${port} timed out`)
        else this.fail(502, 'upstream-connect-failed', `cannot connect to upstream ${host}:${port}: ${why}`)
      } else if (!this.responded) this.fail(502, 'upstream-reset', `upstream ${host}:${port} closed the connection before responding (${why})`)
      else socket.destroy()
    })
    upstream.once('end', () => {
      if (current() && this.responded) socket.end()
    })
    upstream.once('close', () => {
      if (!current()) return
      this.releasePod()
      if (!this.responded) this.fail(502, 'upstream-reset', `upstream ${host}:${port} closed the connection before responding`)
      else {
        this.countPodStatus(undefined)
        socket.end()
      }
    })
    this.plane.log.debug({ host, port, url: req.url }, 'upgrade')
  }

  /**
   * The connection to a revision's pod failed before it was made, so the pod saw nothing: within
   * the cold-start budget, put the pod aside for a moment and wait for another (or the same one,
   * once it listens), as requests do. False when it must fail instead.
   */
  private retryElsewhere(): boolean {
    const pod = this.pod
    const backend = this.backend!
    if (!pod || !backend.revision || performance.now() - this.startedAt >= this.plane.coldStartBudgetMs) return false
    this.pod = undefined
    this.upstream = undefined
    this.throttler!.markFailed(pod, this.plane.retryBackoffMs)
    this.throttler!.release(pod)
    this.plane.metrics.retried(backend)
    this.acquire()
    return true
  }

  // ---- timeouts ----

  protected rearm(): void {
    const rev = this.backend?.revision
    if (this.finished || !rev) return
    if (this.timer) clearTimeout(this.timer)
    const now = performance.now()
    const d = nextDeadline(this, rev, this.plane, now)
    this.timer = d ? setTimeout(() => this.timeout(), Math.ceil(d.at - now)) : undefined
    this.timer?.unref()
  }

  private timeout(): void {
    this.timer = undefined
    const rev = this.backend?.revision
    if (this.finished || !rev) return
    const now = performance.now()
    const d = nextDeadline(this, rev, this.plane, now)
    // Activity may have pushed the idle deadline on, or the state moved past the one that was armed.
    if (!d || d.at > now + 1) return this.rearm()
    const detail = timeoutDetail(d.reason, rev, this.plane)
    if (this.responded) this.plane.log.debug({ url: this.req.url, revision: rev.key, reason: d.reason }, `upgraded connection closed: ${detail}`)
    this.fail(504, d.reason, detail)
  }

  // ---- endings ----

  /**
   * Ends the upgrade with an HTTP answer if the pod has not started answering yet, else by closing
   * both sides (nothing HTTP can be said inside a spliced connection).
   */
  fail(status: number, reason: Reason, detail: string, headers?: Record<string, string>): void {
    if (this.finished) return
    if (this.rerouteInstead(reason, detail)) return
    if (this.inQueue) this.leaveQueue()
    if (this.responded) this.socket.destroy()
    else {
      rawReply(this.socket, status, reason, detail, headers)
      this.count(status, reason)
    }
    this.upstream?.destroy()
    this.finish()
  }

  /** Moves this upgrade's demand to `rev` (none: undefined). */
  private demandFor(rev: RevisionRef | undefined): void {
    if (this.demand) this.plane.demandOut(this.demand)
    this.demand = rev
    if (rev) this.plane.demandIn(rev)
  }

  /**
   * Counts the handshake's answer once, in edge_requests_total and the access log: the pod's status,
   * the gateway's own answer, or 499 when the client left before either.
   */
  private count(status: number, reason: Reason | undefined): void {
    if (this.counted) return
    this.counted = true
    this.plane.upgradeAnswered(this.req, this.resolution?.entry.host ?? '', this.backend, status, (performance.now() - this.startedAt) / 1000, reason)
  }

  /**
   * Counts the pod's answer by its status line once its first 12 bytes are in: a status line may
   * arrive in pieces. `chunk` undefined: the pod is done, count what came (502 if not a status line).
   */
  private countPodStatus(chunk: Buffer | undefined): void {
    const bytes = chunk === undefined ? (this.statusBytes ?? Buffer.alloc(0)) : this.statusBytes ? Buffer.concat([this.statusBytes, chunk]) : chunk
    if (chunk !== undefined && bytes.length < STATUS_PREFIX_BYTES) {
      // Kept as a copy: the stream's chunk is not ours to keep (concat made one already).
      this.statusBytes = bytes === chunk ? Buffer.from(chunk) : bytes
      return
    }
    this.statusBytes = undefined
    this.count(statusOfHead(bytes), undefined)
  }

  private releasePod(): void {
    if (!this.pod) return
    this.throttler!.release(this.pod)
    this.pod = undefined
  }

  /** The client went away, or the upgrade failed: release everything exactly once. */
  private finish(): void {
    if (this.finished) return
    this.finished = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (this.inQueue) this.leaveQueue()
    this.releasePod()
    this.upstream?.destroy()
    this.demandFor(undefined)
    this.count(499, undefined)
    this.done()
  }
}

/** `HTTP/1.1 101`: the part of a status line the count reads. */
const STATUS_PREFIX_BYTES = 12

/**
 * The status of the response head the pod's first bytes start (`HTTP/1.1 101 ...`), for the request
 * count; 502 when they are not one, or too few (the client still gets them as they came).
 */
function statusOfHead(chunk: Buffer): number {
  if (chunk.length < STATUS_PREFIX_BYTES) return 502
  const line = chunk.toString('latin1', 0, STATUS_PREFIX_BYTES)
  return /^HTTP\/1\.[01] [1-5]\d\d$/.test(line) ? Number(line.slice(9)) : 502
}
