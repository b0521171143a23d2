// Knative's system-internal-tls: revision pods are dialled on queue-proxy's TLS port, their
// certificate checked as Kourier checks it (chain against the trust-bundle ConfigMaps in
// knative-serving, SAN kn-routing or kn-user-<namespace>, TLS 1.3). Each pod here is a real TLS
// server with a certificate made by the test; the plain port of the same "pod" is another server, so
// every answer says which side was dialled.
import t from 'tap'
import type { Test } from 'tap'
import https from 'node:https'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { Server } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { endpointSlice, get, kingress, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Answer, Backend } from './helpers/gateway.ts'
import type { Gateway } from '../src/gateway.ts'
import { makeCA, makeCert } from './helpers/certs.ts'
import { apply, kubeDebug, startKubeEnv, startKubeGateway, waitReady } from './helpers/kube.ts'
import type { KeyPair } from './helpers/certs.ts'

interface TlsPod {
  port: number
  /** Requests that reached the pod (after a verified handshake). */
  seen: string[]
  close(): Promise<void>
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return (server.address() as AddressInfo).port
}

/** queue-proxy's TLS side over HTTP/1.1 (and WebSocket): answers who it is and what it was sent. */
async function startTlsPod(t: Test, name: string, cert: KeyPair): Promise<TlsPod> {
  const seen: string[] = []
  const server = https.createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    seen.push(`${req.method} ${req.url}`)
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ pod: name, tls: true, httpVersion: req.httpVersion, body, proxy: req.headers['k-proxy-request'] }))
    })
  })
  new WebSocketServer({ server }).on('connection', (ws) => ws.on('message', (m) => ws.send(`${name} over tls: ${m.toString()}`)))
  const port = await listen(server)
  const pod = { port, seen, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }) }
  t.teardown(pod.close)
  return pod
}

/** The same over HTTP/2 only (a revision that speaks h2c in the clear speaks h2 over TLS). */
async function startH2Pod(t: Test, name: string, cert: KeyPair): Promise<TlsPod> {
  const seen: string[] = []
  const server = http2.createSecureServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    seen.push(`${req.method} ${req.url}`)
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ pod: name, tls: true, httpVersion: req.httpVersion, alpn: req.stream.session?.alpnProtocol }))
  })
  const port = await listen(server)
  const pod = { port, seen, close: () => new Promise<void>((r) => server.close(() => r())) }
  t.teardown(pod.close)
  return pod
}

/** A revision's `-private` EndpointSlice, as Serving writes it: the plain port and `https` (queue-proxy's 8112). */
function revisionSlice(rev: string, plainPort: number, tlsPort: number, plainName = 'http'): unknown {
  return endpointSlice(`${rev}-private`, [{ name: plainName, port: plainPort }, { name: 'https', port: tlsPort }], [{ ip: '127.0.0.1' }], 'default', `${rev}-private-slice`)
}

/** The KIngress Serving makes with system-internal-tls on: the revision's port 443. */
function revisionIngress(rev: string, host: string): unknown {
  const split = { serviceNamespace: 'default', serviceName: rev, servicePort: 443, percent: 100, appendHeaders: { 'Knative-Serving-Revision': rev, 'Knative-Serving-Namespace': 'default' } }
  return kingress(rev, { rules: [{ hosts: [host], visibility: 'ExternalIP', http: { paths: [{ splits: [split] }] } }] })
}

function trustBundle(name: string, data: Record<string, string>, ns = 'knative-serving'): unknown {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns, labels: { 'networking.knative.dev/trust-bundle': 'true' } }, data }
}

interface UpstreamTlsView {
  enabled: boolean
  certificates: number
  bundles: string[]
  problems: Array<{ source: string; reason: string }>
  failures: Record<string, { pod: string; reason: string; count: number }>
}

async function upstreamTlsView(gw: Gateway): Promise<UpstreamTlsView> {
  return (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<{ sources: { upstreamTls: UpstreamTlsView } }>().sources.upstreamTls
}

async function served(gw: Gateway, host: string): Promise<Answer> {
  let a: Answer | undefined
  await waitFor(`${host} is routed`, async () => (a = await get(gw.ports.http, host)).status !== 404)
  return a!
}

/** Made once: Knative's CA, another CA, and pod certificates naming the SANs Knative issues. */
let certs: { ca: KeyPair; otherCa: KeyPair; pod: KeyPair; otherNamespace: KeyPair; routing: KeyPair }

t.before(async () => {
  const ca = await makeCA()
  certs = { ca, otherCa: await makeCA(), pod: await makeCert(ca, 'kn-user-default'), otherNamespace: await makeCert(ca, 'kn-user-other'), routing: await makeCert(ca, 'kn-routing') }
})

async function plainBackend(t: Test, name: string): Promise<Backend> {
  const b = await startBackend(name)
  t.teardown(() => b.close())
  return b
}

t.test('the setting picks the side: off, the http port; on (changed live), the https port, verified; off again, plain', async (t) => {
  const plain = await plainBackend(t, 'plain')
  const pod = await startTlsPod(t, 'secure', certs.pod)
  const dir = tempDir()
  writeManifest(dir, 'app.yaml', [revisionSlice('hello-00001', plain.port, pod.port), revisionIngress('hello-00001', 'hello.example.com')])
  writeManifest(dir, 'bundle.yaml', [trustBundle('knative-ca', { 'ca.pem': certs.ca.cert })])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())

  const off = await served(gw, 'hello.example.com')
  t.equal(off.json().backend, 'plain', 'off by default: the http port')
  t.equal(pod.seen.length, 0)

  // What a live source (config-network) does: change the setting; the next request follows it.
  gw.config.systemInternalTls = true
  const on = await get(gw.ports.http, 'hello.example.com', '/a')
  t.equal(on.status, 200)
  t.match(on.json(), { pod: 'secure', tls: true, proxy: 'activator' }, 'a bodyless GET (our h1 client) over TLS')
  const post = await get(gw.ports.http, 'hello.example.com', '/b', { 'content-type': 'text/plain' }, 'POST', 'payload')
  t.match(post.json(), { pod: 'secure', tls: true, body: 'payload' }, 'a request with a body (undici) over TLS')
  t.same(pod.seen, ['GET /a', 'POST /b'])
  const view = await upstreamTlsView(gw)
  t.match(view, { enabled: true, certificates: 1, bundles: ['ConfigMap knative-serving/knative-ca[ca.pem]'] })
  t.same(view.problems, [])
  t.same(view.failures, {})

  gw.config.systemInternalTls = false
  t.equal((await get(gw.ports.http, 'hello.example.com', '/c')).json().backend, 'plain', 'off again: plain')
  t.equal(pod.seen.length, 2)
})

t.test('with the setting on (--system-internal-tls)', async (t) => {
  const plain = await plainBackend(t, 'plain')
  const good = await startTlsPod(t, 'good', certs.pod)
  const routing = await startTlsPod(t, 'routing', certs.routing)
  const wrongSan = await startTlsPod(t, 'wrong-san', certs.otherNamespace)
  const h2 = await startH2Pod(t, 'grpc', certs.pod)
  const dir = tempDir()
  writeManifest(dir, 'app.yaml', [
    revisionSlice('good-00001', plain.port, good.port),
    revisionIngress('good-00001', 'good.example.com'),
    revisionSlice('routing-00001', plain.port, routing.port),
    revisionIngress('routing-00001', 'routing.example.com'),
    revisionSlice('wrong-00001', plain.port, wrongSan.port),
    revisionIngress('wrong-00001', 'wrong.example.com'),
    revisionSlice('grpc-00001', plain.port, h2.port, 'http2'),
    revisionIngress('grpc-00001', 'grpc.example.com'),
    trustBundle('knative-ca', { 'ca.pem': certs.ca.cert }),
  ])
  const gw = await startTestGateway(dir, ['--system-internal-tls'])
  t.teardown(() => gw.close())

  t.test('a certificate naming kn-user-<namespace> or kn-routing, signed by a bundled CA: served', async (t) => {
    t.match((await served(gw, 'good.example.com')).json(), { pod: 'good', tls: true })
    t.match((await served(gw, 'routing.example.com')).json(), { pod: 'routing', tls: true })
    t.equal(plain.seen.length, 0, 'nothing went to the plain port')
  })

  t.test('a certificate for another namespace: 502 upstream-tls-failed with the reason, per backend, never sent', async (t) => {
    const a = await served(gw, 'wrong.example.com')
    t.equal(a.status, 502)
    t.equal(a.headers['x-edge-reason'], 'upstream-tls-failed')
    t.match(a.body, `TLS to upstream 127.0.0.1:${wrongSan.port} failed: ERR_TLS_CERT_ALTNAME_INVALID`)
    t.match(a.body, 'names kn-user-other; system-internal-tls expects kn-routing or kn-user-default')
    const again = await get(gw.ports.http, 'wrong.example.com')
    t.equal(again.status, 502, 'a second request fails the same way')
    t.same(wrongSan.seen, [], 'no request reached the pod whose certificate was refused')
    t.equal(plain.seen.length, 0, 'no fallback to the plain port')
    const view = await upstreamTlsView(gw)
    t.match(view.failures['rev:default/wrong-00001'], { pod: `127.0.0.1:${wrongSan.port}`, reason: /^ERR_TLS_CERT_ALTNAME_INVALID: /, count: 2 })
    t.notOk(view.failures['rev:default/good-00001'], 'the other backends have no failure')
  })

  t.test('a WebSocket upgrade goes through the TLS side', async (t) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.ports.http}/chat`, { headers: { host: 'good.example.com' } })
    t.teardown(() => ws.close())
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    const reply = new Promise<string>((resolve) => ws.once('message', (m) => resolve(m.toString())))
    ws.send('hello')
    t.equal(await reply, 'good over tls: hello')
  })

  t.test('a WebSocket upgrade to a refused certificate: 502 upstream-tls-failed', async (t) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.ports.http}/chat`, { headers: { host: 'wrong.example.com' } })
    ws.on('error', () => {}) // the refused handshake ends the client too; what matters is the answer
    const res = await new Promise<{ status: number; reason: unknown }>((resolve, reject) => {
      ws.once('unexpected-response', (_req, r) => resolve({ status: r.statusCode ?? 0, reason: r.headers['x-edge-reason'] }))
      ws.once('open', () => reject(new Error('the upgrade was accepted')))
    })
    t.same(res, { status: 502, reason: 'upstream-tls-failed' })
    t.same(wrongSan.seen, [])
  })

  t.test('a revision speaking HTTP/2 (an http2 port) gets h2 over TLS, by ALPN', async (t) => {
    const a = await served(gw, 'grpc.example.com')
    t.match(a.json(), { pod: 'grpc', tls: true, httpVersion: '2.0', alpn: 'h2' })
    t.same(h2.seen, ['GET /'])
  })
})

t.test('trust bundles follow their ConfigMaps: none, the wrong CA, then the right one, without a restart', async (t) => {
  const plain = await plainBackend(t, 'plain')
  const pod = await startTlsPod(t, 'secure', certs.pod)
  const dir = tempDir()
  writeManifest(dir, 'app.yaml', [revisionSlice('hello-00001', plain.port, pod.port), revisionIngress('hello-00001', 'hello.example.com')])
  const gw = await startTestGateway(dir, ['--system-internal-tls'])
  t.teardown(() => gw.close())

  const none = await served(gw, 'hello.example.com')
  t.equal(none.status, 502)
  t.equal(none.headers['x-edge-reason'], 'upstream-tls-failed')
  t.match(none.body, 'no trust bundle is loaded: add the CA that signs the pods\' certificates to a ConfigMap in knative-serving labelled networking.knative.dev/trust-bundle')

  // A bundle with another CA; a ConfigMap with the label in another namespace does not count.
  writeManifest(dir, 'bundle.yaml', [trustBundle('knative-ca', { 'ca.pem': certs.otherCa.cert }), trustBundle('elsewhere', { 'ca.pem': certs.ca.cert }, 'default')])
  await waitFor('the bundle is loaded', async () => (await upstreamTlsView(gw)).certificates === 1)
  const wrongCa = await get(gw.ports.http, 'hello.example.com')
  t.equal(wrongCa.status, 502)
  t.match(wrongCa.body, 'failed: CERT_SIGNATURE_FAILURE', 'the other CA has the same name, so its signature is what fails')
  t.notMatch(wrongCa.body, 'no trust bundle', 'a bundle is loaded: no hint about a missing one')
  t.same(pod.seen, [])

  // The right CA beside a value that is not a certificate: that value is reported and left out.
  writeManifest(dir, 'bundle.yaml', [trustBundle('knative-ca', { 'ca.pem': certs.ca.cert, 'key.pem': certs.pod.key })])
  // The same source name as before: the value left out is what tells the new version apart.
  await waitFor('the new bundle is loaded', async () => (await upstreamTlsView(gw)).problems.length === 1)
  t.same((await upstreamTlsView(gw)).bundles, ['ConfigMap knative-serving/knative-ca[ca.pem]'])
  const ok = await get(gw.ports.http, 'hello.example.com', '/after')
  t.equal(ok.status, 200, ok.body)
  t.match(ok.json(), { pod: 'secure', tls: true })
  t.same(pod.seen, ['GET /after'])
  const view = await upstreamTlsView(gw)
  t.match(view.problems, [{ source: 'ConfigMap knative-serving/knative-ca[key.pem]', reason: /PRIVATE KEY block/ }])
  t.same(view.failures, {}, 'failures under the old bundle are forgotten')
})

t.test('in a cluster: only labelled ConfigMaps in knative-serving are watched, and a new one is used without a restart', async (t) => {
  const plain = await plainBackend(t, 'plain')
  const pod = await startTlsPod(t, 'secure', certs.pod)
  const env = await startKubeEnv(t)
  // Unlabelled, and none of the settings ConfigMaps the gateway reads by name (config-network...).
  const unlabelled = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'config-logging', namespace: 'knative-serving' }, data: { 'loglevel.controller': 'info' } }
  apply(env.api, revisionSlice('hello-00001', plain.port, pod.port), revisionIngress('hello-00001', 'hello.example.com'), unlabelled, trustBundle('elsewhere', { 'ca.pem': certs.ca.cert }, 'default'))
  const gw = await startKubeGateway(t, env, ['--system-internal-tls'])
  await waitReady(gw)
  const informer = (await kubeDebug(gw)).informers['trust-bundles']
  t.match(informer, { path: '/api/v1/namespaces/knative-serving/configmaps', synced: true }, 'one informer, in knative-serving')
  t.same(gw.store.list('ConfigMap'), [], 'neither an unlabelled ConfigMap nor one in another namespace is read')
  t.equal((await served(gw, 'hello.example.com')).headers['x-edge-reason'], 'upstream-tls-failed')

  apply(env.api, trustBundle('knative-ca', { 'ca-bundle.pem': certs.ca.cert }))
  await waitFor('the bundle is loaded', async () => (await upstreamTlsView(gw)).certificates === 1)
  t.match((await get(gw.ports.http, 'hello.example.com')).json(), { pod: 'secure', tls: true })
  t.same(gw.store.list('ConfigMap').map((c) => c.metadata.name), ['knative-ca'])
})

t.test("in a cluster: routing-serving-certs' ca.crt is trusted too, whatever the Secret's type; other Opaque Secrets stay unread", async (t) => {
  const plain = await plainBackend(t, 'plain')
  const pod = await startTlsPod(t, 'secure', certs.pod)
  const env = await startKubeEnv(t)
  const opaque = (name: string, data: Record<string, string>) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'knative-serving' }, type: 'Opaque', data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])) })
  apply(env.api, revisionSlice('hello-00001', plain.port, pod.port), revisionIngress('hello-00001', 'hello.example.com'), opaque('other-certs', { 'ca.crt': certs.ca.cert }))
  const gw = await startKubeGateway(t, env, ['--system-internal-tls'])
  await waitReady(gw)
  t.match((await kubeDebug(gw)).informers['routing-certs'], { path: '/api/v1/namespaces/knative-serving/secrets', fieldSelector: 'metadata.name=routing-serving-certs', synced: true })
  t.equal((await served(gw, 'hello.example.com')).headers['x-edge-reason'], 'upstream-tls-failed', 'an Opaque Secret of another name is not a trust bundle')

  apply(env.api, opaque('routing-serving-certs', { 'ca.crt': certs.ca.cert, 'tls.crt': certs.routing.cert, 'tls.key': certs.routing.key }))
  await waitFor('the routing CA is loaded', async () => (await upstreamTlsView(gw)).certificates === 1)
  t.same((await upstreamTlsView(gw)).bundles, ['Secret knative-serving/routing-serving-certs[ca.crt]'])
  t.match((await get(gw.ports.http, 'hello.example.com')).json(), { pod: 'secure', tls: true })
  t.equal(gw.store.get('Secret', 'knative-serving/other-certs'), undefined, 'the other Opaque Secret is never stored')
})
