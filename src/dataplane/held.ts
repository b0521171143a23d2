// What a request (exchange.ts) and a WebSocket upgrade (websocket.ts) share as throttler waiters:
// take a pod at once or queue for one, the answer when the queue is full, the cold-start time of a
// real wait, and following the configuration when the backend they wait for leaves it.
import type { IncomingMessage } from 'node:http'
import type { EnqueueResult, PodSlot, Throttler, Waiter } from '../activator/throttler.ts'
import type { BackendSpec } from '../model/snapshot.ts'
import type { DataPlane } from './data-plane.ts'
import type { Reason } from './reply.ts'
import { resolveAgain } from './resolve.ts'
import type { Resolution } from './resolve.ts'

/** How often one held request may follow the configuration before it gets its 503. */
const MAX_REROUTES = 3

export abstract class HeldForPod implements Waiter {
  abstract readonly plane: DataPlane
  /** The request as the client sent it: its Host, path and headers choose the route again. */
  protected abstract readonly req: IncomingMessage
  abstract resolution: Resolution | undefined
  abstract backend: BackendSpec | undefined
  abstract finished: boolean
  throttler: Throttler | undefined
  /** When it first queued for a pod (ms); 0 if it never had to. */
  queuedAt = 0
  /** Set by the throttler's cancel(). */
  cancelled = false
  /** Waiting in the throttler's queue right now. */
  inQueue = false
  /** How long the wait for a pod took, once a real wait ended; -1 before. */
  coldStartMs = -1
  reroutes = 0

  /** A pod is ours: use it (or give it back if it is too late). */
  protected abstract granted(pod: PodSlot): void
  /** Arms the timer for the earliest deadline of the current state. */
  protected abstract rearm(): void
  /** Moves this one's demand (and its timer) to `backend`, which becomes its backend. */
  protected abstract retarget(backend: BackendSpec): void
  abstract fail(status: number, reason: Reason, detail: string, headers?: Record<string, string>): void

  protected acquire(): void {
    const throttler = this.throttler!
    const pod = throttler.tryAcquire()
    if (pod) {
      this.granted(pod)
      return
    }
    if (this.queuedAt === 0) this.queuedAt = performance.now()
    this.cancelled = false
    const r = throttler.enqueue(this)
    if (r !== 'queued') return this.refuse(r)
    this.inQueue = true
    this.rearm()
  }

  /** Waiter: no room in the queue (now, or later from the workers' broker). */
  refuse(reason: Exclude<EnqueueResult, 'queued'>): void {
    this.inQueue = false
    const which = reason === 'revision-queue-full' ? 'this revision' : 'the gateway'
    this.fail(503, 'queue-full', `too many requests waiting for ${which}; retry shortly`, { 'retry-after': '1' })
  }

  /** Waiter: the throttler hands us a pod. */
  grant(pod: PodSlot, waited = true): void {
    this.inQueue = false
    // The workers' broker answers every request asynchronously; only a real wait is a cold start.
    if (!waited) this.queuedAt = 0
    if (this.coldStartMs < 0 && this.queuedAt > 0) {
      this.coldStartMs = performance.now() - this.queuedAt
      this.plane.metrics.coldStart(this.backend!, this.coldStartMs)
    }
    this.granted(pod)
  }

  /**
   * fail()'s first question: did the throttler drop this held one because its backend left the
   * configuration (e.g. the Route's traffic moved to a new revision)? Then, as nothing was sent
   * anywhere, it follows the configuration instead of failing (on a microtask, after the snapshot
   * swap that dropped it), and true is returned.
   */
  protected rerouteInstead(reason: Reason, detail: string): boolean {
    if (reason !== 'no-backend' || !this.inQueue || !this.cancelled || this.reroutes >= MAX_REROUTES) return false
    this.reroutes++
    this.inQueue = false
    queueMicrotask(() => this.reroute(detail))
    return true
  }

  /** Resolves again against the current snapshot and waits there, or fails with `detail`. */
  private reroute(detail: string): void {
    if (this.finished) return
    const req = this.req
    const host = req.headers.host ?? (req.headers[':authority'] as string | undefined) ?? ''
    const again = resolveAgain(this.plane.snapshot, this.resolution!, host, req.url ?? '/', req.headers)
    if (!again) return this.fail(503, 'no-backend', detail)
    this.resolution = again.resolution
    this.retarget(again.backend)
    this.throttler = this.plane.throttlerFor(again.backend)
    this.acquire()
  }

  protected leaveQueue(): void {
    this.inQueue = false
    this.throttler!.cancel(this)
  }
}
