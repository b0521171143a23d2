// RevisionThrottler as pure logic: a fake clock, fake waiters, no sockets. Every assertion is about
// counts and order, never about time passing for real.
import t from 'tap'
import { QueueBudget, QueueBudgets, RevisionThrottler } from '../src/activator/throttler.ts'
import type { Clock, DropReason, HoldBounds, PodSlot, Waiter } from '../src/activator/throttler.ts'
import type { Endpoint } from '../src/model/snapshot.ts'

class FakeClock implements Clock {
  ms = 1000
  timers: Array<{ at: number; fn: () => void }> = []
  now(): number {
    return this.ms
  }
  setTimer(fn: () => void, ms: number): void {
    this.timers.push({ at: this.ms + ms, fn })
  }
  /** Moves time on, firing due timers in deadline order. */
  advance(ms: number): void {
    const until = this.ms + ms
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at)
      const next = this.timers[0]
      if (!next || next.at > until) break
      this.timers.shift()
      this.ms = next.at
      next.fn()
    }
    this.ms = until
  }
}

function ep(n: number): Endpoint {
  // Zero-padded so the address sort order is the numeric order.
  const port = 8000 + n
  const address = `10.0.0.${String(n).padStart(3, '0')}:${port}`
  return { address, host: `10.0.0.${n}`, port, origin: `http://${address}` }
}

function eps(n: number): Endpoint[] {
  return Array.from({ length: n }, (_, i) => ep(i + 1))
}

interface TestWaiter extends Waiter {
  id: number
  pod: PodSlot | undefined
  /** What rejectAll() told it, in order. */
  droppedWith: DropReason[]
}

/** Waiters that record the order they were granted in. */
function waiters(): { make(id: number, heldBytes?: number): TestWaiter; granted: TestWaiter[] } {
  const granted: TestWaiter[] = []
  return {
    granted,
    make(id, heldBytes = 0) {
      const w: TestWaiter = {
        id,
        pod: undefined,
        cancelled: false,
        queuedAt: 0,
        heldBytes,
        droppedWith: [],
        dropped(why) {
          w.droppedWith.push(why)
        },
        grant(pod) {
          if (w.pod) throw new Error(`waiter ${id} granted twice`)
          w.pod = pod
          granted.push(w)
        },
      }
      return w
    },
  }
}

function throttler(opts: { cc: number; pods?: number; maxQueued?: number; budget?: QueueBudget; clock?: FakeClock; onColdStart?: () => void }): {
  th: RevisionThrottler
  clock: FakeClock
  budget: QueueBudget
} {
  const clock = opts.clock ?? new FakeClock()
  const budget = opts.budget ?? new QueueBudget(1_000_000, Infinity)
  const th = new RevisionThrottler({ containerConcurrency: opts.cc, maxQueued: opts.maxQueued ?? 1_000_000, budget, clock, onColdStart: opts.onColdStart })
  if (opts.pods) th.updateEndpoints(eps(opts.pods))
  return { th, clock, budget }
}

/** Hold bounds by count, with byte bounds only where a test gives them (0: none). */
function holds(requests: number, requestsPerNamespace: number, bodyBytes = 0, bodyBytesPerNamespace = 0): HoldBounds {
  return { requests, requestsPerNamespace, bodyBytes, bodyBytesPerNamespace }
}

/** Deterministic PRNG (mulberry32) so randomised tables replay exactly. */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

function withRandom<T>(r: () => number, fn: () => T): T {
  const orig = Math.random
  Math.random = r
  try {
    return fn()
  } finally {
    Math.random = orig
  }
}

function inFlightByAddress(th: RevisionThrottler): Record<string, number> {
  return Object.fromEntries(th.pods().map((p) => [p.endpoint.address, p.inFlight]))
}

/** Takes every free slot through tryAcquire; returns the pods granted, in order. */
function acquireAll(th: RevisionThrottler, limit = 10_000): PodSlot[] {
  const out: PodSlot[] = []
  for (let i = 0; i < limit; i++) {
    const p = th.tryAcquire()
    if (!p) break
    out.push(p)
  }
  return out
}

t.test('containerConcurrency is never exceeded per pod (random acquire/release/enqueue/cancel)', async (t) => {
  for (const cc of [1, 3]) {
    for (const pods of [1, 2, 3]) {
      t.test(`CC=${cc}, ${pods} pod(s)`, async (t) => {
        const { th, budget } = throttler({ cc, pods })
        const w = waiters()
        const r = rng(cc * 100 + pods)
        const holding: PodSlot[] = []
        const queued: TestWaiter[] = []
        let next = 1
        let violations = 0
        let maxSeen = 0
        for (let step = 0; step < 3000; step++) {
          const x = r()
          if (x < 0.45) {
            const p = th.tryAcquire()
            if (p) holding.push(p)
            else {
              const wt = w.make(next++)
              if (th.enqueue(wt) !== 'queued') return t.fail(`step ${step}: enqueue refused`)
              queued.push(wt)
            }
          } else if (x < 0.85 && holding.length > 0) {
            const [p] = holding.splice(Math.floor(r() * holding.length), 1)
            th.release(p!)
          } else if (queued.length > 0) {
            const live = queued.filter((q) => !q.pod && !q.cancelled)
            if (live.length > 0) th.cancel(live[Math.floor(r() * live.length)]!)
          }
          // Grants made by release() now hold a slot too.
          for (const g of w.granted.splice(0)) holding.push(g.pod!)
          for (const p of th.pods()) {
            maxSeen = Math.max(maxSeen, p.inFlight)
            if (p.inFlight > cc) violations++
          }
          const total = th.pods().reduce((s, p) => s + p.inFlight, 0)
          if (total !== holding.length || th.inFlight !== holding.length) {
            t.fail(`step ${step}: pods hold ${total}, throttler says ${th.inFlight}, test holds ${holding.length}`)
            return
          }
          // Nobody waits while a slot is free (work conserving).
          if (th.queued > 0 && total < cc * pods) {
            t.fail(`step ${step}: ${th.queued} waiting while ${cc * pods - total} slot(s) are free`)
            return
          }
        }
        t.equal(violations, 0, `no pod ever above CC=${cc}`)
        t.equal(maxSeen, cc, 'the limit was actually reached')
        t.equal(th.queued, queued.filter((q) => !q.pod && !q.cancelled).length, 'queued count matches live waiters')
        t.equal(budget.used, th.queued, 'budget tracks the queue')
      })
    }
  }
})

t.test('lastScaleMs: from the first request that found no pod to the first pod, per scale from zero', async (t) => {
  const { th, clock } = throttler({ cc: 1 })
  const w = waiters()
  t.equal(th.lastScaleMs(), undefined, 'never scaled')
  t.equal(th.enqueue(w.make(1)), 'queued')
  clock.advance(100)
  t.equal(th.enqueue(w.make(2)), 'queued', 'a second request joins the same cold start')
  clock.advance(150)
  th.updateEndpoints(eps(1))
  t.equal(th.lastScaleMs(), 250, 'measured from the first held request')
  th.release(w.granted[0]!.pod!)
  th.updateEndpoints([])
  clock.advance(1000)
  t.equal(th.enqueue(w.make(3)), 'queued')
  clock.advance(40)
  th.updateEndpoints(eps(2))
  t.equal(th.lastScaleMs(), 40, 'the next scale from zero is measured anew')
})

t.test('a namespace budget bounds its revisions within the process budget', async (t) => {
  const budgets = new QueueBudgets(holds(5, 3))
  const a = throttler({ cc: 1, maxQueued: 10, budget: budgets.of('flood') }).th
  const b = throttler({ cc: 1, maxQueued: 10, budget: budgets.of('calm') }).th
  const w = waiters()
  for (let i = 0; i < 3; i++) t.equal(a.enqueue(w.make(i)), 'queued')
  t.equal(a.enqueue(w.make(3)), 'namespace-queue-full', "one namespace's burst stops at its bound")
  t.equal(b.enqueue(w.make(4)), 'queued', 'another namespace still gets in')
  t.equal(b.enqueue(w.make(5)), 'queued')
  t.equal(b.enqueue(w.make(6)), 'global-queue-full', 'within the process budget')
  t.equal(budgets.process.used, 5)
  a.rejectAll('draining')
  t.same([budgets.process.used, budgets.of('flood').used, budgets.of('calm').used], [2, 0, 2], 'places are given back to both budgets')
  const none = new QueueBudgets(holds(5, 0))
  const c = throttler({ cc: 1, maxQueued: 10, budget: none.of('any') }).th
  for (let i = 10; i < 15; i++) t.equal(c.enqueue(w.make(i)), 'queued')
  t.equal(c.enqueue(w.make(15)), 'global-queue-full', 'no namespace bound: one namespace may take the whole process budget')
})

t.test('held body bytes are bounded per namespace and per process; bodyless requests are not counted', async (t) => {
  const budgets = new QueueBudgets(holds(100, 0, 1000, 600))
  const a = throttler({ cc: 1, maxQueued: 10, budget: budgets.of('flood') }).th
  const b = throttler({ cc: 1, maxQueued: 10, budget: budgets.of('calm') }).th
  const w = waiters()
  t.equal(a.enqueue(w.make(1, 300)), 'queued')
  const second = w.make(2, 300)
  t.equal(a.enqueue(second), 'queued', 'exactly at the namespace bound')
  t.equal(a.enqueue(w.make(3, 1)), 'namespace-bytes-full', 'one byte more is over it')
  t.equal(a.enqueue(w.make(4, 0)), 'queued', 'a bodyless request is still held: it holds no body')
  t.equal(b.enqueue(w.make(5, 400)), 'queued', 'another namespace still holds bodies')
  t.equal(b.enqueue(w.make(6, 1)), 'global-bytes-full', 'within the process bound (1000 bytes)')
  t.same([budgets.process.bytes, budgets.of('flood').bytes, budgets.of('calm').bytes], [1000, 600, 400])
  a.cancel(second)
  t.equal(a.enqueue(w.make(7, 300)), 'queued', "a cancelled request's bytes are given back to its namespace and the process")
  a.updateEndpoints(eps(1))
  t.same(w.granted.map((g) => g.id), [1], 'the oldest is granted')
  t.same([budgets.process.bytes, budgets.of('flood').bytes], [700, 300], "a granted request's bytes are given back")
  budgets.setBounds(holds(100, 0, 0, 0))
  t.equal(b.enqueue(w.make(8, 1 << 30)), 'queued', 'bound 0: no byte bound')
  t.same(budgets.describe(), { requests: 4, bodyBytes: 700 + (1 << 30), namespaces: { flood: { requests: 2, bodyBytes: 300 }, calm: { requests: 2, bodyBytes: 400 + (1 << 30) } } })
  a.rejectAll('draining')
  b.rejectAll('draining')
  t.same(budgets.describe(), { requests: 0, bodyBytes: 0, namespaces: {} }, 'every byte given back')
})

t.test('queue bounds changed at run time decide the next request; the held ones stay', async (t) => {
  const budgets = new QueueBudgets(holds(100, 0))
  const { th } = throttler({ cc: 1, maxQueued: 10, budget: budgets.of('ns') })
  const w = waiters()
  for (let i = 0; i < 4; i++) t.equal(th.enqueue(w.make(i)), 'queued')
  budgets.setBounds(holds(100, 3))
  t.equal(th.enqueue(w.make(4)), 'namespace-queue-full', 'a namespace bound set now counts the requests already held')
  t.equal(th.queued, 4, 'the held ones stay held')
  budgets.setBounds(holds(100, 0))
  th.setMaxQueued(5)
  t.equal(th.enqueue(w.make(5)), 'queued', 'the namespace bound lifted')
  t.equal(th.enqueue(w.make(6)), 'revision-queue-full', 'the revision bound lowered to 5')
  th.setMaxQueued(10)
  budgets.setBounds(holds(5, 0))
  t.equal(th.enqueue(w.make(7)), 'global-queue-full', 'the process bound lowered to 5')
  th.rejectAll('draining')
  t.equal(budgets.process.used, 0, 'every place given back')
})

t.test('rejectAll tells every queued waiter why, once, and none that left the queue', async (t) => {
  const { th } = throttler({ cc: 1, pods: 1 })
  const w = waiters()
  t.ok(th.tryAcquire(), 'the one slot is taken')
  const queued = [1, 2, 3].map((id) => w.make(id))
  for (const q of queued) t.equal(th.enqueue(q), 'queued')
  th.cancel(queued[1]!)
  th.rejectAll('backend-removed')
  t.same(queued.map((q) => q.droppedWith), [['backend-removed'], [], ['backend-removed']])
  t.equal(th.queued, 0, 'the queue is empty')
  th.rejectAll('draining')
  t.same(queued.map((q) => q.droppedWith.length), [1, 0, 1], 'a second rejectAll finds nobody')
  t.equal(w.granted.length, 0, 'nobody was granted a pod')
})

t.test('capacity is exactly CC × pods; the rest waits', async (t) => {
  for (const [cc, pods] of [
    [1, 1],
    [1, 3],
    [3, 2],
    [3, 3],
    [7, 4],
  ] as const) {
    const { th } = throttler({ cc, pods })
    const got = acquireAll(th)
    t.equal(got.length, cc * pods, `CC=${cc} pods=${pods}: ${cc * pods} granted at once`)
    t.same(Object.values(inFlightByAddress(th)), Array(pods).fill(cc), 'every pod full, none over')
    const w = waiters()
    t.equal(th.enqueue(w.make(1)), 'queued')
    t.equal(w.granted.length, 0, 'a waiter is not granted while every pod is full')
    th.release(got[0]!)
    t.same(
      w.granted.map((g) => g.pod),
      [got[0]],
      'release hands the freed slot to the waiter',
    )
  }
})

t.test('FIFO: waiters are granted in the order they queued', async (t) => {
  for (const [cc, pods] of [
    [1, 1],
    [1, 3],
    [3, 2],
  ] as const) {
    const { th } = throttler({ cc, pods })
    const held = acquireAll(th)
    const w = waiters()
    for (let i = 1; i <= 20; i++) t.equal(th.enqueue(w.make(i)), 'queued')
    t.equal(th.queued, 20)
    // The fast path must not overtake the queue even when a slot is free for an instant.
    th.release(held.shift()!)
    t.equal(th.tryAcquire(), undefined, 'tryAcquire does not jump the queue')
    const r = rng(7)
    const holding = [...held, ...w.granted.map((g) => g.pod!)]
    while (th.queued > 0) {
      const [p] = holding.splice(Math.floor(r() * holding.length), 1)
      const before = w.granted.length
      th.release(p!)
      for (const g of w.granted.slice(before)) holding.push(g.pod!)
    }
    t.same(
      w.granted.map((g) => g.id),
      Array.from({ length: 20 }, (_, i) => i + 1),
      `CC=${cc} pods=${pods}: grant order is queue order`,
    )
  }
})

t.test('round robin spreads requests across pods (CC > 0)', async (t) => {
  for (const cc of [1, 3, 10]) {
    const { th } = throttler({ cc, pods: 4 })
    // Acquire and release at once: a least-loaded or first-available policy would pick the same pod
    // every time; round robin walks them in address order.
    const seq: string[] = []
    for (let i = 0; i < 8; i++) {
      const p = th.tryAcquire()!
      seq.push(p.endpoint.address)
      th.release(p)
    }
    const a = eps(4).map((e) => e.address)
    t.same(seq, [...a, ...a], `CC=${cc}: pods taken in turn`)
  }
  const { th } = throttler({ cc: 10, pods: 4 })
  for (let i = 0; i < 8; i++) th.tryAcquire()
  t.same(Object.values(inFlightByAddress(th)), [2, 2, 2, 2], 'held requests are spread evenly')
  // A full pod is skipped, not waited on.
  const { th: th2 } = throttler({ cc: 1, pods: 3 })
  const first = th2.tryAcquire()!
  const again: string[] = []
  for (let i = 0; i < 4; i++) {
    const p = th2.tryAcquire()
    if (p) {
      again.push(p.endpoint.address)
      th2.release(p)
    }
  }
  t.notOk(again.includes(first.endpoint.address), 'the full pod is skipped while its request runs')
  t.equal(again.length, 4)
})

t.test('CC=0: no per-pod limit; power of two choices takes the less loaded pod', async (t) => {
  t.test('one pod takes any number of requests', async (t) => {
    const { th } = throttler({ cc: 0, pods: 1 })
    t.equal(acquireAll(th, 500).length, 500)
    t.equal(th.pods()[0]!.inFlight, 500)
    t.equal(th.queued, 0)
  })
  t.test('two pods: always the less loaded one, so loads never differ by more than 1', async (t) => {
    const { th } = throttler({ cc: 0, pods: 2 })
    withRandom(rng(1), () => {
      let worst = 0
      for (let i = 0; i < 200; i++) {
        th.tryAcquire()
        const [a, b] = th.pods()
        worst = Math.max(worst, Math.abs(a!.inFlight - b!.inFlight))
      }
      t.equal(worst, 1)
    })
  })
  t.test('the chosen pair decides: the lighter of the two drawn wins', async (t) => {
    const { th } = throttler({ cc: 0, pods: 4 })
    const pods = th.pods()
    // Load pods to 5, 1, 3, 0 via the public API: take slots and give back the excess.
    const loads = [5, 1, 3, 0]
    const held = acquireAll(th, 40)
    for (const p of held) if (p.inFlight > loads[pods.indexOf(p)]!) th.release(p)
    t.same(
      pods.map((p) => p.inFlight),
      loads,
    )
    // Math.random() * n → i; Math.random() * (n-1) → j (skipping i). Draws are floor(x * n).
    const draw = (i: number, jRaw: number): number[] => [(i + 0.5) / 4, (jRaw + 0.5) / 3]
    const cases: Array<[number, number, number]> = [
      // [first index, raw second draw, expected index]
      [0, 0, 1], // pods 0 (5) and 1 (1) → 1
      [0, 1, 2], // pods 0 (5) and 2 (3) → 2
      [2, 0, 2], // pods 2 (3) and 0 (5) → 2
      [1, 2, 3], // pods 1 (1) and 3 (0) → 3
      [3, 0, 3], // pods 3 (0) and 0 (5) → 3
    ]
    for (const [i, jRaw, want] of cases) {
      const seq = draw(i, jRaw)
      let k = 0
      const p = withRandom(
        () => seq[k++]!,
        () => th.tryAcquire()!,
      )
      t.equal(pods.indexOf(p), want, `draw ${i},${jRaw} → pod ${want}`)
      th.release(p)
    }
  })
  t.test('many pods: load stays far more even than one random choice would', async (t) => {
    const { th } = throttler({ cc: 0, pods: 10 })
    withRandom(rng(42), () => acquireAll(th, 1000))
    const loads = th.pods().map((p) => p.inFlight)
    t.equal(
      loads.reduce((a, b) => a + b, 0),
      1000,
    )
    t.ok(Math.max(...loads) - Math.min(...loads) <= 4, `loads ${loads.join(',')} within 4 of each other`)
  })
})

t.test('queue limits: per revision, then the global budget', async (t) => {
  t.test('per revision', async (t) => {
    const { th, budget } = throttler({ cc: 1, pods: 1, maxQueued: 2 })
    th.tryAcquire()
    const w = waiters()
    t.equal(th.enqueue(w.make(1)), 'queued')
    t.equal(th.enqueue(w.make(2)), 'queued')
    t.equal(th.enqueue(w.make(3)), 'revision-queue-full')
    t.equal(th.queued, 2, 'a rejected waiter is not counted')
    t.equal(budget.used, 2)
  })
  t.test('maxQueued 0 rejects every waiter', async (t) => {
    const { th } = throttler({ cc: 1, maxQueued: 0 })
    t.equal(th.enqueue(waiters().make(1)), 'revision-queue-full')
    t.equal(th.queued, 0)
  })
  t.test('global budget shared by revisions', async (t) => {
    const budget = new QueueBudget(3, Infinity)
    const a = throttler({ cc: 1, maxQueued: 10, budget }).th
    const b = throttler({ cc: 1, maxQueued: 10, budget }).th
    const w = waiters()
    const w1 = w.make(1)
    t.equal(a.enqueue(w1), 'queued')
    t.equal(a.enqueue(w.make(2)), 'queued')
    t.equal(b.enqueue(w.make(3)), 'queued')
    t.equal(b.enqueue(w.make(4)), 'global-queue-full')
    t.equal(a.enqueue(w.make(5)), 'global-queue-full')
    t.equal(budget.used, 3)
    a.cancel(w1)
    t.equal(budget.used, 2, 'cancel gives the slot back')
    t.equal(b.enqueue(w.make(6)), 'queued')
    // Grants give budget back too.
    a.updateEndpoints([ep(1)])
    t.equal(a.queued, 0)
    t.equal(budget.used, 2, 'the granted waiter left the budget')
    t.same(
      w.granted.map((g) => g.id),
      [2],
    )
  })
  t.test('the per-revision limit is checked before the global one', async (t) => {
    const budget = new QueueBudget(1, Infinity)
    const { th } = throttler({ cc: 1, maxQueued: 1, budget })
    const w = waiters()
    t.equal(th.enqueue(w.make(1)), 'queued')
    t.equal(th.enqueue(w.make(2)), 'revision-queue-full')
  })
})

t.test('cancel() removes a waiter at once and it is never granted', async (t) => {
  let coldStarts = 0
  const { th, budget } = throttler({ cc: 1, onColdStart: () => coldStarts++ })
  const w = waiters()
  const ws = [1, 2, 3, 4].map((i) => w.make(i))
  for (const x of ws) t.equal(th.enqueue(x), 'queued')
  t.equal(coldStarts, 4, 'each request waiting with no pod signals a cold start')
  th.cancel(ws[0]!)
  th.cancel(ws[2]!)
  t.equal(th.queued, 2, 'counts drop at once')
  t.equal(budget.used, 2)
  th.cancel(ws[2]!)
  t.equal(th.queued, 2, 'cancelling twice is a no-op')
  th.updateEndpoints([ep(1)])
  t.same(
    w.granted.map((g) => g.id),
    [2],
    'the first live waiter gets the pod',
  )
  th.release(ws[1]!.pod!)
  t.same(
    w.granted.map((g) => g.id),
    [2, 4],
  )
  th.release(ws[3]!.pod!)
  t.equal(th.queued, 0)
  t.equal(th.inFlight, 0)
  t.equal(budget.used, 0)
  t.notOk(ws[0]!.pod, 'cancelled waiter 1 never granted')
  t.notOk(ws[2]!.pod, 'cancelled waiter 3 never granted')
  // A cancelled head does not block the queue after the fact either.
  const held = th.tryAcquire()!
  const a = w.make(10)
  const b = w.make(11)
  th.enqueue(a)
  th.enqueue(b)
  th.cancel(a)
  th.release(held)
  t.equal(b.pod, held, 'the waiter behind a cancelled head is granted on release')
})

t.test('updateEndpoints', async (t) => {
  t.test('pods that stay keep their in-flight counts; new pods drain the queue', async (t) => {
    const { th } = throttler({ cc: 1, pods: 2 })
    const [p1, p2] = acquireAll(th)
    t.equal(th.tryAcquire(), undefined)
    const w = waiters()
    for (let i = 1; i <= 3; i++) th.enqueue(w.make(i))
    th.updateEndpoints([ep(2), ep(3), ep(4)]) // ep(1) leaves, ep(3) and ep(4) arrive
    t.same(inFlightByAddress(th), { [ep(2).address]: 1, [ep(3).address]: 1, [ep(4).address]: 1 }, 'ep2 kept its count; new pods took waiters')
    t.same(
      w.granted.map((g) => g.id),
      [1, 2],
      'the two oldest waiters got the new pods',
    )
    t.equal(th.queued, 1)
    t.ok(p1!.removed, 'the departed pod is marked removed')
    // The removed pod's request finishes: counts drop, nobody is sent to it.
    th.release(p1!)
    t.equal(p1!.inFlight, 0)
    t.equal(th.inFlight, 3)
    t.equal(w.granted.length, 2, 'releasing a removed pod does not grant it to a waiter')
    t.notOk(
      th.pods().some((p) => p === p1),
      'the removed pod is not among the ready pods',
    )
    th.release(p2!)
    t.same(
      w.granted.map((g) => g.id),
      [1, 2, 3],
    )
    t.equal(w.granted[2]!.pod, p2)
  })
  t.test('no pods → pods: every held waiter is granted up to capacity, oldest first', async (t) => {
    for (const cc of [0, 1, 3]) {
      const { th } = throttler({ cc })
      const w = waiters()
      for (let i = 1; i <= 10; i++) th.enqueue(w.make(i))
      th.updateEndpoints([ep(1), ep(2)])
      const expect = cc === 0 ? 10 : cc * 2
      t.same(
        w.granted.map((g) => g.id),
        Array.from({ length: expect }, (_, i) => i + 1),
        `CC=${cc}: ${expect} granted in order`,
      )
      t.equal(th.queued, 10 - expect)
    }
  })
  t.test('a pod that leaves and comes back while its requests run still counts them', async (t) => {
    // A readiness flap: the pod is still working on its request, so CC must still hold for it.
    const { th } = throttler({ cc: 1, pods: 1 })
    const p = th.tryAcquire()!
    th.updateEndpoints([])
    th.updateEndpoints([ep(1)])
    t.equal(th.tryAcquire(), undefined, 'the returning pod is still full')
    const w = waiters()
    th.enqueue(w.make(1))
    t.equal(w.granted.length, 0)
    th.release(p)
    t.equal(w.granted.length, 1, 'the old request finishing frees the slot')
    t.equal(th.pods()[0]!.inFlight, 1)
    t.equal(th.inFlight, 1)
  })
  t.test('a removed pod released after every pod is gone leaves counts at zero', async (t) => {
    const { th } = throttler({ cc: 2, pods: 2 })
    const held = acquireAll(th)
    th.updateEndpoints([])
    t.equal(th.podCount, 0)
    for (const p of held) th.release(p)
    t.equal(th.inFlight, 0)
    t.ok(held.every((p) => p.inFlight === 0))
  })
})

/** The pods a replica may use: fill every slot with CC=1 and see which pods took one. */
function assignedPods(n: number, index: number, count: number, cc = 1): number[] {
  const { th } = throttler({ cc })
  th.updateEndpoints(eps(n))
  th.setReplicaShare(index, count)
  if (cc === 0) return th.pods().length === th.podCount ? th.pods().map((_, i) => i) : []
  acquireAll(th)
  return th
    .pods()
    .map((p, i) => (p.inFlight > 0 ? i : -1))
    .filter((i) => i >= 0)
}

/** Knative's assignSlice/pickIndices, written out independently. */
function knativeSlice(n: number, index: number, count: number): number[] {
  if (index < 0 || count <= 1 || n <= 1) return Array.from({ length: n }, (_, i) => i)
  if (n < count) return [index % n]
  const per = Math.floor(n / count)
  const out = Array.from({ length: per }, (_, k) => index * per + k)
  if (index < n % count) out.push(per * count + index)
  return out
}

t.test('setReplicaShare splits pods among replicas like Knative', async (t) => {
  t.test('table', async (t) => {
    const rows: Array<[number, number, number, number[]]> = [
      // [pods, replicas, index, expected pod indices]
      [6, 2, 0, [0, 1, 2]],
      [6, 2, 1, [3, 4, 5]],
      [7, 3, 0, [0, 1, 6]], // blocks of 2, remnant pod 6 to replica 0
      [7, 3, 1, [2, 3]],
      [7, 3, 2, [4, 5]],
      [5, 3, 0, [0, 3]],
      [5, 3, 1, [1, 4]],
      [5, 3, 2, [2]],
      [2, 3, 0, [0]], // more replicas than pods: index % pods
      [2, 3, 1, [1]],
      [2, 3, 2, [0]],
      [1, 4, 3, [0]],
      [4, 1, 0, [0, 1, 2, 3]],
      [4, 3, -1, [0, 1, 2, 3]], // unknown index: everything
    ]
    for (const [n, a, i, want] of rows) t.same(assignedPods(n, i, a), want, `${n} pods, ${a} replicas, replica ${i}`)
  })
  t.test('union over replicas covers every pod exactly once when replicas ≤ pods', async (t) => {
    for (let n = 1; n <= 12; n++) {
      for (let a = 1; a <= n; a++) {
        const count = Array(n).fill(0)
        for (let i = 0; i < a; i++) {
          const got = assignedPods(n, i, a)
          if (JSON.stringify(got) !== JSON.stringify(knativeSlice(n, i, a))) t.fail(`${n} pods / ${a} replicas / replica ${i}: ${got} differs from Knative's ${knativeSlice(n, i, a)}`)
          for (const k of got) count[k]++
        }
        if (count.some((c) => c !== 1)) t.fail(`${n} pods / ${a} replicas: coverage ${count.join(',')}`)
        // Shares differ in size by at most one pod.
        const sizes = Array.from({ length: a }, (_, i) => assignedPods(n, i, a).length)
        if (Math.max(...sizes) - Math.min(...sizes) > 1) t.fail(`${n} pods / ${a} replicas: uneven shares ${sizes}`)
      }
    }
    t.pass('every (pods, replicas) pair up to 12 checked')
  })
  t.test('more replicas than pods: every pod is used by some replica', async (t) => {
    for (let n = 1; n <= 5; n++) {
      for (let a = n + 1; a <= 8; a++) {
        const used = new Set<number>()
        for (let i = 0; i < a; i++) {
          const got = assignedPods(n, i, a)
          t.same(got, [i % n], `${n} pods / ${a} replicas / replica ${i}`)
          for (const k of got) used.add(k)
        }
        t.equal(used.size, n)
      }
    }
  })
  t.test('CC=0 uses every pod whatever the share', async (t) => {
    for (const [n, a, i] of [
      [6, 2, 1],
      [2, 5, 4],
      [7, 3, 2],
    ] as const) {
      const { th } = throttler({ cc: 0, pods: n })
      th.setReplicaShare(i, a)
      t.equal(th.podCount, n, `${n} pods, ${a} replicas, replica ${i}: all pods`)
      const seen = new Set(withRandom(rng(3), () => acquireAll(th, 200)).map((p) => p.endpoint.address))
      t.equal(seen.size, n, 'requests reach every pod')
    }
  })
  t.test('changing the share re-splits live and drains waiters onto the new share', async (t) => {
    const { th } = throttler({ cc: 1, pods: 4 })
    th.setReplicaShare(0, 2) // pods 0,1
    acquireAll(th)
    const w = waiters()
    th.enqueue(w.make(1))
    th.enqueue(w.make(2))
    t.equal(w.granted.length, 0)
    th.setReplicaShare(0, 1) // now all four
    t.same(
      w.granted.map((g) => g.pod!.endpoint.address).sort(),
      [ep(3).address, ep(4).address],
    )
  })
})

t.test('markFailed skips a pod until its backoff passes, then drains', async (t) => {
  t.test('another pod is used while one is suspect', async (t) => {
    const { th, clock } = throttler({ cc: 1, pods: 2 })
    const [a] = th.pods()
    th.markFailed(a!, 100)
    const p = th.tryAcquire()!
    t.not(p, a, 'the suspect pod is skipped')
    t.equal(th.tryAcquire(), undefined, 'the suspect pod is not used even though it is free')
    const w = waiters()
    th.enqueue(w.make(1))
    t.equal(w.granted.length, 0)
    clock.advance(99)
    t.equal(w.granted.length, 0, 'still inside the backoff')
    clock.advance(1)
    t.equal(w.granted.length, 1, 'the timer drained the queue when the backoff ended')
    t.equal(w.granted[0]!.pod, a)
  })
  t.test('every pod suspect: the queue waits for the earliest backoff', async (t) => {
    for (const cc of [0, 1]) {
      const { th, clock } = throttler({ cc, pods: 2 })
      const [a, b] = th.pods()
      th.markFailed(a!, 300)
      th.markFailed(b!, 100)
      t.equal(th.tryAcquire(), undefined, `CC=${cc}: nothing to take`)
      const w = waiters()
      th.enqueue(w.make(1))
      th.enqueue(w.make(2))
      clock.advance(99)
      t.equal(w.granted.length, 0)
      clock.advance(1)
      t.ok(w.granted.length >= 1, `CC=${cc}: granted once b's backoff ended`)
      t.equal(w.granted[0]!.pod, b)
      if (cc === 1) {
        t.equal(w.granted.length, 1)
        clock.advance(200)
        t.equal(w.granted.length, 2, 'a drained once its own backoff ended')
        t.equal(w.granted[1]!.pod, a)
      } else {
        t.equal(w.granted.length, 2, 'CC=0: one healthy pod takes everyone')
      }
    }
  })
  t.test('a single pod marked failed with waiters already queued', async (t) => {
    const { th, clock } = throttler({ cc: 1, pods: 1 })
    const p = th.tryAcquire()!
    const w = waiters()
    th.enqueue(w.make(1))
    // The exchange's retry path: mark, then release.
    th.markFailed(p, 50)
    th.release(p)
    t.equal(w.granted.length, 0, 'the waiter is not sent to the suspect pod')
    clock.advance(50)
    t.equal(w.granted.length, 1)
    t.equal(th.queued, 0)
  })
})

t.test('busy() lists every pod with requests in flight, including pods gone from the endpoints', (t) => {
  const { th } = throttler({ cc: 0, pods: 2 })
  const a = th.tryAcquire()!
  t.same(th.busy().map((p) => p.endpoint.address), [a.endpoint.address])
  // The pod leaves the endpoints with its request still running: the local runner must still see it.
  th.updateEndpoints(eps(2).filter((e) => e.address !== a.endpoint.address))
  t.notOk(th.pods().includes(a), 'no longer a pod new requests can get')
  t.same(th.busy().map((p) => p.endpoint.address), [a.endpoint.address], 'but still busy')
  th.release(a)
  t.same(th.busy(), [], 'idle once its request finished')
  t.end()
})
