// KIngress status: the pure condition algebra, replica discovery, and the status writer end to end —
// the fake apiserver driven by real client-node, real files-mode gateways as the replicas the prober
// dials, and leader election between two writers (one proxy per writer tells whose writes are whose).
import t from 'tap'
import type { Test } from 'tap'
import * as k8s from '@kubernetes/client-node'
import { FakeApiServer } from './fake-apiserver/server.ts'
import type { KObject } from './fake-apiserver/server.ts'
import { CLASS, endpointSlice, kingress, silentLog, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Gateway } from '../src/gateway.ts'
import { startGateway } from '../src/gateway.ts'
import { FAST_STATUS_WRITER, kubeView, tagProxy } from './helpers/status.ts'
import type { KubeView, TagProxy } from './helpers/status.ts'
import { parseConfig } from '../src/config.ts'
import type { Condition, EndpointSlice, IngressStatus } from '../src/model/k8s.ts'
import { ingressHash } from '../src/compile/hash.ts'
import { alreadyReady, desiredIngressStatus, loadBalancerDomains, statusDiff, statusEquals } from '../src/status/conditions.ts'
import type { IngressOutcome } from '../src/status/conditions.ts'
import { gatewayReplicas } from '../src/status/replicas.ts'
import { KIngressStatusWriter } from '../src/status/status-writer.ts'
import type { StatusWriterOptions } from '../src/status/status-writer.ts'
import { LeaderElector } from '../src/status/leader.ts'
import { MICROTIME_RE } from './fake-apiserver/server.ts'

const NS = 'edge-system'
const LOCAL = 'edge-gateway-local'
const KN = { group: 'networking.internal.knative.dev', version: 'v1alpha1', plural: 'ingresses' } as const
const DOMAINS = loadBalancerDomains({ publicService: 'edge-gateway', localService: LOCAL, podNamespace: NS, clusterDomain: 'cluster.local' })
const T0 = new Date('2026-01-02T03:04:05.678Z')
const T1 = new Date('2026-01-02T03:05:00.000Z')
const T2 = new Date('2026-01-02T03:06:00.000Z')

const cond = (s: IngressStatus, type: string): Condition | undefined => s.conditions?.find((c) => c.type === type)
const desired = (existing: IngressStatus | undefined, generation: number, outcome: IngressOutcome, now: Date): IngressStatus =>
  desiredIngressStatus({ existing, generation, outcome, domains: DOMAINS, now })
const READY: IngressOutcome = { kind: 'configured', lb: { kind: 'ready' } }
const PROBING: IngressOutcome = { kind: 'configured', lb: { kind: 'probing' } }

// ---------------------------------------------------------------- pure: conditions

t.test('conditions: a configured ingress every replica serves is Ready, with LB fields and observedGeneration', async (t) => {
  const s = desired(undefined, 3, READY, T0)
  t.equal(s.observedGeneration, 3)
  t.same(s.publicLoadBalancer, { ingress: [{ domainInternal: 'edge-gateway.edge-system.svc.cluster.local' }] })
  t.same(s.privateLoadBalancer, { ingress: [{ domainInternal: 'edge-gateway-local.edge-system.svc.cluster.local' }] })
  t.same(s.conditions, [
    { type: 'LoadBalancerReady', status: 'True', lastTransitionTime: '2026-01-02T03:04:05Z' },
    { type: 'NetworkConfigured', status: 'True', lastTransitionTime: '2026-01-02T03:04:05Z' },
    { type: 'Ready', status: 'True', lastTransitionTime: '2026-01-02T03:04:05Z' },
  ], 'sorted by type, whole-second timestamps, no reason/message/severity')
  t.ok(statusEquals(desired(s, 3, READY, T2), s), 'recomputing a settled status changes nothing (no write)')
})

t.test('conditions: configured but not yet probed is Uninitialized; transitions keep unchanged lastTransitionTime', async (t) => {
  const ready1 = desired(undefined, 1, READY, T0)
  const probing2 = desired(ready1, 2, PROBING, T1)
  t.equal(probing2.observedGeneration, 2)
  t.match(cond(probing2, 'NetworkConfigured'), { status: 'True', lastTransitionTime: '2026-01-02T03:04:05Z' }, 'unchanged condition keeps its time')
  t.same(cond(probing2, 'LoadBalancerReady'), { type: 'LoadBalancerReady', status: 'Unknown', reason: 'Uninitialized', message: 'Waiting for load balancer to be ready', lastTransitionTime: '2026-01-02T03:05:00Z' })
  t.same(cond(probing2, 'Ready'), { type: 'Ready', status: 'Unknown', reason: 'Uninitialized', message: 'Waiting for load balancer to be ready', lastTransitionTime: '2026-01-02T03:05:00Z' })
  t.same(probing2.publicLoadBalancer, ready1.publicLoadBalancer, 'LB fields are kept while waiting (Kourier does not clear them)')
  t.ok(statusEquals(desired(probing2, 2, PROBING, T2), probing2), 'still probing: nothing to write')

  const ready2 = desired(probing2, 2, READY, T2)
  t.match(cond(ready2, 'Ready'), { status: 'True', lastTransitionTime: '2026-01-02T03:06:00Z' })
  t.match(cond(ready2, 'LoadBalancerReady'), { status: 'True', lastTransitionTime: '2026-01-02T03:06:00Z' })
  t.match(cond(ready2, 'NetworkConfigured'), { status: 'True', lastTransitionTime: '2026-01-02T03:04:05Z' })
  t.equal(cond(ready2, 'Ready')?.reason, undefined, 'a True condition carries no reason')
  t.same(statusDiff(probing2, ready2), ['conditions'])
})

t.test('conditions: a new generation alone resets Ready until it is probed', async (t) => {
  const ready1 = desired(undefined, 1, READY, T0)
  t.notOk(alreadyReady(ready1, 2, DOMAINS), 'a Ready status of the previous generation is not ready for the new one')
  t.ok(alreadyReady(ready1, 1, DOMAINS))
  t.notOk(alreadyReady(desired(undefined, 1, PROBING, T0), 1, DOMAINS))
  const otherDomains = { public: 'x.y.svc.cluster.local', private: DOMAINS.private }
  t.notOk(alreadyReady(ready1, 1, otherDomains), 'LB fields pointing elsewhere are rewritten')
})

t.test('conditions: DomainConflict is LoadBalancerReady=False and Ready=False', async (t) => {
  const s = desired(undefined, 1, { kind: 'conflict' }, T0)
  const msg = 'Ingress rejected: ingress has a conflicting domain with another ingress'
  t.same(cond(s, 'LoadBalancerReady'), { type: 'LoadBalancerReady', status: 'False', reason: 'DomainConflict', message: msg, lastTransitionTime: '2026-01-02T03:04:05Z' })
  t.same(cond(s, 'Ready'), { type: 'Ready', status: 'False', reason: 'DomainConflict', message: msg, lastTransitionTime: '2026-01-02T03:04:05Z' })
  t.match(cond(s, 'NetworkConfigured'), { status: 'Unknown' }, 'initialised, not marked (as Kourier leaves it)')
  t.equal(s.observedGeneration, 1)
  t.equal(s.publicLoadBalancer, undefined, 'no load balancer for a rejected ingress')
  // A conflicting ingress that was Ready before (an older one took the host back) fails the same way.
  const was = desired(undefined, 1, READY, T0)
  const now = desired(was, 1, { kind: 'conflict' }, T1)
  t.match(cond(now, 'Ready'), { status: 'False', reason: 'DomainConflict', lastTransitionTime: '2026-01-02T03:05:00Z' })
  t.match(cond(now, 'NetworkConfigured'), { status: 'True', lastTransitionTime: '2026-01-02T03:04:05Z' })
})

t.test('conditions: other compile problems make Ready Unknown with the problem text; no replicas stays Uninitialized', async (t) => {
  const failed = desired(undefined, 4, { kind: 'failed', message: 'EDGE_ERR_TLS_SECRET: spec.tls[0].secretName: Secret default/x not found' }, T0)
  t.same(cond(failed, 'Ready'), { type: 'Ready', status: 'Unknown', reason: 'ReconcileIngressFailed', message: 'EDGE_ERR_TLS_SECRET: spec.tls[0].secretName: Secret default/x not found', lastTransitionTime: '2026-01-02T03:04:05Z' })
  t.equal(failed.observedGeneration, 4)
  t.not(cond(failed, 'Ready')?.status, 'True')

  const none = desired(undefined, 1, { kind: 'configured', lb: { kind: 'no-replicas', message: 'no gateway replicas are ready' } }, T0)
  t.match(cond(none, 'LoadBalancerReady'), { status: 'Unknown', reason: 'Uninitialized', message: /^Waiting for load balancer to be ready: no gateway replicas are ready/ })
  t.match(cond(none, 'Ready'), { status: 'Unknown', reason: 'Uninitialized' })
})

t.test('conditions: foreign condition types and status annotations are kept', async (t) => {
  const existing: IngressStatus = { annotations: { a: 'b' }, conditions: [{ type: 'Custom', status: 'True', lastTransitionTime: '2020-01-01T00:00:00Z' }] }
  const s = desired(existing, 1, READY, T0)
  t.same(s.annotations, { a: 'b' })
  t.same(cond(s, 'Custom'), { type: 'Custom', status: 'True', lastTransitionTime: '2020-01-01T00:00:00Z' })
  t.same(existing.conditions?.length, 1, 'input not mutated')
})

t.test('statusEquals ignores key order and undefined properties', async (t) => {
  t.ok(statusEquals({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1, d: undefined }))
  t.notOk(statusEquals({ a: [1, 2] }, { a: [2, 1] }))
  t.notOk(statusEquals({ a: 1 }, { a: '1' }))
  t.notOk(statusEquals(undefined, {}))
  t.same(statusDiff(undefined, { observedGeneration: 1 }), ['observedGeneration'])
})

// ---------------------------------------------------------------- pure: replicas

t.test('gatewayReplicas: ready addresses of the local Service slices, in the pod namespace', async (t) => {
  const slice = (svc: string, ns: string, ports: Array<{ name?: string; port: number }>, addrs: Array<{ ip: string; ready?: boolean }>): EndpointSlice =>
    endpointSlice(svc, ports, addrs, ns) as EndpointSlice
  const noReady = slice(LOCAL, NS, [{ name: 'http', port: 8081 }], [{ ip: '10.0.0.9' }])
  noReady.endpoints![0]!.conditions = {}
  const replicas = gatewayReplicas([
    slice(LOCAL, NS, [{ name: 'https', port: 8444 }, { name: 'http', port: 8081 }], [{ ip: '10.0.0.2' }, { ip: '10.0.0.1' }, { ip: '10.0.0.3', ready: false }]),
    slice(LOCAL, NS, [{ name: 'http', port: 8081 }], [{ ip: '10.0.0.1' }, { ip: 'fd00::1' }]),
    noReady,
    slice(LOCAL, 'other-ns', [{ name: 'http', port: 8081 }], [{ ip: '10.9.9.9' }]),
    slice('edge-gateway', NS, [{ name: 'http', port: 8080 }], [{ ip: '10.8.8.8' }]),
  ], NS, LOCAL, 8081)
  t.same(replicas.map((r) => r.key), ['10.0.0.1:8081', '10.0.0.2:8081', '10.0.0.9:8081', '[fd00::1]:8081'])
  t.same(gatewayReplicas([slice(LOCAL, NS, [], [{ ip: '10.0.0.1' }])], NS, LOCAL, 9999).map((r) => r.key), ['10.0.0.1:9999'], 'no port: the local listener default')
  t.same(gatewayReplicas([], NS, LOCAL, 8081), [])
})

// ---------------------------------------------------------------- integration fixtures

const HOST = 'hello.example.com'
const FAST: StatusWriterOptions = FAST_STATUS_WRITER

function spec(hosts: string[], header: string): Record<string, unknown> {
  return {
    rules: [{ hosts, visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'hello', servicePort: 80, percent: 100, appendHeaders: { 'x-version': header } }] }] } }],
  }
}

function ingressObj(name: string, s: Record<string, unknown>, created: string, cls: string | null = CLASS): KObject {
  const o = kingress(name, s, { cls, created }) as KObject
  delete (o.metadata as Record<string, unknown>).generation // the apiserver owns it
  return o
}

function writerConfig(pod: string): ReturnType<typeof parseConfig> {
  return parseConfig(['--kubernetes', '--pod-name', pod, '--pod-namespace', NS, '--local-service', LOCAL, '--public-service', 'edge-gateway'], {})
}

interface Replicas {
  a: Gateway
  b: Gateway
  dirA: string
  dirB: string
}

/** Two files-mode gateways serving `objects`, plus one EndpointSlice per replica port in the fake apiserver. */
async function startReplicas(t: Test, server: FakeApiServer, objects: unknown[]): Promise<Replicas> {
  const dirA = tempDir('edge-status-a-')
  const dirB = tempDir('edge-status-b-')
  writeManifest(dirA, 'ingress.yaml', objects)
  writeManifest(dirB, 'ingress.yaml', objects)
  const a = await startTestGateway(dirA)
  const b = await startTestGateway(dirB)
  t.teardown(async () => {
    await a.close()
    await b.close()
  })
  // One port per slice: two slices of the local Service tell the two loopback replicas apart.
  for (const [name, g] of [['local-a', a], ['local-b', b]] as const) {
    server.put('discovery.k8s.io', 'v1', 'endpointslices', endpointSlice(LOCAL, [{ name: 'http', port: g.ports.local }], [{ ip: '127.0.0.1' }], NS, name) as object)
  }
  return { a, b, dirA, dirB }
}

async function startWriter(t: Test, server: FakeApiServer, pod: string, kubeConfig: k8s.KubeConfig = server.kubeConfig()): Promise<{ writer: KIngressStatusWriter; view: KubeView }> {
  const view = await kubeView(server.kubeConfig(), CLASS)
  const writer = new KIngressStatusWriter({ kubeConfig, store: view.store, snapshot: view.snapshot, onSnapshot: view.onSnapshot, config: writerConfig(pod), log: silentLog, options: FAST })
  t.teardown(async () => {
    await writer.stop()
    await view.stop()
  })
  writer.start()
  return { writer, view }
}

const statusOf = (server: FakeApiServer, name: string): IngressStatus | undefined => server.get(KN.group, KN.version, KN.plural, 'default', name)?.status as IngressStatus | undefined
const readyOf = (server: FakeApiServer, name: string): Condition | undefined => statusOf(server, name)?.conditions?.find((c) => c.type === 'Ready')
const statusWrites = <R extends { method: string; path: string }>(reqs: readonly R[], name?: string): R[] =>
  reqs.filter((r) => r.method === 'PATCH' && r.path.endsWith('/status') && r.path.includes('/ingresses/') && (name === undefined || r.path.endsWith(`/ingresses/${name}/status`)))

// ---------------------------------------------------------------- integration: one writer

t.test('status writer against the fake apiserver with two real gateway replicas', async (t) => {
  const server = await FakeApiServer.start()
  t.teardown(() => server.stop())
  const v1 = ingressObj('hello', spec([HOST], 'v1'), '2026-01-01T00:00:00Z')
  const reps = await startReplicas(t, server, [v1])
  server.put(KN.group, KN.version, KN.plural, v1)
  const foreign = server.put(KN.group, KN.version, KN.plural, ingressObj('foreign', spec(['foreign.example.com'], 'x'), '2026-01-01T00:00:00Z', 'istio.ingress.networking.knative.dev'))
  const unclassed = server.put(KN.group, KN.version, KN.plural, ingressObj('unclassed', spec(['unclassed.example.com'], 'x'), '2026-01-01T00:00:00Z', null))
  const { writer, view } = await startWriter(t, server, 'pod-a')

  await t.test('first reconcile: Ready with observedGeneration and load balancers', async (t) => {
    await waitFor('hello Ready=True', () => readyOf(server, 'hello')?.status === 'True')
    const s = statusOf(server, 'hello')!
    t.equal(s.observedGeneration, 1)
    t.same(s.publicLoadBalancer, { ingress: [{ domainInternal: `edge-gateway.${NS}.svc.cluster.local` }] })
    t.same(s.privateLoadBalancer, { ingress: [{ domainInternal: `${LOCAL}.${NS}.svc.cluster.local` }] })
    t.match(s.conditions, [{ type: 'LoadBalancerReady', status: 'True' }, { type: 'NetworkConfigured', status: 'True' }, { type: 'Ready', status: 'True' }])
    const writes = statusWrites(server.requests, 'hello')
    t.ok(writes.length >= 1)
    t.ok(writes.every((w) => w.contentType === 'application/merge-patch+json'), 'merge patches on /status')
    t.equal(server.writes('/ingresses/hello').length, writes.length, 'nothing but /status is written')
    const all = server.writes()
    t.ok(all.some((w) => w.path.endsWith('/leases') && w.method === 'POST'), 'the Lease was created')
    t.same(all.filter((w) => w.query['fieldManager'] !== 'edge-gateway').map((w) => `${w.method} ${w.path}`), [], "every write (status patch, Lease) names the field manager 'edge-gateway'")
    const probes = writer.describe().probes as { ingresses: Array<{ key: string; hash: string; targets: Array<{ replica: string; ok: boolean }> }> }
    const entry = probes.ingresses.find((i) => i.key === 'default/hello')
    t.equal(entry?.hash, ingressHash('default', 'hello', v1.spec as never), 'probed for the hash of the stored spec')
    // Not from src/compile/hash.ts: sha256 of the Go encoding/json of spec([HOST], 'v1') followed by
    // "default" and "hello", computed with Python the way routing.test.ts's K-Network-Hash vector was.
    t.equal(entry?.hash, 'd825d7de41c375611eba61918af6ea6d0b9a54df6f7d33f246b9be5f3268ac27', 'the hash Knative computes for that spec')
    t.same(entry?.targets.map((x) => x.replica).sort(), [`127.0.0.1:${reps.a.ports.local}`, `127.0.0.1:${reps.b.ports.local}`].sort(), 'both replicas probed')
    t.ok(entry?.targets.every((x) => x.ok))
  })

  await t.test('nothing is written when nothing changed', async (t) => {
    const before = statusWrites(server.requests).length
    const passes = writer.counts.passes
    // Unrelated changes make new snapshots, so the writer re-evaluates: it must find nothing to do.
    for (let i = 0; i < 3; i++) {
      const seen = writer.counts.passes
      server.put('discovery.k8s.io', 'v1', 'endpointslices', endpointSlice('unrelated', [{ port: 80 }], [{ ip: '10.1.1.1' }], 'default', `unrelated-${i}`) as object)
      await waitFor(`a pass after unrelated change ${i}`, () => writer.counts.passes > seen)
    }
    t.ok(writer.counts.passes >= passes + 3)
    t.equal(statusWrites(server.requests).length, before, 'no status write')
  })

  await t.test('an update is Ready only once BOTH replicas serve the new hash', async (t) => {
    const co = server.kubeConfig().makeApiClient(k8s.CustomObjectsApi)
    const transitions: Array<{ gen: number | undefined; ready: string | undefined; at: number }> = []
    const sample = (): void => {
      const s = statusOf(server, 'hello')
      const last = transitions.at(-1)
      const now = { gen: s?.observedGeneration, ready: readyOf(server, 'hello')?.status, at: Date.now() }
      if (!last || last.gen !== now.gen || last.ready !== now.ready) transitions.push(now)
    }
    const track = setInterval(sample, 5)
    t.teardown(() => clearInterval(track))

    const v2spec = spec([HOST], 'v2')
    await co.patchNamespacedCustomObject({ ...KN, namespace: 'default', name: 'hello', body: { spec: v2spec } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch))
    const v2hash = ingressHash('default', 'hello', v2spec as never)
    t.equal(v2hash, '2d620be4bf03d09cb8a2267c0af690c26e75a4aa9ad16eb50c2bb8b8d5faa547', 'the hash Knative computes for v2 (computed as for v1)')
    // Replica A follows at once; replica B lags.
    writeManifest(reps.dirA, 'ingress.yaml', [{ ...v1, spec: v2spec }])
    await waitFor('observedGeneration 2, waiting for the load balancer', () => {
      const s = statusOf(server, 'hello')
      return s?.observedGeneration === 2 && s.conditions?.find((c) => c.type === 'LoadBalancerReady')?.reason === 'Uninitialized'
    })
    const target = (port: number) => {
      const probes = writer.describe().probes as { ingresses: Array<{ key: string; hash: string; targets: Array<{ replica: string; ok: boolean; attempts: number; last: string }> }> }
      const e = probes.ingresses.find((i) => i.key === 'default/hello')
      return e?.hash === v2hash ? e.targets.find((x) => x.replica === `127.0.0.1:${port}`) : undefined
    }
    await waitFor('replica A serves the new hash', () => target(reps.a.ports.local)?.ok === true)
    await waitFor('replica B probed several times with the old config', () => (target(reps.b.ports.local)?.attempts ?? 0) >= 4)
    t.equal(target(reps.b.ports.local)?.ok, false)
    t.match(target(reps.b.ports.local)?.last, /^200 hash=/, 'B answers, with the old hash')
    t.match(readyOf(server, 'hello'), { status: 'Unknown', reason: 'Uninitialized', message: 'Waiting for load balancer to be ready' }, 'not Ready while B lags')

    const bUpdated = Date.now()
    writeManifest(reps.dirB, 'ingress.yaml', [{ ...v1, spec: v2spec }])
    await waitFor('hello Ready=True for generation 2', () => {
      sample()
      return statusOf(server, 'hello')?.observedGeneration === 2 && readyOf(server, 'hello')?.status === 'True'
    })
    clearInterval(track)
    const firstReady2 = transitions.find((x) => x.gen === 2 && x.ready === 'True')
    t.ok(firstReady2 && firstReady2.at >= bUpdated, 'generation 2 became Ready only after replica B was updated')
    t.notOk(transitions.some((x) => x.gen === 2 && x.ready === 'True' && x.at < bUpdated))
    const s = statusOf(server, 'hello')!
    t.equal(s.publicLoadBalancer?.ingress?.[0]?.domainInternal, `edge-gateway.${NS}.svc.cluster.local`)
  })

  await t.test('a newer ingress claiming the same host gets DomainConflict and is not Ready', async (t) => {
    server.put(KN.group, KN.version, KN.plural, ingressObj('hello-dup', spec([HOST, 'dup-only.example.com'], 'dup'), '2026-06-01T00:00:00Z'))
    await waitFor('hello-dup DomainConflict', () => readyOf(server, 'hello-dup')?.reason === 'DomainConflict')
    const s = statusOf(server, 'hello-dup')!
    t.match(s.conditions?.find((c) => c.type === 'LoadBalancerReady'), { status: 'False', reason: 'DomainConflict', message: 'Ingress rejected: ingress has a conflicting domain with another ingress' })
    t.match(readyOf(server, 'hello-dup'), { status: 'False', reason: 'DomainConflict' })
    t.equal(s.observedGeneration, 1)
    t.equal(s.publicLoadBalancer, undefined)
    t.equal(readyOf(server, 'hello')?.status, 'True', 'the older ingress keeps its host and stays Ready')
  })

  await t.test('no gateway replicas: Uninitialized, saying so', async (t) => {
    server.remove('discovery.k8s.io', 'v1', 'endpointslices', NS, 'local-a')
    server.remove('discovery.k8s.io', 'v1', 'endpointslices', NS, 'local-b')
    server.put(KN.group, KN.version, KN.plural, ingressObj('lonely', spec(['lonely.example.com'], 'l'), '2026-06-02T00:00:00Z'))
    await waitFor('lonely waits for replicas', () => /no gateway replicas are ready/.test(readyOf(server, 'lonely')?.message ?? ''))
    t.match(readyOf(server, 'lonely'), { status: 'Unknown', reason: 'Uninitialized' })
    t.equal(readyOf(server, 'hello')?.status, 'True', 'ingresses already Ready stay Ready')
    // Replicas come back (serving `lonely` too): the ingress becomes Ready.
    for (const [dir, g, name] of [[reps.dirA, reps.a, 'local-a'], [reps.dirB, reps.b, 'local-b']] as const) {
      writeManifest(dir, 'lonely.yaml', [ingressObj('lonely', spec(['lonely.example.com'], 'l'), '2026-06-02T00:00:00Z')])
      server.put('discovery.k8s.io', 'v1', 'endpointslices', endpointSlice(LOCAL, [{ name: 'http', port: g.ports.local }], [{ ip: '127.0.0.1' }], NS, name) as object)
    }
    await waitFor('lonely Ready', () => readyOf(server, 'lonely')?.status === 'True')
  })

  await t.test('KIngresses of another class (or none) are never written', async (t) => {
    t.same(server.writes('/ingresses/foreign'), [], 'no request of any kind for the foreign-class ingress')
    t.same(server.writes('/ingresses/unclassed'), [])
    t.same(server.get(KN.group, KN.version, KN.plural, 'default', 'foreign'), foreign, 'byte-for-byte unchanged')
    t.same(server.get(KN.group, KN.version, KN.plural, 'default', 'unclassed'), unclassed)
    t.equal(writer.counts.errors, 0, 'no failed writes')
  })

  await t.test('a status computed from a stale copy is refused (resourceVersion precondition), never applied', async (t) => {
    const cur = view.store.get('Ingress', 'default/hello')!
    const serverBefore = server.get(KN.group, KN.version, KN.plural, 'default', 'hello')!
    // The writer's copy claims a newer generation but an old resourceVersion: the apiserver must say 409.
    const stale = { ...cur, metadata: { ...cur.metadata, generation: 9, resourceVersion: '1' }, spec: spec([HOST], 'stale') as never }
    const conflicts = writer.counts.conflicts
    view.store.upsert(stale, 'kubernetes')
    await waitFor('a 409 for the stale write', () => writer.counts.conflicts >= conflicts + 1)
    t.same(server.get(KN.group, KN.version, KN.plural, 'default', 'hello'), serverBefore, 'the object is unchanged')
    t.ok(statusWrites(server.requests, 'hello').some((r) => r.status === 409))
    view.store.upsert(cur, 'kubernetes') // the informer's view again
    const passes = writer.counts.passes
    await waitFor('a pass with the real copy', () => writer.counts.passes > passes)
    t.equal(statusOf(server, 'hello')?.observedGeneration, 2)
  })

  await t.test('a failing write is retried with backoff', async (t) => {
    server.failNext(2, { code: 500, match: (m, p) => m === 'PATCH' && p.endsWith('/ingresses/retry-me/status') })
    server.put(KN.group, KN.version, KN.plural, ingressObj('retry-me', spec(['retry.example.com'], 'r'), '2026-06-03T00:00:00Z'))
    await waitFor('retry-me has a status after two failures', () => statusOf(server, 'retry-me')?.observedGeneration === 1)
    const attempts = statusWrites(server.requests, 'retry-me')
    t.ok(attempts.length >= 3, `${attempts.length} write attempts`)
    t.same(attempts.slice(0, 2).map((r) => (r as { status?: number }).status), [500, 500])
    t.equal(writer.counts.errors, 2)
  })
})

// ---------------------------------------------------------------- integration: wired into a gateway

t.test('a gateway in kubernetes mode writes the status of the KIngresses it serves', async (t) => {
  const server = await FakeApiServer.start()
  t.teardown(() => server.stop())
  const dir = tempDir('edge-status-kube-')
  const config = parseConfig([
    '--kubernetes', '--kubeconfig', server.writeKubeconfig(dir), '--http-port', '0', '--local-port', '0', '--admin-port', '0',
    '--listen-address', '127.0.0.1', '--pod-name', 'gw-1', '--pod-namespace', NS, '--local-service', LOCAL,
  ], {})
  const gw = await startGateway(config, { log: silentLog, defaultMetrics: false, statusWriter: FAST })
  let closed = false
  t.teardown(() => (closed ? undefined : gw.close()))
  server.put(KN.group, KN.version, KN.plural, ingressObj('hello', spec([HOST], 'v1'), '2026-01-01T00:00:00Z'))
  server.put('discovery.k8s.io', 'v1', 'endpointslices', endpointSlice(LOCAL, [{ name: 'http', port: gw.ports.local }], [{ ip: '127.0.0.1' }], NS, 'self') as object)
  await waitFor('hello Ready=True', () => readyOf(server, 'hello')?.status === 'True')
  t.equal(statusOf(server, 'hello')?.observedGeneration, 1)
  t.equal((server.get('coordination.k8s.io', 'v1', 'leases', NS, 'edge-gateway-status')?.spec as { holderIdentity?: string })?.holderIdentity, 'gw-1')
  closed = true
  await gw.close()
  t.equal((server.get('coordination.k8s.io', 'v1', 'leases', NS, 'edge-gateway-status')?.spec as { holderIdentity?: string })?.holderIdentity, '', 'closing the gateway released the Lease')
})

// ---------------------------------------------------------------- integration: leader election

t.test('leader election: exactly one writer writes; fail-over on stop and on partition', async (t) => {
  const server = await FakeApiServer.start()
  t.teardown(() => server.stop())
  const hello = ingressObj('hello', spec([HOST], 'v1'), '2026-01-01T00:00:00Z')
  const extra = ['second', 'third'].map((n, i) => ingressObj(n, spec([`${n}.example.com`], n), `2026-01-0${i + 2}T00:00:00Z`))
  const reps = await startReplicas(t, server, [hello, ...extra])
  void reps
  server.put(KN.group, KN.version, KN.plural, hello)
  const proxies: Record<string, TagProxy> = {}
  for (const p of ['pod-a', 'pod-b', 'pod-c']) {
    proxies[p] = await tagProxy(server)
    t.teardown(() => proxies[p]!.close())
  }
  const a = await startWriter(t, server, 'pod-a', proxies['pod-a']!.kubeConfig())
  const b = await startWriter(t, server, 'pod-b', proxies['pod-b']!.kubeConfig())
  const lease = () => server.get('coordination.k8s.io', 'v1', 'leases', NS, 'edge-gateway-status')?.spec as { holderIdentity?: string; renewTime?: string; acquireTime?: string; leaseDurationSeconds?: number } | undefined

  await waitFor('hello Ready', () => readyOf(server, 'hello')?.status === 'True')
  const first = a.writer.isLeader ? 'pod-a' : 'pod-b'
  const second = first === 'pod-a' ? 'pod-b' : 'pod-a'
  const leader = first === 'pod-a' ? a : b
  const follower = first === 'pod-a' ? b : a
  t.ok(a.writer.isLeader !== b.writer.isLeader, 'exactly one leader')
  t.equal(lease()?.holderIdentity, first)
  t.match(lease()?.renewTime, MICROTIME_RE, 'MicroTime with six fractional digits')
  t.equal(lease()?.leaseDurationSeconds, 1)
  t.ok(statusWrites(proxies[first]!.requests, 'hello').length >= 1, `${first} wrote hello`)
  t.same(statusWrites(proxies[second]!.requests), [], `${second} wrote nothing`)
  t.equal(statusWrites(server.requests).length, statusWrites(proxies[first]!.requests).length, 'every status write in the apiserver log came from the leader')
  t.ok(proxies[second]!.requests.some((r) => r.path.includes('/leases/')), `${second} is campaigning`)

  await t.test('the leader stops: the other takes over and writes; settled ingresses are not rewritten', async (t) => {
    const helloWrites = statusWrites(server.requests, 'hello').length
    await leader.writer.stop()
    t.notOk(leader.writer.isLeader)
    await waitFor(`${second} leads`, () => follower.writer.isLeader)
    t.equal(lease()?.holderIdentity, second)
    server.put(KN.group, KN.version, KN.plural, extra[0]!)
    await waitFor('second Ready', () => readyOf(server, 'second')?.status === 'True')
    t.ok(statusWrites(proxies[second]!.requests, 'second').length >= 1, `${second} wrote it`)
    t.same(statusWrites(proxies[first]!.requests, 'second'), [], `${first} (stopped) did not`)
    t.equal(statusWrites(server.requests, 'hello').length, helloWrites, 'hello was already Ready: the new leader left it alone')
  })

  await t.test('a partitioned leader steps down; a candidate takes over once the Lease expires', async (t) => {
    const c = await startWriter(t, server, 'pod-c', proxies['pod-c']!.kubeConfig())
    await waitFor('pod-c campaigning', () => proxies['pod-c']!.requests.some((r) => r.path.includes('/leases/')))
    t.notOk(c.writer.isLeader, 'the Lease is held: pod-c waits')
    proxies[second]!.setDown(true)
    await waitFor(`${second} steps down after its renew deadline`, () => !follower.writer.isLeader)
    await waitFor('pod-c leads', () => c.writer.isLeader)
    t.equal(lease()?.holderIdentity, 'pod-c')
    server.put(KN.group, KN.version, KN.plural, extra[1]!)
    await waitFor('third Ready', () => readyOf(server, 'third')?.status === 'True')
    t.ok(statusWrites(proxies['pod-c']!.requests, 'third').length >= 1, 'pod-c wrote it')
    t.same(statusWrites(proxies[second]!.requests, 'third'), [])

    // The old leader reconnects: the Lease is held and renewed, so it stays a follower.
    proxies[second]!.setDown(false)
    const attempts = () => (follower.writer.describe().election as { attempts: number }).attempts
    const before = attempts()
    await waitFor(`${second} tried again a few times`, () => attempts() >= before + 3)
    t.notOk(follower.writer.isLeader)
    t.ok(c.writer.isLeader)
    t.equal(lease()?.holderIdentity, 'pod-c')
    const leaseWrites = server.writes('/leases')
    t.ok(leaseWrites.filter((w) => w.method === 'PUT').length >= 3, 'renewals, a release and take-overs were written')
    t.same(server.writes().filter((w) => w.query['fieldManager'] !== 'edge-gateway').map((w) => `${w.method} ${w.path}`), [], "every write (Lease and status) names the field manager 'edge-gateway'")
  })
})

t.test('LeaderElector: 409 on a racing write means someone else won', async (t) => {
  const server = await FakeApiServer.start()
  t.teardown(() => server.stop())
  const events: string[] = []
  const mk = (id: string) =>
    new LeaderElector({
      kubeConfig: server.kubeConfig(), namespace: NS, name: 'race', identity: id, log: silentLog,
      leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100,
      onStartedLeading: () => events.push(`start ${id}`), onStoppedLeading: () => events.push(`stop ${id}`),
    })
  // Every create of the Lease conflicts once: the elector must treat it as a lost round, not an error.
  server.failNext(1, { code: 409, reason: 'AlreadyExists', match: (m, p) => m === 'POST' && p.endsWith('/leases') })
  const x = mk('x')
  const y = mk('y')
  t.teardown(async () => {
    await x.stop()
    await y.stop()
  })
  x.start()
  y.start()
  await waitFor('one leader', () => x.isLeader || y.isLeader)
  await waitFor('a few renewals', () => x.counts.renewed + y.counts.renewed >= 3)
  t.ok(x.isLeader !== y.isLeader, 'never two leaders')
  t.ok(x.counts.conflicts + y.counts.conflicts >= 1, 'the lost race was counted as a conflict')
  t.equal(x.counts.errors + y.counts.errors, 0)
  t.equal(events.length, 1)
  t.throws(() => new LeaderElector({ kubeConfig: server.kubeConfig(), namespace: NS, name: 'bad', identity: 'z', log: silentLog, leaseDurationMs: 1000, renewDeadlineMs: 1000, retryPeriodMs: 100, onStartedLeading() {}, onStoppedLeading() {} }), /renewDeadline/)
})
