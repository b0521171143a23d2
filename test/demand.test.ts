import t from 'tap'
import { BUSY_FLOOR, DemandTracker, revisionKey } from '../src/activator/demand.ts'
import type { RevisionKey } from '../src/activator/demand.ts'
import type { StatEntry } from '../src/autoscaler/stat-encoding.ts'

const HELLO: RevisionKey = { namespace: 'default', name: 'hello-00001' }
const WORLD: RevisionKey = { namespace: 'default', name: 'world-00001' }
const OTHER_NS: RevisionKey = { namespace: 'team-b', name: 'hello-00001' }

function tracker(): { demand: DemandTracker; pokes: StatEntry[] } {
  const pokes: StatEntry[] = []
  const demand = new DemandTracker({ podName: 'gw-0', onPoke: (e) => pokes.push(e) })
  return { demand, pokes }
}

type Event = ['in' | 'out', RevisionKey, number]

function replay(demand: DemandTracker, events: Event[]): void {
  for (const [kind, rev, at] of events) {
    if (kind === 'in') demand.requestIn(rev, at)
    else demand.requestOut(rev, at)
  }
}

/** Report → {name: [avg, count]} for compact table assertions. */
function summary(entries: StatEntry[]): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {}
  for (const e of entries) out[`${e.namespace}/${e.name}`] = [e.averageConcurrentRequests, e.requestCount]
  return out
}

type Expected = Record<string, [number, number]>
type Step = Event | ['report', number, Expected]

// Each row replays requests and reports in time order. The entry is created by the first request,
// so the first report subtracts the poke (1, 1); later reports carry raw numbers.
const table: Array<{ name: string; steps: Step[] }> = [
  {
    name: 'two 500 ms requests back to back in a 1 s window average 1',
    steps: [
      ['in', HELLO, 0], ['out', HELLO, 500], ['in', HELLO, 500], ['out', HELLO, 1000],
      // raw average (500 + 500) / 1000 = 1, count 2; minus the poke
      ['report', 1000, { 'default/hello-00001': [0, 1] }],
    ],
  },
  {
    name: 'two overlapping requests: raw 1.5 over the window',
    steps: [
      ['in', HELLO, 0], ['in', HELLO, 250], ['out', HELLO, 750], ['out', HELLO, 1000],
      ['report', 1000, { 'default/hello-00001': [0.5, 1] }],
    ],
  },
  {
    name: 'steady traffic after the first window reports raw numbers',
    steps: [
      ['in', HELLO, 0], ['out', HELLO, 1000],
      ['report', 1000, { 'default/hello-00001': [0, 0] }], // raw 1 minus the poke
      ['in', HELLO, 1000], ['out', HELLO, 1500], ['in', HELLO, 1500], ['out', HELLO, 2000],
      ['report', 2000, { 'default/hello-00001': [1, 2] }], // two 500 ms requests, no adjustment
    ],
  },
  {
    name: 'the window of a new entry starts at its first request',
    steps: [
      ['in', HELLO, 10_000], ['in', HELLO, 10_100], ['out', HELLO, 10_200], ['out', HELLO, 10_200],
      // [10000,10100) c=1, [10100,10200) c=2, [10200,10400) c=0 → (100 + 200) / 400 = 0.75
      ['report', 10_400, { 'default/hello-00001': [0, 1] }],
    ],
  },
]

for (const row of table) {
  t.test(row.name, async (t) => {
    const { demand } = tracker()
    for (const step of row.steps) {
      if (step[0] === 'report') t.same(summary(demand.report(step[1])), step[2], `report at ${step[1]}`)
      else replay(demand, [step])
    }
  })
}

t.test('the raw window average is exact and exposed in the snapshot', async (t) => {
  const { demand } = tracker()
  replay(demand, [['in', HELLO, 0], ['out', HELLO, 500], ['in', HELLO, 500], ['out', HELLO, 1000]])
  demand.report(1000)
  t.same(demand.snapshot(), [{ namespace: 'default', name: 'hello-00001', concurrency: 0, averageConcurrency: 1 }])
})

t.test('the poke is sent once, synchronously, then subtracted once', async (t) => {
  const { demand, pokes } = tracker()
  demand.requestIn(HELLO, 0)
  t.same(pokes, [
    { namespace: 'default', name: 'hello-00001', podName: 'gw-0', averageConcurrentRequests: 1, requestCount: 1 },
  ], 'poke delivered inside requestIn')
  demand.requestIn(HELLO, 100)
  demand.requestIn(HELLO, 200)
  t.equal(pokes.length, 1, 'later requests for the same revision do not poke')

  // Three requests in flight: [0,100) 1, [100,200) 2, [200,1000) 3 → (100 + 200 + 2400) / 1000 = 2.7
  const first = demand.report(1000)
  t.equal(first.length, 1)
  t.ok(Math.abs(first[0]!.averageConcurrentRequests - 1.7) < 1e-12, 'average minus the poke')
  t.equal(first[0]!.requestCount, 2, 'count minus the poke')

  const second = demand.report(2000)
  t.same(summary(second), { 'default/hello-00001': [3, 0] }, 'the next window is not adjusted again')
  t.equal(pokes.length, 1)
})

t.test('the poke subtraction is floored at 0 when nothing is in flight', async (t) => {
  const { demand } = tracker()
  replay(demand, [['in', HELLO, 0], ['out', HELLO, 100]])
  // raw average 100 / 1000 = 0.1; 0.1 - 1 floors at 0; count 1 - 1 = 0
  t.same(summary(demand.report(1000)), { 'default/hello-00001': [0, 0] })
})

t.test('after traffic stops: one final zero, then the entry is gone, and a new request pokes again', async (t) => {
  const { demand, pokes } = tracker()
  demand.requestIn(HELLO, 0)
  t.same(summary(demand.report(1000)), { 'default/hello-00001': [BUSY_FLOOR, 0] })
  demand.requestOut(HELLO, 2000)
  t.same(summary(demand.report(2500)), { 'default/hello-00001': [1000 / 1500, 0] })
  t.same(summary(demand.report(3500)), { 'default/hello-00001': [0, 0] }, 'the final zero')
  t.same(demand.report(4500), [], 'nothing after the final zero')
  t.same(demand.snapshot(), [], 'entry deleted')
  t.equal(demand.concurrency(HELLO), 0)

  demand.requestIn(HELLO, 5000)
  t.equal(pokes.length, 2, 'a revision that went idle pokes again')
  demand.requestOut(HELLO, 5200)
  t.same(summary(demand.report(6000)), { 'default/hello-00001': [0, 0] }, 'and that poke is subtracted')
})

t.test('never reported idle while a request is in flight or held', async (t) => {
  await t.test('one request held for the whole first window (Knative would report 0)', async (t) => {
    const { demand } = tracker()
    demand.requestIn(HELLO, 0)
    const [e] = demand.report(1000)
    t.equal(e!.averageConcurrentRequests, BUSY_FLOOR, 'raw 1 - poke 1 is raised to the floor')
    t.equal(e!.requestCount, 0)
    t.same(summary(demand.report(2000)), { 'default/hello-00001': [1, 0] }, 'then the real value')
  })

  await t.test('report at the instant the entry is created (zero-length window)', async (t) => {
    const { demand } = tracker()
    demand.requestIn(HELLO, 500)
    const [e] = demand.report(500)
    t.ok(e!.averageConcurrentRequests > 0)
    t.same(summary(demand.report(1500)), { 'default/hello-00001': [1, 0] })
  })

  await t.test('a request arriving exactly at report time after an idle window', async (t) => {
    const { demand } = tracker()
    replay(demand, [['in', HELLO, 0], ['out', HELLO, 300]])
    demand.report(1000) // poke window
    demand.requestIn(HELLO, 2000) // Σ c·Δt over [1000, 2000] is 0
    const [e] = demand.report(2000)
    t.ok(e!.averageConcurrentRequests > 0, 'not idle although the window average is 0')
    t.equal(e!.requestCount, 1)
    t.equal(demand.snapshot().length, 1, 'not deleted while in flight')
  })

  await t.test('property: random traffic never reports 0 with requests in flight', async (t) => {
    let seed = 12345
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed / 2 ** 31
    }
    const { demand } = tracker()
    const revs = [HELLO, WORLD, OTHER_NS]
    let now = 0
    let violations = 0
    let reportsChecked = 0
    for (let step = 0; step < 5000; step++) {
      now += Math.floor(rand() * 400)
      const rev = revs[Math.floor(rand() * revs.length)]!
      const r = rand()
      if (r < 0.45) demand.requestIn(rev, now)
      else if (r < 0.9) demand.requestOut(rev, now)
      else {
        const inFlight = new Map(revs.map((x) => [revisionKey(x), demand.concurrency(x)]))
        for (const e of demand.report(now)) {
          reportsChecked++
          if ((inFlight.get(revisionKey(e)) ?? 0) > 0 && !(e.averageConcurrentRequests > 0)) violations++
          if (e.averageConcurrentRequests < 0 || e.requestCount < 0) violations++
        }
      }
    }
    t.ok(reportsChecked > 100, `checked ${reportsChecked} entries`)
    t.equal(violations, 0)
  })
})

t.test('counts across several revisions, podName on every entry', async (t) => {
  const { demand, pokes } = tracker()
  replay(demand, [
    ['in', HELLO, 0], ['in', HELLO, 0], ['in', HELLO, 0],
    ['in', WORLD, 100],
    ['in', OTHER_NS, 200], ['out', OTHER_NS, 300],
    ['out', HELLO, 1000], ['out', HELLO, 1000],
  ])
  t.same(pokes.map((p) => `${p.namespace}/${p.name}`), ['default/hello-00001', 'default/world-00001', 'team-b/hello-00001'])
  t.equal(demand.concurrency(HELLO), 1)
  t.equal(demand.concurrency(WORLD), 1)
  t.equal(demand.concurrency(OTHER_NS), 0, 'same name, other namespace: a separate revision')

  const first = demand.report(1000)
  t.same(summary(first), {
    'default/hello-00001': [2, 2], // three held all window → 3 - 1; 3 arrivals - 1
    'default/world-00001': [BUSY_FLOOR, 0], // held since 100 → raw 1 - 1, in flight
    'team-b/hello-00001': [0, 0], // raw 100 / 800 - 1 → 0
  })
  t.ok(first.every((e) => e.podName === 'gw-0'), 'podName on every entry')

  demand.requestIn(WORLD, 1500)
  const second = demand.report(2000)
  t.same(summary(second), {
    'default/hello-00001': [1, 0],
    'default/world-00001': [1.5, 1],
    'team-b/hello-00001': [0, 0], // its final zero
  })
  t.ok(second.every((e) => e.podName === 'gw-0'))
  t.same(
    demand.snapshot().map((s) => `${s.namespace}/${s.name}:${s.concurrency}`).sort(),
    ['default/hello-00001:1', 'default/world-00001:2'],
  )
})

t.test('precomputed keys behave like the RevisionKey methods', async (t) => {
  const { demand, pokes } = tracker()
  const key = revisionKey(HELLO)
  demand.requestInKey(key, HELLO, 0)
  demand.requestIn(HELLO, 0)
  demand.requestOutKey(key, 500)
  t.equal(pokes.length, 1)
  t.equal(demand.concurrency(HELLO), 1)
  demand.requestOut(HELLO, 1000)
  t.same(summary(demand.report(1000)), { 'default/hello-00001': [0.5, 1] })
})

t.test('unmatched requestOut is ignored', async (t) => {
  const { demand } = tracker()
  demand.requestOut(HELLO, 0)
  t.same(demand.snapshot(), [], 'no entry created')
  demand.requestIn(HELLO, 0)
  demand.requestOut(HELLO, 100)
  demand.requestOut(HELLO, 200)
  t.equal(demand.concurrency(HELLO), 0, 'never negative')
})

t.test('time going backwards adds nothing', async (t) => {
  const { demand } = tracker()
  demand.requestIn(HELLO, 1000)
  demand.requestOut(HELLO, 900)
  demand.requestIn(HELLO, 1000)
  const [e] = demand.report(2000)
  t.ok(e!.averageConcurrentRequests >= 0 && Number.isFinite(e!.averageConcurrentRequests))
})
