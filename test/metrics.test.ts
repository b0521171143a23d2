// What /metrics tells a dashboard: requests by revision with the gateway's own reason, latency by
// revision and status class, holds by cause, process metrics under their conventional names, and
// labels that stay bounded whatever Host headers clients send. (test/prometheus.test.ts runs the
// dashboard's queries against a real Prometheus.)
import t from 'tap'
import type { Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { describeRequest, get, revision, revisionPods, service, serviceFor, simpleIngress, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import { podsSlice, revisionIngress, revisionState, startGatedBackend, waitForQueued } from './helpers/activator.ts'
import type { Gateway } from '../src/gateway.ts'

/** Every series on /metrics (name and labels, as printed) with its value. */
async function scrape(gw: Gateway): Promise<Map<string, number>> {
  const text = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  const series = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    series.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return series
}

async function setup(t: Test): Promise<{ gw: Gateway; app: Backend }> {
  const app = await startBackend('app', (req, res) => {
    // The application's own 503: the gateway passes it on and counts it without a reason.
    if (req.url === '/fail') res.writeHead(503).end('app says no')
    else res.end('ok')
  })
  const dir = tempDir()
  writeManifest(dir, 'app.yaml', [
    ...serviceFor('app', app),
    simpleIngress('app', ['app.example.com'], [['app', 100]]),
    // A Service without endpoints: the gateway answers 503 no-backend.
    service('empty', [{ name: 'http', port: 80 }]),
    simpleIngress('empty', ['empty.example.com'], [['empty', 100]]),
  ])
  const gw = await startTestGateway(dir)
  t.teardown(async () => {
    await gw.close()
    await app.close()
  })
  return { gw, app }
}

t.test('an unknown Host header never becomes a label: 300 random hosts add no series', async (t) => {
  const { gw } = await setup(t)
  t.equal((await get(gw.ports.http, 'first-unknown.example.com')).status, 404)
  const before = await scrape(gw)
  const key = 'edge_requests_total{host="",namespace="",revision="",code="404",reason="host-not-found"}'
  t.equal(before.get(key), 1, 'the unknown host is counted with host=""')
  const hosts = Array.from({ length: 300 }, () => `${randomBytes(6).toString('hex')}.example.${randomBytes(2).toString('hex')}`)
  for (let i = 0; i < hosts.length; i += 50) {
    const answers = await Promise.all(hosts.slice(i, i + 50).map((h) => get(gw.ports.http, h)))
    t.same(new Set(answers.map((a) => a.status)), new Set([404]))
  }
  const after = await scrape(gw)
  t.same([...after.keys()].filter((k) => !before.has(k)), [], 'no new series')
  t.equal(after.get(key), 301, 'every one of them counted in the one series')
  const text = [...after.keys()].join('\n')
  t.notOk(hosts.some((h) => text.includes(h)), 'no random host appears anywhere on /metrics')
})

t.test('edge_requests_total says which answers were the gateway\'s own, by reason', async (t) => {
  const { gw } = await setup(t)
  t.equal((await get(gw.ports.http, 'app.example.com', '/fail')).status, 503)
  t.equal((await get(gw.ports.http, 'app.example.com', '/')).status, 200)
  const gateway503 = await get(gw.ports.http, 'empty.example.com')
  t.equal(gateway503.status, 503)
  t.equal(gateway503.headers['x-edge-reason'], 'no-backend')
  const m = await scrape(gw)
  t.equal(m.get('edge_requests_total{host="app.example.com",namespace="default",revision="",code="503"}'), 1, "the application's 503 has no reason")
  t.equal(m.get('edge_requests_total{host="app.example.com",namespace="default",revision="",code="200"}'), 1)
  t.equal(m.get('edge_requests_total{host="empty.example.com",namespace="default",revision="",code="503",reason="no-backend"}'), 1, "the gateway's 503 has its reason")
  t.notOk([...m.keys()].some((k) => k.startsWith('edge_requests_total{host="empty.example.com"') && !k.includes('reason=')), 'and is not also counted without one')
})

t.test('latency by revision and status class; time held by cause', async (t) => {
  const busy = await startGatedBackend('busy')
  const zero = await startBackend('zero')
  t.teardown(async () => {
    await busy.close()
    await zero.close()
  })
  const dir = tempDir()
  writeManifest(dir, 'revisions.yaml', [
    revision('busy-00001', { containerConcurrency: 1 }),
    ...podsSlice('busy-00001', [busy.port]),
    revisionIngress('busy', 'busy.example.com', 'busy-00001'),
    revision('zero-00001'),
    revisionIngress('zero', 'zero.example.com', 'zero-00001'),
  ])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())

  // A cold start: held until the revision has a pod.
  const cold = get(gw.ports.http, 'zero.example.com', '/cold')
  await waitForQueued(gw, 'zero-00001', 1)
  writeManifest(dir, 'zero-pods.yaml', [revisionPods('zero-00001', zero)])
  t.equal((await cold).status, 200)
  // No capacity: the one pod (containerConcurrency 1) is busy with the first request.
  const first = get(gw.ports.http, 'busy.example.com', '/first')
  await waitFor('the first request to reach the pod', () => busy.inFlight === 1)
  const second = get(gw.ports.http, 'busy.example.com', '/second')
  await waitForQueued(gw, 'busy-00001', 1)
  busy.open()
  t.same([(await first).status, (await second).status], [200, 200])

  const m = await scrape(gw)
  const held = (rev: string, cause: string): number | undefined => m.get(`edge_cold_start_wait_seconds_count{namespace="default",revision="${rev}",cause="${cause}"}`)
  t.equal(held('zero-00001', 'cold-start'), 1, 'the request that waited for the first pod: a cold start')
  t.equal(held('busy-00001', 'no-capacity'), 1, 'the request that waited behind a busy pod: no capacity')
  t.equal(held('busy-00001', 'cold-start'), undefined)
  t.equal(held('zero-00001', 'no-capacity'), undefined)
  const latency = (rev: string, cls: string): number | undefined => m.get(`edge_request_duration_seconds_count{namespace="default",revision="${rev}",code_class="${cls}"}`)
  t.equal(latency('busy-00001', '2xx'), 2, 'each revision has its own latency series')
  t.equal(latency('zero-00001', '2xx'), 1)
  t.equal(m.get('edge_request_duration_seconds_bucket{namespace="default",revision="busy-00001",code_class="2xx",le="+Inf"}'), 2)
  const coldSeconds = m.get('edge_request_duration_seconds_sum{namespace="default",revision="zero-00001",code_class="2xx"}')!
  const heldSeconds = m.get('edge_cold_start_wait_seconds_sum{namespace="default",revision="zero-00001",cause="cold-start"}')!
  t.ok(heldSeconds > 0 && coldSeconds >= heldSeconds, `the held time (${heldSeconds}s) is part of the request's (${coldSeconds}s)`)
})

t.test('a revision gone from the configuration leaves /metrics once its last counts were scraped; a late answer is still counted', async (t) => {
  // The old revision's pod answers at once, except `/late`, which it holds until told.
  let answerLate: (() => void) | undefined
  const old = await startBackend('old', (req, res, b) => {
    const answer = (): void => void describeRequest(req, res, b)
    if (req.url === '/late') answerLate = answer
    else answer()
  })
  const fresh = await startBackend('fresh')
  t.teardown(async () => {
    await old.close()
    await fresh.close()
  })
  const dir = tempDir()
  const app = (rev: string, pod: Backend): unknown[] => [revision(rev), ...podsSlice(rev, [pod.port]), revisionIngress('app', 'app.example.com', rev)]
  writeManifest(dir, 'app.yaml', app('app-00001', old))
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  const requests = (rev: string) => (m: Map<string, number>): number | undefined => m.get(`edge_requests_total{host="app.example.com",namespace="default",revision="${rev}",code="200"}`)
  const latency = (rev: string) => (m: Map<string, number>): number | undefined => m.get(`edge_request_duration_seconds_count{namespace="default",revision="${rev}",code_class="2xx"}`)
  const mentions = (m: Map<string, number>, rev: string): string[] => [...m.keys()].filter((k) => k.includes(`revision="${rev}"`))

  t.equal((await get(gw.ports.http, 'app.example.com', '/one')).status, 200)
  let m = await scrape(gw)
  t.same([requests('app-00001')(m), latency('app-00001')(m)], [1, 1])
  const late = get(gw.ports.http, 'app.example.com', '/late')
  await waitFor('the late request to reach the old pod', () => answerLate !== undefined)
  t.equal((await get(gw.ports.http, 'app.example.com', '/two')).status, 200, 'answered after that scrape: not scraped yet when the revision goes')

  writeManifest(dir, 'app.yaml', app('app-00002', fresh))
  await waitFor('the new revision to serve the host instead', async () => (await revisionState(gw, 'app-00001')) === undefined && (await revisionState(gw, 'app-00002')) !== undefined)
  t.equal((await get(gw.ports.http, 'app.example.com', '/new')).headers['x-backend'], 'fresh')
  m = await scrape(gw)
  t.same([requests('app-00001')(m), latency('app-00001')(m)], [2, 2], 'the first scrape after the revision went still shows its counts that no scrape had')
  t.equal(requests('app-00002')(m), 1, 'the new revision is counted')
  t.same(mentions(await scrape(gw), 'app-00001'), [], 'the next scrape has no series of it: nothing new since the last')

  answerLate!()
  t.equal((await late).status, 200, 'the request that was at its pod meanwhile is answered')
  m = await scrape(gw)
  t.same([requests('app-00001')(m), latency('app-00001')(m)], [1, 1], 'and counted, in a series of its own')
  t.same(mentions(await scrape(gw), 'app-00001'), [], 'which goes after one scrape as well')
  t.equal(requests('app-00002')(await scrape(gw)), 1, 'the live revision stays, with nothing new')
})

t.test('a gone revision\'s hold histogram is scraped once more, then leaves /metrics', async (t) => {
  const pod = await startBackend('zero')
  t.teardown(() => pod.close())
  const dir = tempDir()
  writeManifest(dir, 'zero.yaml', [revision('zero-00001'), revisionIngress('zero', 'zero.example.com', 'zero-00001')])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  const held = (m: Map<string, number>): number | undefined => m.get('edge_cold_start_wait_seconds_count{namespace="default",revision="zero-00001",cause="cold-start"}')

  const cold = get(gw.ports.http, 'zero.example.com', '/cold')
  await waitForQueued(gw, 'zero-00001', 1)
  writeManifest(dir, 'zero-pods.yaml', [revisionPods('zero-00001', pod)])
  t.equal((await cold).status, 200)
  t.equal(held(await scrape(gw)), 1, 'the cold start is counted')
  t.equal(held(await scrape(gw)), 1, 'and stays while the revision is configured')

  writeManifest(dir, 'zero.yaml', [])
  await waitFor('the revision to leave the configuration', async () => (await revisionState(gw, 'zero-00001')) === undefined)
  t.equal(held(await scrape(gw)), 1, 'the first scrape after it went still shows it')
  const after = await scrape(gw)
  t.same([...after.keys()].filter((k) => k.includes('revision="zero-00001"')), [], 'the next has no series of the revision at all')
})

t.test('process and Node.js metrics carry their conventional names', async (t) => {
  const dir = tempDir()
  const gw = await startTestGateway(dir, [], {}, { defaultMetrics: true })
  t.teardown(() => gw.close())
  const text = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_heap_size_used_bytes']) {
    t.match(text, new RegExp(`^${name} \\S+$`, 'm'), name)
  }
  t.notMatch(text, /edge_process_/, 'no prefix')
  t.notMatch(text, /^# TYPE \S+_total gauge$/m, 'no gauge named like a counter (promtool refuses it)')
})

