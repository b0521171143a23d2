// The incremental compiler must give, after any sequence of changes, the snapshot a from-scratch
// compile of the same objects gives, and that must be what the pre-incremental compiler gave. Random
// adds/updates/deletes of KIngress, Route, Service, EndpointSlice, Revision and Secret over a small
// pool of names and hosts, so conflicts, handovers and shared backends happen all the time.
// Seeded PRNG, so a failure reproduces.
import t from 'tap'
import { compileSnapshot, IncrementalCompiler } from '../src/compile/snapshot.ts'
import type { CompileInput } from '../src/compile/snapshot.ts'
import { PersistentMap } from '../src/compile/persistent-map.ts'
import type { Kind, KubeObject } from '../src/model/k8s.ts'
import { keyOf } from '../src/model/k8s.ts'
import type { Snapshot } from '../src/model/snapshot.ts'
import { compileSnapshot as referenceCompile } from './helpers/reference-compile.ts'
import { prng } from './helpers/prng.ts'

const opts = { ingressClass: 'edge.ingress.networking.knative.dev', domain: 'example.com', clusterDomain: 'cluster.local', translateServing: true }


function generator(rand: () => number) {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!
  const some = <T>(xs: readonly T[], max: number): T[] => Array.from({ length: 1 + Math.floor(rand() * max) }, () => pick(xs))
  const HOSTS = ['a.example.com', 'b.example.com', 'c.example.com', 'd.example.com', 'E.example.com.', 'f.svc.cluster.local']
  const TIMES = ['2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', '2026-03-01T00:00:00Z', undefined]
  const SERVICES = ['s0', 's1', 's2', 's3']
  const REVS = ['r0', 'r1', 'r2']
  const split = () => {
    const s: Record<string, unknown> = { serviceNamespace: 'default', serviceName: pick([...SERVICES, ...REVS]), servicePort: pick([80, 'http', 8080]) }
    if (rand() < 0.4) s.percent = pick([0, 50, 100])
    if (rand() < 0.2) s.appendHeaders = { 'Knative-Serving-Revision': pick(REVS) }
    return s
  }
  const path = () => {
    const p: Record<string, unknown> = { splits: rand() < 0.05 ? [] : some([0], 2).map(split) }
    if (rand() < 0.3) p.path = pick(['/a', '/b'])
    if (rand() < 0.1) p.headers = { 'X-V': { exact: 'x' } }
    return p
  }
  return {
    Ingress: (name: string): KubeObject =>
      ({
        apiVersion: 'networking.internal.knative.dev/v1alpha1',
        kind: 'Ingress',
        metadata: { name, namespace: 'default', annotations: { 'networking.knative.dev/ingress.class': rand() < 0.9 ? opts.ingressClass : 'other' }, creationTimestamp: pick(TIMES), generation: 1 + Math.floor(rand() * 3) },
        spec: {
          rules: some([0], 2).map(() => ({ hosts: rand() < 0.1 ? [] : some(HOSTS, 2), visibility: pick(['ExternalIP', 'ClusterLocal', undefined]), http: { paths: some([0], 2).map(path) } })),
          tls: rand() < 0.3 ? [{ hosts: some(HOSTS, 2), secretName: pick(['t0', 't1', 'missing']), secretNamespace: 'default' }] : undefined,
        },
      }) as unknown as KubeObject,
    Route: (name: string): KubeObject =>
      ({
        apiVersion: 'serving.knative.dev/v1',
        kind: 'Route',
        metadata: { name, namespace: 'default', creationTimestamp: pick(TIMES) },
        status: { url: `http://${name}.default.example.com`, traffic: some(REVS, 2).map((r, i) => ({ revisionName: r, percent: i === 0 ? 100 : 0, tag: rand() < 0.3 ? `t${i}` : undefined })) },
      }) as unknown as KubeObject,
    Service: (name: string): KubeObject =>
      ({
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace: 'default', labels: rand() < 0.25 ? { 'serving.knative.dev/revision': pick(REVS) } : {} },
        spec: rand() < 0.15 ? { type: 'ExternalName', externalName: 'ext.example.org', ports: [{ port: 80 }] } : { ports: some([{ name: 'http', port: 80 }, { name: 'http2', port: 8080 }, { port: 81 }], 2) },
      }) as unknown as KubeObject,
    EndpointSlice: (name: string): KubeObject =>
      ({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': pick([...SERVICES, ...REVS.map((r) => `${r}-private`)]) } },
        addressType: 'IPv4',
        endpoints: some(['10.0.0.1', '10.0.0.2', '10.0.0.3'], 3).map((ip) => ({ addresses: [ip], conditions: { ready: rand() < 0.8 } })),
        ports: [{ name: pick(['http', 'http2', undefined]), port: pick([80, 8080, 8012]) }],
      }) as unknown as KubeObject,
    Revision: (name: string): KubeObject =>
      ({ apiVersion: 'serving.knative.dev/v1', kind: 'Revision', metadata: { name, namespace: 'default' }, spec: { containerConcurrency: pick([0, 1, 10]), timeoutSeconds: pick([undefined, 30]) } }) as unknown as KubeObject,
    Secret: (name: string): KubeObject =>
      ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type: 'kubernetes.io/tls', stringData: rand() < 0.8 ? { 'tls.crt': `crt-${name}-${Math.floor(rand() * 3)}`, 'tls.key': 'key' } : {} }) as unknown as KubeObject,
    pick,
    names: {
      Ingress: ['i0', 'i1', 'i2', 'i3', 'i4', 'i5'],
      Route: ['ro0', 'ro1', 'ro2'],
      Service: SERVICES,
      EndpointSlice: ['e0', 'e1', 'e2', 'e3', 'e4'],
      Revision: REVS,
      Secret: ['t0', 't1'],
    } as Record<string, string[]>,
  }
}

/** Maps become sorted entry lists; problems are compared as a set (their order is not part of the contract). */
function canonical(s: Snapshot): unknown {
  const norm = (v: unknown): unknown => {
    if (v instanceof Map || v instanceof PersistentMap) return [...(v as ReadonlyMap<string, unknown>).entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, norm(x)])
    if (Array.isArray(v)) return v.map(norm)
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, norm(x)]))
    return v
  }
  const sortedProblems = (ps: readonly unknown[]): unknown[] => ps.map((p) => JSON.stringify(norm(p))).sort()
  return {
    publicHosts: norm(s.publicHosts),
    localHosts: norm(s.localHosts),
    backends: norm(s.backends),
    certificates: norm(s.certificates),
    revisions: norm(s.revisions),
    ingresses: s.ingresses.map((i) => ({ ...(norm(i) as object), problems: sortedProblems(i.problems) })),
    problems: sortedProblems(s.problems),
  }
}

function inputOf(objects: Map<string, KubeObject>): CompileInput {
  const of = (k: Kind) => [...objects.values()].filter((o) => o.kind === k) as never[]
  return { ingresses: of('Ingress'), routes: of('Route'), domainMappings: [], revisions: of('Revision'), services: of('Service'), endpointSlices: of('EndpointSlice'), secrets: of('Secret') }
}

const KINDS_TO_CHANGE: Kind[] = ['Ingress', 'Ingress', 'Ingress', 'Route', 'Service', 'EndpointSlice', 'EndpointSlice', 'Revision', 'Secret']

t.test('random change sequences: incremental == from scratch == the pre-incremental compiler', async (t) => {
  let checks = 0
  let contested = 0
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    const rand = prng(seed)
    const gen = generator(rand)
    const objects = new Map<string, KubeObject>()
    const inc = new IncrementalCompiler(opts)
    for (let step = 0; step < 150; step++) {
      // A burst of 1–3 changes, then one build (as a coalesced store notification).
      const burst = 1 + Math.floor(rand() * 3)
      for (let b = 0; b < burst; b++) {
        const kind = gen.pick(KINDS_TO_CHANGE)
        const name = gen.pick(gen.names[kind]!)
        const id = `${kind}/default/${name}`
        const obj = rand() < 0.25 ? undefined : (gen[kind as 'Ingress'](name) as KubeObject)
        if (obj) objects.set(id, obj)
        else objects.delete(id)
        inc.set(kind, `default/${name}`, obj)
      }
      const got = inc.build(step).snapshot
      if (got.ingresses.some((i) => i.conflicts.length > 0)) contested++
      const input = inputOf(objects)
      const fresh = compileSnapshot(input, opts, step)
      const want = canonical(fresh)
      const ok = t.same(canonical(got), want, `seed ${seed} step ${step}: incremental equals a full compile`, { diagnostic: false })
      const ref = t.same(want, canonical(referenceCompile(input, opts, step)), `seed ${seed} step ${step}: full compile equals the reference compiler`, { diagnostic: false })
      checks++
      if (!ok || !ref) {
        t.comment(JSON.stringify({ seed, step, objects: [...objects.values()] }).slice(0, 4000))
        return
      }
    }
  }
  t.ok(checks > 1000)
  t.ok(contested > checks / 10, `host conflicts were exercised (${contested} of ${checks} snapshots)`)
})

t.test('a snapshot already published never changes', async (t) => {
  const rand = prng(42)
  const gen = generator(rand)
  const inc = new IncrementalCompiler(opts)
  const kept: Array<{ snap: Snapshot; frozen: string }> = []
  for (let step = 0; step < 200; step++) {
    const kind = gen.pick(KINDS_TO_CHANGE)
    const name = gen.pick(gen.names[kind]!)
    inc.set(kind, `default/${name}`, rand() < 0.25 ? undefined : gen[kind as 'Ingress'](name))
    const snap = inc.build(step).snapshot
    if (step % 20 === 0) kept.push({ snap, frozen: JSON.stringify(canonical(snap)) })
  }
  for (const k of kept) t.equal(JSON.stringify(canonical(k.snap)), k.frozen, `snapshot ${k.snap.version} is as it was published`)
})

t.test('an EndpointSlice change touches only its backend', async (t) => {
  const rand = prng(7)
  const gen = generator(rand)
  const inc = new IncrementalCompiler(opts)
  const ing = (name: string, svc: string) =>
    ({
      apiVersion: 'networking.internal.knative.dev/v1alpha1',
      kind: 'Ingress',
      metadata: { name, namespace: 'default', annotations: { 'networking.knative.dev/ingress.class': opts.ingressClass } },
      spec: { rules: [{ hosts: [`${name}.example.com`], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: svc, servicePort: 80 }] }] } }] },
    }) as unknown as KubeObject
  for (let i = 0; i < 50; i++) inc.set('Ingress', `default/x${i}`, ing(`x${i}`, `svc${i}`))
  const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'svc7', namespace: 'default' }, spec: { ports: [{ port: 80 }] } } as unknown as KubeObject
  inc.set('Service', 'default/svc7', svc)
  const before = inc.build(1).snapshot
  const slice = gen.EndpointSlice('e7') as unknown as { metadata: { labels: Record<string, string> }; ports: unknown[]; endpoints: unknown[] }
  slice.metadata.labels['kubernetes.io/service-name'] = 'svc7'
  slice.ports = [{ port: 80 }]
  slice.endpoints = [{ addresses: ['10.1.1.1'] }]
  inc.set('EndpointSlice', keyOf((slice as unknown as KubeObject).metadata), slice as unknown as KubeObject)
  const r = inc.build(2)
  t.same([...r.changedBackends], ['svc:default/svc7:80'])
  t.same(r.snapshot.backends.get('svc:default/svc7:80')!.endpoints.map((e) => e.address), ['10.1.1.1:80'])
  t.equal(r.snapshot.localHosts.get('x8.example.com'), before.localHosts.get('x8.example.com'), 'other hosts keep their entries')
  t.not(r.snapshot.localHosts.get('x7.example.com'), before.localHosts.get('x7.example.com'), 'the host using it gets the new backend')
  t.equal(r.snapshot.localHosts.get('x7.example.com')!.paths[0]!.splits[0]!.backend, r.snapshot.backends.get('svc:default/svc7:80'))
  t.equal(before.backends.get('svc:default/svc7:80')!.endpoints.length, 0, 'the old snapshot is untouched')
})

t.test('the holder of a host goes away: the next-oldest claimant gets it, and its other hosts follow', async (t) => {
  const inc = new IncrementalCompiler(opts)
  const ing = (name: string, created: string, hosts: string[]) =>
    ({
      apiVersion: 'networking.internal.knative.dev/v1alpha1',
      kind: 'Ingress',
      metadata: { name, namespace: 'default', creationTimestamp: created, annotations: { 'networking.knative.dev/ingress.class': opts.ingressClass } },
      spec: { rules: [{ hosts, http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: name, servicePort: 80 }] }] } }] },
    }) as unknown as KubeObject
  inc.set('Ingress', 'default/a', ing('a', '2026-01-01T00:00:00Z', ['h1.example.com']))
  inc.set('Ingress', 'default/b', ing('b', '2026-02-01T00:00:00Z', ['h1.example.com', 'h2.example.com']))
  inc.set('Ingress', 'default/c', ing('c', '2026-03-01T00:00:00Z', ['h2.example.com', 'h3.example.com']))
  let s = inc.build(1).snapshot
  t.same(s.ingresses.map((i) => [i.ref.name, i.hosts]), [['a', ['h1.example.com']], ['b', []], ['c', ['h2.example.com', 'h3.example.com']]])
  inc.set('Ingress', 'default/a', undefined)
  s = inc.build(2).snapshot
  t.same(s.ingresses.map((i) => [i.ref.name, i.hosts]), [['b', ['h1.example.com', 'h2.example.com']], ['c', []]], 'b takes h1 and h2; c loses h2 and so is rejected whole')
  t.equal(s.localHosts.get('h3.example.com'), undefined)
  t.match(s.ingresses[1]!.conflicts, [{ host: 'h2.example.com', heldBy: 'Ingress default/b' }])
})
