// Drives test/fake-apiserver with the real @kubernetes/client-node 2.0.1 (no mocks): the fake must speak the
// wire protocol well enough for the generated API classes, Watch and ListWatch (informers).
//
// client-node quirks pinned down here (see also the final section of each test):
// - A watch socket that dies mid-stream (dropWatches, apiserver restart) makes the informer emit `error`
//   ("TypeError: terminated", cause UND_ERR_SOCKET) and STOP. Only a clean end of the stream, a 410 and
//   client-side inactivity timeouts (TimeoutError) are retried by ListWatch itself. Callers must call
//   start() again from the error handler; it resumes from the last resourceVersion.
// - V1MicroTime: a plain `Date` in V1LeaseSpec.renewTime/acquireTime is sent as Date#toJSON(), i.e. 3 fractional
//   digits ("…:03.123Z"), which the apiserver rejects. `new V1MicroTime(...)` overrides toISOString() to pad to
//   6 digits ("…:03.123000Z"). On read, the serializer does not know the type 'V1MicroTime' and leaves the value
//   as the raw string (typed V1MicroTime, really a string).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import t from 'tap'
import { FakeApiServer, MICROTIME_RE } from './fake-apiserver/server.ts'
import type { FakeApiServerOptions } from './fake-apiserver/server.ts'

type Obj = k8s.KubernetesObject & { spec?: any; status?: any; [k: string]: any }

const KN = { group: 'networking.internal.knative.dev', version: 'v1alpha1', plural: 'ingresses' } as const
const INGRESS_PATH = '/apis/networking.internal.knative.dev/v1alpha1/ingresses'
const merge = () => k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch)

/** Poll `cond` every 20 ms for up to `capMs`; fail with `what` if it never holds. */
async function waitFor(what: string, cond: () => boolean, capMs = 10_000): Promise<void> {
  const deadline = Date.now() + capMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${capMs} ms waiting for: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

interface ApiErr {
  code: number
  status: { kind?: string; status?: string; reason?: string; message?: string; code?: number }
}

/** Expect `p` to fail with an ApiException; returns the HTTP code and the parsed Status body. */
async function apiErr(p: Promise<unknown>): Promise<ApiErr> {
  try {
    await p
  } catch (e) {
    if (e instanceof k8s.ApiException) {
      const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body
      return { code: e.code, status: body }
    }
    throw e
  }
  throw new Error('expected the call to fail with an ApiException')
}

async function setup(t: { teardown(fn: () => unknown): void }, opts: FakeApiServerOptions = {}) {
  const server = await FakeApiServer.start(opts)
  const kc = server.kubeConfig()
  const informers: Array<{ stop(): Promise<void> }> = []
  t.teardown(async () => {
    for (const i of informers) await i.stop()
    await server.stop()
  })
  return {
    server,
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    co: kc.makeApiClient(k8s.CustomObjectsApi),
    coord: kc.makeApiClient(k8s.CoordinationV1Api),
    track<T extends { stop(): Promise<void> }>(i: T): T {
      informers.push(i)
      return i
    },
  }
}

function ingress(name: string, labels: Record<string, string> = {}, host = `${name}.example.com`): Obj {
  return {
    apiVersion: 'networking.internal.knative.dev/v1alpha1',
    kind: 'Ingress',
    metadata: { name, namespace: 'default', labels },
    spec: { rules: [{ hosts: [host], visibility: 'ExternalIP' }] },
  }
}

interface Recorded {
  events: string[]
  errors: unknown[]
  connects: number
}

function record(inf: k8s.Informer<Obj>): Recorded {
  const r: Recorded = { events: [], errors: [], connects: 0 }
  inf.on('add', (o) => r.events.push(`add ${o.metadata?.name}`))
  inf.on('update', (o) => r.events.push(`update ${o.metadata?.name} ${o.metadata?.resourceVersion}`))
  inf.on('delete', (o) => r.events.push(`delete ${o.metadata?.name}`))
  inf.on('connect', () => r.connects++)
  inf.on('error', (e) => r.errors.push(e))
  return r
}

function ingressInformer(s: Awaited<ReturnType<typeof setup>>, labelSelector?: string): k8s.Informer<Obj> & k8s.ObjectCache<Obj> {
  const inf = k8s.makeInformer<Obj>(s.kc, INGRESS_PATH,
    () => s.co.listClusterCustomObject({ ...KN, labelSelector }) as Promise<k8s.KubernetesListObject<Obj>>,
    labelSelector)
  return s.track(inf)
}

/** An ingress informer, recorded and started, once it has seen the add of each of `names`. */
async function startedIngressInformer(s: Awaited<ReturnType<typeof setup>>, what: string, ...names: string[]): Promise<{ inf: k8s.Informer<Obj> & k8s.ObjectCache<Obj>; rec: Recorded }> {
  const inf = ingressInformer(s)
  const rec = record(inf)
  await inf.start()
  await waitFor(what, () => names.every((n) => rec.events.includes(`add ${n}`)))
  return { inf, rec }
}

t.test('kubeconfig file and KubeConfig point at the fake', async (t) => {
  const s = await setup(t)
  const dir = mkdtempSync(join(tmpdir(), 'fake-apiserver-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = s.server.writeKubeconfig(dir)
  const kc = new k8s.KubeConfig()
  kc.loadFromFile(path)
  t.equal(kc.getCurrentCluster()?.server, s.server.url)
  t.equal(kc.getCurrentCluster()?.skipTLSVerify, true)
  t.match(readFileSync(path, 'utf8'), /insecure-skip-tls-verify/)
  const list = await kc.makeApiClient(k8s.CoreV1Api).listNamespacedService({ namespace: 'default' })
  t.same(list.items, [])
  // The token is checked.
  const bad = new k8s.KubeConfig()
  bad.loadFromOptions({
    clusters: [{ name: 'c', server: s.server.url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'wrong' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  })
  const e = await apiErr(bad.makeApiClient(k8s.CoreV1Api).listNamespacedService({ namespace: 'default' }))
  t.equal(e.code, 401)
})

t.test('CoreV1Api services: create, get, list, patch, replace, delete', async (t) => {
  const s = await setup(t)
  const created = await s.core.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'svc-a', labels: { app: 'a', tier: 'web' } }, spec: { ports: [{ port: 80 }] } },
  })
  t.equal(created.metadata?.name, 'svc-a')
  t.equal(created.metadata?.namespace, 'default')
  t.ok(created.metadata?.uid, 'uid assigned')
  t.match(created.metadata?.resourceVersion, /^\d+$/)
  t.ok(created.metadata?.creationTimestamp instanceof Date, 'client parsed creationTimestamp')
  const raw = s.server.get('', 'v1', 'services', 'default', 'svc-a')
  t.match(raw?.metadata.creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'RFC 3339, seconds precision')

  const dup = await apiErr(s.core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'svc-a' } } }))
  t.equal(dup.code, 409)
  t.match(dup.status, { kind: 'Status', status: 'Failure', reason: 'AlreadyExists', code: 409, message: 'services "svc-a" already exists' })

  await s.core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'svc-b', labels: { app: 'b' } } } })
  await s.core.createNamespacedService({ namespace: 'other', body: { metadata: { name: 'svc-c', labels: { app: 'a', skip: 'y' } } } })

  const got = await s.core.readNamespacedService({ namespace: 'default', name: 'svc-a' })
  t.equal(got.spec?.ports?.[0]?.port, 80)
  const nf = await apiErr(s.core.readNamespacedService({ namespace: 'default', name: 'nope' }))
  t.match(nf, { code: 404, status: { reason: 'NotFound', message: 'services "nope" not found' } })

  const names = (l: k8s.V1ServiceList) => l.items.map((i) => i.metadata?.name)
  const list = await s.core.listNamespacedService({ namespace: 'default' })
  t.same(names(list), ['svc-a', 'svc-b'])
  t.equal(list.kind, 'ServiceList')
  t.equal(list.metadata?.resourceVersion, s.server.resourceVersion)
  t.equal(list.items[0]?.kind, undefined, 'built-in list items carry no kind (as the real server)')
  t.same(names(await s.core.listServiceForAllNamespaces()), ['svc-c', 'svc-a', 'svc-b'].sort((a, b) => {
    const ns = (n: string) => (n === 'svc-c' ? 'other' : 'default')
    return `${ns(a)}/${a}`.localeCompare(`${ns(b)}/${b}`)
  }))
  t.same(names(await s.core.listServiceForAllNamespaces({ labelSelector: 'app=a' })), ['svc-a', 'svc-c'])
  t.same(names(await s.core.listServiceForAllNamespaces({ labelSelector: 'app=a,!skip' })), ['svc-a'])
  t.same(names(await s.core.listServiceForAllNamespaces({ labelSelector: 'app!=a' })), ['svc-b'])
  t.same(names(await s.core.listServiceForAllNamespaces({ labelSelector: 'tier' })), ['svc-a'])
  t.same(names(await s.core.listServiceForAllNamespaces({ labelSelector: 'app in (a,b),skip notin (y)' })), ['svc-a', 'svc-b'])
  t.same(names(await s.core.listServiceForAllNamespaces({ fieldSelector: 'metadata.name=svc-b' })), ['svc-b'])
  t.same(names(await s.core.listServiceForAllNamespaces({ fieldSelector: 'metadata.namespace!=default' })), ['svc-c'])
  t.equal((await apiErr(s.core.listServiceForAllNamespaces({ fieldSelector: 'spec.type=x' }))).code, 400)

  // Merge patch (labels) keeps the rest.
  const p1 = await s.core.patchNamespacedService({ namespace: 'default', name: 'svc-a', body: { metadata: { labels: { tier: null, x: '1' } } } }, merge())
  t.same(p1.metadata?.labels, { app: 'a', x: '1' })
  t.equal(p1.spec?.ports?.[0]?.port, 80)
  t.ok(Number(p1.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion))

  // JSON patch is client-node's default Content-Type for patch* calls.
  const p2 = await s.core.patchNamespacedService({
    namespace: 'default', name: 'svc-a',
    body: [
      { op: 'test', path: '/metadata/labels/x', value: '1' },
      { op: 'replace', path: '/spec/ports/0/port', value: 8080 },
      { op: 'add', path: '/metadata/annotations', value: { 'a/b': 'c' } },
      { op: 'remove', path: '/metadata/labels/x' },
    ],
  })
  t.equal(p2.spec?.ports?.[0]?.port, 8080)
  t.same(p2.metadata?.annotations, { 'a/b': 'c' })
  t.same(p2.metadata?.labels, { app: 'a' })
  const failedTest = await apiErr(s.core.patchNamespacedService({
    namespace: 'default', name: 'svc-a', body: [{ op: 'test', path: '/spec/ports/0/port', value: 1 }, { op: 'remove', path: '/spec' }],
  }))
  t.equal(failedTest.code, 422)
  t.equal(s.server.get('', 'v1', 'services', 'default', 'svc-a')?.spec !== undefined, true, 'failed json patch changed nothing')

  const smp = await apiErr(s.core.patchNamespacedService({ namespace: 'default', name: 'svc-a', body: { spec: {} } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch)))
  t.match(smp, { code: 415, status: { reason: 'UnsupportedMediaType' } })

  // Replace: stale resourceVersion → 409, none → 422, current → 200.
  const stale = await apiErr(s.core.replaceNamespacedService({ namespace: 'default', name: 'svc-a', body: { ...got } }))
  t.match(stale, { code: 409, status: { reason: 'Conflict' } })
  t.match(stale.status.message, /the object has been modified/)
  const noRv = await apiErr(s.core.replaceNamespacedService({
    namespace: 'default', name: 'svc-a', body: { metadata: { name: 'svc-a' }, spec: {} },
  }))
  t.match(noRv, { code: 422, status: { reason: 'Invalid' } })
  t.match(noRv.status.message, /metadata\.resourceVersion: Invalid value: 0x0: must be specified for an update/)
  const cur = await s.core.readNamespacedService({ namespace: 'default', name: 'svc-a' })
  cur.spec = { ports: [{ port: 9090 }] }
  const replaced = await s.core.replaceNamespacedService({ namespace: 'default', name: 'svc-a', body: cur })
  t.equal(replaced.spec?.ports?.[0]?.port, 9090)
  t.equal(replaced.metadata?.uid, created.metadata?.uid)

  // A no-op write keeps the resourceVersion.
  const again = await s.core.replaceNamespacedService({ namespace: 'default', name: 'svc-a', body: replaced })
  t.equal(again.metadata?.resourceVersion, replaced.metadata?.resourceVersion, 'no-op update: same resourceVersion')

  const deleted = await s.core.deleteNamespacedService({ namespace: 'default', name: 'svc-a' })
  t.equal(deleted.metadata?.name, 'svc-a')
  t.equal((await apiErr(s.core.readNamespacedService({ namespace: 'default', name: 'svc-a' }))).code, 404)
  t.equal((await apiErr(s.core.deleteNamespacedService({ namespace: 'default', name: 'svc-a' }))).code, 404)

  // The request log lets tests assert what was (not) written.
  t.equal(s.server.writes('/services/svc-b').length, 0, 'svc-b never written after create')
  t.ok(s.server.requests.some((r) => r.method === 'PATCH' && r.contentType === 'application/merge-patch+json'))
  t.ok(s.server.requests.some((r) => r.method === 'PATCH' && r.contentType === 'application/json-patch+json'))
})

t.test('KIngress via CustomObjectsApi: generation, status subresource, conflicts', async (t) => {
  const s = await setup(t)
  const body = ingress('hello')
  body.status = { observedGeneration: 99 }
  const created = (await s.co.createNamespacedCustomObject({ ...KN, namespace: 'default', body })) as Obj
  t.equal(created.metadata?.generation, 1)
  t.equal(created.status, undefined, 'status dropped on create (status subresource)')
  t.equal(created.kind, 'Ingress')

  const got = (await s.co.getNamespacedCustomObject({ ...KN, namespace: 'default', name: 'hello' })) as Obj
  t.same(got.spec, body.spec)

  // Status patch: merge patch, as documented in node-deps.md §3.4.
  const st = (await s.co.patchNamespacedCustomObjectStatus({
    ...KN, namespace: 'default', name: 'hello',
    body: {
      spec: { rules: [] }, // ignored on /status
      status: { observedGeneration: 1, conditions: [{ type: 'Ready', status: 'True' }] },
    },
  }, merge())) as Obj
  t.equal(st.metadata?.generation, 1, 'status patch does not bump generation')
  t.same(st.status, { observedGeneration: 1, conditions: [{ type: 'Ready', status: 'True' }] })
  t.same(st.spec, body.spec, 'spec changes through /status are ignored')
  t.ok(Number(st.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion))
  const statusPatch = s.server.requests.find((r) => r.path.endsWith('/ingresses/hello/status'))
  t.equal(statusPatch?.contentType, 'application/merge-patch+json')

  // Without the header, client-node sends application/json-patch+json: the body must then be an op list.
  const jp = await apiErr(s.co.patchNamespacedCustomObjectStatus({
    ...KN, namespace: 'default', name: 'hello', body: { status: { observedGeneration: 1 } },
  }))
  t.equal(jp.code, 400, 'a merge-patch body sent as json-patch is rejected')
  const viaJsonPatch = (await s.co.patchNamespacedCustomObjectStatus({
    ...KN, namespace: 'default', name: 'hello',
    body: [{ op: 'replace', path: '/status/conditions/0/status', value: 'Unknown' }],
  })) as Obj
  t.equal(viaJsonPatch.status.conditions[0].status, 'Unknown')

  // Main resource: spec change bumps generation, status in the body is ignored.
  const specPatch = (await s.co.patchNamespacedCustomObject({
    ...KN, namespace: 'default', name: 'hello',
    body: { spec: { rules: [{ hosts: ['new.example.com'], visibility: 'ExternalIP' }] }, status: { observedGeneration: 7 } },
  }, merge())) as Obj
  t.equal(specPatch.metadata?.generation, 2, 'spec change bumps generation')
  t.equal(specPatch.status.observedGeneration, 1, 'status is not written through the main resource')

  // Label-only change: new resourceVersion, same generation.
  const labelPatch = (await s.co.patchNamespacedCustomObject({
    ...KN, namespace: 'default', name: 'hello', body: { metadata: { labels: { l: 'v' } } },
  }, merge())) as Obj
  t.equal(labelPatch.metadata?.generation, 2)
  t.not(labelPatch.metadata?.resourceVersion, specPatch.metadata?.resourceVersion)

  // Status-only change through the main resource is a no-op: same resourceVersion, no event.
  const noop = (await s.co.patchNamespacedCustomObject({
    ...KN, namespace: 'default', name: 'hello', body: { status: { observedGeneration: 42 } },
  }, merge())) as Obj
  t.equal(noop.metadata?.resourceVersion, labelPatch.metadata?.resourceVersion)

  // Replace with a stale resourceVersion (the object read before the patches) → 409.
  const conflict = await apiErr(s.co.replaceNamespacedCustomObject({ ...KN, namespace: 'default', name: 'hello', body: got }))
  t.match(conflict, { code: 409, status: { reason: 'Conflict' } })
  t.match(conflict.status.message, /^Operation cannot be fulfilled on ingresses\.networking\.internal\.knative\.dev "hello"/)
  // Merge patch carrying a stale resourceVersion is a precondition → 409 as well.
  const stalePatch = await apiErr(s.co.patchNamespacedCustomObjectStatus({
    ...KN, namespace: 'default', name: 'hello',
    body: { metadata: { resourceVersion: got.metadata?.resourceVersion }, status: { observedGeneration: 2 } },
  }, merge()))
  t.equal(stalePatch.code, 409)

  // Unknown resources and subresources are 404.
  const unknown = await apiErr(s.co.getNamespacedCustomObject({ group: 'x.io', version: 'v1', plural: 'foos', namespace: 'default', name: 'a' }))
  t.equal(unknown.code, 404)

  // Finalizers: delete sets deletionTimestamp; removing the last finalizer deletes.
  await s.co.patchNamespacedCustomObject({ ...KN, namespace: 'default', name: 'hello', body: { metadata: { finalizers: ['ingresses.networking.internal.knative.dev'] } } }, merge())
  const del = (await s.co.deleteNamespacedCustomObject({ ...KN, namespace: 'default', name: 'hello' })) as Obj
  t.ok(del.metadata?.deletionTimestamp, 'deletionTimestamp set')
  t.ok(s.server.get(KN.group, KN.version, KN.plural, 'default', 'hello'), 'still there while finalizers remain')
  await s.co.patchNamespacedCustomObject({ ...KN, namespace: 'default', name: 'hello', body: [{ op: 'remove', path: '/metadata/finalizers' }] })
  t.equal(s.server.get(KN.group, KN.version, KN.plural, 'default', 'hello'), undefined, 'gone after the last finalizer')
})

t.test('other Knative resources are served at their real paths', async (t) => {
  const s = await setup(t)
  const kinds: Array<[string, string, string, string]> = [
    ['serving.knative.dev', 'v1', 'routes', 'Route'],
    ['serving.knative.dev', 'v1', 'revisions', 'Revision'],
    ['serving.knative.dev', 'v1', 'services', 'Service'],
    ['serving.knative.dev', 'v1beta1', 'domainmappings', 'DomainMapping'],
  ]
  for (const [group, version, plural, kind] of kinds) {
    await s.co.createNamespacedCustomObject({ group, version, plural, namespace: 'ns1', body: { apiVersion: `${group}/${version}`, kind, metadata: { name: 'x' }, spec: {} } })
    const l = (await s.co.listClusterCustomObject({ group, version, plural })) as { kind: string; items: Obj[] }
    t.equal(l.kind, `${kind}List`)
    t.equal(l.items[0]?.kind, kind, 'custom resource list items keep kind')
  }
  const slices = kc(s).makeApiClient(k8s.DiscoveryV1Api)
  await slices.createNamespacedEndpointSlice({
    namespace: 'ns1',
    body: { metadata: { name: 'es', labels: { 'kubernetes.io/service-name': 'x' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.0.0.1'] }] },
  })
  const es = await slices.listEndpointSliceForAllNamespaces({ labelSelector: 'kubernetes.io/service-name=x' })
  t.equal(es.items[0]?.endpoints?.[0]?.addresses?.[0], '10.0.0.1')
  await s.core.createNamespacedSecret({ namespace: 'ns1', body: { metadata: { name: 'tls' }, data: { 'tls.crt': 'YQ==' } } })
  t.equal((await s.core.readNamespacedSecret({ namespace: 'ns1', name: 'tls' })).data?.['tls.crt'], 'YQ==')
  t.ok(s.server.requests.some((r) => r.path === '/apis/serving.knative.dev/v1beta1/namespaces/ns1/domainmappings'))
})
function kc(s: { kc: k8s.KubeConfig }): k8s.KubeConfig {
  return s.kc
}

t.test('informer sees add, update, delete', async (t) => {
  const s = await setup(t)
  await s.co.createNamespacedCustomObject({ ...KN, namespace: 'default', body: ingress('pre') })
  const { inf, rec } = await startedIngressInformer(s, 'initial add', 'pre')
  t.equal(s.server.watchCount(), 1)

  await s.co.createNamespacedCustomObject({ ...KN, namespace: 'default', body: ingress('one') })
  await waitFor('add one', () => rec.events.includes('add one'))
  const st = (await s.co.patchNamespacedCustomObjectStatus({ ...KN, namespace: 'default', name: 'one', body: { status: { observedGeneration: 1 } } }, merge())) as Obj
  await waitFor('status update', () => rec.events.includes(`update one ${st.metadata?.resourceVersion}`))
  t.same((inf.get('one', 'default') as Obj).status, { observedGeneration: 1 })
  await s.co.deleteNamespacedCustomObject({ ...KN, namespace: 'default', name: 'pre' })
  await waitFor('delete pre', () => rec.events.includes('delete pre'))
  t.same(inf.list().map((o) => o.metadata?.name), ['one'])
  t.same(rec.errors, [])

  // A clean end of the watch stream (server-side timeout) is retried by ListWatch itself, from the last RV.
  const lists = () => s.server.requests.filter((r) => r.path === INGRESS_PATH && !r.watch).length
  const listsBefore = lists()
  const connectsBefore = rec.connects
  s.server.closeWatches()
  await waitFor('reconnect after clean close', () => rec.connects > connectsBefore && s.server.watchCount() === 1)
  s.server.put(KN.group, KN.version, KN.plural, ingress('two'))
  await waitFor('add two after reconnect', () => rec.events.includes('add two'))
  t.equal(lists(), listsBefore, 'no relist after a clean close')
  t.same(rec.errors, [])
})

t.test('informer recovers after dropWatches() without missing an update', async (t) => {
  const s = await setup(t)
  s.server.put(KN.group, KN.version, KN.plural, ingress('a'))
  const { inf, rec } = await startedIngressInformer(s, 'add a', 'a')
  const listsBefore = s.server.requests.filter((r) => r.path === INGRESS_PATH && !r.watch).length

  s.server.dropWatches()
  // client-node 2.0.1 reports an abruptly closed watch as an error and stops the informer.
  await waitFor('informer error after drop', () => rec.errors.length === 1)
  const err = rec.errors[0] as Error & { cause?: { code?: string } }
  t.equal(err.message, 'terminated')
  t.equal(err.cause?.code, 'UND_ERR_SOCKET')
  t.equal(s.server.watchCount(), 0)

  // Changes made while nobody watches.
  const patched = (await s.co.patchNamespacedCustomObject({
    ...KN, namespace: 'default', name: 'a', body: { spec: { rules: [{ hosts: ['changed.example.com'] }] } },
  }, merge())) as Obj
  s.server.put(KN.group, KN.version, KN.plural, ingress('b'))

  await inf.start() // what an error handler must do (with backoff in real code)
  await waitFor('missed update delivered', () => rec.events.includes(`update a ${patched.metadata?.resourceVersion}`))
  await waitFor('missed add delivered', () => rec.events.includes('add b'))
  const watches = s.server.requests.filter((r) => r.path === INGRESS_PATH && r.watch)
  t.ok(Number(watches.at(-1)?.query['resourceVersion']) < Number(patched.metadata?.resourceVersion), 'resumed from the last seen resourceVersion')
  t.equal(s.server.requests.filter((r) => r.path === INGRESS_PATH && !r.watch).length, listsBefore, 'resumed without relisting')
  t.equal((inf.get('a', 'default') as Obj).spec.rules[0].hosts[0], 'changed.example.com')
})

for (const mode of ['event', 'http'] as const) {
  t.test(`410 (${mode === 'event' ? 'ERROR event' : 'HTTP 410'}) makes the informer relist and emit delete`, async (t) => {
    const s = await setup(t, { expiredMode: mode })
    s.server.put(KN.group, KN.version, KN.plural, ingress('keep'))
    s.server.put(KN.group, KN.version, KN.plural, ingress('gone'))
    const { inf, rec } = await startedIngressInformer(s, 'initial adds', 'keep', 'gone')

    s.server.dropWatches()
    await waitFor('informer stopped', () => rec.errors.length === 1)
    s.server.remove(KN.group, KN.version, KN.plural, 'default', 'gone')
    s.server.put(KN.group, KN.version, KN.plural, ingress('new'))
    s.server.expireHistory()

    await inf.start()
    await waitFor('delete of an object removed while disconnected', () => rec.events.includes('delete gone'))
    await waitFor('add of an object created while disconnected', () => rec.events.includes('add new'))
    t.same(inf.list().map((o) => o.metadata?.name).sort(), ['keep', 'new'])
    const watches = s.server.requests.filter((r) => r.path === INGRESS_PATH && r.watch)
    const expiredWatch = watches[1]
    t.equal(expiredWatch?.status, mode === 'http' ? 410 : 200)
    t.equal(s.server.requests.filter((r) => r.path === INGRESS_PATH && !r.watch).length, 2, 'relisted once')
    t.equal(rec.errors.length, 1, 'the 410 itself is not reported as an error')
    await waitFor('watching again', () => s.server.watchCount() === 1)
  })
}

t.test('expireWatches(): a 410 on an open watch is handled inside ListWatch (relist, no error)', async (t) => {
  const s = await setup(t)
  s.server.put(KN.group, KN.version, KN.plural, ingress('a'))
  const { inf, rec } = await startedIngressInformer(s, 'add a', 'a')
  s.server.expireWatches()
  await waitFor('relisted and watching again', () =>
    s.server.requests.filter((r) => r.path === INGRESS_PATH && !r.watch).length === 2 && s.server.watchCount() === 1)
  s.server.put(KN.group, KN.version, KN.plural, ingress('b'))
  await waitFor('add b', () => rec.events.includes('add b'))
  t.same(rec.errors, [])
  t.equal(rec.events.filter((e) => e === 'add a').length, 1, 'relist of an unchanged object emits nothing')
})

t.test('restart(): watches die, history is gone, informer relists; objects survive', async (t) => {
  const s = await setup(t)
  s.server.put(KN.group, KN.version, KN.plural, ingress('a'))
  const inf = ingressInformer(s)
  const rec = record(inf)
  // The error handler every real informer needs: restart with a delay (real code: jittered backoff).
  let done = false
  t.teardown(() => {
    done = true
  })
  inf.on('error', () => {
    if (!done) setTimeout(() => void (done ? undefined : inf.start()), 50).unref()
  })
  await inf.start()
  await waitFor('add a', () => rec.events.includes('add a'))
  const rvBefore = Number(s.server.resourceVersion)
  const port = s.server.port
  await s.server.restart()
  t.equal(s.server.port, port, 'same port')
  t.ok(Number(s.server.resourceVersion) >= rvBefore + 1000, 'resourceVersion jumped')
  s.server.put(KN.group, KN.version, KN.plural, ingress('b'))
  await waitFor('add b after restart', () => rec.events.includes('add b'))
  t.ok(inf.get('a', 'default'), 'a survived')

  await s.server.restart({ wipe: true })
  await waitFor('delete a after a wiping restart', () => rec.events.includes('delete a') && rec.events.includes('delete b'))
  t.same(inf.list(), [])
})

t.test('setDown() refuses connections, failNext() injects Status errors', async (t) => {
  const s = await setup(t)
  await s.server.setDown(true)
  let caught: unknown
  try {
    await s.core.listNamespacedService({ namespace: 'default' })
  } catch (e) {
    caught = e
  }
  t.ok(caught instanceof Error && !(caught instanceof k8s.ApiException), 'a connection error, not an HTTP error')
  t.match(String((caught as Error & { cause?: unknown }).cause), /ECONNREFUSED/)
  await s.server.setDown(false)
  t.same((await s.core.listNamespacedService({ namespace: 'default' })).items, [])

  await s.server.setDown(true, 'reset')
  await t.rejects(s.core.listNamespacedService({ namespace: 'default' }))
  await s.server.setDown(false)

  s.server.failNext(2, { code: 500, match: (method, path) => method === 'GET' && path.endsWith('/services') })
  const e1 = await apiErr(s.core.listNamespacedService({ namespace: 'default' }))
  t.match(e1, { code: 500, status: { kind: 'Status', reason: 'InternalError', code: 500 } })
  await s.core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'x' } } }) // not matched
  t.equal((await apiErr(s.core.listNamespacedService({ namespace: 'default' }))).code, 500)
  t.equal((await s.core.listNamespacedService({ namespace: 'default' })).items.length, 1, 'fault used up')

  s.server.failNext(1, { code: 429, message: 'slow down' })
  t.match(await apiErr(s.core.readNamespacedService({ namespace: 'default', name: 'x' })), { code: 429, status: { reason: 'TooManyRequests', message: 'slow down' } })

  // A failing watch request: the informer reports the error and stops (client-node behaviour).
  const inf = ingressInformer(s)
  const rec = record(inf)
  s.server.failNext(1, { code: 503, match: (_m, _p, q) => q.get('watch') === 'true' })
  await inf.start()
  await waitFor('error from failed watch', () => rec.errors.length === 1)
  t.equal((rec.errors[0] as { statusCode?: number }).statusCode, 503)
  t.equal(s.server.watchCount(), 0)
})

t.test('label selectors on informer watches, with selector transitions', async (t) => {
  const s = await setup(t)
  s.server.put(KN.group, KN.version, KN.plural, ingress('in', { gw: 'edge' }))
  s.server.put(KN.group, KN.version, KN.plural, ingress('out', { gw: 'other' }))
  const inf = ingressInformer(s, 'gw=edge')
  const rec = record(inf)
  await inf.start()
  await waitFor('add in', () => rec.events.includes('add in'))
  const watch = s.server.requests.find((r) => r.watch)
  t.equal(watch?.query['labelSelector'], 'gw=edge', 'selector sent on the watch')

  s.server.put(KN.group, KN.version, KN.plural, ingress('late', { gw: 'edge' }))
  s.server.put(KN.group, KN.version, KN.plural, ingress('late-out', { gw: 'nope' }))
  await waitFor('add late', () => rec.events.includes('add late'))
  // Relabel: leaving the selector is a DELETED, entering it an ADDED.
  await s.co.patchNamespacedCustomObject({ ...KN, namespace: 'default', name: 'in', body: { metadata: { labels: { gw: 'x' } } } }, merge())
  await s.co.patchNamespacedCustomObject({ ...KN, namespace: 'default', name: 'out', body: { metadata: { labels: { gw: 'edge' } } } }, merge())
  await waitFor('delete in / add out', () => rec.events.includes('delete in') && rec.events.includes('add out'))
  t.notOk(rec.events.some((e) => e.includes('late-out')), 'non-matching objects never seen')
  t.same(inf.list().map((o) => o.metadata?.name).sort(), ['late', 'out'])
})

t.test('raw watch protocol: initial events, resourceVersion, bookmarks, timeoutSeconds, expiry', async (t) => {
  const s = await setup(t, { bookmarkIntervalMs: 100 })
  const base = `${s.server.url}/apis/networking.internal.knative.dev/v1alpha1/namespaces/default/ingresses`
  const headers = { Authorization: 'Bearer fake-token' }
  const a = s.server.put(KN.group, KN.version, KN.plural, ingress('a'))
  const b = s.server.put(KN.group, KN.version, KN.plural, ingress('b'))
  s.server.put(KN.group, KN.version, KN.plural, { ...ingress('c'), metadata: { name: 'c', namespace: 'elsewhere' } })

  const readAll = async (url: string) => {
    const res = await fetch(url, { headers })
    const text = await res.text()
    return { status: res.status, events: text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)) }
  }
  // No resourceVersion: synthetic ADDED for the current state, then live events.
  const w1 = await readAll(`${base}?watch=1&timeoutSeconds=1`)
  t.equal(w1.status, 200)
  t.same(w1.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED a', 'ADDED b'])

  // From a resourceVersion: only what happened after it.
  s.server.remove(KN.group, KN.version, KN.plural, 'default', 'a')
  const w2 = await readAll(`${base}?watch=true&resourceVersion=${a.metadata.resourceVersion}&timeoutSeconds=1&fieldSelector=metadata.name%3Da`)
  t.same(w2.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['DELETED a'])

  // Bookmarks carry the current resourceVersion.
  const w3 = await readAll(`${base}?watch=true&resourceVersion=${s.server.resourceVersion}&allowWatchBookmarks=true&timeoutSeconds=1`)
  const bms = w3.events.filter((e) => e.type === 'BOOKMARK')
  t.ok(bms.length >= 2, `periodic bookmarks (${bms.length})`)
  t.same(bms[0].object, { kind: 'Ingress', apiVersion: 'networking.internal.knative.dev/v1alpha1', metadata: { resourceVersion: s.server.resourceVersion } })

  // Expired history: ERROR event with a 410 Status (default) or HTTP 410.
  s.server.expireHistory()
  const w4 = await readAll(`${base}?watch=true&resourceVersion=${b.metadata.resourceVersion}`)
  t.equal(w4.status, 200)
  t.match(w4.events, [{ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } }])
  s.server.setExpiredMode('http')
  const w5 = await readAll(`${base}?watch=true&resourceVersion=${b.metadata.resourceVersion}`)
  t.equal(w5.status, 410)
  t.equal(s.server.watchCount(), 0, 'timed-out watches are closed')
})

t.test('stallWatches(): client-node inactivity timeout reconnects, nothing is lost', async (t) => {
  const s = await setup(t)
  s.server.put(KN.group, KN.version, KN.plural, ingress('a'))
  // Same as makeInformer, but with a short client inactivity timeout (2.0.1 uses 30 s; the field is private).
  const watch = new k8s.Watch(s.kc)
  ;(watch as unknown as { requestTimeoutMs: number }).requestTimeoutMs = 300
  const inf = s.track(new k8s.ListWatch<Obj>(INGRESS_PATH, watch,
    () => s.co.listClusterCustomObject({ ...KN }) as Promise<k8s.KubernetesListObject<Obj>>, false))
  const rec = record(inf)
  await inf.start()
  await waitFor('add a', () => rec.events.includes('add a'))

  s.server.stallWatches(true)
  s.server.put(KN.group, KN.version, KN.plural, ingress('b'))
  const watchReqs = () => s.server.requests.filter((r) => r.watch).length
  await waitFor('client timed out and re-watched at least twice', () => watchReqs() >= 3)
  t.notOk(rec.events.includes('add b'), 'nothing delivered while stalled')
  s.server.stallWatches(false)
  await waitFor('add b after the stall', () => rec.events.includes('add b'))
  t.same(rec.errors, [], 'TimeoutError is handled inside ListWatch')
  t.equal(s.server.requests.filter((r) => !r.watch && r.method === 'GET').length, 1, 'no relist')
})

t.test('Lease via CoordinationV1Api: MicroTime, replace, conflicts', async (t) => {
  const s = await setup(t)
  // client-node serializes a plain Date with Date#toJSON → 3 fractional digits: rejected like the real server.
  const bad = await apiErr(s.coord.createNamespacedLease({
    namespace: 'default',
    body: { metadata: { name: 'gw' }, spec: { holderIdentity: 'pod-1', leaseDurationSeconds: 15, renewTime: new Date() as k8s.V1MicroTime } },
  }))
  t.match(bad, { code: 422, status: { reason: 'Invalid' } })
  t.match(bad.status.message, /spec\.renewTime/)
  t.match(bad.status.message, /\.\d{3}Z"/, 'the rejected value had millisecond precision')
  t.equal(s.server.writes().length, 1)
  t.equal(s.server.get('coordination.k8s.io', 'v1', 'leases', 'default', 'gw'), undefined)

  // The correct way: V1MicroTime pads to six digits.
  const now = new k8s.V1MicroTime()
  t.match(JSON.stringify({ now }), /"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"/)
  const lease = await s.coord.createNamespacedLease({
    namespace: 'default',
    body: { metadata: { name: 'gw' }, spec: { holderIdentity: 'pod-1', leaseDurationSeconds: 15, acquireTime: now, renewTime: now } },
  })
  const stored = s.server.get('coordination.k8s.io', 'v1', 'leases', 'default', 'gw')
  t.match((stored?.spec as { renewTime: string }).renewTime, MICROTIME_RE)
  // Read back, the MicroTime is the raw string: the serializer has no 'V1MicroTime' type.
  t.equal(typeof lease.spec?.renewTime, 'string')

  // Renew with replace (sending back the resourceVersion); a string MicroTime also works.
  const read = await s.coord.readNamespacedLease({ namespace: 'default', name: 'gw' })
  read.spec = { ...read.spec, renewTime: new k8s.V1MicroTime(Date.now() + 1000) }
  const renewed = await s.coord.replaceNamespacedLease({ namespace: 'default', name: 'gw', body: read })
  t.not(renewed.metadata?.resourceVersion, lease.metadata?.resourceVersion)
  // The loser of a race: stale resourceVersion → 409.
  const loser = { ...read, spec: { ...read.spec, holderIdentity: 'pod-2', renewTime: '2026-11-23T01:02:03.000000Z' as unknown as k8s.V1MicroTime } }
  t.match(await apiErr(s.coord.replaceNamespacedLease({ namespace: 'default', name: 'gw', body: loser })), { code: 409, status: { reason: 'Conflict' } })
  // A bad MicroTime on replace: 422 naming the field, even with the right resourceVersion.
  const cur = await s.coord.readNamespacedLease({ namespace: 'default', name: 'gw' })
  const badReplace = await apiErr(s.coord.replaceNamespacedLease({
    namespace: 'default', name: 'gw', body: { ...cur, spec: { ...cur.spec, acquireTime: '2026-11-23T01:02:03Z' as unknown as k8s.V1MicroTime } },
  }))
  t.match(badReplace, { code: 422 })
  t.match(badReplace.status.message, /spec\.acquireTime/)

  // Optional closer-to-reality mode: the real server fails while decoding → 400 BadRequest.
  const s2 = await setup(t, { microTimeErrors: 'decode' })
  const dec = await apiErr(s2.coord.createNamespacedLease({
    namespace: 'default', body: { metadata: { name: 'gw' }, spec: { renewTime: new Date() as k8s.V1MicroTime } },
  }))
  t.match(dec, { code: 400, status: { reason: 'BadRequest' } })
  t.match(dec.status.message, /cannot be handled as a Lease: parsing time/)
})

// ---------------------------------------------------------------- as the real server: selectors, resourceVersions, RBAC

/** A raw watch whose events are collected as they arrive. */
async function streamWatch(server: FakeApiServer, pathAndQuery: string): Promise<{ status: number; lines: any[]; close(): void }> {
  const ctl = new AbortController()
  const res = await fetch(`${server.url}${pathAndQuery}`, { headers: { Authorization: 'Bearer fake-token' }, signal: ctl.signal })
  const lines: any[] = []
  let buf = ''
  const decoder = new TextDecoder()
  void (async () => {
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true })
        let nl: number
        while ((nl = buf.indexOf('\n')) !== -1) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          if (line !== '') lines.push(JSON.parse(line))
        }
      }
    } catch {
      // Aborted by close().
    }
  })()
  return { status: res.status, lines, close: () => ctl.abort() }
}

/** A raw GET: the status and the newline-delimited JSON lines (one object for a non-watch answer). */
async function rawGet(server: FakeApiServer, pathAndQuery: string): Promise<{ status: number; lines: any[] }> {
  const res = await fetch(`${server.url}${pathAndQuery}`, { headers: { Authorization: 'Bearer fake-token' } })
  const text = await res.text()
  return { status: res.status, lines: text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l)) }
}

t.test('field selectors: Secrets by type (list and watch); unsupported fields are refused as the real server words it', async (t) => {
  const s = await setup(t)
  const secret = (name: string, type: string) => ({ metadata: { name, namespace: 'default' }, type, data: {} })
  s.server.put('', 'v1', 'secrets', secret('cert', 'kubernetes.io/tls'))
  s.server.put('', 'v1', 'secrets', secret('opaque', 'Opaque'))
  const names = (l: k8s.V1SecretList) => l.items.map((i) => i.metadata?.name)
  t.same(names(await s.core.listSecretForAllNamespaces({ fieldSelector: 'type=kubernetes.io/tls' })), ['cert'])
  t.same(names(await s.core.listNamespacedSecret({ namespace: 'default', fieldSelector: 'type!=kubernetes.io/tls,metadata.namespace=default' })), ['opaque'])

  const rv = s.server.resourceVersion
  s.server.put('', 'v1', 'secrets', secret('cert2', 'kubernetes.io/tls'))
  s.server.put('', 'v1', 'secrets', secret('opaque2', 'Opaque'))
  // A Secret that becomes a TLS one is ADDED to the filtered watch.
  s.server.put('', 'v1', 'secrets', secret('opaque', 'kubernetes.io/tls'))
  const w = await rawGet(s.server, `/api/v1/secrets?watch=true&resourceVersion=${rv}&timeoutSeconds=1&fieldSelector=type%3Dkubernetes.io%2Ftls`)
  t.same(w.lines.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED cert2', 'ADDED opaque'])

  const builtin = await apiErr(s.core.listSecretForAllNamespaces({ fieldSelector: 'xyz=1' }))
  t.match(builtin, { code: 400, status: { reason: 'BadRequest', message: 'field label not supported: xyz' } })
  const watchBad = await rawGet(s.server, '/api/v1/secrets?watch=true&fieldSelector=spec.type%3Dx')
  t.equal(watchBad.status, 400, 'a watch is refused before it starts')
  t.equal(watchBad.lines[0].message, 'field label not supported: spec.type')
  const custom = await apiErr(s.co.listClusterCustomObject({ ...KN, fieldSelector: 'type=x' }))
  t.match(custom, { code: 400, status: { message: 'field label not supported: type' } })
})

t.test('a resourceVersion the server has not reached: a plain watch is silent, a list and a sendInitialEvents watch get 504', async (t) => {
  const s = await setup(t, { bookmarkIntervalMs: 50, freshnessWaitMs: 200 })
  const base = '/apis/networking.internal.knative.dev/v1alpha1/namespaces/default/ingresses'
  s.server.put(KN.group, KN.version, KN.plural, ingress('a'))
  const current = Number(s.server.resourceVersion)
  const ahead = current + 3

  // A plain watch from `ahead`: accepted; nothing at or below it, no bookmark below it; then events.
  // A control watch from the current resourceVersion shows bookmarks going out meanwhile.
  const future = await streamWatch(s.server, `${base}?watch=true&resourceVersion=${ahead}&allowWatchBookmarks=true&timeoutSeconds=3`)
  t.equal(future.status, 200, 'accepted at once')
  const control = await streamWatch(s.server, `${base}?watch=true&resourceVersion=${current}&allowWatchBookmarks=true&timeoutSeconds=3`)
  await waitFor('two bookmarks on the control watch', () => control.lines.filter((e) => e.type === 'BOOKMARK').length >= 2)
  t.same(future.lines, [], 'nothing on the watch from ahead meanwhile')
  for (const n of ['b', 'c', 'd', 'e']) s.server.put(KN.group, KN.version, KN.plural, ingress(n))
  await waitFor('a bookmark on the watch from ahead, once the server passed it', () => future.lines.some((e) => e.type === 'BOOKMARK'))
  const events = future.lines.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type} ${e.object.metadata.name} ${e.object.metadata.resourceVersion}`)
  t.same(events, [`ADDED e ${current + 4}`], 'only the event past the resourceVersion asked for')
  t.same(control.lines.filter((e) => e.type !== 'BOOKMARK').map((e) => e.object.metadata.name), ['b', 'c', 'd', 'e'], 'the control watch got all four')
  future.close()
  control.close()

  const tooLarge = (requested: number, at: number) => ({
    kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', code: 504, reason: 'Timeout',
    message: `Timeout: Too large resource version: ${requested}, current: ${at}`,
    details: { causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }], retryAfterSeconds: 1 },
  })
  const now = Number(s.server.resourceVersion)
  const list = await rawGet(s.server, `${base}?resourceVersion=${now + 10}`)
  t.equal(list.status, 504)
  t.same(list.lines[0], tooLarge(now + 10, now), 'a list: the Status as the answer')
  const initial = await rawGet(s.server, `${base}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=${now + 10}`)
  t.equal(initial.status, 200, 'a watch: past authorization, errors are events')
  t.same(initial.lines, [{ type: 'ERROR', object: tooLarge(now + 10, now) }])

  // Reached within the wait: the initial state, then the bookmark that ends it.
  const waiting = rawGet(s.server, `${base}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=${now + 1}&timeoutSeconds=1`)
  await waitFor('the sendInitialEvents watch is waiting', () => s.server.requests.some((r) => r.watch && r.query['resourceVersion'] === String(now + 1)))
  s.server.put(KN.group, KN.version, KN.plural, ingress('f'))
  const served = await waiting
  t.same(served.lines.filter((e) => e.type === 'ADDED').map((e) => e.object.metadata.name), ['a', 'b', 'c', 'd', 'e', 'f'])
  t.match(served.lines.find((e) => e.type === 'BOOKMARK'), { object: { metadata: { resourceVersion: String(now + 1), annotations: { 'k8s.io/initial-events-end': 'true' } } } })
})

t.test('restoreBackup(): objects and resourceVersion go back; a client watching from later is not told', async (t) => {
  const s = await setup(t)
  s.server.put(KN.group, KN.version, KN.plural, ingress('a'))
  const backup = s.server.backup()
  s.server.put(KN.group, KN.version, KN.plural, ingress('b'))
  const seen = s.server.resourceVersion
  await s.server.restoreBackup(backup)
  t.equal(s.server.resourceVersion, String(backup.rv))
  t.same(s.server.list(KN.group, KN.version, KN.plural).map((o) => o.metadata.name), ['a'])
  const w = await rawGet(s.server, `/apis/networking.internal.knative.dev/v1alpha1/ingresses?watch=true&resourceVersion=${seen}&timeoutSeconds=1`)
  t.equal(w.status, 200)
  t.same(w.lines, [], 'no 410, no event: the client cannot tell')
})

t.test('RBAC: requests are recorded as RBAC sees them and refused unless a bound rule allows them', async (t) => {
  const user = 'system:serviceaccount:gw-ns:gw'
  const objects = [
    { kind: 'ClusterRole', metadata: { name: 'read' }, rules: [
      { apiGroups: ['networking.internal.knative.dev'], resources: ['ingresses'], verbs: ['list', 'watch'] },
      { apiGroups: ['networking.internal.knative.dev'], resources: ['ingresses/status'], verbs: ['patch'] },
    ] },
    { kind: 'ClusterRoleBinding', metadata: { name: 'read' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'read' }, subjects: [{ kind: 'ServiceAccount', name: 'gw', namespace: 'gw-ns' }] },
    { kind: 'Role', metadata: { name: 'lease', namespace: 'gw-ns' }, rules: [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get'], resourceNames: ['mine'] }] },
    { kind: 'RoleBinding', metadata: { name: 'lease', namespace: 'gw-ns' }, roleRef: { kind: 'Role', name: 'lease' }, subjects: [{ kind: 'ServiceAccount', name: 'gw', namespace: 'gw-ns' }] },
    // Bound to someone else: grants the gateway nothing.
    { kind: 'ClusterRoleBinding', metadata: { name: 'other' }, roleRef: { kind: 'ClusterRole', name: 'read' }, subjects: [{ kind: 'ServiceAccount', name: 'gw', namespace: 'elsewhere' }] },
    { kind: 'Deployment', metadata: { name: 'ignored' } },
  ]
  const s = await setup(t, { rbac: { user, objects } })
  s.server.put(KN.group, KN.version, KN.plural, ingress('a'))
  s.server.put('coordination.k8s.io', 'v1', 'leases', { metadata: { name: 'mine', namespace: 'gw-ns' }, spec: {} })
  s.server.put('coordination.k8s.io', 'v1', 'leases', { metadata: { name: 'theirs', namespace: 'gw-ns' }, spec: {} })

  t.equal((await s.co.listClusterCustomObject({ ...KN }) as { items: unknown[] }).items.length, 1, 'list allowed cluster-wide')
  await s.co.patchNamespacedCustomObjectStatus({ ...KN, namespace: 'default', name: 'a', body: { status: { observedGeneration: 1 } } }, merge())
  t.equal((await s.coord.readNamespacedLease({ namespace: 'gw-ns', name: 'mine' })).metadata?.name, 'mine', 'get of the named Lease')
  const version = await rawGet(s.server, '/version')
  t.equal(version.status, 200, '/version is public in every cluster')

  const refusals: Array<[() => Promise<ApiErr>, string]> = [
    [() => apiErr(s.co.getNamespacedCustomObject({ ...KN, namespace: 'default', name: 'a' })),
      'ingresses.networking.internal.knative.dev "a" is forbidden: User "system:serviceaccount:gw-ns:gw" cannot get resource "ingresses" in API group "networking.internal.knative.dev" in the namespace "default"'],
    [() => apiErr(s.coord.readNamespacedLease({ namespace: 'gw-ns', name: 'theirs' })),
      'leases.coordination.k8s.io "theirs" is forbidden: User "system:serviceaccount:gw-ns:gw" cannot get resource "leases" in API group "coordination.k8s.io" in the namespace "gw-ns"'],
    [() => apiErr(s.core.listSecretForAllNamespaces()),
      'secrets is forbidden: User "system:serviceaccount:gw-ns:gw" cannot list resource "secrets" in API group "" at the cluster scope'],
    [() => apiErr(s.co.replaceNamespacedCustomObjectStatus({ ...KN, namespace: 'default', name: 'a', body: ingress('a') })),
      'ingresses.networking.internal.knative.dev "a" is forbidden: User "system:serviceaccount:gw-ns:gw" cannot update resource "ingresses/status" in API group "networking.internal.knative.dev" in the namespace "default"'],
  ]
  for (const [call, message] of refusals) t.match(await call(), { code: 403, status: { kind: 'Status', reason: 'Forbidden', code: 403, message } })

  const seen = s.server.requests.map((r) => {
    const a = r.attributes
    return `${r.status} ${a.verb} ${a.apiGroup}/${a.resource}${a.subresource ? `/${a.subresource}` : ''} ns=${a.namespace} name=${a.name}`
  })
  t.same(seen, [
    '200 list networking.internal.knative.dev/ingresses ns= name=',
    '200 patch networking.internal.knative.dev/ingresses/status ns=default name=a',
    '200 get coordination.k8s.io/leases ns=gw-ns name=mine',
    '200 get / ns= name=',
    '403 get networking.internal.knative.dev/ingresses ns=default name=a',
    '403 get coordination.k8s.io/leases ns=gw-ns name=theirs',
    '403 list /secrets ns= name=',
    '403 update networking.internal.knative.dev/ingresses/status ns=default name=a',
  ])
  t.same(s.server.requests[3]!.attributes, { resourceRequest: false, verb: 'get', apiGroup: '', apiVersion: '', resource: '', subresource: '', namespace: '', name: '', path: '/version' })
  t.match(s.server.requests[0]!.attributes, { resourceRequest: true, apiVersion: 'v1alpha1' })

  // Without `rbac`, everything is allowed (and still recorded).
  const open = await setup(t)
  t.same((await open.core.listSecretForAllNamespaces()).items, [])
  t.match(open.server.requests[0], { status: 200, attributes: { verb: 'list', resource: 'secrets' } })
})
