// Issue 7, "never lose an accepted request": steady client load while the configuration churns
// (routes changed, splits moved, revisions replaced, pods replaced), pods leaving with requests in
// flight, and backends dying mid-response. Real gateway, real backends on loopback, real sockets.
// Assertions are counts (zero failures, who answered), never durations.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { Agent, request } from 'undici'
import type { Gateway } from '../src/gateway.ts'
import {
  describeRequest,
  endpointSlice,
  get,
  kingress,
  revision,
  service,
  startBackend,
  startTestGateway,
  tempDir,
  waitFor,
  writeManifest,
} from './helpers/gateway.ts'
import type { Backend, BackendHandler } from './helpers/gateway.ts'
import { revisionIngress, startGatedBackend, waitForSeen, within } from './helpers/activator.ts'
import type { GatedBackend } from './helpers/activator.ts'

const NS = 'default'

// ---- small fixtures ------------------------------------------------------------------------------

/** The default app, answered after 0–4 ms so that requests are in flight while the config moves. */
const jittered: BackendHandler = (req, res, b) => {
  req.resume()
  const timer = setTimeout(() => {
    if (!res.destroyed) describeRequest(req, res, b)
  }, Math.floor(Math.random() * 5))
  res.once('close', () => clearTimeout(timer))
}

/** One local "pod": a backend plus when the gateway stopped routing to it and whether it is closed. */
interface Pod {
  backend: Backend
  /** Which traffic it may ever answer: 'app' (revisions of the Route) or 'plain' (the KIngress Services). */
  group: 'app' | 'plain'
  /** performance.now() once the gateway was seen to no longer route new requests here (Infinity: still routed). */
  retiredAt: number
  closed: boolean
}

function sliceFile(sliceName: string): string {
  return `slice-${sliceName}.yaml`
}

function removeFile(dir: string, file: string): void {
  fs.rmSync(path.join(dir, file), { force: true })
}

/** One client request's outcome. */
interface Outcome {
  loop: string
  startedAt: number
  status: number
  backend: string | undefined
  error: string | undefined
}

/** Client loops that run until stopped (bounded by `maxPerLoop` each), recording every outcome. */
class Load {
  readonly outcomes: Outcome[] = []
  private stopped = false
  private readonly loops: Array<Promise<void>> = []
  readonly agent = new Agent({ connections: 16 })

  readonly port: number
  readonly maxPerLoop: number

  constructor(port: number, maxPerLoop: number) {
    this.port = port
    this.maxPerLoop = maxPerLoop
  }

  start(name: string, make: () => { host: string; path: string; headers?: Record<string, string>; method?: 'GET' | 'POST'; body?: Buffer }): void {
    this.loops.push(
      (async () => {
        for (let i = 0; i < this.maxPerLoop && !this.stopped; i++) this.outcomes.push(await this.once(name, make()))
      })(),
    )
  }

  async once(loop: string, r: { host: string; path: string; headers?: Record<string, string>; method?: 'GET' | 'POST'; body?: Buffer }): Promise<Outcome> {
    const startedAt = performance.now()
    try {
      const res = await request(`http://127.0.0.1:${this.port}${r.path}`, {
        method: r.method ?? 'GET',
        headers: { host: r.host, ...r.headers },
        body: r.body,
        dispatcher: this.agent,
      })
      const text = await res.body.text()
      const backend = res.headers['x-backend']
      if (res.statusCode !== 200) return { loop, startedAt, status: res.statusCode, backend: undefined, error: `${res.statusCode} ${String(res.headers['x-edge-reason'] ?? '')} ${text.slice(0, 200)}` }
      const parsed = JSON.parse(text) as { backend: string }
      if (parsed.backend !== backend) return { loop, startedAt, status: res.statusCode, backend: undefined, error: `body from ${parsed.backend}, header ${String(backend)}` }
      return { loop, startedAt, status: 200, backend: parsed.backend, error: undefined }
    } catch (err) {
      return { loop, startedAt, status: 0, backend: undefined, error: `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}` }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true
    await Promise.all(this.loops)
  }

  async close(): Promise<void> {
    this.stopped = true
    await Promise.allSettled(this.loops)
    await this.agent.close()
  }
}

// ---- 1. steady load through 50 configuration updates -------------------------------------------

t.test('steady load through 50 config updates (routes, splits, revisions, pods): zero failures, no stale backend', async (t) => {
  const dir = tempDir('edge-churn-')
  const pods = new Map<string, Pod>()
  let seq = 0
  const newPod = async (group: Pod['group'], prefix: string): Promise<Pod> => {
    const b = await startBackend(`${prefix}-p${++seq}`, jittered)
    const pod: Pod = { backend: b, group, retiredAt: Infinity, closed: false }
    pods.set(b.name, pod)
    return pod
  }
  t.teardown(async () => {
    for (const p of pods.values()) if (!p.closed) await p.backend.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  // The Knative Service "app": two revisions in its Route (the second tagged "candidate"), each with
  // one or more pods, each pod its own `<rev>-private` slice file.
  interface Rev {
    name: string
    pods: Pod[]
  }
  let revSeq = 0
  const revs: [Rev, Rev] = [
    { name: `app-${String(++revSeq).padStart(5, '0')}`, pods: [await newPod('app', 'app')] },
    { name: `app-${String(++revSeq).padStart(5, '0')}`, pods: [await newPod('app', 'app')] },
  ]
  let primaryPercent = 50
  const revSliceName = (rev: string, pod: Pod): string => `${rev}-private-${pod.backend.name}`
  const writeRevPod = (rev: string, pod: Pod): void =>
    writeManifest(dir, sliceFile(revSliceName(rev, pod)), [endpointSlice(`${rev}-private`, [{ name: 'http', port: pod.backend.port }], [{ ip: '127.0.0.1' }], NS, revSliceName(rev, pod))])
  const writeApp = (): void =>
    writeManifest(dir, 'app.yaml', [
      ...revs.map((r) => revision(r.name)),
      {
        apiVersion: 'serving.knative.dev/v1',
        kind: 'Route',
        metadata: { name: 'app', namespace: NS, labels: { 'serving.knative.dev/service': 'app' } },
        status: {
          url: 'http://app.default.example.com',
          traffic: [
            { revisionName: revs[0].name, percent: primaryPercent },
            { revisionName: revs[1].name, percent: 100 - primaryPercent, tag: 'candidate', url: 'http://candidate-app.default.example.com' },
          ],
        },
      },
    ])

  // A plain KIngress over three Services, each with its own pods (one slice file per pod).
  const SVCS = ['svc-a', 'svc-b', 'svc-c'] as const
  const svcPods = new Map<string, Pod[]>()
  for (const s of SVCS) svcPods.set(s, [await newPod('plain', s)])
  const svcSliceName = (svc: string, pod: Pod): string => `${svc}-${pod.backend.name}`
  const writeSvcPod = (svc: string, pod: Pod): void =>
    writeManifest(dir, sliceFile(svcSliceName(svc, pod)), [endpointSlice(svc, [{ name: 'http', port: pod.backend.port }], [{ ip: '127.0.0.1' }], NS, svcSliceName(svc, pod))])
  let plainSplits: Array<[string, number]> = [
    ['svc-a', 70],
    ['svc-b', 30],
  ]
  let v2Target = 'svc-c'
  const writePlain = (): void =>
    writeManifest(dir, 'plain.yaml', [
      ...SVCS.map((s) => service(s, [{ name: 'http', port: 80 }])),
      kingress('plain', {
        rules: [
          {
            hosts: ['plain.example.com'],
            visibility: 'ExternalIP',
            http: {
              paths: [
                { path: '/v2', splits: [{ serviceNamespace: NS, serviceName: v2Target, servicePort: 80, percent: 100 }] },
                { splits: plainSplits.map(([s, percent]) => ({ serviceNamespace: NS, serviceName: s, servicePort: 80, percent })) },
              ],
            },
          },
        ],
      }),
    ])

  for (const r of revs) for (const p of r.pods) writeRevPod(r.name, p)
  for (const [s, ps] of svcPods) for (const p of ps) writeSvcPod(s, p)
  writeApp()
  writePlain()

  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())

  // What the gateway routes right now, read from its live snapshot (in-process, exact).
  const endpointsOf = (key: string): number[] => gw.plane.snapshot.backends.get(key)?.endpoints.map((e) => e.port) ?? []
  const routed = (key: string, pod: Pod): boolean => endpointsOf(key).includes(pod.backend.port)
  for (const r of revs) await waitFor(`${r.name} has its pod`, () => routed(`rev:${NS}/${r.name}`, r.pods[0]!))
  for (const s of SVCS) await waitFor(`${s} has its pod`, () => routed(`svc:${NS}/${s}:80`, svcPods.get(s)![0]!))

  const load = new Load(gw.ports.http, 4000)
  t.teardown(() => load.close())
  const body = Buffer.alloc(16 * 1024, 'x')
  load.start('app', () => ({ host: 'app.default.example.com', path: '/' }))
  load.start('app-2', () => ({ host: 'app.default.example.com', path: '/two' }))
  load.start('tag-header', () => ({ host: 'app.default.example.com', path: '/', headers: { 'knative-serving-tag': 'candidate' } }))
  load.start('tag-host', () => ({ host: 'candidate-app.default.example.com', path: '/' }))
  load.start('plain', () => ({ host: 'plain.example.com', path: '/' }))
  load.start('plain-v2-post', () => ({ host: 'plain.example.com', path: '/v2/upload', method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } }))

  /** Our own probe requests count too (they are load as well). */
  const probe = async (what: string, r: Parameters<Load['once']>[1], ok: (o: Outcome) => boolean): Promise<void> => {
    let last: Outcome | undefined
    for (let i = 0; i < 400; i++) {
      last = await load.once('probe', r)
      load.outcomes.push(last)
      if (ok(last)) return
      await new Promise((res) => setTimeout(res, 10))
    }
    throw new Error(`timed out waiting for ${what}; last answer ${last?.backend ?? last?.error}`)
  }

  /** Retire a pod: its slice is already gone from the snapshot; wait for its requests, then close it. */
  const retire = async (pod: Pod, sliceFileName: string, key: string): Promise<void> => {
    removeFile(dir, sliceFileName)
    await waitFor(`${pod.backend.name} gone from ${key}`, () => !routed(key, pod))
    pod.retiredAt = Math.min(pod.retiredAt, performance.now())
    await waitFor(`${pod.backend.name} drained`, () => pod.backend.inFlight === 0)
    await pod.backend.close()
    pod.closed = true
  }

  const counts = { splitMoves: 0, routeChanges: 0, revisionReplacements: 0, revisionPodChurn: 0, servicePodChurn: 0 }
  const UPDATES = 50
  for (let i = 0; i < UPDATES; i++) {
    // Let some traffic flow between updates.
    const before = load.outcomes.length
    await waitFor('some traffic between updates', () => load.outcomes.length >= before + 12, 20_000)
    switch (i % 5) {
      case 0: {
        // Split moved between the Route's two revisions (10..90, so both keep traffic).
        primaryPercent = 10 * (1 + ((i * 7) % 9))
        writeApp()
        counts.splitMoves++
        break
      }
      case 1: {
        // Route changed: the plain host's split over a different pair of Services, /v2 elsewhere.
        const pick = i % 3
        const a = SVCS[pick]!
        const b = SVCS[(pick + 1) % 3]!
        const pct = 10 * (1 + ((i * 3) % 9))
        plainSplits = [
          [a, pct],
          [b, 100 - pct],
        ]
        v2Target = SVCS[(pick + 2) % 3]!
        writePlain()
        // Live once a /v2 request is answered by the new target.
        const want = svcPods.get(v2Target)!.map((p) => p.backend.name)
        await probe(`/v2 answered by ${v2Target}`, { host: 'plain.example.com', path: '/v2/probe' }, (o) => o.backend !== undefined && want.includes(o.backend))
        counts.routeChanges++
        break
      }
      case 2: {
        // Revision replaced: a new Revision with a new pod; the Route's traffic moves to it; the old
        // revision's pods are removed only once the new revision has answered.
        const slot = (i / 5) % 2 === 0 ? 0 : 1
        const old = revs[slot]
        const fresh: Rev = { name: `app-${String(++revSeq).padStart(5, '0')}`, pods: [await newPod('app', 'app')] }
        writeRevPod(fresh.name, fresh.pods[0]!)
        await waitFor(`${fresh.name}'s pod in the store`, () => gw.store.get('EndpointSlice', `${NS}/${revSliceName(fresh.name, fresh.pods[0]!)}`) !== undefined)
        revs[slot] = fresh
        writeApp()
        const freshName = fresh.pods[0]!.backend.name
        const r = slot === 1 ? { host: 'candidate-app.default.example.com', path: '/probe' } : { host: 'app.default.example.com', path: '/probe' }
        await probe(`${fresh.name} answering`, r, (o) => o.backend === freshName)
        const oldKey = `rev:${NS}/${old.name}`
        await waitFor(`${old.name} out of the snapshot`, () => !gw.plane.snapshot.backends.has(oldKey))
        for (const p of old.pods) p.retiredAt = Math.min(p.retiredAt, performance.now())
        for (const p of old.pods) await retire(p, sliceFile(revSliceName(old.name, p)), oldKey)
        counts.revisionReplacements++
        break
      }
      case 3: {
        // A revision's pod replaced: new pod in, seen ready, old pod out (its requests finish).
        const rev = revs[i % 2]!
        const key = `rev:${NS}/${rev.name}`
        const old = rev.pods.shift()!
        const fresh = await newPod('app', 'app')
        rev.pods.push(fresh)
        writeRevPod(rev.name, fresh)
        await waitFor(`${fresh.backend.name} routed`, () => routed(key, fresh))
        await retire(old, sliceFile(revSliceName(rev.name, old)), key)
        counts.revisionPodChurn++
        break
      }
      case 4: {
        // A Service's pod replaced the same way.
        const s = SVCS[i % 3]!
        const key = `svc:${NS}/${s}:80`
        const list = svcPods.get(s)!
        const old = list.shift()!
        const fresh = await newPod('plain', s)
        list.push(fresh)
        writeSvcPod(s, fresh)
        await waitFor(`${fresh.backend.name} routed`, () => routed(key, fresh))
        await retire(old, sliceFile(svcSliceName(s, old)), key)
        counts.servicePodChurn++
        break
      }
    }
  }
  const settle = load.outcomes.length
  await waitFor('traffic after the last update', () => load.outcomes.length >= settle + 24, 20_000)
  await load.stop()

  const outcomes = load.outcomes
  const failed = outcomes.filter((o) => o.error !== undefined)
  t.same(counts, { splitMoves: 10, routeChanges: 10, revisionReplacements: 10, revisionPodChurn: 10, servicePodChurn: 10 }, '50 updates of five kinds')
  t.ok(outcomes.length >= 600, `a steady load ran through the churn (${outcomes.length} requests)`)
  const byLoop: Record<string, number> = {}
  for (const o of outcomes) byLoop[o.loop] = (byLoop[o.loop] ?? 0) + 1
  for (const loop of ['app', 'app-2', 'tag-header', 'tag-host', 'plain', 'plain-v2-post']) t.ok((byLoop[loop] ?? 0) > 50, `loop ${loop} kept sending (${byLoop[loop]})`)
  t.equal(failed.length, 0, `zero failed requests out of ${outcomes.length}`, { failures: failed.slice(0, 10) })

  // Every answer came from a pod that was routed when the request was sent, and of the right group.
  const stale = outcomes.filter((o) => {
    if (!o.backend) return false
    const pod = pods.get(o.backend)
    return !pod || o.startedAt > pod.retiredAt
  })
  t.equal(stale.length, 0, 'no request sent after a pod was retired was answered by it', { stale: stale.slice(0, 10) })
  const wrongGroup = outcomes.filter((o) => o.backend && pods.get(o.backend)!.group !== (o.loop.startsWith('plain') ? 'plain' : o.loop === 'probe' ? pods.get(o.backend)!.group : 'app'))
  t.equal(wrongGroup.length, 0, 'each host was answered only by its own backends')
  const retired = [...pods.values()].filter((p) => p.closed).length
  t.equal(retired, 30, '30 pods were removed and closed during the run')
  t.equal(gw.plane.active, 0, 'nothing left in flight at the gateway')
})

// ---- 2. a pod leaving with requests in flight --------------------------------------------------

t.test('a pod removed from the endpoints finishes its in-flight requests; new requests go to the remaining pod', async (t) => {
  const dir = tempDir('edge-churn-drain-')
  const slow: GatedBackend = await startGatedBackend('slow')
  const fast = await startBackend('fast')
  const svcSlow = await startGatedBackend('svc-slow')
  const svcFast = await startBackend('svc-fast')
  t.teardown(async () => {
    for (const b of [slow, fast, svcSlow, svcFast]) await b.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const REV = 'drain-00001'
  writeManifest(dir, 'app.yaml', [revision(REV), revisionIngress('drain', 'drain.example.com', REV)])
  writeManifest(dir, 'pod-slow.yaml', [endpointSlice(`${REV}-private`, [{ name: 'http', port: slow.port }], [{ ip: '127.0.0.1' }], NS, `${REV}-private-slow`)])
  // The same through a plain Service (not a revision).
  writeManifest(dir, 'svc.yaml', [
    service('plain', [{ name: 'http', port: 80 }]),
    kingress('plain', { rules: [{ hosts: ['plain.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: NS, serviceName: 'plain', servicePort: 80, percent: 100 }] }] } }] }),
  ])
  writeManifest(dir, 'svc-slow.yaml', [endpointSlice('plain', [{ name: 'http', port: svcSlow.port }], [{ ip: '127.0.0.1' }], NS, 'plain-slow')])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  const ports = (key: string): number[] => gw.plane.snapshot.backends.get(key)?.endpoints.map((e) => e.port) ?? []
  const cases = [
    { what: 'revision', key: `rev:${NS}/${REV}`, host: 'drain.example.com', slow, fast, fastFile: 'pod-fast.yaml', slowFile: 'pod-slow.yaml', slice: (port: number) => endpointSlice(`${REV}-private`, [{ name: 'http', port }], [{ ip: '127.0.0.1' }], NS, `${REV}-private-fast`) },
    { what: 'Service', key: `svc:${NS}/plain:80`, host: 'plain.example.com', slow: svcSlow, fast: svcFast, fastFile: 'svc-fast.yaml', slowFile: 'svc-slow.yaml', slice: (port: number) => endpointSlice('plain', [{ name: 'http', port }], [{ ip: '127.0.0.1' }], NS, 'plain-fast') },
  ]
  for (const c of cases) {
    await waitFor(`${c.what}: only the slow pod routed`, () => ports(c.key).join() === String(c.slow.port))
    // Three requests land on the slow pod and stay there.
    const inFlight = [1, 2, 3].map((n) => get(gw.ports.http, c.host, `/held-${n}`))
    await waitForSeen(c.slow, 3)
    t.equal(c.slow.inFlight, 3, `${c.what}: three requests in flight on the slow pod`)
    // The fast pod joins, then the slow pod leaves the endpoints while its requests are in flight.
    writeManifest(dir, c.fastFile, [c.slice(c.fast.port)])
    await waitFor(`${c.what}: both pods routed`, () => ports(c.key).length === 2)
    removeFile(dir, c.slowFile)
    await waitFor(`${c.what}: slow pod removed`, () => ports(c.key).join() === String(c.fast.port))
    // New requests: all on the remaining pod, none on the leaving one.
    const seenSlow = c.slow.seen.length
    const fresh = await Promise.all(Array.from({ length: 10 }, (_, n) => get(gw.ports.http, c.host, `/new-${n}`)))
    t.same(fresh.map((r) => r.status), Array(10).fill(200), `${c.what}: 10 new requests answered 200`)
    t.same([...new Set(fresh.map((r) => r.headers['x-backend']))], [c.fast.name], `${c.what}: all by the remaining pod`)
    t.equal(c.slow.seen.length, seenSlow, `${c.what}: the leaving pod got no new request`)
    // The leaving pod now answers: its in-flight requests complete, 200, from it.
    c.slow.open()
    const done = await within(Promise.all(inFlight), `${c.what}: in-flight requests to finish`)
    t.same(done.map((r) => r.status), [200, 200, 200], `${c.what}: the three in-flight requests completed 200`)
    t.same(done.map((r) => r.body), ['/held-1', '/held-2', '/held-3'].map((u) => `${c.slow.name} ${u}`), `${c.what}: answered by the pod that left`)
  }
  t.equal(gw.plane.active, 0, 'nothing left in flight')
})

// ---- 3. a backend dying mid-response, under concurrent load ------------------------------------

t.test('a backend dying mid-response (or before it) fails only that request, under concurrent load', async (t) => {
  const dir = tempDir('edge-churn-die-')
  // One backend serves everything: the dying requests share its connection pool with the healthy ones.
  const mixed = await startBackend('mixed', (req, res, b) => {
    req.resume()
    if (req.url?.startsWith('/die')) {
      // Status, headers and a first chunk, then the connection is cut.
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': b.name })
      res.write('partial')
      setTimeout(() => res.socket?.destroy(), 5)
      return
    }
    if (req.url?.startsWith('/reset')) {
      // The request reached the app, which dies before answering: never retried, a 502 for this one.
      setTimeout(() => req.socket.destroy(), 2)
      return
    }
    jittered(req, res, b)
  })
  const other = await startBackend('other', jittered)
  t.teardown(async () => {
    await mixed.close()
    await other.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const REV = 'mixed-00001'
  writeManifest(dir, 'all.yaml', [
    revision(REV),
    revisionIngress('mixed-rev', 'mixed-rev.example.com', REV),
    endpointSlice(`${REV}-private`, [{ name: 'http', port: mixed.port }], [{ ip: '127.0.0.1' }], NS, `${REV}-private-0`),
    service('mixed', [{ name: 'http', port: 80 }]),
    endpointSlice('mixed', [{ name: 'http', port: mixed.port }], [{ ip: '127.0.0.1' }], NS, 'mixed-0'),
    service('other', [{ name: 'http', port: 80 }]),
    endpointSlice('other', [{ name: 'http', port: other.port }], [{ ip: '127.0.0.1' }], NS, 'other-0'),
    kingress('mixed', { rules: [{ hosts: ['mixed.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: NS, serviceName: 'mixed', servicePort: 80, percent: 100 }] }] } }] }),
    kingress('other', { rules: [{ hosts: ['other.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: NS, serviceName: 'other', servicePort: 80, percent: 100 }] }] } }] }),
  ])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  await waitFor('routes loaded', async () => (await get(gw.ports.http, 'other.example.com')).status === 200)

  const load = new Load(gw.ports.http, 2000)
  t.teardown(() => load.close())
  load.start('mixed-svc', () => ({ host: 'mixed.example.com', path: '/ok' }))
  load.start('mixed-rev', () => ({ host: 'mixed-rev.example.com', path: '/ok' }))
  load.start('mixed-rev-2', () => ({ host: 'mixed-rev.example.com', path: '/ok2' }))
  load.start('other', () => ({ host: 'other.example.com', path: '/' }))

  // While that runs: 20 requests whose response is cut mid-body, 10 whose connection dies before
  // any response, alternating between the Service and the revision host.
  const cut: Array<{ status: number; complete: boolean; error?: string }> = []
  const resets: Array<{ status: number; reason: string }> = []
  const agent = new Agent()
  t.teardown(() => agent.close())
  for (let i = 0; i < 30; i++) {
    // Healthy requests keep flowing between (and during) the faults.
    const before = load.outcomes.length
    await waitFor('healthy traffic between faults', () => load.outcomes.length >= before + 8)
    const host = i % 2 === 0 ? 'mixed.example.com' : 'mixed-rev.example.com'
    if (i < 20) {
      try {
        const res = await request(`http://127.0.0.1:${gw.ports.http}/die-${i}`, { headers: { host }, dispatcher: agent })
        const text = await res.body.text()
        cut.push({ status: res.statusCode, complete: true, error: `body ${JSON.stringify(text)}` })
      } catch (err) {
        cut.push({ status: 200, complete: false, error: (err as Error).message })
      }
    } else {
      const res = await request(`http://127.0.0.1:${gw.ports.http}/reset-${i}`, { headers: { host }, dispatcher: agent })
      await res.body.text()
      resets.push({ status: res.statusCode, reason: String(res.headers['x-edge-reason']) })
    }
  }
  await load.stop()

  t.equal(cut.length, 20)
  t.equal(cut.filter((c) => !c.complete).length, 20, 'each of the 20 cut responses reached its client as an error, not as a complete response', { cut })
  t.same(resets, Array(10).fill({ status: 502, reason: 'upstream-reset' }), 'each of the 10 requests whose upstream died before answering got a 502 upstream-reset')
  const dieSeen = mixed.seen.filter((s) => s.url.startsWith('/die')).length
  const resetSeen = mixed.seen.filter((s) => s.url.startsWith('/reset')).length
  t.equal(dieSeen, 20, 'no cut request was sent twice')
  t.equal(resetSeen, 10, 'no reset request was retried')
  const failed = load.outcomes.filter((o) => o.error !== undefined)
  t.ok(load.outcomes.length >= 240, `concurrent load ran alongside (${load.outcomes.length} requests)`)
  t.equal(failed.length, 0, `nobody else saw an error (${load.outcomes.length} concurrent requests)`, { failed: failed.slice(0, 10) })
  t.equal(gw.plane.active, 0, 'nothing left in flight')
})


// ---- 4. requests held for a revision when the Route moves away from it ---------------------------

t.test('requests held for a revision when the traffic moves to another one are served by the new one, not dropped', async (t) => {
  const dir = tempDir('edge-churn-held-')
  const busy: GatedBackend = await startGatedBackend('busy')
  const next = await startBackend('next')
  t.teardown(async () => {
    for (const b of [busy, next]) await b.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  // "full" has one pod at containerConcurrency 1 (one request on it, the rest queue); "cold" has no
  // pod at all (held for a cold start); "next" is where the Routes move.
  const route = (name: string, rev: string): unknown => ({
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Route',
    metadata: { name, namespace: NS },
    status: { url: `http://${name}.default.example.com`, traffic: [{ revisionName: rev, percent: 100 }] },
  })
  writeManifest(dir, 'revisions.yaml', [revision('full-00001', { containerConcurrency: 1 }), revision('cold-00001'), revision('next-00001')])
  writeManifest(dir, 'pods.yaml', [
    endpointSlice('full-00001-private', [{ name: 'http', port: busy.port }], [{ ip: '127.0.0.1' }], NS, 'full-00001-private-0'),
    endpointSlice('next-00001-private', [{ name: 'http', port: next.port }], [{ ip: '127.0.0.1' }], NS, 'next-00001-private-0'),
  ])
  writeManifest(dir, 'routes.yaml', [route('full', 'full-00001'), route('cold', 'cold-00001')])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  await waitFor('routes loaded', () => gw.plane.snapshot.backends.has(`rev:${NS}/full-00001`) && gw.plane.snapshot.backends.has(`rev:${NS}/cold-00001`))

  const onBusy = get(gw.ports.http, 'full.default.example.com', '/on-pod')
  await waitForSeen(busy, 1)
  const queued = [1, 2, 3, 4].map((n) => get(gw.ports.http, 'full.default.example.com', `/queued-${n}`))
  const cold = [1, 2, 3].map((n) => get(gw.ports.http, 'cold.default.example.com', `/cold-${n}`))
  await waitFor('4 + 3 requests held', () => gw.plane.throttlerByKey(`rev:${NS}/full-00001`)?.queued === 4 && gw.plane.throttlerByKey(`rev:${NS}/cold-00001`)?.queued === 3)

  // Both Routes move to "next"; the old revisions leave the routing table.
  writeManifest(dir, 'routes.yaml', [route('full', 'next-00001'), route('cold', 'next-00001')])
  await waitFor('old revisions out of the snapshot', () => !gw.plane.snapshot.backends.has(`rev:${NS}/full-00001`) && !gw.plane.snapshot.backends.has(`rev:${NS}/cold-00001`))

  const held = await within(Promise.all([...queued, ...cold]), 'the held requests to be answered')
  t.same(
    held.map((r) => `${r.status} ${String(r.headers['x-backend'] ?? r.headers['x-edge-reason'])}`),
    Array(7).fill('200 next'),
    'all 7 held requests were answered 200 by the revision the traffic moved to',
  )
  t.same(held.map((r) => r.json().url), ['/queued-1', '/queued-2', '/queued-3', '/queued-4', '/cold-1', '/cold-2', '/cold-3'], 'each with its own path')
  t.equal(busy.seen.length, 1, 'the old pod got nothing more')
  // The request already on the old pod finishes there.
  busy.open()
  const first = await within(onBusy, 'the request on the old pod')
  t.equal(first.status, 200)
  t.equal(first.body, 'busy /on-pod', 'the in-flight request completed on the old pod')
  t.equal(gw.plane.active, 0, 'nothing left in flight')
})
