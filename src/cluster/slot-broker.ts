// The primary's slot broker: with several worker processes, revisions with a per-pod limit
// (containerConcurrency > 0) are throttled in one place, so no pod ever gets more than CC requests
// from this replica whichever worker took them, and the queue stays first-in first-out across workers.
// It runs the same RevisionThrottler a single process uses; workers borrow and return slots over IPC.
// Revisions without a limit (CC = 0) need no coordination and stay in the workers.
import type { Worker } from 'node:cluster'
import { QueueBudgets, RevisionThrottler } from '../activator/throttler.ts'
import type { EnqueueResult, HoldBounds, Holds, PodSlot, Waiter } from '../activator/throttler.ts'
import { ProbedEndpoints } from '../activator/pod-prober.ts'
import type { BackendSpec, RevisionRef, Snapshot } from '../model/snapshot.ts'
import { send } from './replication.ts'

/** Which backends the workers throttle through the broker. */
export function brokered(b: BackendSpec): boolean {
  return b.kind === 'pods' && (b.revision?.containerConcurrency ?? 0) > 0
}

class RemoteWaiter implements Waiter {
  cancelled = false
  readonly queuedAt = performance.now()
  readonly worker: Worker
  readonly id: number
  private readonly broker: SlotBroker
  readonly key: string
  readonly heldBytes: number
  constructor(broker: SlotBroker, worker: Worker, id: number, key: string, heldBytes: number) {
    this.broker = broker
    this.worker = worker
    this.id = id
    this.key = key
    this.heldBytes = heldBytes
  }
  /** Set while the request sits in the queue, so the worker can tell a real wait from the fast path. */
  queued = false
  grant(pod: PodSlot): void {
    this.broker.granted(this, pod)
  }
  /**
   * Its backend left the configuration: it is not refused. The worker holding the request drops the
   * backend from its own snapshot too and withdraws it there, re-routing it to where the traffic
   * went; a refusal sent now could reach the worker before that snapshot does and answer 503. It
   * stays in `waiting`, cancelled in the old throttler, until the worker's cancel (or its exit).
   */
  dropped(): void {}
}

export interface SlotBrokerOptions {
  maxQueuedPerRevision: number
  holds: HoldBounds
  onColdStart?: (rev: RevisionRef) => void
}

export class SlotBroker {
  private opts: SlotBrokerOptions
  private readonly budgets: QueueBudgets
  private readonly throttlers = new Map<string, RevisionThrottler>()
  /** Queued requests by `workerId:id`. */
  private readonly waiting = new Map<string, RemoteWaiter>()
  /** Slots lent out, by `workerId|key|address`: returned when released, or when the worker dies. */
  private readonly lent = new Map<string, { throttler: RevisionThrottler; slots: PodSlot[] }>()
  private replica = { index: -1, count: 1 }
  /** The broker grants these revisions' pods, so it runs their early probe (the workers do not). */
  private readonly probed = new ProbedEndpoints({ onChange: (key) => this.probePassed(key) })
  private snapshot: Snapshot | undefined

  constructor(opts: SlotBrokerOptions) {
    this.opts = opts
    this.budgets = new QueueBudgets(opts.holds)
  }

  /** New queue bounds (config-edge-gateway): held requests stay; the next one is checked against them. */
  setQueueBounds(perRevision: number, holds: HoldBounds): void {
    this.opts = { ...this.opts, maxQueuedPerRevision: perRevision, holds }
    this.budgets.setBounds(holds)
    for (const t of this.throttlers.values()) t.setMaxQueued(perRevision)
  }

  setSnapshot(snap: Snapshot): void {
    this.snapshot = snap
    for (const b of snap.backends.values()) {
      if (!brokered(b)) continue
      let t = this.throttlers.get(b.key)
      if (!t) {
        const rev = b.revision!
        t = new RevisionThrottler({
          containerConcurrency: rev.containerConcurrency,
          maxQueued: this.opts.maxQueuedPerRevision,
          budget: this.budgets.of(b.namespace),
          onColdStart: this.opts.onColdStart ? () => this.opts.onColdStart!(rev) : undefined,
        })
        t.setReplicaShare(this.replica.index, this.replica.count)
        this.throttlers.set(b.key, t)
      }
      t.setContainerConcurrency(b.revision!.containerConcurrency)
      t.updateEndpoints(this.probed.of(b))
    }
    for (const [key, t] of this.throttlers) {
      const b = snap.backends.get(key)
      if (b && brokered(b)) continue
      this.throttlers.delete(key)
      this.probed.forget(key)
      // Its waiters stay (RemoteWaiter.dropped says why).
      t.rejectAll('backend-removed')
    }
  }

  /** A not-ready pod passed the probe (or a probed one went away): its throttler learns at once. */
  private probePassed(key: string): void {
    const b = this.snapshot?.backends.get(key)
    const t = this.throttlers.get(key)
    if (b && t) t.updateEndpoints(this.probed.of(b))
  }

  close(): void {
    this.probed.close()
  }

  setReplicaShare(index: number, count: number): void {
    this.replica = { index, count }
    for (const t of this.throttlers.values()) t.setReplicaShare(index, count)
  }

  /** A worker's request asks for a pod; `bytes`: what its body holds while it waits (held-body.ts). */
  acquire(worker: Worker, id: number, key: string, bytes: number): void {
    const t = this.throttlers.get(key)
    const w = new RemoteWaiter(this, worker, id, key, bytes)
    if (!t) return this.refuse(w, 'revision-queue-full')
    const pod = t.tryAcquire()
    if (pod) return this.granted(w, pod)
    this.waiting.set(`${worker.id}:${id}`, w)
    w.queued = true
    const r = t.enqueue(w)
    if (r !== 'queued') {
      this.waiting.delete(`${worker.id}:${id}`)
      this.refuse(w, r)
    }
  }

  cancel(worker: Worker, id: number): void {
    const k = `${worker.id}:${id}`
    const w = this.waiting.get(k)
    if (!w) return // already granted: the worker returns the slot when the grant reaches it
    this.waiting.delete(k)
    this.throttlers.get(w.key)?.cancel(w)
  }

  granted(w: RemoteWaiter, pod: PodSlot): void {
    this.waiting.delete(`${w.worker.id}:${w.id}`)
    const t = this.throttlers.get(w.key)!
    const k = `${w.worker.id}|${w.key}|${pod.endpoint.address}`
    let l = this.lent.get(k)
    if (!l) this.lent.set(k, (l = { throttler: t, slots: [] }))
    l.slots.push(pod)
    send(w.worker, { t: 'grant', id: w.id, key: w.key, address: pod.endpoint.address, waited: w.queued })
  }

  release(worker: Worker, key: string, address: string): void {
    const k = `${worker.id}|${key}|${address}`
    const l = this.lent.get(k)
    const pod = l?.slots.pop()
    if (!l || !pod) return
    if (l.slots.length === 0) this.lent.delete(k)
    l.throttler.release(pod)
  }

  failed(key: string, address: string, backoffMs: number): void {
    const t = this.throttlers.get(key)
    const pod = t?.pods().find((p) => p.endpoint.address === address)
    if (t && pod) t.markFailed(pod, backoffMs)
  }

  /** A worker exited: its queued requests are gone and its slots come back. */
  workerGone(worker: Worker): void {
    for (const [k, w] of this.waiting) {
      if (w.worker !== worker) continue
      this.waiting.delete(k)
      this.throttlers.get(w.key)?.cancel(w)
    }
    const prefix = `${worker.id}|`
    for (const [k, l] of this.lent) {
      if (!k.startsWith(prefix)) continue
      this.lent.delete(k)
      for (const pod of l.slots) l.throttler.release(pod)
    }
  }

  private refuse(w: RemoteWaiter, reason: Exclude<EnqueueResult, 'queued'>): void {
    send(w.worker, { t: 'refuse', id: w.id, reason })
  }

  /** What the broker holds now (revisions with containerConcurrency > 0), and the bytes of their bodies. */
  holds(): Holds {
    return this.budgets.describe()
  }

  /** Requests in flight per pod address across every worker (for the local runner's safe stop). */
  inFlightAt(address: string): number {
    let n = 0
    for (const t of this.throttlers.values()) for (const p of t.busy()) if (p.endpoint.address === address) n += p.inFlight
    return n
  }

  describe(): Record<string, { inFlight: number; queued: number; pods: number }> {
    const out: Record<string, { inFlight: number; queued: number; pods: number }> = {}
    for (const [k, t] of this.throttlers) out[k] = { inFlight: t.inFlight, queued: t.queued, pods: t.podCount }
    return out
  }
}
