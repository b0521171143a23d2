// Issue 7 spoofing: what a client says about itself or about the gateway's internals never reaches a
// pod as fact. X-Forwarded-* from an untrusted client are replaced; from a --trusted-proxies hop
// they are kept and appended to. Assertions are on what the backend receives.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { endpointSlice, get, revision, service, simpleIngress, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { revisionIngress, podsSlice } from './helpers/activator.ts'
import { raw } from './helpers/raw.ts'

const HOST = 'spoof.example.com'
const OTHER = 'other.example.com'
const app = await startBackend('app')
const other = await startBackend('other')
const pod = await startBackend('pod')
const dir = tempDir()
const svc = (name: string, port: number): unknown[] => [service(name, [{ name: 'http', port: 80 }]), endpointSlice(name, [{ name: 'http', port }], [{ ip: '127.0.0.1' }], 'default', `${name}-slice`)]
writeManifest(dir, 'all.yaml', [
  ...svc('app', app.port),
  ...svc('other', other.port),
  simpleIngress('spoof', [HOST], [['app', 100]]),
  simpleIngress('other', [OTHER], [['other', 100]]),
  revision('rev-1'),
  revisionIngress('rev', 'rev.example.com', 'rev-1'),
  ...podsSlice('rev-1', [pod.port]),
])

const HOSTILE = {
  'X-Forwarded-For': '203.0.113.7',
  'X-Forwarded-Proto': 'https',
  'X-Forwarded-Host': OTHER,
  'X-Forwarded-Port': '443',
  Forwarded: 'for=203.0.113.7;proto=https;host=other.example.com',
  'X-Real-IP': '203.0.113.7',
  'K-Proxy-Request': 'activator',
  'Knative-Serving-Revision': 'someone-else',
  'Knative-Serving-Namespace': 'elsewhere',
  'K-Network-Foo': 'bar',
  'K-Original-Host': 'bank.example.com',
}

const untrusted = await startTestGateway(dir)
// 127.0.0.1 is not in these ranges: still untrusted.
const otherRanges = await startTestGateway(dir, ['--trusted-proxies', '10.0.0.0/8,fd00::/8'])
const trusted = await startTestGateway(dir, [], { EDGE_TRUSTED_PROXIES: '127.0.0.0/8' })
t.teardown(async () => {
  await Promise.all([untrusted.close(), otherRanges.close(), trusted.close()])
  await Promise.all([app.close(), other.close(), pod.close()])
})

type Seen = { backend: string; headers: Record<string, string | string[]> }

for (const [name, gw] of [['no --trusted-proxies', untrusted], ['a client outside --trusted-proxies', otherRanges]] as const) {
  t.test(`${name}: forwarding headers are replaced, internal ones dropped`, async (t) => {
    const r = await get(gw.ports.http, HOST, '/', HOSTILE)
    t.equal(r.status, 200)
    const seen = r.json<Seen>()
    t.equal(seen.backend, 'app', 'routed by Host, not by X-Forwarded-Host or K-Original-Host')
    const h = seen.headers
    t.equal(h['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the address the gateway saw')
    t.equal(h['x-forwarded-proto'], 'http', 'X-Forwarded-Proto is the scheme the gateway saw')
    t.equal(h['x-forwarded-host'], HOST, 'X-Forwarded-Host is the Host the gateway saw')
    t.equal(h.forwarded, `for=127.0.0.1;host=${HOST};proto=http`, 'Forwarded is what the gateway saw, as queue-proxy would build it')
    for (const gone of ['x-forwarded-port', 'x-real-ip', 'k-proxy-request', 'knative-serving-revision', 'knative-serving-namespace', 'k-network-foo', 'k-original-host']) {
      t.equal(h[gone], undefined, `${gone} does not reach the pod`)
    }
    t.equal(h.host, HOST)
  })
}

t.test('a trusted hop: X-Forwarded-For is appended to, Proto/Host and Forwarded kept; internal headers still dropped', async (t) => {
  const r = await get(trusted.ports.http, HOST, '/', HOSTILE)
  const seen = r.json<Seen>()
  t.equal(seen.backend, 'app', 'routing is by Host even from a trusted hop')
  const h = seen.headers
  t.equal(h['x-forwarded-for'], '203.0.113.7, 127.0.0.1')
  t.equal(h['x-forwarded-proto'], 'https')
  t.equal(h['x-forwarded-host'], OTHER)
  t.equal(h['x-forwarded-port'], '443')
  t.equal(h.forwarded, `${HOSTILE.Forwarded}, for=127.0.0.1`, 'Forwarded kept, the gateway appends its element (RFC 7239 §4)')
  t.equal(h['x-real-ip'], '203.0.113.7')
  for (const gone of ['k-proxy-request', 'knative-serving-revision', 'knative-serving-namespace', 'k-network-foo', 'k-original-host']) t.equal(h[gone], undefined, `${gone} does not reach the pod`)
})

t.test('a trusted hop without forwarding headers: the gateway sets them', async (t) => {
  const h = (await get(trusted.ports.http, HOST, '/')).json<Seen>().headers
  t.equal(h['x-forwarded-for'], '127.0.0.1')
  t.equal(h['x-forwarded-proto'], 'http')
  t.equal(h['x-forwarded-host'], HOST)
  t.equal(h.forwarded, `for=127.0.0.1;host=${HOST};proto=http`)
})

t.test('accounting: a revision pod gets exactly the gateway’s K-Proxy-Request and revision headers', async (t) => {
  const r = await get(untrusted.ports.http, 'rev.example.com', '/', HOSTILE)
  t.equal(r.status, 200)
  const h = r.json<Seen>().headers
  t.equal(h['k-proxy-request'], 'activator', 'counted once, by the gateway')
  t.equal(h['knative-serving-revision'], 'rev-1')
  t.equal(h['knative-serving-namespace'], 'default')
  t.equal(h['x-forwarded-for'], '127.0.0.1')
  const raw = pod.seen.at(-1)!.rawHeaders
  const count = (n: string): number => raw.filter((_, i) => i % 2 === 0 && raw[i]!.toLowerCase() === n).length
  for (const n of ['k-proxy-request', 'knative-serving-revision', 'knative-serving-namespace', 'x-forwarded-for', 'host']) t.equal(count(n), 1, `one ${n}`)
})

t.test('the probe pair still passes: K-Network-Hash is forwarded, K-Network-Probe answered by the gateway', async (t) => {
  const h = (await get(untrusted.ports.http, HOST, '/', { 'K-Network-Hash': 'abc' })).json<Seen>().headers
  t.equal(h['k-network-hash'], 'abc')
  const before = app.seen.length
  const p = await get(untrusted.ports.http, HOST, '/', { 'K-Network-Probe': 'probe', 'K-Network-Hash': 'override' })
  t.equal(p.status, 200)
  t.equal(p.headers['x-edge-reason'], 'probe')
  t.equal(app.seen.length, before, 'the probe never reached the pod')
})

t.test('hop-by-hop headers (raw, since HTTP clients refuse to send them) stop at the gateway', async (t) => {
  const r = await raw(untrusted.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nUpgrade: h2c\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n`)
  t.equal(r.status, 200)
  const h = (JSON.parse(r.body.slice(r.body.indexOf('{'), r.body.lastIndexOf('}') + 1)) as Seen).headers // body is chunked
  for (const gone of ['x-hop', 'keep-alive', 'proxy-connection', 'te', 'upgrade']) t.equal(h[gone], undefined, `${gone} does not reach the pod`)
  t.equal(h['x-forwarded-for'], '127.0.0.1', 'both claimed X-Forwarded-For lines replaced')
})

// ---- secrets: never in /debug/routes, never in logs -------------------------------------------

const CERT = '-----BEGIN CERTIFICATE-----\nMIIBCERTMARKERAAAA\n-----END CERTIFICATE-----\n'
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIEKEYMARKERSECRET\n-----END PRIVATE KEY-----\n'
const secretsDir = tempDir()
writeManifest(secretsDir, 'tls.yaml', [
  ...svc('app', app.port),
  { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'tls', namespace: 'default' }, stringData: { 'tls.crt': CERT, 'tls.key': KEY } },
  { apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls', metadata: { name: 'tls-b64', namespace: 'default' }, data: { 'tls.crt': Buffer.from(CERT).toString('base64'), 'tls.key': Buffer.from(KEY).toString('base64') } },
  kingressWithTls(),
])
// A Secret in a file that does not parse: YAML and JSON, the error right next to the key text.
fs.writeFileSync(path.join(secretsDir, 'bad.yaml'), `apiVersion: v1\nkind: Secret\nmetadata: {name: bad, namespace: default}\nstringData:\n  tls.key: |\n    -----BEGIN PRIVATE KEY-----\n    MIIEKEYMARKERSECRET2\n    -----END PRIVATE KEY-----\n  x: [unclosed\n`)
// V8's JSON.parse message quotes ~10 characters around the error: here, the start of the key.
fs.writeFileSync(path.join(secretsDir, 'bad2.json'), `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"badjson2"},"stringData":{"tls.key": ZZSECRETZZ9 }}`)
const QUOTED = /ZZSECRET/
fs.writeFileSync(path.join(secretsDir, 'bad.json'), `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"badjson"},"stringData":{"tls.key": -----BEGIN PRIVATE KEY----- MIIEKEYMARKERSECRET3 }}`)

function kingressWithTls(): unknown {
  const k = simpleIngress('secure', [HOST], [['app', 100]]) as { spec: Record<string, unknown> }
  k.spec.tls = [{ hosts: [HOST], secretName: 'tls', secretNamespace: 'default' }]
  return k
}

const LEAK = /MARKER|BEGIN (PRIVATE KEY|CERTIFICATE)/

t.test('/debug/routes names the TLS Secret but never carries its data', async (t) => {
  const gw = await startTestGateway(secretsDir)
  t.teardown(() => gw.close())
  const r = await get(gw.ports.admin, 'localhost', '/debug/routes')
  t.equal(r.status, 200)
  t.match(r.body, /default\/tls/, 'the Secret is named')
  t.match(r.body, /EDGE_ERR_PARSE/, 'the bad files are reported')
  t.notMatch(r.body, LEAK, 'no PEM text or key material')
  t.notMatch(r.body, QUOTED, 'no quote of a broken file')
})

t.test('logs of a gateway run with TLS Secrets and broken Secret manifests carry no secret text', async (t) => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
  const child = spawn(process.execPath, [path.join(root, 'src', 'main.ts'), '--manifests', secretsDir, '--http-port', '0', '--local-port', '0', '--https-port', '0', '--admin-port', '0', '--listen-address', '127.0.0.1', '--log-level', 'trace', '--access-log'], { cwd: root, env: { ...process.env, EDGE_WORKERS: '1' } })
  let out = ''
  child.stdout.on('data', (c) => (out += c))
  child.stderr.on('data', (c) => (out += c))
  await waitFor('the gateway to report the bad manifests', () => /bad\.json/.test(out) && /bad\.yaml/.test(out) && /listening/.test(out), 20_000)
  // 'close' (not 'exit') comes after stdout and stderr have ended, so `out` holds every line
  // the gateway wrote from start to its last shutdown line.
  const closed = new Promise((r) => child.once('close', r))
  child.kill('SIGINT')
  await closed
  t.match(out, /"msg":"stopped"/, 'the logs run through to the end of shutdown')
  t.match(out, /EDGE_ERR_PARSE/, 'the rejections were logged')
  t.notMatch(out, LEAK, 'no PEM text or key material in the logs')
  t.notMatch(out, QUOTED, 'no quote of a broken file')
})
