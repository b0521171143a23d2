// The front door's fourth stage, shared by requests (forward-http.ts) and upgrades
// (forward-upgrade.ts): from a route to a pod. It counts the request as demand for its revision,
// takes a pod at once or holds the request in the revision's throttler (a cold start, or every pod
// at its containerConcurrency), answers when the queue is full, follows the configuration when the
// backend it waits for leaves it, tries another pod when a connection fails before the pod saw
// anything, and keeps one timer for the earliest of the revision's deadlines (deadlines.ts). What
// is left to a subclass is the forward itself: what to send, and how to answer.
import type { DropReason, EnqueueResult, PodSlot, Throttler, Waiter } from '../activator/throttler.ts'
import type { RevisionFault } from './backend-table.ts'
import type { BackendSpec, RevisionRef, Snapshot } from '../model/snapshot.ts'
import type { ClientRequest } from './client.ts'
import { idleLimitMs, nextDeadline, timeoutDetail } from './deadlines.ts'
import type { Deadline, Limits, TimedState } from './deadlines.ts'
import type { Reason } from './reply.ts'
import { resolveAgain } from './resolve.ts'
import type { Resolution } from './resolve.ts'
import type { RequestRecord } from './request-record.ts'
import { hostOf } from './screen.ts'
import { heldBodyBytes } from './held-body.ts'
import type { UpstreamTls } from './upstream-tls.ts'

/** How often one held request may follow the configuration before it gets its 503. */
const MAX_REROUTES = 3

/** Told of every request to a revision, from arrival (held ones too) to its end; it reads its own clock. */
export interface DemandSink {
  requestIn(rev: RevisionRef): void
  requestOut(rev: RevisionRef): void
}

export interface AdmitLimits extends Limits {
  /** Backoff before a pod that refused a connection is tried again. */
  readonly retryBackoffMs: number
}

/** What admission needs of the data plane, and no more. */
export interface AdmitContext {
  readonly backends: {
    throttlerFor(b: BackendSpec): Throttler
    /** Why the revision (`ns/name`) cannot serve now (no runtime for it, or it failed to start), or undefined. */
    fault(revisionKey: string): RevisionFault | undefined
  }
  /** Swapped whole when the settings change (DataPlane.setTimeouts). */
  limits: AdmitLimits
  readonly demand: DemandSink | undefined
  readonly metrics: { coldStart(backend: BackendSpec, ms: number, scaleFromZero: boolean): void; retried(backend: BackendSpec): void; fastFailure(cause: string): void }
  /** The snapshot now: a held request whose backend left is resolved again against it. */
  current(): Snapshot
  /** The client has its answer (a request's response, an upgrade's handshake): count it. */
  answered(r: RequestRecord): void
  /** Nothing of the request is left (its response ended, or the upgraded connection closed): log it. */
  left(r: RequestRecord): void
  /** system-internal-tls: whether revision pods are dialled over TLS now, and how. */
  readonly upstreamTls: UpstreamTls | undefined
}

export abstract class Admission implements Waiter, TimedState {
  readonly ctx: AdmitContext
  readonly record: RequestRecord
  /** The request as the client sent it: its Host, path and headers choose the route again. */
  readonly req: ClientRequest
  /** Both change only when a held request follows the configuration (see reroute). */
  resolution: Resolution
  backend: BackendSpec
  throttler: Throttler | undefined
  pod: PodSlot | undefined
  readonly startedAt: number
  /** When it first queued for a pod (ms); 0 if it never had to. */
  queuedAt = 0
  /** Set by the throttler's cancel(). */
  cancelled = false
  /** Waiter: bytes of its body held while it waits (held-body.ts); set when it first has to wait. */
  heldBytes = 0
  /** Waiting in the throttler's queue right now. */
  inQueue = false
  /** How long the wait for a pod took, once a real wait ended; -1 before. */
  coldStartMs = -1
  /** The wait began with no pod at all (a scale from zero), not with every pod busy. */
  waitedForScale = false
  /** When a held request was sent on to its pod (performance.now); 0 if it was never held. */
  dispatchedAt = 0
  reroutes = 0
  finished = false
  /** The pod has started answering. */
  responded = false
  lastActivity = 0
  timer: NodeJS.Timeout | undefined
  /** When the armed timer fires (ms, performance.now). */
  timerAt = 0
  /** The revision this one counts as demand for (requestIn done, requestOut owed). */
  private demanded: RevisionRef | undefined

  constructor(ctx: AdmitContext, req: ClientRequest, resolution: Resolution, record: RequestRecord) {
    this.ctx = ctx
    this.req = req
    this.record = record
    this.resolution = resolution
    this.backend = resolution.inner?.split.backend ?? resolution.split.backend
    this.startedAt = record.startedAt
  }

  /** TimedState: a long-lived stream (no total timeout, an idle one). */
  abstract get streaming(): boolean

  /** TimedState: holds a pod now. */
  get onPod(): boolean {
    return this.pod !== undefined
  }

  /** Sends the request to a pod, or to an ExternalName Service's host. */
  protected abstract forward(host: string, port: number, origin: string): void

  /** Answers the client with the gateway's own answer (or cuts it, once the pod has answered), and ends. */
  abstract fail(status: number, reason: Reason, detail: string, headers?: Record<string, string>): void

  /** The client is gone already: a pod granted now goes straight back. */
  protected get gone(): boolean {
    return this.finished
  }

  /** Starts admission for the route chosen by identify(). */
  admit(): void {
    const backend = this.backend
    this.record.host = this.resolution.entry.host
    this.record.backend = backend
    this.record.trace?.route(this.resolution)
    if (backend.revision) {
      this.demandFor(backend.revision)
      this.rearm()
    }
    if (backend.problem) return this.fail(503, 'no-backend', backend.problem)
    if (this.cannotRun()) return
    if (backend.kind === 'external') return this.forward(backend.externalHost!, backend.externalPort!, backend.externalOrigin!)
    const throttler = this.ctx.backends.throttlerFor(backend)
    this.throttler = throttler
    if (!backend.revision && throttler.podCount === 0) return this.fail(503, 'no-backend', `Service ${backend.namespace}/${backend.serviceName} has no ready endpoints`)
    this.acquire()
  }

  // ---- waiting for a pod ----

  protected acquire(): void {
    const throttler = this.throttler!
    const pod = throttler.tryAcquire()
    if (pod) {
      this.granted(pod)
      return
    }
    if (this.queuedAt === 0) {
      this.queuedAt = performance.now()
      this.waitedForScale = throttler.podCount === 0
      this.heldBytes = heldBodyBytes(this.req)
    }
    this.cancelled = false
    const r = throttler.enqueue(this)
    if (r !== 'queued') return this.refuse(r)
    this.inQueue = true
    // Its place as it entered: the queue's length, itself included.
    this.record.trace?.held(this.waitedForScale, throttler.queued)
    this.rearm()
  }

  /** Waiter: no room in the queue (now, or later from the workers' broker). */
  refuse(reason: Exclude<EnqueueResult, 'queued'>): void {
    this.inQueue = false
    // Retry about when a pod could be there: the revision's last scale from zero, at least a second.
    const scaleMs = this.throttler?.lastScaleMs()
    const retry = String(Math.max(1, Math.ceil((scaleMs ?? 1000) / 1000)))
    this.fail(503, 'queue-full', `${refusal(reason, this.backend.namespace, this.heldBytes)}; retry in ${retry}s`, { 'retry-after': retry })
  }

  /** Waiter: the throttler hands us a pod. */
  grant(pod: PodSlot, waited = true): void {
    this.inQueue = false
    // The workers' broker answers every request asynchronously; only a real wait is a cold start.
    if (!waited) this.queuedAt = 0
    if (this.coldStartMs < 0 && this.queuedAt > 0) {
      this.coldStartMs = performance.now() - this.queuedAt
      this.record.coldStartMs = this.coldStartMs
      this.ctx.metrics.coldStart(this.backend, this.coldStartMs, this.waitedForScale)
    }
    this.granted(pod)
  }

  private granted(pod: PodSlot): void {
    if (this.gone) {
      this.throttler!.release(pod)
      return
    }
    this.pod = pod
    this.record.pod = pod.endpoint.address
    if (this.queuedAt > 0) {
      this.dispatchedAt = performance.now()
      this.record.trace?.granted()
      this.rearm()
    }
    const ep = pod.endpoint
    // Only revision pods have a TLS side; the setting is read per request, as it may change live.
    if (ep.tls !== undefined && this.ctx.upstreamTls?.enabled() === true) this.forward(ep.host, ep.tls.port, ep.tls.origin)
    else this.forward(ep.host, ep.port, ep.origin)
  }

  /**
   * Waiter: the throttler let go of it. Its backend left the configuration (e.g. the Route's traffic
   * moved to a new revision): nothing was sent anywhere, so it follows the configuration (on a
   * microtask, after the snapshot swap that dropped it), at most MAX_REROUTES times. A drain: 503.
   */
  dropped(why: DropReason): void {
    if (why === 'draining') return this.fail(503, 'draining', 'the gateway is shutting down; retry (another replica will take it)', { 'retry-after': '1' })
    if (why === 'no-runtime' || why === 'revision-failed') {
      this.inQueue = false
      if (!this.cannotRun()) this.fail(503, why, why === 'no-runtime' ? 'the local runner cannot run this revision' : 'the revision failed to start')
      return
    }
    const detail = 'the backend was removed from the configuration while this request waited'
    if (!this.inQueue || this.reroutes >= MAX_REROUTES) return this.fail(503, 'no-backend', detail, { 'retry-after': '1' })
    this.reroutes++
    this.inQueue = false
    queueMicrotask(() => this.reroute(detail))
  }

  /** Resolves again against the current snapshot and waits there, or fails with `detail`. */
  private reroute(detail: string): void {
    if (this.finished) return
    const req = this.req
    const again = resolveAgain(this.ctx.current(), this.resolution, hostOf(req) ?? '', req.url ?? '/', req.headers)
    if (!again) return this.fail(503, 'no-backend', detail)
    this.resolution = again.resolution
    this.backend = again.backend
    this.record.host = again.resolution.entry.host
    this.record.backend = again.backend
    this.record.trace?.route(again.resolution)
    this.demandFor(again.backend.revision)
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.rearm()
    if (this.cannotRun()) return
    this.throttler = this.ctx.backends.throttlerFor(again.backend)
    this.acquire()
  }

  /**
   * Answers 503 when the revision cannot serve now (no runtime for it, or its instances keep failing
   * before they are ready): held, the request would only time out, and say nothing.
   */
  private cannotRun(): boolean {
    const rev = this.backend.revision
    const f = rev ? this.ctx.backends.fault(rev.key) : undefined
    if (f === undefined) return false
    if (f.reason === 'revision-failed') this.ctx.metrics.fastFailure(f.cause)
    this.fail(503, f.reason, f.detail, f.reason === 'revision-failed' ? { 'retry-after': '2' } : undefined)
    return true
  }

  protected leaveQueue(): void {
    this.inQueue = false
    this.throttler!.cancel(this)
  }

  /**
   * The connection to a revision's pod failed before the pod saw anything: within the cold-start
   * budget, put the pod aside for a moment and wait for another (or the same one, once it listens),
   * so the first request after a scale from zero does not fail because the gateway was early. False
   * when it must fail instead.
   */
  protected retryElsewhere(): boolean {
    const pod = this.pod
    if (!pod || !this.backend.revision || performance.now() - this.startedAt >= this.ctx.limits.coldStartBudgetMs) return false
    this.pod = undefined
    this.throttler!.markFailed(pod, this.ctx.limits.retryBackoffMs)
    this.throttler!.release(pod)
    this.ctx.metrics.retried(this.backend)
    this.acquire()
    return true
  }

  // ---- timeouts ----
  // One timer holds the earliest deadline that applies in the current state (deadlines.ts); it is
  // re-armed when the state changes (queued → on a pod → responding), and on firing it re-checks,
  // since activity moves the idle one.

  private deadline(now: number): Deadline | undefined {
    const rev = this.backend.revision
    return rev ? nextDeadline(this, rev, this.ctx.limits, now) : undefined
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
  protected touch(): void {
    const rev = this.backend.revision
    if (rev !== undefined && idleLimitMs(this, rev, this.ctx.limits) !== undefined) this.lastActivity = performance.now()
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
    this.fail(504, d.reason, timeoutDetail(d.reason, this.backend.revision!, this.ctx.limits))
  }

  // ---- the end ----

  /** Moves this one's demand to `rev` (none: undefined). */
  private demandFor(rev: RevisionRef | undefined): void {
    const demand = this.ctx.demand
    if (this.demanded && demand) demand.requestOut(this.demanded)
    this.demanded = rev
    if (rev && demand) demand.requestIn(rev)
  }

  /**
   * Gives back what admission holds, exactly once: the timer, the pod or the place in the queue, the
   * demand. False when it was given back already.
   */
  protected settle(): boolean {
    if (this.finished) return false
    this.finished = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (this.pod) {
      this.throttler!.release(this.pod)
      this.pod = undefined
    } else if (this.inQueue) this.leaveQueue()
    this.demandFor(undefined)
    return true
  }
}

function onTimer(a: Admission): void {
  a.timeout()
}

/** What a full queue tells the client: which bound it met. */
function refusal(reason: Exclude<EnqueueResult, 'queued'>, namespace: string, heldBytes: number): string {
  switch (reason) {
    case 'revision-queue-full':
      return 'too many requests waiting for this revision'
    case 'namespace-queue-full':
      return `too many requests waiting for namespace ${namespace}`
    case 'global-queue-full':
      return 'too many requests waiting for the gateway'
    case 'namespace-bytes-full':
      return `too many request bodies held for namespace ${namespace} (this one would add ${heldBytes} bytes over --max-held-body-bytes-per-namespace)`
    case 'global-bytes-full':
      return `too many request bodies held by the gateway (this one would add ${heldBytes} bytes over --max-held-body-bytes)`
  }
}
