// Dual stack (issue 22): every listener bound on each --listen-address, a pod listed in an IPv6
// EndpointSlice dialled at its address, and an IPv6 client named as such in X-Forwarded-For,
// Forwarded (`for="[::1]"`, RFC 7239), per-IP connection limits and per-client rate limits. Over
// the machine's real loopback, both families.
import t from 'tap'
import net from 'node:net'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { parseConfig } from '../src/config.ts'
import { validateObject } from '../src/compile/validate.ts'
import type { Gateway } from '../src/gateway.ts'
import { endpointSlice, externalNameService, freePorts, kingress, revision, service, simpleIngress, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { makeCA, makeCert, tlsSecret } from './helpers/certs.ts'
import { apply, startKubeEnv, startKubeGateway, waitReady, waitServed } from './helpers/kube.ts'
import { startGatewayProcess } from './helpers/gateway-process.ts'

const HOST = 'v6.example.com'
const LOCAL_HOST = 'v6-local.example.com'

// The pod listens on IPv6 loopback only: reaching it proves the gateway dialled the IPv6 address.
const pod = await startBackend('v6pod', undefined, '::1')
t.teardown(() => pod.close())
const ca = await makeCA()
const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  service('v6', [{ name: 'http', port: 80 }]),
  // Written long-hand: the gateway spells it ::1, one pod whatever the spelling.
  { ...(endpointSlice('v6', [{ name: 'http', port: pod.port }], [{ ip: '0:0:0:0:0:0:0:1' }], 'default', 'v6-slice') as object), addressType: 'IPv6' },
  simpleIngress('v6', [HOST], [['v6', 100]]),
  simpleIngress('v6-local', [LOCAL_HOST], [['v6', 100]], { visibility: 'ClusterLocal' }),
  // An ExternalName may be an IP literal too.
  externalNameService('v6-external', '::1', pod.port),
  kingress('v6-external', { rules: [{ hosts: ['external.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'v6-external', servicePort: pod.port, percent: 100 }] }] } }] }),
  tlsSecret('v6-cert', await makeCert(ca, HOST)),
  tlsSecret('v6-local-cert', await makeCert(ca, LOCAL_HOST)),
])

interface Seen {
  backend: string
  headers: Record<string, string>
}

/** A request to `address` (IPv4 or IPv6 loopback) on `port`. */
async function getVia(address: string, port: number, host: string, path = '/', headers: Record<string, string> = {}): Promise<{ status: number; body: string; reason: string | undefined }> {
  const authority = net.isIPv6(address) ? `[${address}]` : address
  const res = await request(`http://${authority}:${port}${path}`, { headers: { host, ...headers } })
  return { status: res.statusCode, body: await res.body.text(), reason: res.headers['x-edge-reason'] as string | undefined }
}

function httpsVia(address: string, port: number, servername: string): Promise<{ status: number; seen: Seen }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: address, port, path: '/', servername, headers: { host: servername }, ca: ca.cert, agent: false }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, seen: JSON.parse(body) as Seen }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function started(args: string[]): Promise<Gateway> {
  const gw = await startTestGateway(dir, args)
  t.teardown(() => gw.close())
  return gw
}

t.test('--listen-address takes a list of IP addresses and says which one is wrong', async (t) => {
  t.same(parseConfig([], {}).listenAddresses, ['::'], 'default: :: (every interface, both families)')
  t.same(parseConfig(['--listen-address', '0.0.0.0,::'], {}).listenAddresses, ['0.0.0.0', '::'])
  t.same(parseConfig(['--listen-address', '127.0.0.1', '--listen-address', '0:0:0:0:0:0:0:1'], {}).listenAddresses, ['127.0.0.1', '::1'], 'repeated flags add up; IPv6 spelt one way')
  t.same(parseConfig(['--listen-address', '::1,0::1'], {}).listenAddresses, ['::1'], 'one address listed twice is bound once')
  t.same(parseConfig([], { EDGE_LISTEN_ADDRESS: '10.0.0.1, fd00::1' }).listenAddresses, ['10.0.0.1', 'fd00::1'], 'from the environment')
  t.throws(() => parseConfig(['--listen-address', '0.0.0.0,localhost'], {}), { name: 'UsageError', message: /^--listen-address: 'localhost' is not an IP address/ })
  t.throws(() => parseConfig([], { EDGE_LISTEN_ADDRESS: '[::1]' }), { name: 'UsageError', message: "EDGE_LISTEN_ADDRESS: '[::1]': write an IPv6 address without brackets, e.g. ::1" })
  t.throws(() => parseConfig(['--listen-address', ''], {}), { name: 'UsageError', message: /needs at least one IP address/ })
  t.throws(() => parseConfig(['--listen-address', '0.0.0.0,127.0.0.1'], {}), { name: 'UsageError', message: /127\.0\.0\.1 is already covered by 0\.0\.0\.0/ })
  t.throws(() => parseConfig(['--listen-address', '::', '--listen-address', '::1'], {}), { name: 'UsageError', message: /::1 is already covered by ::/ })
})

t.test('an EndpointSlice address must be an IP of the slice\'s addressType', async (t) => {
  const slice = (addressType: string, ip: string): unknown => ({ ...(endpointSlice('s', [{ port: 80 }], [{ ip }]) as object), addressType })
  const problems = (obj: unknown) => ('problems' in validateObject(obj, 'test.yaml') ? (validateObject(obj, 'test.yaml') as { problems: unknown[] }).problems : [])
  t.same(problems(slice('IPv6', 'fd00::5')), [], 'an IPv6 pod in an IPv6 slice')
  t.match(problems(slice('IPv4', 'fd00::5')), [{ field: 'endpoints[0].addresses[0]', code: 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES', reason: /"fd00::5" is an IPv6 address in a slice of addressType IPv4; put it in a slice of addressType IPv6/ }])
  t.match(problems(slice('IPv6', '10.0.0.5')), [{ field: 'endpoints[0].addresses[0]', reason: /is an IPv4 address in a slice of addressType IPv6/ }])
  t.match(problems(slice('IPv6', '[fd00::5]')), [{ field: 'endpoints[0].addresses[0]', reason: /write IPv6 addresses without brackets: fd00::5/ }])
  t.same(problems(slice('FQDN', 'pod.example.com')), [], 'FQDN slices name hosts (and are not dialled)')
})

t.test('an ExternalName Service naming an IPv6 address is dialled at it', async (t) => {
  const gw = await started(['--listen-address', '127.0.0.1'])
  const r = await getVia('127.0.0.1', gw.ports.http, 'external.example.com')
  t.equal(r.status, 200, r.body)
  t.equal((JSON.parse(r.body) as Seen).backend, 'v6pod')
})

t.test('127.0.0.1,::1: every listener answers on both addresses; the IPv6 pod is dialled', async (t) => {
  const gw = await started(['--listen-address', '127.0.0.1,::1', '--local-https-port', '0'])
  for (const address of ['127.0.0.1', '::1']) {
    const pub = await getVia(address, gw.ports.http, HOST)
    t.equal(pub.status, 200, `public listener on ${address}`)
    t.equal((JSON.parse(pub.body) as Seen).backend, 'v6pod', 'served by the pod on [::1]')
    t.equal((await getVia(address, gw.ports.local, LOCAL_HOST)).status, 200, `cluster-local listener on ${address}`)
    t.equal((await getVia(address, gw.ports.admin, 'localhost', '/healthz')).status, 200, `admin listener on ${address}`)
    t.equal((await httpsVia(address, gw.ports.https, HOST)).seen.backend, 'v6pod', `TLS listener on ${address}`)
    t.equal((await httpsVia(address, gw.ports.localHttps!, LOCAL_HOST)).seen.backend, 'v6pod', `cluster-local TLS listener on ${address}`)
  }
  const routes = JSON.parse((await getVia('::1', gw.ports.admin, 'localhost', '/debug/routes')).body) as { hosts: Array<{ host: string; paths: Array<{ splits: Array<{ endpoints: Array<{ address: string }> }> }> }> }
  const endpoints = routes.hosts.find((h) => h.host === HOST)!.paths[0]!.splits[0]!.endpoints
  t.same(endpoints.map((e) => e.address), [`[::1]:${pod.port}`], '/debug/routes names the pod in brackets, spelt once')
})

t.test('the client address reaches the pod: X-Forwarded-For, and Forwarded quoted for IPv6', async (t) => {
  const gw = await started(['--listen-address', '127.0.0.1,::1'])
  const v6 = JSON.parse((await getVia('::1', gw.ports.http, HOST, '/', { Forwarded: 'for=203.0.113.9' })).body) as Seen
  t.equal(v6.headers['x-forwarded-for'], '::1')
  t.equal(v6.headers.forwarded, `for="[::1]";host=${HOST};proto=http`, "the client's own Forwarded is replaced, the IPv6 node quoted in brackets")
  const v4 = JSON.parse((await getVia('127.0.0.1', gw.ports.http, HOST)).body) as Seen
  t.equal(v4.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(v4.headers.forwarded, `for=127.0.0.1;host=${HOST};proto=http`)
  const withPort = JSON.parse((await getVia('::1', gw.ports.http, `${HOST}:8080`)).body) as Seen
  t.equal(withPort.headers.forwarded, `for="[::1]";host="${HOST}:8080";proto=http`, 'a Host with a port is not a token: quoted (RFC 7239 §4)')
})

t.test('a trusted IPv6 hop: its X-Forwarded-For and Forwarded are appended to', async (t) => {
  const gw = await started(['--listen-address', '::1', '--trusted-proxies', '::1/128'])
  const seen = JSON.parse((await getVia('::1', gw.ports.http, HOST, '/', { 'X-Forwarded-For': '2001:db8::7', Forwarded: 'for="[2001:db8::7]"' })).body) as Seen
  t.equal(seen.headers['x-forwarded-for'], '2001:db8::7, ::1')
  t.equal(seen.headers.forwarded, 'for="[2001:db8::7]", for="[::1]"')
})

t.test('0.0.0.0,::: each family on its own socket, no collision; an IPv4 client is named by its IPv4 address', async (t) => {
  const gw = await started(['--listen-address', '0.0.0.0,::'])
  const v4 = JSON.parse((await getVia('127.0.0.1', gw.ports.http, HOST)).body) as Seen
  const v6 = JSON.parse((await getVia('::1', gw.ports.http, HOST)).body) as Seen
  t.equal(v4.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(v6.headers['x-forwarded-for'], '::1')
})

t.test(':: alone takes IPv4 too, and the IPv4 client is not named ::ffff:127.0.0.1', async (t) => {
  const gw = await started(['--listen-address', '::'])
  const v4 = JSON.parse((await getVia('127.0.0.1', gw.ports.http, HOST)).body) as Seen
  t.equal(v4.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(v4.headers.forwarded, `for=127.0.0.1;host=${HOST};proto=http`)
})

t.test('per-IP connection limit and per-client rate limit count an IPv6 client by its address', async (t) => {
  const gw = await started(['--listen-address', '127.0.0.1,::1', '--max-connections-per-ip', '1', '--rate-limit-per-client', '2/m'])
  // One connection from ::1 held open: a second from ::1 is closed unanswered, one from 127.0.0.1 is not.
  const held = await connected('::1', gw.ports.http)
  t.teardown(() => held.destroy())
  const second = await connected('::1', gw.ports.http)
  const ended = await endOf(second)
  t.same(ended, { bytes: 0 }, 'the second IPv6 connection is closed before anything is said')
  held.destroy()
  // From here ::1 sends its requests over one kept-alive connection, so the limit of one never bites.
  const one = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => one.destroy())
  await waitFor('the held connection to be released', async () => (await overOne(one, gw.ports.http).catch(() => undefined)) !== undefined)

  // That request was ::1's first; one more passes, the third is refused, and 127.0.0.1 is counted apart.
  t.equal((await overOne(one, gw.ports.http)).status, 200)
  const refused = await overOne(one, gw.ports.http)
  t.equal(refused.status, 429)
  t.equal(refused.reason, 'rate-limited')
  t.match(refused.body, 'too many requests from ::1', 'the refusal names the IPv6 client')
  t.equal((await getVia('127.0.0.1', gw.ports.http, HOST)).status, 200, 'an IPv4 client has its own budget')
})

t.test('--workers 2: the workers share both addresses; the access log names the IPv6 client', async (t) => {
  const gw = await startGatewayProcess(t, process.execPath, ['src/main.ts', '--manifests', dir, '--workers', '2', '--listen-address', '127.0.0.1,::1', '--access-log', '--log-level', 'warn'], {})
  t.equal((await getVia('::1', gw.http, HOST, '/from-v6')).status, 200)
  t.equal((await getVia('127.0.0.1', gw.http, HOST, '/from-v4')).status, 200)
  t.equal((await getVia('::1', gw.admin, 'localhost', '/readyz')).status, 200, 'the primary\'s admin port on ::1')
  const lines = (): Array<Record<string, unknown>> => gw.output().split('\n').filter((l) => l.startsWith('{"time"')).map((l) => JSON.parse(l) as Record<string, unknown>)
  await waitFor('both access-log lines', () => lines().filter((l) => l.host === HOST).length === 2)
  const byPath = new Map(lines().map((l) => [l.path, l.client]))
  t.equal(byPath.get('/from-v6'), '::1')
  t.equal(byPath.get('/from-v4'), '127.0.0.1')
})

t.test('cluster mode: a revision whose pod is in an IPv6 EndpointSlice from the API server', async (t) => {
  const env = await startKubeEnv(t)
  const rev = 'hello-00001'
  apply(
    env.api,
    revision(rev),
    service(rev, [{ name: 'http', port: 80 }]),
    { ...(endpointSlice(`${rev}-private`, [{ name: 'http', port: pod.port }], [{ ip: '::1' }], 'default', `${rev}-private-v6`) as object), addressType: 'IPv6' },
    simpleIngress('hello', ['hello.example.com'], [[rev, 100, { 'Knative-Serving-Revision': rev, 'Knative-Serving-Namespace': 'default' }]]),
  )
  const gw = await startKubeGateway(t, env, ['--listen-address', '127.0.0.1,::1'])
  await waitReady(gw)
  await waitServed(gw.ports.http, 'hello.example.com', 'v6pod')
  const seen = JSON.parse((await getVia('::1', gw.ports.http, 'hello.example.com')).body) as Seen
  t.equal(seen.headers['k-proxy-request'], 'activator', 'reached as a revision pod, through the throttler')
  t.equal(seen.headers['x-forwarded-for'], '::1')
  t.equal(seen.headers.forwarded, 'for="[::1]";host=hello.example.com;proto=http')
})

t.test('an address that cannot be bound is named, and what was bound is released', async (t) => {
  const [port] = (await freePorts(1)) as [number]
  const squatter = net.createServer()
  await new Promise<void>((resolve) => squatter.listen({ host: '::1', port, ipv6Only: true }, resolve))
  t.teardown(() => new Promise<void>((resolve) => squatter.close(() => resolve())))
  await t.rejects(startTestGateway(dir, ['--listen-address', '127.0.0.1,::1', '--http-port', String(port)]), { message: `cannot listen on [::1]:${port} (--listen-address): EADDRINUSE` })
  const again = net.createServer()
  await new Promise<void>((resolve, reject) => again.once('error', reject).listen({ host: '127.0.0.1', port }, resolve))
  t.equal((again.address() as AddressInfo).port, port, '127.0.0.1 was released again')
  await new Promise<void>((resolve) => again.close(() => resolve()))
})

/** A request from ::1 through `agent` (its one connection). */
function overOne(agent: http.Agent, port: number): Promise<{ status: number; body: string; reason: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '::1', port, path: '/', headers: { host: HOST }, agent }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, reason: res.headers['x-edge-reason'] as string | undefined }))
    })
    req.on('error', reject)
  })
}

function connected(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port }, () => resolve(s))
    s.once('error', reject)
  })
}

/** Waits for the server to end the connection; how many bytes it sent first. */
function endOf(socket: net.Socket): Promise<{ bytes: number }> {
  return new Promise((resolve) => {
    let bytes = 0
    socket.on('data', (c: Buffer) => (bytes += c.length))
    socket.on('error', () => {})
    socket.once('close', () => resolve({ bytes }))
  })
}
