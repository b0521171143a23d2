// The front door's policy stage, end to end: a policy's answer reaches the client the same way for a
// request, an HTTP/2 stream and a WebSocket upgrade, and comes before admission, so a refused request
// to a revision at zero is never held, never counted as demand and never makes a throttler; a policy
// that passes (even later, asynchronously) lets the request on to its pod.
import t from 'tap'
import { kingress, serviceFor, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { raw } from './helpers/raw.ts'
import { h2Request } from './helpers/h2-request.ts'
import { revisionIngress } from './helpers/activator.ts'
import type net from 'node:net'
import type { Policy, PolicyInput } from '../src/dataplane/policy.ts'

const COLD = 'cold-00001'
const asked: Array<{ host: string; upgrade: boolean }> = []
// Refuses every request to cold.example.com; lets the rest through after a turn of the event loop,
// and /slow only once its client has gone (an authorizer slower than the client's patience).
const guard: Policy = {
  name: 'test-guard',
  check(input: PolicyInput) {
    asked.push({ host: input.resolution.entry.host, upgrade: input.upgrade })
    if (input.resolution.entry.host === 'cold.example.com') return { status: 400, reason: 'bad-request', detail: 'refused by the test policy' }
    if (input.req.url === '/slow') return new Promise((resolve) => (input.req.socket as net.Socket).once('close', () => resolve(undefined)))
    return new Promise((resolve) => setImmediate(() => resolve(undefined)))
  },
}

const pod = await startBackend('pod')
const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  ...serviceFor('app', pod),
  kingress('app', { rules: [{ hosts: ['app.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }] }),
  // A revision with no pod at all: without the policy, a request would be held for a cold start.
  revisionIngress('cold', 'cold.example.com', COLD),
])
const gw = await startTestGateway(dir, [], {}, { policies: [guard] })
t.teardown(async () => {
  await gw.close()
  await pod.close()
})

const upgradeHead = (host: string): string => `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`

t.test('a refusal is answered before admission, the same all three ways', async (t) => {
  const request = await raw(gw.ports.http, 'GET / HTTP/1.1\r\nHost: cold.example.com\r\nConnection: close\r\n\r\n')
  const stream = await h2Request(gw.ports.http, [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'cold.example.com']])
  const upgrade = await raw(gw.ports.http, upgradeHead('cold.example.com'))
  for (const [way, status, reason, body] of [
    ['request', request.status, request.headers['x-edge-reason'], request.body],
    ['HTTP/2 stream', stream.status, stream.headers['x-edge-reason'], stream.body],
    ['upgrade', upgrade.status, upgrade.headers['x-edge-reason'], upgrade.body],
  ] as const) {
    t.equal(status, 400, `${way}: the policy's status`)
    t.equal(reason, 'bad-request', `${way}: the policy's reason`)
    t.match(body, /refused by the test policy/, `${way}: the policy's words`)
  }
  t.same(asked.slice(-3), [
    { host: 'cold.example.com', upgrade: false },
    { host: 'cold.example.com', upgrade: false },
    { host: 'cold.example.com', upgrade: true },
  ], 'the policy was asked once per request, with its route')
  t.equal(gw.plane.throttlerByKey(`rev:default/${COLD}`), undefined, 'no throttler was made for the revision: nothing was held')
  t.notOk(gw.reporter.demand.snapshot().some((d) => d.name === COLD), 'no demand was counted for it (nothing pokes the autoscaler)')
  t.equal(gw.plane.active, 0, 'nothing is left in flight')
})

t.test('a pass, given later, lets the request on to its pod', async (t) => {
  const before = pod.seen.length
  const request = await raw(gw.ports.http, 'GET /x HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n')
  const stream = await h2Request(gw.ports.http, [[':method', 'GET'], [':scheme', 'http'], [':path', '/y'], [':authority', 'app.example.com']])
  t.equal(request.status, 200)
  t.equal(stream.status, 200)
  t.same(pod.seen.slice(before).map((s) => s.url), ['/x', '/y'], 'both reached the pod, in order')
  t.same(asked.slice(-2).map((a) => a.host), ['app.example.com', 'app.example.com'])
})

t.test('a client that leaves while a policy decides is counted, and nothing is forwarded', async (t) => {
  const before = pod.seen.length
  const metrics = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${gw.ports.admin}/metrics`)).text()
    return Number(/edge_requests_total\{host="app\.example\.com",namespace="default",revision="",code="499"\} (\d+)/.exec(text)?.[1] ?? 0)
  }
  const left = await metrics()
  const asks = asked.length
  const { connect } = await import('node:net')
  const socket = connect(gw.ports.http, '127.0.0.1')
  socket.write('GET /slow HTTP/1.1\r\nHost: app.example.com\r\n\r\n')
  // The policy is asked on arrival; the client leaves once it has been (the policy passes only then).
  await waitFor('the policy to be asked', () => asked.length > asks)
  socket.destroy()
  await waitFor('the request to be counted', async () => (await metrics()) > left)
  t.equal(await metrics(), left + 1, 'counted once as 499')
  t.equal(pod.seen.length, before, 'the pod saw nothing')
})
