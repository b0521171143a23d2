// Which certificate each SNI name is served. In cluster mode: only the Secrets KIngresses name, and
// --default-tls-secret for every other name; a TLS Secret some namespace holds but no KIngress names
// is never served, with or without the default. In the files source (a laptop, no KIngress to name
// them) every TLS Secret is served for the names in its certificate. What the TLS listener answers to
// HTTP/1.1 its parser refuses, and the cluster-local TLS listener.
import t from 'tap'
import fs from 'node:fs'
import https from 'node:https'
import tls from 'node:tls'
import type { Test } from 'tap'
import { kingress, serviceFor, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { apply, del, startKubeEnv, startKubeGateway, waitReady } from './helpers/kube.ts'
import { makeCA, makeCert, servedCertificate, tlsSecret } from './helpers/certs.ts'
import type { KeyPair } from './helpers/certs.ts'

let ca: KeyPair
const certs: Record<string, KeyPair> = {}

t.before(async () => {
  ca = await makeCA()
  for (const host of ['secure.example.com', 'stray.example.com', 'fallback.example.com', 'fallback-renewed.example.com']) certs[host] = await makeCert(ca, host)
})

/** The cluster every test starts from: one KIngress naming `secure-cert`, and a stray TLS Secret in another namespace. */
async function cluster(t: Test, args: string[]) {
  const env = await startKubeEnv(t)
  const app = await startBackend('app')
  t.teardown(() => app.close())
  apply(
    env.api,
    ...serviceFor('svc-a', app),
    kingress('secure', {
      tls: [{ hosts: ['secure.example.com'], secretName: 'secure-cert', secretNamespace: 'default' }],
      rules: [{ hosts: ['secure.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'svc-a', servicePort: 80, percent: 100 }] }] } }],
    }),
    tlsSecret('secure-cert', certs['secure.example.com']!),
    tlsSecret('stray-cert', certs['stray.example.com']!, 'team-b'),
  )
  const gw = await startKubeGateway(t, env, args)
  await waitReady(gw)
  await waitFor('the stray Secret is in the store', () => gw.store.get('Secret', 'team-b/stray-cert') !== undefined)
  const served = (name: string) => servedCertificate(gw.ports.https, name, ca.cert)
  return { env, gw, served }
}

t.test('without --default-tls-secret: a KIngress-named Secret is served; a stray one is not, and names without a certificate fail their handshake', async (t) => {
  const { served } = await cluster(t, [])
  t.same(await served('secure.example.com'), { cn: 'secure.example.com' })
  const stray = await served('stray.example.com')
  t.ok('error' in stray, 'the stray Secret is not served for its own name')
  t.same(await served('secure.example.com'), { cn: 'secure.example.com' }, 'the listener keeps serving')
})

t.test('with --default-tls-secret: other names get the default, the stray Secret still never; the default follows its Secret', async (t) => {
  const { env, gw, served } = await cluster(t, ['--default-tls-secret', 'edge-system/fallback'])
  const before = await served('stray.example.com')
  t.ok('error' in before, 'the default Secret is not there yet: the handshake fails')
  apply(env.api, tlsSecret('fallback', certs['fallback.example.com']!, 'edge-system'))
  await waitFor('the default Secret is in the store', () => gw.store.get('Secret', 'edge-system/fallback') !== undefined)
  await waitFor('the default certificate is served', async () => 'cn' in (await served('anything.example.com')))
  t.same(await served('anything.example.com'), { cn: 'fallback.example.com' }, 'a name with no certificate: the default')
  t.same(await served('stray.example.com'), { cn: 'fallback.example.com' }, 'the stray Secret is not served for its name: the default is')
  t.same(await served('secure.example.com'), { cn: 'secure.example.com' }, 'a KIngress-named Secret still wins')

  apply(env.api, tlsSecret('fallback', certs['fallback-renewed.example.com']!, 'edge-system'))
  await waitFor('the renewed default is served', async () => {
    const r = await served('anything.example.com')
    return 'cn' in r && r.cn === 'fallback-renewed.example.com'
  })
  del(env.api, tlsSecret('fallback', certs['fallback-renewed.example.com']!, 'edge-system'))
  await waitFor('the default is gone with its Secret', async () => 'error' in (await served('anything.example.com')))
  t.same(await served('secure.example.com'), { cn: 'secure.example.com' })
})

t.test('files source: every TLS Secret is served for the names in its certificate; --default-tls-secret for the rest', async (t) => {
  const dir = tempDir()
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  writeManifest(dir, 'tls.yaml', [tlsSecret('stray-cert', certs['stray.example.com']!, 'team-b'), tlsSecret('fallback', certs['fallback.example.com']!, 'edge-system')])
  const gw = await startTestGateway(dir, ['--default-tls-secret', 'edge-system/fallback'])
  t.teardown(() => gw.close())
  const served = (name: string) => servedCertificate(gw.ports.https, name, ca.cert)
  t.same(await served('stray.example.com'), { cn: 'stray.example.com' }, 'a Secret no KIngress names, by its own name')
  t.same(await served('other.example.com'), { cn: 'fallback.example.com' }, 'any other name: the default')
})

t.test('HTTP/1.1 over TLS: a request the parser refuses gets the gateway\'s own answer, as in the clear', async (t) => {
  const dir = tempDir()
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  writeManifest(dir, 'tls.yaml', [tlsSecret('stray-cert', certs['stray.example.com']!, 'team-b')])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  const send = (payload: string): Promise<string> =>
    new Promise((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: gw.ports.https, servername: 'stray.example.com', ca: ca.cert, ALPNProtocols: ['http/1.1'] }, () => s.write(payload))
      let text = ''
      s.on('data', (d) => (text += d))
      s.on('close', () => resolve(text))
      s.on('error', () => resolve(text))
    })
  const bad = await send('GET / HTTP/1.1\r\nHost: stray.example.com\r\nContent-Length: x\r\n\r\n')
  t.match(bad, /^HTTP\/1\.1 400 /)
  t.match(bad, /x-edge-reason: bad-request/)
  const big = await send(`GET / HTTP/1.1\r\nHost: stray.example.com\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`)
  t.match(big, /^HTTP\/1\.1 431 /)
  t.match(big, /x-edge-reason: headers-too-large/)
})

t.test('--local-https-port: cluster-local TLS serves every rule, ClusterLocal ones included; the public TLS listener does not', async (t) => {
  const local = 'hello.default.svc.cluster.local'
  const pub = 'hello.example.com'
  const localCert = await makeCert(ca, local)
  const pubCert = await makeCert(ca, pub)
  const app = await startBackend('app')
  t.teardown(() => app.close())
  const dir = tempDir()
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const rule = (host: string, visibility: string): unknown => ({ hosts: [host], visibility, http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'svc-a', servicePort: 80, percent: 100 }] }] } })
  writeManifest(dir, 'app.yaml', [
    ...serviceFor('svc-a', app),
    tlsSecret('local-cert', localCert),
    tlsSecret('pub-cert', pubCert),
    kingress('hello', {
      tls: [
        { hosts: [local], secretName: 'local-cert', secretNamespace: 'default' },
        { hosts: [pub], secretName: 'pub-cert', secretNamespace: 'default' },
      ],
      rules: [rule(local, 'ClusterLocal'), rule(pub, 'ExternalIP')],
    }),
  ])
  const gw = await startTestGateway(dir, ['--local-https-port', '0'])
  t.teardown(() => gw.close())
  t.ok(gw.ports.localHttps, 'the listener is up')
  const httpsGet = (port: number, host: string): Promise<{ status: number; reason: string | undefined; cn: string }> =>
    new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: '/', servername: host, headers: { host }, ca: ca.cert, agent: false }, (res) => {
        const cn = String((res.socket as tls.TLSSocket).getPeerCertificate().subject?.CN ?? '')
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reason: res.headers['x-edge-reason'] as string | undefined, cn }))
      })
      req.on('error', reject)
      req.end()
    })
  t.same(await httpsGet(gw.ports.localHttps!, local), { status: 200, reason: undefined, cn: local }, 'a ClusterLocal host over cluster-local TLS, with its own certificate')
  t.same(await httpsGet(gw.ports.localHttps!, pub), { status: 200, reason: undefined, cn: pub }, 'an ExternalIP host too: the local side serves every rule')
  t.same(await httpsGet(gw.ports.https, local), { status: 404, reason: 'host-not-found', cn: local }, 'the public TLS listener does not serve a ClusterLocal host')
  const off = await startTestGateway(dir)
  t.teardown(() => off.close())
  t.equal(off.ports.localHttps, undefined, 'off unless set')
})
