// External authorization with a real gRPC authorizer (Envoy's Authorization/Check), Kourier's
// semantics: every request is checked before admission; allowed requests reach the pod with the
// authorizer's headers, the same for HTTP/1.1, HTTP/2 and WebSocket; a denial is the authorizer's own
// answer; an authorizer that is down or too slow is decided by the failure mode, counted and logged
// once per change; hosts can opt out. The key case: a revision at zero and 100 denied requests start
// no process and send no demand to the autoscaler.
import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { pino } from 'pino'
import type { Logger } from 'pino'
import { get, kingress, revision, revisionPods, serviceFor, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Gateway } from '../src/gateway.ts'
import { raw } from './helpers/raw.ts'
import { h2Request } from './helpers/h2-request.ts'
import { closedPort, revisionIngress } from './helpers/activator.ts'
import { FakeAutoscaler } from './helpers/fake-autoscaler.ts'
import { startGrpcAuthorizer } from './helpers/authorizers.ts'

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC11B65'

// The pod: answers with what it got (headers and body); a WebSocket handshake is accepted and recorded.
const pod = await startBackend('pod', (req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'x-authz': 'from-the-pod' })
    res.end(JSON.stringify({ url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() }))
  })
})
const upgrades: Array<Record<string, string | string[] | undefined>> = []
pod.server.on('upgrade', (req, socket) => {
  upgrades.push(req.headers)
  const accept = crypto.createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}${WS_GUID}`).digest('base64')
  socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
})
const authz = await startGrpcAuthorizer()
t.teardown(async () => {
  await authz.stop()
  await pod.close()
})

function ingress(name: string, host: string, annotations: Record<string, string> = {}, labels: Record<string, string> = {}): unknown {
  const k = kingress(name, { rules: [{ hosts: [host], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }] }) as { metadata: { annotations: Record<string, string>; labels?: Record<string, string> } }
  Object.assign(k.metadata.annotations, annotations)
  k.metadata.labels = labels
  return k
}

/** A logger whose lines the test reads. */
function capturedLog(): { log: Logger; lines: Array<{ level: number; msg: string }> } {
  const lines: Array<{ level: number; msg: string }> = []
  const log: Logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) })
  return { lines, log }
}

async function checks(gw: Gateway, outcome: string): Promise<number> {
  const m = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  return Number(new RegExp(`edge_extauthz_checks_total\\{outcome="${outcome}"\\} (\\d+)`).exec(m)?.[1] ?? 0)
}

const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  ...serviceFor('app', pod),
  ingress('app', 'app.example.com', {}, { team: 'blue' }),
  ingress('open', 'open.example.com', { 'edge.knative.dev/extauthz': 'disabled' }),
  ingress('typo', 'typo.example.com', { 'edge.knative.dev/extauthz': 'off' }),
  // A Route's annotations reach the KIngress made from it.
  {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Route',
    metadata: { name: 'web', namespace: 'default', annotations: { 'edge.knative.dev/extauthz': 'disabled' } },
    status: { url: 'http://web.default.example.com', traffic: [{ revisionName: 'web-00001', percent: 100 }] },
  },
  revision('web-00001'),
  revisionPods('web-00001', pod),
])
const main = capturedLog()
const gw = await startTestGateway(dir, ['--extauthz-host', `127.0.0.1:${authz.port}`, '--extauthz-timeout', '1000', '--extauthz-max-request-body-bytes', '8'], {}, { log: main.log })
t.teardown(() => gw.close())

const upgradeHead = (host: string, p: string, extra = ''): string =>
  `GET ${p} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`

t.test('allowed: the pod gets the authorizer\'s headers, the client its response header; the authorizer got the request', async (t) => {
  const before = authz.seen.length
  const allowedBefore = await checks(gw, 'allowed')
  const r = await get(gw.ports.http, 'app.example.com', '/orders?id=7', { authorization: 'Bearer s3cret', 'x-tag': 'from-client', 'x-trace': '1', 'x-request-id': 'req-1' })
  t.equal(r.status, 200)
  const seenByPod = r.json<{ headers: Record<string, string> }>().headers
  t.equal(seenByPod['x-user'], 'alice', 'a header the authorizer added')
  t.equal(seenByPod['x-tag'], 'from-authz', "the authorizer's value replaced the client's")
  t.equal(seenByPod['x-trace'], '1, 2', 'an appended header keeps the client\'s value')
  t.equal(seenByPod.authorization, undefined, 'the credentials the authorizer consumed were removed')
  t.equal(seenByPod['k-proxy-request'], undefined, "the gateway's own headers are not the authorizer's to set")
  t.equal(seenByPod['x-bad'], undefined, 'a header value with a line break is dropped')
  t.equal(r.headers['x-authz'], 'checked', "the authorizer's response header replaced the pod's")
  t.equal(authz.seen.length, before + 1, 'asked once')
  const asked = authz.seen.at(-1)!
  t.equal(asked.client, 'edge-gateway', 'the call names its client, as Kourier\'s does')
  t.match(asked.attributes.request.http, { method: 'GET', path: '/orders?id=7', host: 'app.example.com', scheme: 'http', protocol: 'HTTP/1.1', size: -1 })
  t.match(asked.attributes.request.http.headers, { ':authority': 'app.example.com', ':method': 'GET', ':path': '/orders?id=7', authorization: 'Bearer s3cret', 'x-request-id': 'req-1' })
  t.equal(asked.attributes.request.http.headers.host, undefined, 'Host is :authority, as Envoy sends it')
  t.same(asked.attributes.context_extensions, { client: 'edge-gateway', visibility: 'ExternalIP', team: 'blue' }, "Kourier's context: who asks, visibility, the ingress's labels")
  t.equal(asked.attributes.source.address.socket_address.address, '127.0.0.1')
  t.ok(asked.attributes.source.address.socket_address.port_value > 0, 'with the client\'s port')
  t.equal(asked.attributes.destination.address.socket_address.port_value, gw.ports.http, "the destination is the gateway's listener")
  t.equal(await checks(gw, 'allowed'), allowedBefore + 1, 'counted as allowed')
})

t.test('denied: the authorizer\'s status, headers and body go back, and nothing reaches the pod', async (t) => {
  const podBefore = pod.seen.length
  const deniedBefore = await checks(gw, 'denied')
  const r = await get(gw.ports.http, 'app.example.com', '/deny')
  t.equal(r.status, 401)
  t.equal(r.headers['www-authenticate'], 'Bearer realm="test"')
  t.same(r.headers['set-cookie'], ['a=1', 'b=2'], 'appended headers keep every value')
  t.equal(r.headers['x-edge-reason'], 'extauthz-denied', 'the gateway says the answer is the authorizer\'s')
  t.equal(r.body, 'who are you?\n', 'its body, as it wrote it')
  t.equal(pod.seen.length, podBefore)
  t.equal(await checks(gw, 'denied'), deniedBefore + 1)
})

t.test('HTTP/2 streams and WebSocket upgrades are checked the same way', async (t) => {
  const stream = await h2Request(gw.ports.http, [[':method', 'GET'], [':scheme', 'http'], [':path', '/h2'], [':authority', 'app.example.com'], ['authorization', 'Bearer s3cret']])
  t.equal(stream.status, 200)
  const h2Pod = (JSON.parse(stream.body) as { headers: Record<string, string> }).headers
  t.equal(h2Pod['x-user'], 'alice', 'HTTP/2: the pod got the authorizer\'s header')
  t.equal(h2Pod.authorization, undefined, 'HTTP/2: and not the removed one')
  t.equal(stream.headers['x-authz'], 'checked', 'HTTP/2: the client got the response header')
  t.equal(authz.seen.at(-1)!.attributes.request.http.protocol, 'HTTP/2')

  const upgrade = await raw(gw.ports.http, upgradeHead('app.example.com', '/ws', 'Authorization: Bearer s3cret\r\n'))
  t.equal(upgrade.status, 101)
  t.equal(upgrade.headers['x-authz'], 'checked', "WebSocket: the pod's 101 carries the authorizer's response header")
  t.equal(upgrade.headers['sec-websocket-accept'], crypto.createHash('sha1').update(`dGhlIHNhbXBsZSBub25jZQ==${WS_GUID}`).digest('base64'), "and the rest of the pod's head as it sent it")
  t.equal(upgrades.at(-1)!['x-user'], 'alice', 'WebSocket: the pod got the authorizer\'s header')
  t.equal(upgrades.at(-1)!.authorization, undefined, 'WebSocket: and not the removed one')

  const deniedStream = await h2Request(gw.ports.http, [[':method', 'GET'], [':scheme', 'http'], [':path', '/deny'], [':authority', 'app.example.com']])
  const deniedUpgrade = await raw(gw.ports.http, upgradeHead('app.example.com', '/deny'))
  for (const [way, a] of [['HTTP/2', { status: deniedStream.status, reason: deniedStream.headers['x-edge-reason'], body: deniedStream.body, auth: deniedStream.headers['www-authenticate'] }], ['WebSocket', { status: deniedUpgrade.status, reason: deniedUpgrade.headers['x-edge-reason'], body: deniedUpgrade.body, auth: deniedUpgrade.headers['www-authenticate'] }]] as const) {
    t.same(a, { status: 401, reason: 'extauthz-denied', body: 'who are you?\n', auth: 'Bearer realm="test"' }, `${way}: the authorizer's answer`)
  }
})

t.test('the start of a body goes to the authorizer, and all of it to the pod', async (t) => {
  const short = await get(gw.ports.http, 'app.example.com', '/upload', { 'content-type': 'text/plain' }, 'POST', 'hello')
  t.equal(short.status, 200)
  t.equal(short.json<{ body: string }>().body, 'hello', 'the pod got the whole body')
  let http = authz.seen.at(-1)!.attributes.request.http
  t.equal(http.body, 'hello', 'the authorizer got it too')
  t.equal(http.size, 5)
  t.equal(http.headers['x-envoy-auth-partial-body'], 'false', 'all of it')

  const long = await get(gw.ports.http, 'app.example.com', '/upload', { 'content-type': 'text/plain' }, 'POST', 'abcdefghijklmnopqrst')
  t.equal(long.json<{ body: string }>().body, 'abcdefghijklmnopqrst', 'the pod got every byte, the read ones first')
  http = authz.seen.at(-1)!.attributes.request.http
  t.equal(http.body, 'abcdefgh', 'the authorizer got the first --extauthz-max-request-body-bytes')
  t.equal(http.headers['x-envoy-auth-partial-body'], 'true')
})

t.test('a host can opt out; a bad opt-out is a problem and the host stays checked', async (t) => {
  const before = authz.seen.length
  const r = await get(gw.ports.http, 'open.example.com', '/deny')
  t.equal(r.status, 200, 'served without asking')
  t.equal(authz.seen.length, before, 'the authorizer was not asked')
  t.equal((await get(gw.ports.http, 'web.default.example.com', '/deny')).status, 200, "a Route's opt-out")
  t.equal(authz.seen.length, before, 'not asked for it either')
  const typo = await get(gw.ports.http, 'typo.example.com', '/deny')
  t.equal(typo.status, 401, 'still checked')
  const problems = (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<{ problems: Array<{ object: string; field: string; code: string; reason: string }> }>().problems
  t.match(problems.filter((p) => p.code === 'EDGE_ERR_EXTAUTHZ_ANNOTATION'), [{ object: 'Ingress default/typo', field: 'metadata.annotations["edge.knative.dev/extauthz"]', reason: /"off" is not "disabled" or "enabled".*stay checked/ }])
})

t.test('cluster-local traffic is checked, as Kourier checks it', async (t) => {
  const r = await get(gw.ports.local, 'app.example.com', '/deny')
  t.equal(r.status, 401)
  t.equal(authz.seen.at(-1)!.attributes.request.http.path, '/deny')
})

t.test('an authorizer slower than --extauthz-timeout: 403 at the timeout, logged once; its return is logged once', async (t) => {
  const before = await checks(gw, 'unavailable-denied')
  const started = Date.now()
  const answers = await Promise.all([1, 2, 3].map(() => get(gw.ports.http, 'app.example.com', '/hang')))
  t.ok(Date.now() - started < 5000, `answered at the timeout, not held (${Date.now() - started} ms)`)
  for (const a of answers) {
    t.equal(a.status, 403)
    t.equal(a.headers['x-edge-reason'], 'extauthz-unavailable')
    t.match(a.body, /the external authorizer at grpc:\/\/127\.0\.0\.1:\d+ could not decide on this request \(gRPC DEADLINE_EXCEEDED/)
  }
  t.equal(await checks(gw, 'unavailable-denied'), before + 3, 'each counted')
  const down = main.lines.filter((l) => l.msg.startsWith('EDGE_ERR_EXTAUTHZ_UNAVAILABLE'))
  t.equal(down.length, 1, 'logged once for the three')
  t.equal((await get(gw.ports.http, 'app.example.com', '/')).status, 200, 'a quick answer again')
  t.same(main.lines.filter((l) => l.msg === 'the external authorizer answers again').length, 1, 'its return logged once')
  t.ok(main.lines.indexOf(down[0]!) < main.lines.findIndex((l) => l.msg === 'the external authorizer answers again'), 'in that order')
})

t.test('an authorizer that is down: denied by default, let through with --extauthz-failure-mode-allow; back when it is', async (t) => {
  const port = await closedPort()
  const deny = await startTestGateway(dir, ['--extauthz-host', `127.0.0.1:${port}`])
  t.teardown(() => deny.close())
  const d = await get(deny.ports.http, 'app.example.com', '/')
  t.equal(d.status, 403)
  t.equal(d.headers['x-edge-reason'], 'extauthz-unavailable')
  t.match(d.body, /gRPC UNAVAILABLE/)

  const allowLog = capturedLog()
  const allow = await startTestGateway(dir, ['--extauthz-host', `127.0.0.1:${port}`, '--extauthz-failure-mode-allow', '--extauthz-pack-as-bytes'], {}, { log: allowLog.log })
  t.teardown(() => allow.close())
  const a = await get(allow.ports.http, 'app.example.com', '/deny')
  t.equal(a.status, 200, 'served while the authorizer is down')
  t.equal(await checks(allow, 'unavailable-allowed'), 1)
  t.match(allowLog.lines.filter((l) => l.msg.startsWith('EDGE_ERR_EXTAUTHZ_UNAVAILABLE')), [{ msg: /requests are let through/ }])

  // The authorizer comes up on that port: the gateway's channel finds it and checks again.
  const late = await startGrpcAuthorizer(port)
  t.teardown(() => late.stop())
  await waitFor('the authorizer to be asked again', async () => (await get(allow.ports.http, 'app.example.com', '/deny')).status === 401)
  const body = await get(allow.ports.http, 'app.example.com', '/upload', {}, 'POST', 'bytes')
  t.equal(body.status, 200)
  const http = late.seen.at(-1)!.attributes.request.http
  t.same([http.body, Buffer.from(http.raw_body ?? []).toString()], [undefined, 'bytes'], '--extauthz-pack-as-bytes: the body as raw_body')
  t.equal(allowLog.lines.filter((l) => l.msg === 'the external authorizer answers again').length, 1)
})

t.test('--extauthz-skip-cluster-local: the cluster-local listener is not checked, the public one is', async (t) => {
  const skip = await startTestGateway(dir, ['--extauthz-host', `127.0.0.1:${authz.port}`, '--extauthz-skip-cluster-local'])
  t.teardown(() => skip.close())
  t.equal((await get(skip.ports.local, 'app.example.com', '/deny')).status, 200)
  t.equal((await get(skip.ports.http, 'app.example.com', '/deny')).status, 401)
})

t.test('a revision at zero: 100 denied requests start no process and send no demand', async (t) => {
  const fake = new FakeAutoscaler()
  await fake.listen()
  t.teardown(() => fake.stop())
  const d = tempDir()
  // Each start of the revision's process adds a line to `starts`.
  fs.writeFileSync(
    path.join(d, 'app.mjs'),
    `import fs from 'node:fs'
import http from 'node:http'
fs.appendFileSync(new URL('./starts', import.meta.url), process.pid + '\\n')
http.createServer((req, res) => res.end('woken')).listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
`,
  )
  writeManifest(d, 'all.yaml', [revision('cold-00001', {}, { 'edge.knative.dev/local-command': 'node app.mjs' }), revisionIngress('cold', 'cold.example.com', 'cold-00001')])
  const g = await startTestGateway(d, ['--extauthz-host', `127.0.0.1:${authz.port}`, '--autoscaler-url', fake.url, '--pod-name', 'edge-0'])
  t.teardown(() => g.close())
  await waitFor('the gateway to connect to the autoscaler', () => fake.connections === 1)
  const before = authz.seen.length

  const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => get(g.ports.http, 'cold.example.com', `/deny/${i}`)))
  t.same(new Set(answers.map((a) => `${a.status} ${a.headers['x-edge-reason']} ${a.body}`)), new Set(['401 extauthz-denied who are you?\n']), "every client got the authorizer's answer")
  t.equal(authz.seen.length - before, 100, 'the authorizer was asked for each')
  t.equal(await checks(g, 'denied'), 100)
  t.same(g.runner!.describe()['default/cold-00001'] ?? [], [], 'no process was started')
  t.equal(g.plane.throttlerByKey('rev:default/cold-00001'), undefined, 'nothing was held')
  t.notOk(g.reporter.demand.snapshot().some((e) => e.name === 'cold-00001'), 'no demand was counted')
  t.notOk(fs.existsSync(path.join(d, 'starts')))

  // The control: one allowed request does wake it, and its poke is the first the autoscaler hears of it.
  const woken = await get(g.ports.http, 'cold.example.com', '/')
  t.equal(woken.status, 200)
  t.equal(woken.body, 'woken')
  await waitFor('the poke', () => fake.framesFor('default', 'cold-00001') > 0)
  const first = fake.frames.find((f) => f.entries.some((e) => e.name === 'cold-00001'))!
  t.match(first.entries.find((e) => e.name === 'cold-00001'), { requestCount: 1 }, 'the first frame naming the revision counts the one allowed request')
  t.equal(fs.readFileSync(path.join(d, 'starts'), 'utf8').trim().split('\n').length, 1, 'one process, started by the allowed request')
})
