// Demand end to end: requests through a real gateway reach a fake Knative autoscaler (a websocket
// server decoding the protobuf) as a poke at once and per-second stats; and the local runner scales a
// revision out on that demand and back to zero without dropping a request in flight.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { FakeAutoscaler } from './helpers/fake-autoscaler.ts'
import { get, kingress, revision, revisionPods, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'

t.test('the fake autoscaler gets the poke first, then per-second stats with the demand', async (t) => {
  const fake = new FakeAutoscaler()
  await fake.listen()
  t.teardown(() => fake.stop())
  const frames = fake.frames
  const pod = await startBackend('pod', (_req, res) => setTimeout(() => res.end('ok'), 1500))
  t.teardown(() => pod.close())
  const dir = tempDir()
  writeManifest(dir, 'app.yaml', [
    revision('demo-00001'),
    revisionPods('demo-00001', pod),
    kingress('demo', { rules: [{ hosts: ['demo.example.com'], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'demo-00001', servicePort: 80, appendHeaders: { 'Knative-Serving-Revision': 'demo-00001', 'Knative-Serving-Namespace': 'default' } }] }] } }] }),
  ])
  const gw = await startTestGateway(dir, ['--autoscaler-url', fake.url, '--pod-name', 'edge-0'])
  t.teardown(() => gw.close())
  await waitFor('the gateway to connect to the autoscaler', () => fake.connections === 1)

  const answers = Promise.all([get(gw.ports.http, 'demo.example.com'), get(gw.ports.http, 'demo.example.com')])
  await waitFor('the poke', () => frames.length > 0)
  const poke = frames[0]!
  t.ok(poke.binary, 'binary frames')
  t.same(poke.entries, [{ namespace: 'default', name: 'demo-00001', podName: 'edge-0', averageConcurrentRequests: 1, averageProxiedConcurrentRequests: 0, requestCount: 1, proxiedRequestCount: 0, processUptime: 0, timestamp: 0 }], 'a poke: concurrency 1, one request')
  t.ok(frames.length === 1 || frames[1]!.at >= poke.at, 'the poke is the first frame, ahead of any tick')
  await answers
  await waitFor('ticks covering the requests', () => frames.length >= 3)
  const ticks = frames.slice(1).flatMap((f) => f.entries)
  t.ok(ticks.every((e) => e.podName === 'edge-0' && e.name === 'demo-00001'), 'every entry names this replica and the revision')
  t.ok(ticks.some((e) => e.averageConcurrentRequests > 0.5), `a tick reports the two requests in flight (${ticks.map((e) => e.averageConcurrentRequests.toFixed(2)).join(', ')})`)
  const counted = ticks.reduce((n, e) => n + e.requestCount, 0) + 1
  t.equal(counted, 2, 'poke plus ticks count the two requests once each')
})

t.test('the local runner scales out on demand and to zero after idling, never cutting a request', async (t) => {
  const dir = tempDir()
  // A slow app: each request takes 800 ms (/long: 2.5 s), so concurrent requests pile up.
  fs.writeFileSync(
    path.join(dir, 'slow-app.mjs'),
    `import http from 'node:http'
http.createServer((req, res) => setTimeout(() => res.end(String(process.pid)), req.url === '/long' ? 2500 : 800)).listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
`,
  )
  writeManifest(dir, 'app.yaml', [
    revision('slow-00001', {}, { 'edge.knative.dev/local-command': 'node slow-app.mjs', 'autoscaling.knative.dev/target': '1', 'autoscaling.knative.dev/max-scale': '3' }),
    kingress('slow', { rules: [{ hosts: ['slow.example.com'], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'slow-00001', servicePort: 80, appendHeaders: { 'Knative-Serving-Revision': 'slow-00001', 'Knative-Serving-Namespace': 'default' } }] }] } }] }),
  ])
  const gw = await startTestGateway(dir, ['--scale-to-zero-after', '2'])
  t.teardown(() => gw.close())
  const running = (): number => (gw.runner!.describe()['default/slow-00001'] ?? []).filter((i) => i.ready && !i.stopping).length

  t.equal(running(), 0, 'starts at zero')
  // Sustained demand of ~6 concurrent requests against a target of 1 per process.
  let stop = false
  const pids = new Set<string>()
  let failed = 0
  const loop = async (): Promise<void> => {
    while (!stop) {
      const r = await get(gw.ports.http, 'slow.example.com').catch(() => undefined)
      if (r?.status === 200) pids.add(r.body)
      else failed++
    }
  }
  const loops = Array.from({ length: 6 }, loop)
  await waitFor('scale out to the max-scale of 3', () => running() === 3, 20_000)
  await waitFor('requests served by more than one process', () => pids.size >= 2, 10_000)
  stop = true
  await Promise.all(loops)
  t.equal(failed, 0, 'no request failed while scaling out')

  // One long request keeps the revision busy past the idle window: it must finish.
  const long = get(gw.ports.http, 'slow.example.com', '/long')
  await waitFor('the long request to be in flight', () => running() >= 1)
  const r = await long
  t.equal(r.status, 200, 'the request in flight while demand fell finished')
  await waitFor('scale to zero after the idle window', () => (gw.runner!.describe()['default/slow-00001'] ?? []).length === 0, 20_000)
  t.pass('scaled to zero')
  const again = await get(gw.ports.http, 'slow.example.com')
  t.equal(again.status, 200, 'the next request starts it again')
  t.ok(again.headers['x-edge-cold-start-ms'] !== undefined)
})
