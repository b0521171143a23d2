// Worker side of the slot broker: a Throttler whose decisions are made in the primary. Every request
// to a brokered revision asks the primary for a slot (one IPC round trip) and returns it when done;
// the worker keeps a local view of its own in-flight counts for metrics and /debug.
import { busyPods } from '../activator/throttler.ts'
import type { DropReason, EnqueueResult, PodSlot, Throttler, Waiter } from '../activator/throttler.ts'
import type { Endpoint } from '../model/snapshot.ts'
import { QUEUE_PROXY_TLS_PORT } from '../model/k8s.ts'
import type { ToPrimary, ToWorker } from './protocol.ts'

interface Pending {
  waiter: Waiter
  throttler: RemoteThrottler
}

/** One per worker: matches the primary's grants and refusals to the waiting requests. */
export class RemoteSlots {
  private readonly sendToPrimary: (m: ToPrimary) => void
  private readonly pending = new Map<number, Pending>()
  private readonly ids = new WeakMap<Waiter, number>()
  private nextId = 1

  constructor(sendToPrimary: (m: ToPrimary) => void) {
    this.sendToPrimary = sendToPrimary
  }

  throttler(key: string, containerConcurrency: number, endpoints: readonly Endpoint[]): RemoteThrottler {
    const t = new RemoteThrottler(this, key, containerConcurrency)
    t.updateEndpoints(endpoints)
    return t
  }

  send(m: ToPrimary): void {
    this.sendToPrimary(m)
  }

  ask(w: Waiter, t: RemoteThrottler): void {
    const id = this.nextId++
    this.pending.set(id, { waiter: w, throttler: t })
    this.ids.set(w, id)
    this.sendToPrimary({ t: 'acquire', id, key: t.key, bytes: w.heldBytes })
  }

  /** Returns true when the waiter was still waiting (and is now withdrawn). */
  withdraw(w: Waiter): boolean {
    const id = this.ids.get(w)
    if (id === undefined || !this.pending.has(id)) return false
    this.pending.delete(id)
    this.sendToPrimary({ t: 'cancel', id })
    return true
  }

  onMessage(m: Extract<ToWorker, { t: 'grant' | 'refuse' }>): void {
    const p = this.pending.get(m.id)
    if (m.t === 'grant') {
      if (!p) {
        // Withdrawn while the grant was on its way: give the slot straight back.
        this.sendToPrimary({ t: 'release', key: m.key, address: m.address })
        return
      }
      this.pending.delete(m.id)
      p.throttler.granted(p.waiter, m.address, m.waited)
      return
    }
    if (!p) return
    this.pending.delete(m.id)
    p.throttler.refused(p.waiter, m.reason)
  }

  withdrawAll(t: RemoteThrottler, fail: (w: Waiter) => void): void {
    for (const [id, p] of this.pending) {
      if (p.throttler !== t) continue
      this.pending.delete(id)
      this.sendToPrimary({ t: 'cancel', id })
      fail(p.waiter)
    }
  }
}

export class RemoteThrottler implements Throttler {
  readonly key: string
  private readonly slots: RemoteSlots
  private cc: number
  private byAddress = new Map<string, PodSlot>()
  /** Pods gone from the endpoints with requests still on them. */
  private readonly leaving = new Map<string, PodSlot>()
  private ready: PodSlot[] = []
  inFlight = 0
  queued = 0

  constructor(slots: RemoteSlots, key: string, containerConcurrency: number) {
    this.slots = slots
    this.key = key
    this.cc = containerConcurrency
  }

  get podCount(): number {
    return this.ready.length
  }

  get containerConcurrency(): number {
    return this.cc
  }

  pods(): readonly PodSlot[] {
    return this.ready
  }

  busy(): PodSlot[] {
    return busyPods(this.ready, this.leaving)
  }

  /** Never synchronous: the primary decides, so FIFO order holds across workers. */
  tryAcquire(): PodSlot | undefined {
    return undefined
  }

  enqueue(w: Waiter): EnqueueResult {
    this.queued++
    this.slots.ask(w, this)
    return 'queued'
  }

  cancel(w: Waiter): void {
    if (w.cancelled) return
    w.cancelled = true
    if (this.slots.withdraw(w)) this.queued--
  }

  granted(w: Waiter, address: string, waited: boolean): void {
    this.queued--
    let slot = this.byAddress.get(address)
    if (!slot) {
      // A pod the primary knows and this worker's replica has not seen yet (or just dropped).
      const colon = address.lastIndexOf(':')
      const host = address.slice(0, colon).replace(/^\[|\]$/g, '')
      // Brokered backends are revisions: with system-internal-tls its TLS side is queue-proxy's default port.
      const tlsAddress = host.includes(':') ? `[${host}]:${QUEUE_PROXY_TLS_PORT}` : `${host}:${QUEUE_PROXY_TLS_PORT}`
      const tls = { port: QUEUE_PROXY_TLS_PORT, origin: `https://${tlsAddress}` }
      slot = { endpoint: { address, host, port: Number(address.slice(colon + 1)), origin: `http://${address}`, tls }, inFlight: 0, suspectUntil: 0, removed: true }
    }
    slot.inFlight++
    this.inFlight++
    w.grant(slot, waited)
  }

  refused(w: Waiter, reason: Exclude<EnqueueResult, 'queued'>): void {
    this.queued--
    w.refuse?.(reason)
  }

  release(pod: PodSlot): void {
    pod.inFlight--
    this.inFlight--
    if (pod.inFlight <= 0 && this.leaving.get(pod.endpoint.address) === pod) this.leaving.delete(pod.endpoint.address)
    this.slots.send({ t: 'release', key: this.key, address: pod.endpoint.address })
  }

  markFailed(pod: PodSlot, backoffMs: number): void {
    this.slots.send({ t: 'failed', key: this.key, address: pod.endpoint.address, backoffMs })
  }

  setContainerConcurrency(cc: number): void {
    this.cc = cc
  }

  updateEndpoints(endpoints: readonly Endpoint[]): void {
    const next = new Map<string, PodSlot>()
    for (const ep of endpoints) {
      const slot = this.byAddress.get(ep.address) ?? { endpoint: ep, inFlight: 0, suspectUntil: 0, removed: false }
      slot.removed = false
      next.set(ep.address, slot)
    }
    for (const [a, s] of this.byAddress) {
      if (next.has(a)) continue
      s.removed = true
      if (s.inFlight > 0) this.leaving.set(a, s)
    }
    for (const a of next.keys()) this.leaving.delete(a)
    this.byAddress = next
    this.ready = [...next.values()]
  }

  /** Capacity sharing between gateway replicas happens in the primary's broker. */
  setReplicaShare(): void {}

  /** Scaling is seen by the primary's broker, not here. */
  lastScaleMs(): number | undefined {
    return undefined
  }

  rejectAll(why: DropReason): void {
    this.slots.withdrawAll(this, (w) => {
      this.queued--
      w.cancelled = true
      w.dropped(why)
    })
  }
}
