// Issue 7, faults around the data path: the Knative autoscaler down (or never up), and an
// ExternalName Service whose DNS name does not resolve. Warm traffic must not notice the first;
// the second must be a clear gateway error for that route only; both recover without a restart.
// (API server outages, including an update made while it was down, are in kubernetes-source.test.ts.)
import fs from 'node:fs'
import t from 'tap'
import type { Test } from 'tap'
import type { Gateway } from '../src/gateway.ts'
import { endpointSlice, externalNameService, get, kingress, revision, serviceFor, simpleIngress, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import { closedPort, revisionIngress } from './helpers/activator.ts'
import { FakeAutoscaler } from './helpers/fake-autoscaler.ts'
import { raw, upgradeRequest } from './helpers/raw.ts'

const NS = 'default'
const REV = 'warm-00001'
const HOST = 'warm.example.com'

interface AutoscalerDebug {
  url: string
  connected: boolean
  sent: number
  dropped: number
  connects: number
  errors: number
}

async function autoscalerDebug(gw: Gateway): Promise<AutoscalerDebug | undefined> {
  const r = await get(gw.ports.admin, 'localhost', '/debug/routes')
  return (JSON.parse(r.body) as { sources: { autoscaler?: AutoscalerDebug } }).sources.autoscaler
}

/** The edge_autoscaler_connected gauge: '1', '0', or undefined when absent. */
async function connectedMetric(gw: Gateway): Promise<string | undefined> {
  const m = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  return /^edge_autoscaler_connected\{url="[^"]*"\} (\d+)$/m.exec(m)?.[1]
}

/** `n` requests to the warm revision from 4 concurrent loops: the statuses, counted. */
async function warmTraffic(gw: Gateway, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  let next = 0
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < n) {
        next++
        let key: string
        try {
          const r = await get(gw.ports.http, HOST, '/')
          key = r.status === 200 ? `200 ${r.json().backend}` : `${r.status} ${String(r.headers['x-edge-reason'])}`
        } catch (err) {
          key = `error ${(err as Error).message}`
        }
        out[key] = (out[key] ?? 0) + 1
      }
    }),
  )
  return out
}

async function warmGateway(t: Test, autoscalerUrl: string): Promise<{ gw: Gateway; pod: Backend }> {
  const dir = tempDir('edge-faults-')
  const pod = await startBackend('pod')
  writeManifest(dir, 'warm.yaml', [revision(REV), revisionIngress('warm', HOST, REV), endpointSlice(`${REV}-private`, [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1' }], NS, `${REV}-private-0`)])
  const gw = await startTestGateway(dir, ['--autoscaler-url', autoscalerUrl])
  t.teardown(async () => {
    await gw.close()
    await pod.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  await waitFor('the warm revision routed', () => (gw.plane.snapshot.backends.get(`rev:${NS}/${REV}`)?.endpoints.length ?? 0) === 1)
  return { gw, pod }
}

/** Sends a little traffic until the fake autoscaler has received `n` more frames about REV. */
async function framesArrive(gw: Gateway, fake: FakeAutoscaler, n: number, what: string): Promise<void> {
  const start = fake.framesFor(NS, REV)
  await waitFor(
    what,
    async () => {
      await get(gw.ports.http, HOST, '/')
      return fake.framesFor(NS, REV) >= start + n
    },
    20_000,
  )
}

t.test('autoscaler down: warm traffic is unaffected, the outage shows on /debug/routes and /metrics, and it reconnects by itself', async (t) => {
  const fake = new FakeAutoscaler()
  t.teardown(() => fake.stop())
  const port = await fake.listen()
  const { gw, pod } = await warmGateway(t, `ws://127.0.0.1:${port}`)

  await waitFor('connected to the autoscaler', async () => (await autoscalerDebug(gw))?.connected === true)
  t.equal(await connectedMetric(gw), '1', 'edge_autoscaler_connected 1 while connected')
  await framesArrive(gw, fake, 2, 'stat frames about the warm revision')
  t.pass('stats about the warm revision reach the autoscaler')

  // The autoscaler goes away.
  await fake.stop()
  await waitFor('the outage seen', async () => (await autoscalerDebug(gw))?.connected === false)
  const during = await warmTraffic(gw, 200)
  t.same(during, { '200 pod': 200 }, 'all 200 warm requests answered 200 by the pod while the autoscaler is down')
  const dbg = (await autoscalerDebug(gw))!
  t.equal(dbg.connected, false, '/debug/routes: sources.autoscaler.connected false')
  t.equal(dbg.url, `ws://127.0.0.1:${port}`, 'naming the autoscaler')
  t.equal(await connectedMetric(gw), '0', 'edge_autoscaler_connected 0 while down')
  await waitFor('reconnect attempts failing', async () => ((await autoscalerDebug(gw))?.errors ?? 0) >= 1)
  t.pass('the failed reconnect attempts are counted')

  // Back on the same port: the gateway reconnects and reports again, with no restart.
  const connectsBefore = (await autoscalerDebug(gw))!.connects
  const framesBefore = fake.frames.length
  t.equal(await fake.listen(port), port, 'the autoscaler is back on the same port')
  await waitFor('reconnected', async () => (await autoscalerDebug(gw))?.connected === true, 20_000)
  await framesArrive(gw, fake, 2, 'stat frames after the reconnect')
  t.ok(fake.frames.length > framesBefore, 'the autoscaler receives frames again')
  t.equal((await autoscalerDebug(gw))!.connects, connectsBefore + 1, 'one new connection')
  t.equal(await connectedMetric(gw), '1', 'edge_autoscaler_connected 1 again')
  t.equal(pod.seen.length, pod.seen.filter((s) => s.url === '/').length, 'the pod only ever saw client requests')
})

t.test('autoscaler never up (closed port from the start): traffic flows, the fault shows, and it connects once the autoscaler appears', async (t) => {
  const port = await closedPort()
  const { gw } = await warmGateway(t, `ws://127.0.0.1:${port}`)
  await waitFor('a failed connect attempt', async () => ((await autoscalerDebug(gw))?.errors ?? 0) >= 1)
  t.same(await warmTraffic(gw, 100), { '200 pod': 100 }, 'all 100 warm requests answered 200')
  t.equal((await autoscalerDebug(gw))!.connected, false, '/debug/routes: not connected')
  t.equal(await connectedMetric(gw), '0', 'edge_autoscaler_connected 0')

  const fake = new FakeAutoscaler()
  t.teardown(() => fake.stop())
  await fake.listen(port)
  await waitFor('connected once the autoscaler listens', async () => (await autoscalerDebug(gw))?.connected === true, 20_000)
  await framesArrive(gw, fake, 2, 'stat frames once connected')
  t.equal(fake.connections, 1, 'one connection')
  t.equal(await connectedMetric(gw), '1', 'edge_autoscaler_connected 1')
})

t.test('no autoscaler configured: no edge_autoscaler_connected series', async (t) => {
  const dir = tempDir('edge-faults-none-')
  writeManifest(dir, 'empty.yaml', [])
  const gw = await startTestGateway(dir)
  t.teardown(async () => {
    await gw.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  t.equal(await connectedMetric(gw), undefined)
})

t.test('ExternalName Service whose name does not resolve: a clear 502 naming DNS for that route only, and recovery when the Service is fixed', async (t) => {
  const dir = tempDir('edge-faults-dns-')
  const ext = await startBackend('ext')
  const other = await startBackend('other')
  t.teardown(async () => {
    await ext.close()
    await other.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const BAD = 'does-not-exist.invalid'
  const extIngress = kingress('ext', { rules: [{ hosts: ['ext.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: NS, serviceName: 'ext', servicePort: ext.port, percent: 100 }] }] } }] })
  writeManifest(dir, 'ext.yaml', [externalNameService('ext', BAD, ext.port), extIngress])
  writeManifest(dir, 'other.yaml', [...serviceFor('other', other), simpleIngress('other', ['other.example.com'], [['other', 100]])])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  await waitFor('both routes loaded', () => gw.plane.snapshot.publicHosts.has('ext.example.com') && gw.plane.snapshot.publicHosts.has('other.example.com'))

  // Failing requests and healthy ones at the same time.
  const [bad, good] = await Promise.all([
    Promise.all(Array.from({ length: 10 }, () => get(gw.ports.http, 'ext.example.com', '/'))),
    Promise.all(Array.from({ length: 30 }, () => get(gw.ports.http, 'other.example.com', '/'))),
  ])
  t.same([...new Set(bad.map((r) => `${r.status} ${String(r.headers['x-edge-reason'])}`))], ['502 upstream-connect-failed'], 'each of the 10 requests: 502 upstream-connect-failed')
  for (const r of bad.slice(0, 1)) {
    t.match(r.body, /DNS/, 'the body says it is a DNS failure')
    t.match(r.body, new RegExp(BAD.replace(/\./g, '\\.')), 'and names the host')
    t.match(r.body, /ENOTFOUND|EAI_AGAIN/, 'with the resolver error')
  }
  t.same(good.map((r) => r.status), Array(30).fill(200), 'the other route answered all 30 meanwhile')
  t.equal(ext.seen.length, 0)

  // The Service is fixed: traffic recovers without a restart.
  writeManifest(dir, 'ext.yaml', [externalNameService('ext', '127.0.0.1', ext.port), extIngress])
  await waitFor('ext answered by its backend', async () => (await get(gw.ports.http, 'ext.example.com', '/')).status === 200)
  const after = await Promise.all(Array.from({ length: 10 }, () => get(gw.ports.http, 'ext.example.com', '/after')))
  t.same(after.map((r) => `${r.status} ${String(r.headers['x-backend'])}`), Array(10).fill('200 ext'), 'all 10 requests after the fix answered by the backend')
  t.equal(ext.seen.filter((s) => s.url === '/after').length, 10)
})

// A bug in the gateway (here injected: one host's compiled entry throws when read) must cost the
// request it happened in, never the process and the traffic beside it.
t.test('an internal error while routing a request: that request gets 500 internal-error, everything else keeps flowing', async (t) => {
  const dir = tempDir('edge-faults-bug-')
  const app = await startBackend('app')
  t.teardown(async () => {
    await app.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  writeManifest(dir, 'app.yaml', [...serviceFor('app', app), simpleIngress('app', ['app.example.com', 'bug.example.com'], [['app', 100]])])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  await waitFor('routes loaded', () => gw.plane.snapshot.publicHosts.has('bug.example.com'))
  const healthy = gw.plane.snapshot.publicHosts.get('app.example.com')!
  const broken = gw.plane.snapshot.publicHosts.get('bug.example.com')!
  t.not(broken, healthy)
  Object.defineProperty(broken, 'paths', { get: () => { throw new Error('injected fault') } })

  const [bad, good] = await Promise.all([
    Promise.all(Array.from({ length: 5 }, () => get(gw.ports.http, 'bug.example.com', '/'))),
    Promise.all(Array.from({ length: 20 }, () => get(gw.ports.http, 'app.example.com', '/'))),
  ])
  t.same(bad.map((r) => `${r.status} ${String(r.headers['x-edge-reason'])}`), Array(5).fill('500 internal-error'), 'each faulty request: 500 internal-error')
  t.match(bad[0]!.body, /the gateway failed while handling this request/, 'the body says the gateway failed, not the app')
  t.same(good.map((r) => r.status), Array(20).fill(200), 'the other host answered all 20 meanwhile')
  t.equal(gw.plane.snapshot.publicHosts.get('app.example.com'), healthy)
  t.equal((await get(gw.ports.http, 'app.example.com', '/after')).status, 200, 'and the process still serves afterwards')
  const m = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  t.match(m, /edge_requests_in_flight 0/, 'no request is left counted in flight')

  // The same bug met by a WebSocket upgrade: that handshake gets 500 internal-error, not a crash.
  const ws = await raw(gw.ports.http, upgradeRequest('bug.example.com'))
  t.equal(ws.status, 500)
  t.equal(ws.headers['x-edge-reason'], 'internal-error')
  t.match(ws.body, /the gateway failed while handling this request/)
  t.equal((await get(gw.ports.http, 'app.example.com', '/after-upgrade')).status, 200, 'the process still serves after the failed upgrade')
})
