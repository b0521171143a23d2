// The live state behind the snapshot's backends: one throttler per backend (made on first use), the
// activator's early probe of starting pods, and how long each pod's connection pools live. Pools are
// keyed by the endpoint origin computed in compile (Endpoint.origin, BackendSpec.externalOrigin), so
// opening, counting and closing a pool always name it the same way.
import type { BackendSpec, Endpoint, RevisionRef, Snapshot } from '../model/snapshot.ts'
import { QueueBudgets, RevisionThrottler } from '../activator/throttler.ts'
import type { HoldBounds, Holds } from '../activator/throttler.ts'
import type { DropReason, Throttler } from '../activator/throttler.ts'
import { ProbedEndpoints } from '../activator/pod-prober.ts'
import type { PoolRegistry } from './pools.ts'
import { LOCAL_EXIT_CAUSE } from '../sources/revision-failure.ts'

/** Why a revision cannot serve now: the 503's reason and its body. */
export interface RevisionFault {
  readonly reason: 'no-runtime' | 'revision-failed'
  readonly detail: string
  /** What made it fail (edge_revision_fast_failures_total's label, a fixed set: revision-failure.ts). */
  readonly cause: string
}

export interface BackendTableOptions {
  maxQueuedPerRevision: number
  /** Held requests and bytes of held bodies, in the process and per namespace. */
  holds: HoldBounds
  /** A request is waiting for a revision that has no pod at all. */
  onColdStart?: (rev: RevisionRef) => void
  /**
   * Worker processes: a throttler shared through the primary, for backends whose per-pod limit must
   * hold across workers (revisions with containerConcurrency > 0). Undefined: a local throttler.
   */
  remoteThrottler?: (backend: BackendSpec) => Throttler | undefined
}

export class BackendTable {
  private opts: BackendTableOptions
  private readonly pools: PoolRegistry
  private readonly throttlers = new Map<string, Throttler>()
  private readonly probed = new ProbedEndpoints({ onChange: (key) => this.probePassed(key) })
  /** Backends whose pods the primary's broker grants (--workers): it probes them, not this process. */
  private readonly brokered = new Set<string>()
  private readonly budgets: QueueBudgets
  /** How many backends name each upstream origin: a pool is closed only when no backend does. */
  private readonly originRefs = new Map<string, number>()
  /** Revisions that cannot serve now, and why (a 503 at once instead of a hold that would time out). */
  private readonly faults = new Map<string, RevisionFault>()
  private replicaIndex = -1
  private replicaCount = 1
  private snapshot: Snapshot

  constructor(initial: Snapshot, pools: PoolRegistry, opts: BackendTableOptions) {
    this.opts = opts
    this.pools = pools
    this.budgets = new QueueBudgets(opts.holds)
    this.snapshot = initial
    this.syncAll(initial)
  }

  /**
   * The snapshot changed: live throttlers learn their new pods and containerConcurrency, removed
   * backends let their held requests go, pools no backend names close. `changed` (the backend keys
   * that differ) limits the work to those; without it every backend is looked at.
   */
  update(next: Snapshot, changed?: ReadonlySet<string>): void {
    const prev = this.snapshot
    this.snapshot = next
    if (!changed || prev === next) return this.syncAll(next)
    let dropped = false
    for (const key of changed) {
      const before = prev.backends.get(key)
      const after = next.backends.get(key)
      if (before === after) continue
      if (after) this.countOrigins(after, 1)
      if (before) dropped = this.countOrigins(before, -1) || dropped
      const t = this.throttlers.get(key)
      if (!t) continue
      if (after && after.kind !== 'external') this.refresh(t, after)
      else this.drop(key, t)
    }
    if (dropped) this.closeUnusedPools()
  }

  private syncAll(next: Snapshot): void {
    this.originRefs.clear()
    for (const b of next.backends.values()) {
      this.countOrigins(b, 1)
      if (b.kind === 'external') continue
      const t = this.throttlers.get(b.key)
      if (t) this.refresh(t, b)
    }
    for (const [key, t] of this.throttlers) if (!next.backends.has(key)) this.drop(key, t)
    this.closeUnusedPools()
  }

  private refresh(t: Throttler, b: BackendSpec): void {
    t.setContainerConcurrency(b.revision?.containerConcurrency ?? 0)
    t.updateEndpoints(this.endpointsFor(b))
  }

  /** Adds (+1) or removes (-1) a backend's origins; true when some origin is no longer named. */
  private countOrigins(b: BackendSpec, delta: 1 | -1): boolean {
    let dropped = false
    const count = (origin: string): void => {
      const n = (this.originRefs.get(origin) ?? 0) + delta
      if (n > 0) this.originRefs.set(origin, n)
      else {
        this.originRefs.delete(origin)
        dropped = true
      }
    }
    if (b.externalOrigin !== undefined) count(b.externalOrigin)
    else
      for (const ep of b.endpoints) {
        count(ep.origin)
        // Its TLS pools too (system-internal-tls), named whether or not TLS is on right now.
        if (ep.tls !== undefined) count(ep.tls.origin)
      }
    return dropped
  }

  /** The backend left the configuration: its held requests follow it elsewhere, or get a 503. */
  private drop(key: string, t: Throttler): void {
    this.throttlers.delete(key)
    this.brokered.delete(key)
    this.probed.forget(key)
    t.rejectAll('backend-removed')
  }

  /** Pods still carrying requests keep their pools until those finish; close the rest. */
  private closeUnusedPools(): void {
    const busy = new Set<string>()
    for (const t of this.throttlers.values()) {
      for (const p of t.pods()) {
        if (p.inFlight === 0) continue
        busy.add(p.endpoint.origin)
        if (p.endpoint.tls !== undefined) busy.add(p.endpoint.tls.origin)
      }
    }
    const refs = this.originRefs
    this.pools.retain({ has: (origin: string) => refs.has(origin) || busy.has(origin) } as ReadonlySet<string>)
  }

  /** The pods a backend's throttler may use (Ready, or passed the activator's probe). */
  private endpointsFor(b: BackendSpec): readonly Endpoint[] {
    return this.brokered.has(b.key) ? b.endpoints : this.probed.of(b)
  }

  /** A probe passed (or a probed pod went away): the backend's throttler learns at once. */
  private probePassed(key: string): void {
    const b = this.snapshot.backends.get(key)
    const t = this.throttlers.get(key)
    if (b && t) t.updateEndpoints(this.endpointsFor(b))
  }

  /** New queue bounds (config-edge-gateway): held requests stay; the next one is checked against them. */
  setQueueBounds(perRevision: number, holds: HoldBounds): void {
    this.opts = { ...this.opts, maxQueuedPerRevision: perRevision, holds }
    this.budgets.setBounds(holds)
    for (const t of this.throttlers.values()) if (t instanceof RevisionThrottler) t.setMaxQueued(perRevision)
  }

  /** What is held now, and the bytes of the held bodies (for /debug/routes). */
  holds(): Holds {
    return this.budgets.describe()
  }

  /** This replica's index among the gateway's replicas, for sharing pod capacity (see throttler). */
  setReplicaShare(index: number, count: number): void {
    this.replicaIndex = index
    this.replicaCount = count
    for (const t of this.throttlers.values()) t.setReplicaShare(index, count)
  }

  throttlerFor(b: BackendSpec): Throttler {
    let t = this.throttlers.get(b.key)
    if (!t) {
      const rev = b.revision
      const remote = this.opts.remoteThrottler?.(b)
      if (remote) this.brokered.add(b.key)
      const onColdStart = this.opts.onColdStart
      t = remote ?? new RevisionThrottler({
        containerConcurrency: rev?.containerConcurrency ?? 0,
        maxQueued: this.opts.maxQueuedPerRevision,
        budget: this.budgets.of(b.namespace),
        onColdStart: rev && onColdStart ? () => onColdStart(rev) : undefined,
      })
      t.setReplicaShare(this.replicaIndex, this.replicaCount)
      t.updateEndpoints(this.endpointsFor(b))
      this.throttlers.set(b.key, t)
    }
    return t
  }

  /** Live per-backend state for metrics and the local runner: each throttler, with its revision if it has one. */
  entries(): Array<{ key: string; revision: RevisionRef | undefined; throttler: Throttler }> {
    const backends = this.snapshot.backends
    return [...this.throttlers].map(([key, throttler]) => ({ key, revision: backends.get(key)?.revision, throttler }))
  }

  byKey(key: string): Throttler | undefined {
    return this.throttlers.get(key)
  }

  /**
   * A revision cannot serve (`detail` says why and how to fix it), or can again (undefined): the local
   * runner has no way to run it (`no-runtime`), or its instances keep exiting before they are ready,
   * or in a cluster its pods or conditions say it cannot become ready (`revision-failed`). Requests
   * held for it are let go with that 503, and new ones get it at once (still counted as demand, so
   * the runner or the autoscaler keeps trying). Clearing only clears a fault of that reason. `cause`
   * defaults to the local runner's: its process exited.
   */
  setFault(revisionKey: string, reason: RevisionFault['reason'], detail: string | undefined, cause?: string): void {
    if (detail === undefined) {
      if (this.faults.get(revisionKey)?.reason === reason) this.faults.delete(revisionKey)
      return
    }
    this.faults.set(revisionKey, { reason, detail, cause: cause ?? (reason === 'revision-failed' ? LOCAL_EXIT_CAUSE : reason) })
    for (const [key, t] of this.throttlers) if (this.snapshot.backends.get(key)?.revision?.key === revisionKey) t.rejectAll(reason)
  }

  /** Why the revision cannot serve now, or undefined (checked for every revision request: one size test when none). */
  fault(revisionKey: string): RevisionFault | undefined {
    return this.faults.size === 0 ? undefined : this.faults.get(revisionKey)
  }

  /** Every fault now, for /debug/routes. */
  allFaults(): ReadonlyMap<string, RevisionFault> {
    return this.faults
  }

  /** Every held request is told why it is let go (at the end of a drain: 503 draining). */
  dropAllHeld(why: DropReason): void {
    for (const t of this.throttlers.values()) t.rejectAll(why)
  }

  close(): void {
    this.probed.close()
  }
}
