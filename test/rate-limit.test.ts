// Rate limits before admission: per host (edge.knative.dev/rate-limit on a KIngress, or a Route whose
// annotations reach its KIngress) and per client (--rate-limit-per-client). Over a limit: 429
// rate-limited with Retry-After, counted, and a revision at zero is never woken by it. A bad
// annotation is a problem naming its field, and the host serves unlimited.
import t from 'tap'
import { TokenBucket } from '../src/policy/token-bucket.ts'
import { parseRateLimit } from '../src/policy/rate-limit-spec.ts'
import { get, kingress, revision, revisionPods, serviceFor, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { revisionIngress } from './helpers/activator.ts'

t.test('a token bucket: the burst at once, then the rate; the wait until the next token', async (t) => {
  const b = new TokenBucket(2, 3, 0) // 2 a second, 3 at once
  t.same([b.take(0), b.take(0), b.take(0)], [0, 0, 0], 'the burst')
  t.equal(b.take(0), 0.5, 'then half a second until the next')
  t.equal(b.take(500), 0, 'which comes at the rate')
  t.notOk(b.full(500))
  t.ok(b.full(2000), 'full again after idling')
})

t.test('how a limit is written', async (t) => {
  t.match(parseRateLimit('100/s', undefined), { rate: 100, burst: 100, text: '100/s' })
  t.match(parseRateLimit('6000/m', '50'), { rate: 100, burst: 50 })
  t.match(parseRateLimit('10/s', '20', 2), { rate: 5, burst: 10 }, 'a worker process holds its share')
  for (const bad of ['100', '1.5/s', '0/s', '10/h', '-1/s', '']) t.match(parseRateLimit(bad, undefined), /is not a rate: write a whole number of requests per second or per minute/, JSON.stringify(bad))
  t.match(parseRateLimit('10/s', 'lots'), /burst "lots" is not a whole number/)
})

const pod = await startBackend('pod')
t.teardown(() => pod.close())
const dir = tempDir()
const ANN = (rate: string, burst?: string): Record<string, string> => ({ 'edge.knative.dev/rate-limit': rate, ...(burst ? { 'edge.knative.dev/rate-limit-burst': burst } : {}) })
function ingressWith(name: string, host: string, annotations: Record<string, string>): unknown {
  const k = kingress(name, { rules: [{ hosts: [host], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }] }) as { metadata: { annotations: Record<string, string> } }
  Object.assign(k.metadata.annotations, annotations)
  return k
}
const cold = revisionIngress('cold', 'cold.example.com', 'cold-00001') as { metadata: { annotations: Record<string, string> } }
Object.assign(cold.metadata.annotations, ANN('1/m', '1'))
writeManifest(dir, 'all.yaml', [
  ...serviceFor('app', pod),
  ingressWith('limited', 'limited.example.com', ANN('2/m', '2')),
  ingressWith('free', 'free.example.com', {}),
  ingressWith('typo', 'typo.example.com', ANN('fast')),
  revision('cold-00001'),
  cold,
  {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Route',
    metadata: { name: 'web', namespace: 'default', annotations: ANN('1/m') },
    status: { url: 'http://web.default.example.com', traffic: [{ revisionName: 'web-00001', percent: 100 }] },
  },
  revision('web-00001'),
  revisionPods('web-00001', pod),
])
const gw = await startTestGateway(dir)
t.teardown(() => gw.close())

async function limitedCount(host: string, limit: string): Promise<number> {
  const m = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  return Number(new RegExp(`edge_rate_limited_total\\{host="${host.replace(/\./g, '\\.')}",limit="${limit}"\\} (\\d+)`).exec(m)?.[1] ?? 0)
}

t.test('a host over its limit gets 429 rate-limited with Retry-After; other hosts are not limited', async (t) => {
  const statuses = []
  for (let i = 0; i < 3; i++) statuses.push((await get(gw.ports.http, 'limited.example.com')).status)
  t.same(statuses, [200, 200, 429], 'the burst of 2, then the limit')
  const r = await get(gw.ports.http, 'limited.example.com')
  t.equal(r.headers['x-edge-reason'], 'rate-limited')
  t.equal(r.headers['retry-after'], '30', 'a token comes every 30 s at 2/m')
  t.match(r.body, /too many requests to limited\.example\.com: its limit is 2\/m \(burst 2\)/)
  t.equal(await limitedCount('limited.example.com', 'host'), 2, 'counted by host and limit')
  for (let i = 0; i < 5; i++) t.equal((await get(gw.ports.http, 'free.example.com')).status, 200)
})

t.test('a Route\'s annotation limits its hosts', async (t) => {
  t.same([(await get(gw.ports.http, 'web.default.example.com')).status, (await get(gw.ports.http, 'web.default.example.com')).status], [200, 429])
})

t.test('a limited request to a revision at zero is answered at once and wakes nothing', async (t) => {
  const first = get(gw.ports.http, 'cold.example.com') // takes the one token, and is held (no pod)
  await waitFor('the first request to be held', () => gw.plane.throttlerByKey('rev:default/cold-00001')?.queued === 1)
  const queuedBefore = gw.plane.throttlerByKey('rev:default/cold-00001')!.queued
  const limited = await get(gw.ports.http, 'cold.example.com')
  t.equal(limited.status, 429)
  t.equal(gw.plane.throttlerByKey('rev:default/cold-00001')!.queued, queuedBefore, 'the limited request was never held')
  t.equal(gw.reporter.demand.snapshot().find((d) => d.name === 'cold-00001')?.concurrency, 1, 'only the first counts as demand')
  gw.plane.rejectHeld()
  await first
})

t.test('a bad annotation is a problem naming its field, and the host serves without a limit', async (t) => {
  const problems = (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<{ problems: Array<{ object: string; field: string; code: string; reason: string }> }>().problems
  t.match(problems.filter((p) => p.code === 'EDGE_ERR_RATE_LIMIT'), [{ object: 'Ingress default/typo', field: 'metadata.annotations["edge.knative.dev/rate-limit"]', reason: /"fast" is not a rate.*served without a rate limit/ }])
  for (let i = 0; i < 4; i++) t.equal((await get(gw.ports.http, 'typo.example.com')).status, 200)
})

t.test('--rate-limit-per-client limits each client address on its own', async (t) => {
  const d = tempDir()
  writeManifest(d, 'all.yaml', [...serviceFor('app', pod), ingressWith('any', 'any.example.com', {})])
  const g = await startTestGateway(d, ['--rate-limit-per-client', '2/m'])
  t.teardown(() => g.close())
  const statuses = []
  for (let i = 0; i < 3; i++) statuses.push((await get(g.ports.http, 'any.example.com')).status)
  t.same(statuses, [200, 200, 429])
  const r = await get(g.ports.http, 'any.example.com')
  t.match(r.body, /too many requests from .*127\.0\.0\.1: the limit per client is 2\/m/)
})
