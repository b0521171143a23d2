// The per-revision throttler: which ready pod takes the next request, and who waits when none can.
// - containerConcurrency (CC) > 0: a pod never has more than CC requests in flight from this replica.
// - CC = 0: the less loaded of two random pods (power of two choices), no per-pod limit.
// - No capacity: requests wait in one FIFO queue and leave it, oldest first, as capacity frees.
// - Several gateway replicas share a revision's pods: each takes its share by its index, so CC holds
//   cluster-wide (the scheme Knative's activator uses).
// Pure logic apart from an injected clock and timer, so it is tested without sockets.
import type { Endpoint } from '../model/snapshot.ts'

export interface PodSlot {
  readonly endpoint: Endpoint
  inFlight: number
  /** Requests to this pod fail to connect: skip it until this time (ms). */
  suspectUntil: number
  /** Gone from the endpoints; requests already on it finish, new ones go elsewhere. */
  removed: boolean
}

/**
 * Why a throttler lets go of its waiters without a pod: the backend left the configuration, the
 * gateway is draining, or the local runner found it has no way to run the revision.
 */
export type DropReason = 'backend-removed' | 'draining' | 'no-runtime' | 'revision-failed'

export interface Waiter {
  /** Called once with the pod the request may use; `waited` false: it never had to queue (broker fast path). */
  grant(pod: PodSlot, waited?: boolean): void
  /** Set by cancel(): a cancelled waiter is skipped when it reaches the head of the queue. */
  cancelled: boolean
  /** When the waiter was queued (ms), for the cold-start histogram. */
  readonly queuedAt: number
  /**
   * Bytes of its request body the gateway may hold in memory while it waits (held-body.ts): drawn on
   * the namespace's and the process's byte budgets for as long as it is queued.
   */
  readonly heldBytes: number
  /** A throttler that decides asynchronously (the workers' broker) refuses here instead of from enqueue(). */
  refuse?(reason: Exclude<EnqueueResult, 'queued'>): void
  /** rejectAll() took it out of the queue: it answers, or follows the configuration elsewhere. */
  dropped(why: DropReason): void
}

/**
 * What the data plane needs from a throttler. RevisionThrottler is the one implementation in a single
 * process; with --workers, RemoteThrottler forwards to the primary's broker so that containerConcurrency
 * and FIFO order hold across worker processes.
 */
export interface Throttler {
  readonly inFlight: number
  readonly queued: number
  readonly podCount: number
  readonly containerConcurrency: number
  pods(): readonly PodSlot[]
  /** Every pod with requests in flight, including pods already gone from the endpoints. */
  busy(): PodSlot[]
  tryAcquire(): PodSlot | undefined
  enqueue(w: Waiter): EnqueueResult
  cancel(w: Waiter): void
  release(pod: PodSlot): void
  markFailed(pod: PodSlot, backoffMs: number): void
  setContainerConcurrency(cc: number): void
  updateEndpoints(endpoints: readonly Endpoint[]): void
  setReplicaShare(index: number, count: number): void
  /** Empties the queue: each waiter is told why (dropped()). */
  rejectAll(why: DropReason): void
  /**
   * The last scale from zero, in ms: from the first request that found no pod to the first pod
   * given to this throttler. undefined when unknown (never scaled here, or decided elsewhere).
   */
  lastScaleMs(): number | undefined
}

/** Pods with requests in flight: the ready ones and those already gone from the endpoints. */
export function busyPods(ready: readonly PodSlot[], leaving: ReadonlyMap<string, PodSlot>): PodSlot[] {
  const out: PodSlot[] = []
  for (const p of ready) if (p.inFlight > 0) out.push(p)
  for (const p of leaving.values()) if (p.inFlight > 0) out.push(p)
  return out
}

export interface Clock {
  now(): number
  setTimer(fn: () => void, ms: number): void
}

export const realClock: Clock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => {
    setTimeout(fn, ms).unref()
  },
}

/** The bounds on held requests (config-edge-gateway may change them live). */
export interface HoldBounds {
  /** --max-queued: held requests in the process (0: none may be held). */
  requests: number
  /** --max-queued-per-namespace (0: none). */
  requestsPerNamespace: number
  /** --max-held-body-bytes: bytes of held request bodies in the process (0: none). */
  bodyBytes: number
  /** --max-held-body-bytes-per-namespace (0: none). */
  bodyBytesPerNamespace: number
}

/** What is held: requests and the bytes of their bodies, in all and per namespace holding any. */
export interface Holds {
  requests: number
  bodyBytes: number
  namespaces: Record<string, { requests: number; bodyBytes: number }>
}

/** Why a budget cannot take one more held request. */
export type BudgetFull = 'namespace-queue-full' | 'global-queue-full' | 'namespace-bytes-full' | 'global-bytes-full'

/**
 * Held requests, and the bytes of their bodies, allowed in a scope: the process (--max-queued,
 * --max-held-body-bytes), or a namespace (the -per-namespace bounds), whose budget draws on the
 * process's too, so one namespace's burst cannot take it all.
 */
export class QueueBudget {
  /** Both change with the settings (config-edge-gateway); requests already held stay held. */
  max: number
  maxBytes: number
  readonly parent: QueueBudget | undefined
  used = 0
  bytes = 0
  constructor(max: number, maxBytes: number, parent?: QueueBudget) {
    this.max = max
    this.maxBytes = maxBytes
    this.parent = parent
  }

  /**
   * Which budget cannot take a request whose body may hold `bytes`, if one cannot: this one, or the
   * one it draws on. A bodyless request is never refused for bytes.
   */
  full(bytes: number): BudgetFull | undefined {
    const p = this.parent
    if (p === undefined) return this.used >= this.max ? 'global-queue-full' : bytes > 0 && this.bytes + bytes > this.maxBytes ? 'global-bytes-full' : undefined
    if (this.used >= this.max) return 'namespace-queue-full'
    if (p.used >= p.max) return 'global-queue-full'
    if (bytes === 0) return undefined
    if (this.bytes + bytes > this.maxBytes) return 'namespace-bytes-full'
    return p.bytes + bytes > p.maxBytes ? 'global-bytes-full' : undefined
  }

  take(bytes: number): void {
    this.used++
    this.bytes += bytes
    if (this.parent) {
      this.parent.used++
      this.parent.bytes += bytes
    }
  }

  give(bytes: number): void {
    this.used--
    this.bytes -= bytes
    if (this.parent) {
      this.parent.used--
      this.parent.bytes -= bytes
    }
  }
}

/** The hold bounds from the options (config.ts's keys), for QueueBudgets. */
export function holdBounds(o: { maxQueuedTotal: number; maxQueuedPerNamespace: number; maxHeldBodyBytes: number; maxHeldBodyBytesPerNamespace: number }): HoldBounds {
  return { requests: o.maxQueuedTotal, requestsPerNamespace: o.maxQueuedPerNamespace, bodyBytes: o.maxHeldBodyBytes, bodyBytesPerNamespace: o.maxHeldBodyBytesPerNamespace }
}

/** The process's budget, and one per namespace drawing on it. */
export class QueueBudgets {
  readonly process: QueueBudget
  private bounds: HoldBounds
  private readonly namespaces = new Map<string, QueueBudget>()

  constructor(bounds: HoldBounds) {
    this.bounds = bounds
    this.process = new QueueBudget(bounds.requests, unbounded(bounds.bodyBytes))
  }

  /**
   * Every namespace has its own budget, unbounded (Infinity) while its bounds are 0, so a bound can
   * be set or lifted at run time without moving throttlers to other budgets.
   */
  of(namespace: string): QueueBudget {
    let b = this.namespaces.get(namespace)
    if (!b) this.namespaces.set(namespace, (b = new QueueBudget(unbounded(this.bounds.requestsPerNamespace), unbounded(this.bounds.bodyBytesPerNamespace), this.process)))
    return b
  }

  /** New bounds (config-edge-gateway): they decide the next request that would be held. */
  setBounds(bounds: HoldBounds): void {
    this.bounds = bounds
    this.process.max = bounds.requests
    this.process.maxBytes = unbounded(bounds.bodyBytes)
    for (const b of this.namespaces.values()) {
      b.max = unbounded(bounds.requestsPerNamespace)
      b.maxBytes = unbounded(bounds.bodyBytesPerNamespace)
    }
  }

  /** What is held now, in the process and in each namespace holding anything (for /debug/routes). */
  describe(): Holds {
    const namespaces: Holds['namespaces'] = {}
    for (const [ns, b] of this.namespaces) if (b.used > 0) namespaces[ns] = { requests: b.used, bodyBytes: b.bytes }
    return { requests: this.process.used, bodyBytes: this.process.bytes, namespaces }
  }
}

/** A bound of 0 means none. */
function unbounded(max: number): number {
  return max > 0 ? max : Infinity
}

export interface ThrottlerOptions {
  containerConcurrency: number
  maxQueued: number
  budget: QueueBudget
  clock?: Clock
  /** Called when a request has to wait and there is no pod at all: the cold-start signal. */
  onColdStart?: () => void
}

export type EnqueueResult = 'queued' | 'revision-queue-full' | BudgetFull

export class RevisionThrottler implements Throttler {
  private cc: number
  private maxQueued: number
  private readonly budget: QueueBudget
  private readonly clock: Clock
  private readonly onColdStart: (() => void) | undefined
  private byAddress = new Map<string, PodSlot>()
  /** Pods gone from the endpoints that still carry requests: if one comes back, its count holds. */
  private leaving = new Map<string, PodSlot>()
  /** Every ready pod, sorted by address (the order all replicas agree on). */
  private ready: PodSlot[] = []
  /** This replica's share of `ready`. */
  private assigned: PodSlot[] = []
  /** When a request first found no pod at all (clock ms); 0 while pods are assigned. */
  private coldSince = 0
  private scaledInMs: number | undefined
  private replicaIndex = -1
  private replicaCount = 1
  private cursor = 0
  private queue: Array<Waiter | undefined> = []
  private head = 0
  /** When the pending backoff timer fires (Infinity: none pending). */
  private retryAt = Infinity
  /** Requests holding a pod slot from this throttler. */
  inFlight = 0
  /** Requests waiting in the queue (cancelled ones are not counted). */
  queued = 0

  constructor(opts: ThrottlerOptions) {
    this.cc = Math.max(0, Math.floor(opts.containerConcurrency))
    this.maxQueued = opts.maxQueued
    this.budget = opts.budget
    this.clock = opts.clock ?? realClock
    this.onColdStart = opts.onColdStart
  }

  get containerConcurrency(): number {
    return this.cc
  }

  get podCount(): number {
    return this.assigned.length
  }

  /** Every ready pod this throttler knows, with its in-flight count (for /debug/routes). */
  pods(): readonly PodSlot[] {
    return this.ready
  }

  busy(): PodSlot[] {
    return busyPods(this.ready, this.leaving)
  }

  /** --max-queued-per-revision changed: it decides the next request that would be held. */
  setMaxQueued(max: number): void {
    this.maxQueued = max
  }

  setContainerConcurrency(cc: number): void {
    const next = Math.max(0, Math.floor(cc))
    if (next === this.cc) return
    this.cc = next
    this.reassign()
    this.drain()
  }

  /** Replaces the ready pods; a pod that stays keeps its in-flight count. */
  updateEndpoints(endpoints: readonly Endpoint[]): void {
    const next = new Map<string, PodSlot>()
    const ready: PodSlot[] = []
    for (const ep of endpoints) {
      let slot = this.byAddress.get(ep.address) ?? this.leaving.get(ep.address)
      if (!slot) slot = { endpoint: ep, inFlight: 0, suspectUntil: 0, removed: false }
      this.leaving.delete(ep.address)
      slot.removed = false
      next.set(ep.address, slot)
      ready.push(slot)
    }
    for (const [addr, slot] of this.byAddress) {
      if (next.has(addr)) continue
      slot.removed = true
      if (slot.inFlight > 0) this.leaving.set(addr, slot)
    }
    ready.sort((a, b) => (a.endpoint.address < b.endpoint.address ? -1 : a.endpoint.address > b.endpoint.address ? 1 : 0))
    this.byAddress = next
    this.ready = ready
    this.reassign()
    if (this.coldSince > 0 && this.assigned.length > 0) {
      this.scaledInMs = this.clock.now() - this.coldSince
      this.coldSince = 0
    }
    this.drain()
  }

  lastScaleMs(): number | undefined {
    return this.scaledInMs
  }

  /**
   * This gateway replica's position among `count` replicas (-1: unknown, use every pod). With CC > 0
   * each replica takes a disjoint share of pods so that CC per pod holds across replicas.
   */
  setReplicaShare(index: number, count: number): void {
    if (index === this.replicaIndex && count === this.replicaCount) return
    this.replicaIndex = index
    this.replicaCount = Math.max(1, count)
    this.reassign()
    this.drain()
  }

  private reassign(): void {
    const n = this.ready.length
    const a = this.replicaCount
    const i = this.replicaIndex
    if (this.cc === 0 || a <= 1 || i < 0 || i >= a || n === 0) {
      this.assigned = this.ready
    } else if (n < a) {
      // More replicas than pods: several replicas share a pod, each assuming the full CC.
      this.assigned = [this.ready[i % n]!]
    } else {
      const per = Math.floor(n / a)
      const share = this.ready.slice(i * per, i * per + per)
      const remnants = n % a
      if (i < remnants) share.push(this.ready[a * per + i]!)
      this.assigned = share
    }
    if (this.cursor >= this.assigned.length) this.cursor = 0
  }

  /** Picks a pod with free capacity, or undefined. Does not take the slot. */
  private pick(): PodSlot | undefined {
    const pods = this.assigned
    const n = pods.length
    if (n === 0) return undefined
    const now = this.clock.now()
    if (this.cc === 0) {
      if (n === 1) return pods[0]!.suspectUntil > now ? undefined : pods[0]
      // Power of two choices: the less loaded of two distinct random pods.
      const i = Math.floor(Math.random() * n)
      let j = Math.floor(Math.random() * (n - 1))
      if (j >= i) j++
      const a = pods[i]!
      const b = pods[j]!
      const aOk = a.suspectUntil <= now
      const bOk = b.suspectUntil <= now
      if (aOk && bOk) return a.inFlight <= b.inFlight ? a : b
      if (aOk) return a
      if (bOk) return b
      for (const p of pods) if (p.suspectUntil <= now) return p
      return undefined
    }
    // Round robin from the last position, skipping full or suspect pods.
    for (let k = 0; k < n; k++) {
      const idx = (this.cursor + k) % n
      const p = pods[idx]!
      if (p.inFlight < this.cc && p.suspectUntil <= now) {
        this.cursor = (idx + 1) % n
        return p
      }
    }
    return undefined
  }

  private take(pod: PodSlot): PodSlot {
    pod.inFlight++
    this.inFlight++
    return pod
  }

  /** Fast path: a pod now, if one has capacity and nobody is waiting ahead (FIFO stays fair). */
  tryAcquire(): PodSlot | undefined {
    if (this.queued > 0) return undefined
    const pod = this.pick()
    return pod ? this.take(pod) : undefined
  }

  enqueue(w: Waiter): EnqueueResult {
    if (this.queued >= this.maxQueued) return 'revision-queue-full'
    const full = this.budget.full(w.heldBytes)
    if (full) return full
    this.queue.push(w)
    this.queued++
    this.budget.take(w.heldBytes)
    if (this.assigned.length === 0) {
      if (this.coldSince === 0) this.coldSince = this.clock.now()
      this.onColdStart?.()
    } else this.drain()
    return 'queued'
  }

  /** The waiter's client left or its timer fired: it leaves the queue at once. */
  cancel(w: Waiter): void {
    if (w.cancelled) return
    w.cancelled = true
    this.queued--
    this.budget.give(w.heldBytes)
  }

  release(pod: PodSlot): void {
    pod.inFlight--
    this.inFlight--
    if (pod.removed && pod.inFlight <= 0 && this.leaving.get(pod.endpoint.address) === pod) this.leaving.delete(pod.endpoint.address)
    this.drain()
  }

  /** The pod refused or reset a connection before any byte was sent: skip it for a moment. */
  markFailed(pod: PodSlot, backoffMs: number): void {
    pod.suspectUntil = this.clock.now() + backoffMs
    if (this.queued > 0) this.drainAt(pod.suspectUntil)
  }

  /** Grants pods to waiters, oldest first, while capacity lasts. */
  drain(): void {
    while (this.queued > 0) {
      const w = this.peek()
      if (!w) break
      const pod = this.pick()
      if (!pod) {
        this.armRetryForSuspects()
        return
      }
      this.shift()
      this.queued--
      this.budget.give(w.heldBytes)
      w.grant(this.take(pod))
    }
    this.compact()
  }

  /**
   * Waiters are stuck. A full pod drains them through release(); a pod that is only backing off
   * (suspect, with free capacity) frees nothing when its backoff ends, so drain on a timer then.
   */
  private armRetryForSuspects(): void {
    const now = this.clock.now()
    let soonest = Infinity
    for (const p of this.assigned) {
      if (p.suspectUntil > now && (this.cc === 0 || p.inFlight < this.cc)) soonest = Math.min(soonest, p.suspectUntil)
    }
    if (soonest !== Infinity) this.drainAt(soonest)
  }

  /** Drains at `at` (ms), unless a drain is already due by then. */
  private drainAt(at: number): void {
    if (at >= this.retryAt) return
    this.retryAt = at
    this.clock.setTimer(
      () => {
        if (this.retryAt === at) this.retryAt = Infinity
        this.drain()
      },
      Math.max(1, at - this.clock.now()),
    )
  }

  private peek(): Waiter | undefined {
    while (this.head < this.queue.length) {
      const w = this.queue[this.head]
      if (w && !w.cancelled) return w
      this.queue[this.head++] = undefined
    }
    return undefined
  }

  private shift(): void {
    this.queue[this.head++] = undefined
  }

  private compact(): void {
    if (this.head === this.queue.length) {
      // Every release gets here; an empty queue needs nothing (setting length is a runtime call).
      if (this.head === 0) return
      this.queue.length = 0
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
  }

  /** Removes every waiter and tells each why (backend gone from the configuration, or a drain). */
  rejectAll(why: DropReason): void {
    for (let i = this.head; i < this.queue.length; i++) {
      const w = this.queue[i]
      if (w && !w.cancelled) {
        this.cancel(w)
        w.dropped(why)
      }
    }
    this.queue.length = 0
    this.head = 0
  }
}
