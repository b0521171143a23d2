// The cluster source against the fake API server, with real gateways and real backends: objects
// written in the "cluster" become traffic, and the informers survive drops, stalls, 410s and outages
// without losing an update and without ever dropping the last good configuration.
import t from 'tap'
import { CLASS, endpointSlice, get, kingress, revision, revisionPods, service, servedSplits, serviceFor, simpleIngress, startBackend, waitFor } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import { pino } from 'pino'
import { ResilientInformer } from '../src/sources/informer.ts'
import { apply, del, kubeDebug, readyz, startKubeEnv, startKubeGateway, waitReady, waitServed, who } from './helpers/kube.ts'
import { makeCA, makeCert, servedCertificate, tlsSecret as realTlsSecret } from './helpers/certs.ts'
import { tooLargeResourceVersion } from './fake-apiserver/server.ts'

const INGRESS_PATH = '/apis/networking.internal.knative.dev/v1alpha1/ingresses'
const NOT_FOUND = '404 host-not-found'

async function backends(t: { teardown(fn: () => unknown): void }, ...names: string[]): Promise<Backend[]> {
  const bs = await Promise.all(names.map((n) => startBackend(n)))
  t.teardown(() => Promise.all(bs.map((b) => b.close())))
  return bs
}

/** Answers for `n` requests, counted by backend. */
async function spread(port: number, host: string, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const w = await who(port, host)
    out[w] = (out[w] ?? 0) + 1
  }
  return out
}

function tlsSecret(name: string, type = 'kubernetes.io/tls'): unknown {
  const b64 = (s: string) => Buffer.from(s).toString('base64')
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type, data: { 'tls.crt': b64('CERT'), 'tls.key': b64('KEY') } }
}

const listsOf = (api: { requests: Array<{ method: string; path: string; watch: boolean }> }, path: string) =>
  api.requests.filter((r) => r.method === 'GET' && !r.watch && r.path === path).length

t.test('KIngress, Services and EndpointSlices from the cluster become traffic, and follow every change', async (t) => {
  const env = await startKubeEnv(t)
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), serviceFor('svc-b', b!))
  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  const gw = await startKubeGateway(t, env)
  await waitReady(gw)
  const port = gw.ports.http
  t.equal(await who(port, 'hello.example.com'), 'a', 'served from the first list')
  t.equal(gw.files, undefined, 'no files source in cluster mode')
  t.equal(gw.runner, undefined, 'no local runner in cluster mode')
  t.ok(gw.kube?.config.getCurrentCluster()?.server === env.api.url, 'the KubeConfig is exposed for the status writer')

  // A new host appears.
  apply(env.api, simpleIngress('second', ['second.example.com'], [['svc-b', 100]]))
  await waitServed(port, 'second.example.com', 'b')

  // The split changes: all to b, then 50/50.
  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-b', 100]]))
  await waitServed(port, 'hello.example.com', 'b')
  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-a', 50], ['svc-b', 50]]))
  // Count only once the 50/50 configuration serves: requests that straddle the change would let a
  // split that always picks one backend pass (the earlier all-b answers plus a few a's).
  const fiftyFifty = [['svc:default/svc-a:80 50', 'svc:default/svc-b:80 50']]
  await waitFor('hello served split 50/50', async () => JSON.stringify(await servedSplits(gw.ports.admin, 'hello.example.com')) === JSON.stringify(fiftyFifty))
  // 200 fair draws: mean 100 each, sd 7.07; outside [60, 140] is 5.6 sd, p < 1e-7 for a fair split.
  const s = await spread(port, 'hello.example.com', 200)
  t.same(Object.keys(s).sort(), ['a', 'b'], 'only the two split backends answer')
  t.ok((s['a'] ?? 0) >= 60 && (s['a'] ?? 0) <= 140, `a gets about half (${s['a'] ?? 0} of 200)`)
  t.ok((s['b'] ?? 0) >= 60 && (s['b'] ?? 0) <= 140, `b gets about half (${s['b'] ?? 0} of 200)`)
  t.pass('split between a and b')

  // The endpoint of svc-a moves to backend b's port: one compile for it, not one on the fast
  // EndpointSlice path and a second on the coalesced one.
  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  await waitServed(port, 'hello.example.com', 'a')
  // 'a' also answers under 50/50: count from the snapshot compiled for this change, not before it.
  await waitFor('hello served by svc-a alone', async () => JSON.stringify(await servedSplits(gw.ports.admin, 'hello.example.com')) === JSON.stringify([['svc:default/svc-a:80 100']]))
  const reloads = async (): Promise<number> => Number(/edge_config_reloads_total\{result="ok"\} (\d+)/.exec((await get(gw.ports.admin, 'localhost', '/metrics')).body)?.[1])
  const before = await reloads()
  apply(env.api, endpointSlice('svc-a', [{ name: 'http', port: b!.port }], [{ ip: '127.0.0.1' }], 'default', 'svc-a-slice'))
  await waitServed(port, 'hello.example.com', 'b')
  // A second compile of the slice would come from the store's coalesced notification, which runs
  // before a later change reaches the gateway over the watch: once a marker KIngress serves, the
  // count holds every compile of the slice plus exactly one for the marker.
  apply(env.api, simpleIngress('marker', ['marker.example.com'], [['svc-b', 100]]))
  await waitServed(port, 'marker.example.com', 'b')
  t.equal((await reloads()) - before - 1, 1, 'an EndpointSlice change is compiled once')
  t.pass('endpoint moved to another backend')

  // The Service goes away: the gateway stops routing to it.
  del(env.api, service('svc-a', [{ name: 'http', port: 80 }]))
  await waitFor('svc-a gone from the store', () => gw.store.get('Service', 'default/svc-a') === undefined)
  t.not(await who(port, 'hello.example.com'), 'b', 'no traffic to a deleted Service')

  // The ingress is deleted: 404.
  del(env.api, simpleIngress('hello', ['hello.example.com'], []))
  await waitServed(port, 'hello.example.com', NOT_FOUND)
  t.equal(await who(port, 'second.example.com'), 'b', 'the other ingress is untouched')

  // Objects are stored with kind/apiVersion even though built-in list items carry none.
  const svc = gw.store.get('Service', 'default/svc-b')
  t.match(svc, { kind: 'Service', apiVersion: 'v1' })
  t.match(gw.store.list('EndpointSlice')[0], { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1' })
  t.equal(gw.store.ownerOf('Service', 'default/svc-b'), 'kubernetes')
  t.same(env.api.writes(), [], 'the source never writes to the API server')
})

const SECRETS_PATH = '/api/v1/secrets'
const TLS_SELECTOR = 'type=kubernetes.io/tls'

t.test('TLS Secrets are stored (only TLS ones) and follow the cluster; the API server filters them by type', async (t) => {
  const env = await startKubeEnv(t)
  const ca = await makeCA()
  const [a] = await backends(t, 'a')
  apply(env.api, serviceFor('svc-a', a!))
  const ing = kingress('secure', {
    tls: [{ hosts: ['secure.example.com'], secretName: 'cert', secretNamespace: 'default' }],
    rules: [{ hosts: ['secure.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'svc-a', servicePort: 80, percent: 100 }] }] } }],
  })
  apply(env.api, ing, tlsSecret('opaque', 'Opaque'))
  const gw = await startKubeGateway(t, env)
  await waitReady(gw)
  const tlsOf = async () => {
    const r = await get(gw.ports.admin, 'localhost', '/debug/routes')
    const body = JSON.parse(r.body) as { hosts: Array<{ host: string; tls?: string }>; problems: Array<{ code: string }> }
    return { tls: body.hosts.find((h) => h.host === 'secure.example.com')?.tls, problems: body.problems.map((p) => p.code) }
  }
  t.same(await tlsOf(), { tls: undefined, problems: ['EDGE_ERR_TLS_SECRET'] }, 'secret missing: reported')
  apply(env.api, realTlsSecret('cert', await makeCert(ca, 'secure.example.com')))
  await waitFor('certificate from the TLS secret', async () => (await tlsOf()).tls === 'default/cert')
  t.same(await servedCertificate(gw.ports.https, 'secure.example.com', ca.cert), { cn: 'secure.example.com' }, 'the handshake presents the certificate from the Secret')
  t.equal(gw.store.get('Secret', 'default/opaque'), undefined, 'a non-TLS secret is never stored')
  apply(env.api, { ...(tlsSecret('opaque', 'Opaque') as object), metadata: { name: 'opaque', namespace: 'default', labels: { x: 'y' } } })
  apply(env.api, tlsSecret('other'))
  await waitFor('second TLS secret stored', () => gw.store.get('Secret', 'default/other') !== undefined)
  t.equal(gw.store.get('Secret', 'default/opaque'), undefined, 'still not stored after an update')
  del(env.api, tlsSecret('cert'))
  await waitFor('certificate gone with its secret', async () => (await tlsOf()).tls === undefined)
  const secrets = (await kubeDebug(gw)).informers['secrets']
  t.ok(secrets, 'a secrets informer')
  t.equal(secrets?.fieldSelector, TLS_SELECTOR, 'the API server accepts the type field selector: it stays')
  t.equal(secrets?.objects, 1, 'the informer was sent the one TLS secret left, never the Opaque one')
  const secretRequests = env.api.requests.filter((r) => r.path === SECRETS_PATH)
  t.ok(secretRequests.some((r) => r.watch) && secretRequests.some((r) => !r.watch), 'listed and watched')
  t.ok(secretRequests.every((r) => r.query['fieldSelector'] === TLS_SELECTOR && r.status !== 400), 'every list and watch asked for TLS secrets only, and was accepted')
})

t.test('an API server that refuses the type field selector: the gateway filters TLS Secrets itself', async (t) => {
  const env = await startKubeEnv(t)
  // As an API server whose Secrets have no `type` field label would answer.
  env.api.failNext(1, { code: 400, reason: 'BadRequest', message: 'field label not supported: type', match: (m, p, q) => p === SECRETS_PATH && q.get('fieldSelector') === TLS_SELECTOR })
  apply(env.api, tlsSecret('cert'), tlsSecret('opaque', 'Opaque'))
  const gw = await startKubeGateway(t, env)
  await waitReady(gw)
  t.ok(gw.store.get('Secret', 'default/cert'), 'the TLS secret is stored')
  t.equal(gw.store.get('Secret', 'default/opaque'), undefined, 'the Opaque one is not')
  const secrets = (await kubeDebug(gw)).informers['secrets']
  t.equal(secrets?.fieldSelector, undefined, 'the selector was dropped')
  t.equal(secrets?.objects, 2, 'both secrets were listed: the filtering is the gateway\'s')
  t.same(env.api.requests.filter((r) => r.path === SECRETS_PATH && !r.watch).map((r) => [r.query['fieldSelector'], r.status]), [[TLS_SELECTOR, 400], [undefined, 200]], 'tried with the selector, then listed without it')
})

t.test('a KIngress of another class is never stored, served or written', async (t) => {
  const env = await startKubeEnv(t)
  const [a] = await backends(t, 'a')
  apply(env.api, serviceFor('svc-a', a!))
  const theirs = (cls: string) => {
    const o = simpleIngress('theirs', ['theirs.example.com'], [['svc-a', 100]]) as { metadata: { annotations: Record<string, string> } }
    o.metadata.annotations['networking.knative.dev/ingress.class'] = cls
    return o
  }
  apply(env.api, theirs('kourier.ingress.networking.knative.dev'), simpleIngress('ours', ['ours.example.com'], [['svc-a', 100]]))
  const gw = await startKubeGateway(t, env)
  await waitReady(gw)
  t.equal(await who(gw.ports.http, 'ours.example.com'), 'a')
  t.equal(await who(gw.ports.http, 'theirs.example.com'), NOT_FOUND)
  t.equal(gw.store.get('Ingress', 'default/theirs'), undefined, 'not stored')

  // Updated (still another class): still nothing.
  const upd = theirs('kourier.ingress.networking.knative.dev')
  ;(upd as { metadata: { labels?: Record<string, string> } }).metadata.labels = { touched: 'yes' }
  apply(env.api, upd)
  apply(env.api, simpleIngress('marker', ['marker.example.com'], [['svc-a', 100]]))
  await waitServed(gw.ports.http, 'marker.example.com', 'a')
  t.equal(gw.store.get('Ingress', 'default/theirs'), undefined, 'not stored after an update')

  // Switching to our class makes it ours; switching back removes it.
  apply(env.api, theirs(CLASS))
  await waitServed(gw.ports.http, 'theirs.example.com', 'a')
  apply(env.api, theirs('istio.ingress.networking.knative.dev'))
  await waitServed(gw.ports.http, 'theirs.example.com', NOT_FOUND)
  t.equal(gw.store.get('Ingress', 'default/theirs'), undefined, 'removed when its class changed away')
  t.same(env.api.writes('/ingresses/theirs'), [], 'no write request for the other class')
  t.same(env.api.writes(), [], 'no write request at all')
})

t.test('/readyz is 503 until every informer has listed, then 200', async (t) => {
  const env = await startKubeEnv(t)
  const [a] = await backends(t, 'a')
  apply(env.api, serviceFor('svc-a', a!), simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  // The KIngress list fails a few times (with backoff between tries).
  env.api.failNext(3, { code: 500, match: (m, p, q) => m === 'GET' && p === INGRESS_PATH && q.get('watch') !== 'true' })
  const gw = await startKubeGateway(t, env)
  const first = await readyz(gw)
  t.equal(first.status, 503, 'not ready before the first list')
  t.match(first.body, /ingresses/, 'the reason names the informer still waiting')
  const dbg = await kubeDebug(gw)
  t.equal(dbg.synced, false)
  await waitReady(gw)
  t.equal(await who(gw.ports.http, 'hello.example.com'), 'a')
  const after = await kubeDebug(gw)
  t.equal(after.synced, true)
  t.ok((after.informers['ingresses']?.errors ?? 0) >= 1, 'the failed lists are counted')
  t.ok((after.informers['ingresses']?.restarts ?? 0) >= 1, 'and retried')
  t.equal(gw.config.autoscalerUrl, 'ws://autoscaler.knative-serving.svc.cluster.local:8080', 'cluster mode defaults the autoscaler address')
})

t.test('a dropped watch is restarted and resumes where it stopped: nothing made during the drop is lost', async (t) => {
  const env = await startKubeEnv(t)
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), serviceFor('svc-b', b!), simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  const gw = await startKubeGateway(t, env)
  await waitReady(gw)
  t.equal(await who(gw.ports.http, 'hello.example.com'), 'a')
  const listsBefore = listsOf(env.api, INGRESS_PATH)

  for (let round = 1; round <= 2; round++) {
    env.api.dropWatches()
    // Made while no watch is open: the restarted watch must replay them from its resourceVersion.
    const target = round === 1 ? 'svc-b' : 'svc-a'
    apply(env.api, simpleIngress('hello', ['hello.example.com'], [[target, 100]]))
    apply(env.api, simpleIngress(`new-${round}`, [`new-${round}.example.com`], [['svc-b', 100]]))
    await waitServed(gw.ports.http, 'hello.example.com', target === 'svc-b' ? 'b' : 'a')
    await waitServed(gw.ports.http, `new-${round}.example.com`, 'b')
  }
  const ing = (await kubeDebug(gw)).informers['ingresses']!
  t.ok(ing.restarts >= 2, `restarted after each drop (${ing.restarts})`)
  t.ok(ing.errors >= 2, 'each drop was seen as an error')
  t.equal(listsOf(env.api, INGRESS_PATH), listsBefore, 'resumed from the last resourceVersion, no relist')
  await waitFor('healthy again', async () => (await kubeDebug(gw)).healthy)
  await waitFor('one watch per informer again', () => env.api.watchCount() === Object.keys(gw.kube!.source.describe().informers).length)
  t.pass('no duplicate watches after restarts')
})

t.test('a stalled watch is replaced by the watchdog; updates made during the stall arrive', async (t) => {
  const env = await startKubeEnv(t)
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), serviceFor('svc-b', b!), simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  const gw = await startKubeGateway(t, env, [], { watchdogMs: 400 })
  await waitReady(gw)
  t.equal(await who(gw.ports.http, 'hello.example.com'), 'a')

  env.api.stallWatches(true)
  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-b', 100]]))
  // client-node's own inactivity timeout is 30 s; only the watchdog can notice this soon.
  await waitServed(gw.ports.http, 'hello.example.com', 'b')
  // Stay stalled until the watchdog has also replaced a watch that was still connecting.
  await waitFor('watchdog fired twice on the stalled informer', async () => ((await kubeDebug(gw)).informers['ingresses']?.watchdogRestarts ?? 0) >= 2)
  const during = (await kubeDebug(gw)).informers['ingresses']!
  t.ok(during.watchdogRestarts >= 2, `the watchdog restarted the stalled watch (${during.watchdogRestarts})`)
  t.equal(during.errors, 0, 'a stall is not an error')

  env.api.stallWatches(false)
  apply(env.api, simpleIngress('after', ['after.example.com'], [['svc-a', 100]]))
  await waitServed(gw.ports.http, 'after.example.com', 'a')
  t.equal(await who(gw.ports.http, 'hello.example.com'), 'b')
  // Watches the watchdog abandoned while they were still connecting are aborted once they open.
  const informers = Object.keys(gw.kube!.source.describe().informers).length
  await waitFor('no leftover watches', () => env.api.watchCount() <= informers)
  t.pass('at most one open watch per informer after the stall')
})

t.test('410 Gone after an outage: the informer relists, and deletions made meanwhile are applied', async (t) => {
  const env = await startKubeEnv(t)
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), serviceFor('svc-b', b!))
  apply(env.api, simpleIngress('keep', ['keep.example.com'], [['svc-a', 100]]), simpleIngress('gone', ['gone.example.com'], [['svc-a', 100]]))
  const gw = await startKubeGateway(t, env)
  await waitReady(gw)
  t.equal(await who(gw.ports.http, 'gone.example.com'), 'a')
  const listsBefore = listsOf(env.api, INGRESS_PATH)

  env.api.dropWatches()
  del(env.api, simpleIngress('gone', ['gone.example.com'], []))
  apply(env.api, simpleIngress('keep', ['keep.example.com'], [['svc-b', 100]]))
  del(env.api, service('svc-a', [{ name: 'http', port: 80 }]))
  env.api.expireHistory() // the resumed watches get 410: only a relist can tell what changed

  await waitServed(gw.ports.http, 'gone.example.com', NOT_FOUND)
  await waitServed(gw.ports.http, 'keep.example.com', 'b')
  await waitFor('deleted Service removed by the relist', () => gw.store.get('Service', 'default/svc-a') === undefined)
  t.ok(listsOf(env.api, INGRESS_PATH) > listsBefore, 'relisted')
  t.ok(env.api.requests.some((r) => r.watch && r.path === INGRESS_PATH && r.status === 200), 'watching again')
  await waitFor('healthy again', async () => (await kubeDebug(gw)).healthy)
})

t.test('API server down: the last snapshot keeps serving, health shows it, and changes flow again when it is back', async (t) => {
  const env = await startKubeEnv(t)
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), serviceFor('svc-b', b!), simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  const gw = await startKubeGateway(t, env, [], { backoff: { initialMs: 100, maxMs: 1000 } })
  await waitReady(gw)
  const sourceUp = async () => {
    const m = (await get(gw.ports.admin, 'localhost', '/metrics')).body
    return /edge_source_up\{source="kubernetes"\} (\d)/.exec(m)?.[1]
  }
  await waitFor('edge_source_up 1', async () => (await sourceUp()) === '1')
  t.pass('edge_source_up{source="kubernetes"} 1 while connected')

  await env.api.setDown(true)
  await waitFor('source reported down', async () => (await sourceUp()) === '0')
  t.pass('edge_source_up{source="kubernetes"} 0 while the API server is down')
  const dbg = await kubeDebug(gw)
  t.equal(dbg.healthy, false, '/debug/routes shows the source unhealthy')
  t.equal(dbg.synced, true, 'still synced: the last state is kept')
  t.ok(dbg.informers['ingresses']?.lastError?.message, 'with the last error')
  // Long enough for several failed retries; nothing is removed meanwhile.
  await waitFor('several failed retries', async () => ((await kubeDebug(gw)).informers['ingresses']?.errors ?? 0) >= 3)
  t.equal(await who(gw.ports.http, 'hello.example.com'), 'a', 'traffic keeps flowing on the last snapshot')
  t.equal((await readyz(gw)).status, 200, 'still ready: it serves the last known configuration')
  t.ok(gw.store.get('Ingress', 'default/hello'), 'nothing removed from the store')

  // Changed while the gateway cannot see it.
  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-b', 100]]))
  apply(env.api, simpleIngress('later', ['later.example.com'], [['svc-a', 100]]))
  const kube = gw.kube
  await env.api.setDown(false)
  await waitServed(gw.ports.http, 'hello.example.com', 'b')
  await waitServed(gw.ports.http, 'later.example.com', 'a')
  await waitFor('source back up', async () => (await sourceUp()) === '1')
  t.equal(gw.kube, kube, 'same source, no restart')
  t.equal((await kubeDebug(gw)).healthy, true)
})

t.test('after an API server outage, an EndpointSlice change is served as soon as the server is back, not when the grown backoff ends', async (t) => {
  const env = await startKubeEnv(t)
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  // A backoff as long as one grown over a long outage: 10-20 s before the first retry.
  const gw = await startKubeGateway(t, env, [], { backoff: { initialMs: 20_000, maxMs: 60_000 }, probeMs: 100 })
  await waitReady(gw)
  t.equal(await who(gw.ports.http, 'hello.example.com'), 'a')

  await env.api.setDown(true)
  await waitFor('every informer waiting out its backoff', async () => Object.values((await kubeDebug(gw)).informers).every((i) => i.errors >= 1 && i.retryInMs !== undefined))
  await waitFor('a probe found the server still away', async () => (await kubeDebug(gw)).serverReturn.probes >= 1)
  const waiting = Object.values((await kubeDebug(gw)).informers)
  // The earliest moment any informer would have retried on its own.
  const ownRetry = Date.now() + Math.min(...waiting.map((i) => i.retryInMs!))
  t.ok(ownRetry - Date.now() > 5000, 'the informers would wait seconds on their own')
  apply(env.api, endpointSlice('svc-a', [{ name: 'http', port: b!.port }], [{ ip: '127.0.0.1' }], 'default', 'svc-a-slice'))
  await env.api.setDown(false)

  await waitServed(gw.ports.http, 'hello.example.com', 'b')
  await waitFor('every informer healthy again', async () => (await kubeDebug(gw)).healthy)
  t.ok(Date.now() < ownRetry, "served and reconnected before any informer's own backoff ended")
  const dbg = await kubeDebug(gw)
  t.ok(dbg.serverReturn.answered >= 1 && dbg.serverReturn.wakes >= 1, 'a probe saw the server back and woke the informers')
  t.ok(dbg.serverReturn.probes > dbg.serverReturn.answered, 'the probes while it was down went unanswered')
})

t.test('a quiet watch asks for bookmarks and resumes from the last bookmark: no relist after history moved on', async (t) => {
  // Watches end after 300 ms (the server's timeout), bookmarks every 50 ms, and only 5 events of history.
  const env = await startKubeEnv(t, { bookmarkIntervalMs: 50, watchTimeoutMs: 300, historySize: 5 })
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), serviceFor('svc-b', b!), simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  const gw = await startKubeGateway(t, env)
  await waitReady(gw)
  const listsBefore = listsOf(env.api, INGRESS_PATH)

  // Changes the KIngress watch does not carry: its own last event falls out of the server's history.
  for (let i = 0; i < 8; i++) apply(env.api, service(`other-${i}`, [{ name: 'http', port: 80 }]))
  const moved = Number(env.api.resourceVersion)
  await waitFor('a KIngress watch resumed from a bookmark after the history moved on', () =>
    env.api.requests.some((r) => r.watch && r.path === INGRESS_PATH && Number(r.query['resourceVersion']) >= moved && r.status === 200))
  t.equal(listsOf(env.api, INGRESS_PATH), listsBefore, 'no relist: the resourceVersion came from a bookmark, not from the last KIngress')
  const watches = env.api.requests.filter((r) => r.watch && r.path === INGRESS_PATH)
  t.ok(watches.every((r) => r.query['allowWatchBookmarks'] === 'true'), 'every watch asks for bookmarks')
  t.ok(watches.every((r) => Number(r.query['timeoutSeconds']) >= 1800 && Number(r.query['timeoutSeconds']) < 3600), 'and to stay open 30-60 minutes, as the server would choose')
  t.ok(((await kubeDebug(gw)).informers['ingresses']?.bookmarks ?? 0) >= 1, 'bookmarks are counted in /debug/routes')

  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-b', 100]]))
  await waitServed(gw.ports.http, 'hello.example.com', 'b')
  t.equal(listsOf(env.api, INGRESS_PATH), listsBefore, 'the change came over the resumed watch')
})

/** An informer on the KIngresses of `env`, logging into `lines` (one parsed object per line). */
function loggedInformer(t: { teardown(fn: () => unknown): void }, env: { api: { kubeConfig(): import('@kubernetes/client-node').KubeConfig } }, forbiddenGraceMs: number) {
  const lines: Array<{ level: number; msg: string; hint?: string }> = []
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) })
  const inf = new ResilientInformer({
    name: 'ingresses', kubeConfig: env.api.kubeConfig(), path: INGRESS_PATH, log, forbiddenGraceMs,
    backoff: { initialMs: 10, maxMs: 40 }, handlers: { upsert: () => {}, remove: () => {} },
  })
  t.teardown(() => inf.stop())
  // What an operator sees at the default level: warn and above.
  return { inf, lines, said: (code: string) => lines.filter((l) => l.level >= 40 && l.msg.startsWith(code)) }
}

const refuseIngressLists = (method: string, path: string, q: URLSearchParams) => method === 'GET' && path === INGRESS_PATH && q.get('watch') !== 'true'

t.test('403s while an API server starts are logged as possibly transient, not as an RBAC misconfiguration', async (t) => {
  const env = await startKubeEnv(t)
  env.api.failNext(5, { code: 403, reason: 'Forbidden', message: 'ingresses is forbidden: RBAC: not yet synced', match: refuseIngressLists })
  const { inf, lines, said } = loggedInformer(t, env, 60_000)
  await inf.start()
  t.equal(inf.describe().errors, 5, 'five refusals, then the list worked')
  const refused = said('EDGE_ERR_KUBE_WATCH')
  t.equal(refused.length, 1, 'one warning for the run of refusals')
  t.equal(lines.filter((l) => l.level === 20 && l.msg.startsWith('EDGE_ERR_KUBE_WATCH')).length, 4, 'the other four at debug')
  t.match(refused[0]?.hint, /may be transient/, 'which says it may be transient')
  t.equal(refused[0]?.level, 40, 'at warn level')
  t.same(said('EDGE_ERR_KUBE_RBAC'), [], 'not reported as RBAC')
})

t.test('403s that persist past the grace period are reported once as an RBAC misconfiguration', async (t) => {
  const env = await startKubeEnv(t)
  env.api.failNext(1_000_000, { code: 403, reason: 'Forbidden', message: 'ingresses is forbidden', match: refuseIngressLists })
  const { inf, said } = loggedInformer(t, env, 300)
  void inf.start()
  await waitFor('reported as RBAC', () => said('EDGE_ERR_KUBE_RBAC').length === 1)
  const errorsThen = inf.describe().errors
  await waitFor('several more refusals', () => inf.describe().errors >= errorsThen + 5)
  t.equal(said('EDGE_ERR_KUBE_RBAC').length, 1, 'reported once, not on every retry')
  t.match(said('EDGE_ERR_KUBE_RBAC')[0], { level: 50, hint: /list and watch on \/apis\/networking.internal.knative.dev\/v1alpha1\/ingresses/ })
  t.equal(said('EDGE_ERR_KUBE_WATCH').length, 1, 'the first refusal was the possibly-transient warning')
  env.api.clearFaults()
  await inf.whenSynced()
  t.ok(inf.healthy, 'recovers once allowed')
})

t.test('/debug/routes explains a backend with no endpoints: an error for a Service, a state for a revision at zero', async (t) => {
  const env = await startKubeEnv(t)
  apply(env.api, service('empty', [{ name: 'http', port: 80 }]), simpleIngress('bare', ['bare.example.com'], [['empty', 100]]))
  apply(env.api, revision('idle-00001'), {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Route',
    metadata: { name: 'idle', namespace: 'default' },
    spec: { traffic: [{ revisionName: 'idle-00001', percent: 100 }] },
    status: { url: 'http://idle.default.example.com', traffic: [{ revisionName: 'idle-00001', percent: 100 }] },
  })
  const gw = await startKubeGateway(t, env, ['--watch-serving'])
  await waitReady(gw)
  t.equal(await who(gw.ports.http, 'bare.example.com'), '503 no-backend')
  const splitsOf = async (host: string) => {
    const r = (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<{ hosts: Array<{ host: string; paths: Array<{ splits: Array<{ problem?: string; endpoints: unknown[] }> }> }> }>()
    return r.hosts.find((h) => h.host === host)?.paths.flatMap((p) => p.splits) ?? []
  }
  t.match(await splitsOf('bare.example.com'), [{ problem: 'Service default/empty has no ready endpoints', endpoints: [] }], 'the 503 no-backend is explained')
  t.match(await splitsOf('idle.default.example.com'), [{ problem: 'revision default/idle-00001 has no ready pods (scaled to zero: the first request starts it)' }], 'a revision at zero is described as a state')

  // Once the Service has an endpoint, no problem is shown.
  const [a] = await backends(t, 'a')
  apply(env.api, endpointSlice('empty', [{ name: 'http', port: a!.port }], [{ ip: '127.0.0.1' }], 'default', 'empty-slice'))
  await waitServed(gw.ports.http, 'bare.example.com', 'a')
  t.equal((await splitsOf('bare.example.com'))[0]?.problem, undefined, 'no problem with a ready endpoint')
})

t.test('--namespace scopes the informers to namespaced paths', async (t) => {
  const env = await startKubeEnv(t)
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!, 'team-a'), serviceFor('svc-b', b!, 'team-b'))
  apply(env.api, simpleIngress('in', ['in.example.com'], [['svc-a', 100]], { ns: 'team-a' }))
  apply(env.api, simpleIngress('out', ['out.example.com'], [['svc-b', 100]], { ns: 'team-b' }))
  const gw = await startKubeGateway(t, env, ['--namespace', 'team-a', '--namespace', 'team-c'])
  await waitReady(gw)
  t.equal(await who(gw.ports.http, 'in.example.com'), 'a')
  t.equal(await who(gw.ports.http, 'out.example.com'), NOT_FOUND, 'another namespace is not watched')
  t.equal(gw.store.get('Service', 'team-b/svc-b'), undefined)
  const dbg = await kubeDebug(gw)
  t.same(dbg.namespaces, ['team-a', 'team-c'])
  const own = dbg.informers['own-replicas@knative-serving']
  t.same([own?.path, env.api.requests.find((r) => r.path === own?.path)?.query.labelSelector], ['/apis/discovery.k8s.io/v1/namespaces/knative-serving/endpointslices', `kubernetes.io/service-name=${gw.config.localService}`], "of the gateway's own namespace, only its replicas' EndpointSlices are watched (by their Service's label)")
  t.same(Object.keys(dbg.informers).filter((name) => name.endsWith('@knative-serving') && !name.startsWith('configmaps/')), ['own-replicas@knative-serving'], 'and nothing else there but the settings ConfigMaps, by name')
  t.equal(dbg.informers['ingresses@team-a']?.path, '/apis/networking.internal.knative.dev/v1alpha1/namespaces/team-a/ingresses')
  t.equal(dbg.informers['services@team-c']?.path, '/api/v1/namespaces/team-c/services')
  t.notOk(env.api.requests.some((r) => !r.path.includes('/namespaces/')), 'no cluster-wide request')
  apply(env.api, simpleIngress('late', ['late.example.com'], [['svc-a', 100]], { ns: 'team-a' }))
  await waitServed(gw.ports.http, 'late.example.com', 'a')
})

t.test('--watch-serving: Routes and Revisions from the cluster are translated and served', async (t) => {
  const env = await startKubeEnv(t)
  const [pod] = await backends(t, 'pod')
  apply(env.api, revision('web-00001'), revisionPods('web-00001', pod!))
  apply(env.api, {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Route',
    metadata: { name: 'web', namespace: 'default' },
    spec: { traffic: [{ revisionName: 'web-00001', percent: 100 }] },
    status: { url: 'http://web.default.example.com', traffic: [{ revisionName: 'web-00001', percent: 100 }] },
  })
  const plain = await startKubeGateway(t, env)
  const gw = await startKubeGateway(t, env, ['--watch-serving'])
  await waitReady(gw)
  await waitReady(plain)
  t.equal(await who(gw.ports.http, 'web.default.example.com'), 'pod')
  t.ok(gw.store.get('Revision', 'default/web-00001'), 'Revision stored')
  t.ok((await kubeDebug(gw)).informers['domainmappings'], 'DomainMappings watched')
  t.equal(await who(plain.ports.http, 'web.default.example.com'), NOT_FOUND, 'without --watch-serving Routes are Serving\'s job')
  t.notOk((await kubeDebug(plain)).informers['routes'], 'and not watched')
})

t.test('--watch-serving: a Knative Service in the cluster is derived into its Revision and Route and served', async (t) => {
  const env = await startKubeEnv(t)
  const [pod] = await backends(t, 'pod')
  apply(env.api, {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Service',
    metadata: { name: 'shop', namespace: 'default' },
    spec: { template: { spec: { containerConcurrency: 4, containers: [{ image: 'example.com/shop' }] } } },
  })
  // Whoever runs the revision's pods in this cluster publishes them as Knative would.
  apply(env.api, revisionPods('shop-00001', pod!))
  const gw = await startKubeGateway(t, env, ['--watch-serving'])
  await waitReady(gw)
  await waitServed(gw.ports.http, 'shop.default.example.com', 'pod')
  t.equal(gw.store.get('Revision', 'default/shop-00001')?.spec?.containerConcurrency, 4, 'the derived Revision carries the template')
  t.ok((await kubeDebug(gw)).informers['kservices'], 'Knative Services watched')
  t.ok((await kubeDebug(gw)).informers['configurations'], 'and Configurations')
  t.notOk(env.api.requests.some((r) => r.method !== 'GET' && r.path.includes('serving.knative.dev')), 'nothing derived is written to the API server')
})

t.test('an API server restart (new resourceVersions, no history) is followed by a relist', async (t) => {
  const env = await startKubeEnv(t)
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), serviceFor('svc-b', b!), simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  const gw = await startKubeGateway(t, env)
  await waitReady(gw)
  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-b', 100]]))
  await env.api.restart()
  apply(env.api, simpleIngress('fresh', ['fresh.example.com'], [['svc-a', 100]]))
  await waitServed(gw.ports.http, 'hello.example.com', 'b')
  await waitServed(gw.ports.http, 'fresh.example.com', 'a')

  // A wiped cluster that answers is the truth: its objects are gone.
  await env.api.restart({ wipe: true })
  await waitServed(gw.ports.http, 'hello.example.com', NOT_FOUND)
  await waitFor('store emptied by the relist', () => gw.store.ownedBy('kubernetes').length === 0)
  t.pass('relisted after each restart')
})

t.test('an API server restored from an older backup: the silent watch is abandoned and the gateway relists', async (t) => {
  // Bookmarks every 100 ms keep healthy watches talking; a watch silent for 1 s is abandoned.
  const env = await startKubeEnv(t, { bookmarkIntervalMs: 100 })
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), serviceFor('svc-b', b!))
  const backup = env.api.backup()
  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  // The gateway will have seen resourceVersions well past the backup's.
  for (let i = 0; i < 5; i++) apply(env.api, service(`pad-${i}`, [{ name: 'http', port: 80 }]))
  const gw = await startKubeGateway(t, env, [], { watchInactivityMs: 1000, backoff: { initialMs: 50, maxMs: 500 } })
  await waitReady(gw)
  t.equal(await who(gw.ports.http, 'hello.example.com'), 'a')
  const listsBefore = listsOf(env.api, INGRESS_PATH)

  await env.api.restoreBackup(backup)
  // Written at a resourceVersion at or below what the gateway's watches resume from: a watch from
  // there is accepted by the server and stays silent, so only a relist can bring this.
  apply(env.api, simpleIngress('after', ['after.example.com'], [['svc-b', 100]]))
  const resumedFrom = (r: { watch: boolean; path: string; query: Record<string, string> }) => r.watch && r.path === INGRESS_PATH && Number(r.query['resourceVersion']) > Number(env.api.resourceVersion)
  await waitFor('a KIngress watch resumed from a resourceVersion the restored server has not reached', () => env.api.requests.some(resumedFrom))
  await waitServed(gw.ports.http, 'after.example.com', 'b')
  await waitServed(gw.ports.http, 'hello.example.com', NOT_FOUND)
  t.pass('the relist brought what was written after the restore, and the deletion the restore made')
  const ing = (await kubeDebug(gw)).informers['ingresses']!
  t.ok(ing.silentRelists >= 1, `relisted after the silent watch (${ing.silentRelists})`)
  t.ok(listsOf(env.api, INGRESS_PATH) > listsBefore, 'by listing again')
})

t.test('a watch ERROR "Too large resource version" makes the informer relist, after the retry the server asked for', async (t) => {
  const env = await startKubeEnv(t)
  const [a, b] = await backends(t, 'a', 'b')
  apply(env.api, serviceFor('svc-a', a!), serviceFor('svc-b', b!), simpleIngress('hello', ['hello.example.com'], [['svc-a', 100]]))
  const gw = await startKubeGateway(t, env, [], { backoff: { initialMs: 50, maxMs: 500 } })
  await waitReady(gw)
  const listsBefore = listsOf(env.api, INGRESS_PATH)

  const sentAt = Date.now()
  const current = Number(env.api.resourceVersion)
  // As a server that cannot serve the resourceVersion asked for answers (retryAfterSeconds: 1).
  env.api.failWatches(tooLargeResourceVersion(current + 100, current), (path) => path === INGRESS_PATH)
  apply(env.api, simpleIngress('hello', ['hello.example.com'], [['svc-b', 100]]))
  await waitServed(gw.ports.http, 'hello.example.com', 'b')
  const relists = env.api.requests.filter((r) => !r.watch && r.method === 'GET' && r.path === INGRESS_PATH).slice(listsBefore)
  t.equal(relists.length, 1, 'one relist')
  t.ok(relists[0]!.time - sentAt >= 1000, `not before the server's retryAfterSeconds (${relists[0]!.time - sentAt} ms)`)
  const ing = (await kubeDebug(gw)).informers['ingresses']!
  t.match(ing.lastError?.message, /504 Timeout: Too large resource version/, 'the Status is the error /debug/routes shows')
  await waitFor('healthy again', async () => (await kubeDebug(gw)).healthy)
})
