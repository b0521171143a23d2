// The gateway as Knative's activator, end to end: a real gateway reading manifests from a directory,
// real backends on loopback standing in for revision pods, real client sockets. Assertions are about
// counts, order and reasons, never about how long something took.
import http from 'node:http'
import t from 'tap'
import type { Test } from 'tap'
import { request } from 'undici'
import { WebSocket, WebSocketServer } from 'ws'
import type { Gateway } from '../src/gateway.ts'
import { get, revision, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Answer, Backend } from './helpers/gateway.ts'
import {
  closedPort,
  delayed,
  podsSlice,
  queuedCount,
  queuedMetric,
  revisionState,
  revisionIngress,
  startGatedBackend,
  startSilentBackend,
  startStallingBackend,
  waitForEndpoints,
  waitForQueued,
  waitForSeen,
  within,
} from './helpers/activator.ts'

const HOST = 'hello.default.example.com'
const REV = 'hello-00001'

interface Setup {
  dir: string
  gw: Gateway
  /** Aborted at teardown: the gateway's close waits for requests it still holds. */
  signal: AbortSignal
}

/** A gateway serving HOST → REV, with the Revision spec given and pods on `ports` (none: scaled to zero). */
async function setup(t: Test, opts: { spec?: Record<string, unknown>; ports?: number[]; args?: string[] } = {}): Promise<Setup> {
  const dir = tempDir('edge-activator-')
  writeManifest(dir, 'ingress.yaml', [revisionIngress('hello', HOST, REV)])
  writeManifest(dir, 'revision.yaml', [revision(REV, opts.spec ?? {})])
  if (opts.ports?.length) writeManifest(dir, 'pods.yaml', podsSlice(REV, opts.ports))
  const gw = await startTestGateway(dir, opts.args ?? [])
  const ctl = new AbortController()
  t.teardown(async () => {
    ctl.abort() // a failed assertion may leave requests held; they must not keep the gateway open
    await gw.close()
  })
  await waitForEndpoints(gw, REV, opts.ports?.length ?? 0)
  return { dir, gw, signal: ctl.signal }
}

async function backend(t: Test, b: Promise<Backend> | Backend): Promise<Backend> {
  const x = await b
  t.teardown(() => x.close())
  return x
}

/** Makes the revision's pods `ports` and waits until the gateway routes to them. */
async function setPods(s: Setup, ports: number[]): Promise<void> {
  writeManifest(s.dir, 'pods.yaml', podsSlice(REV, ports))
  await waitForEndpoints(s.gw, REV, ports.length)
}

function hello(s: Setup, path = '/', headers: Record<string, string> = {}): Promise<Answer> {
  const p = (async () => {
    const res = await request(`http://127.0.0.1:${s.gw.ports.http}${path}`, { headers: { host: HOST, ...headers }, signal: s.signal })
    const text = await res.body.text()
    return { status: res.statusCode, headers: res.headers, body: text, json: () => JSON.parse(text) }
  })()
  // Awaiting callers still see a failure; one left pending by a failed assertion is aborted at
  // teardown and must not surface as an unhandled rejection.
  p.catch(() => undefined)
  return p
}

/** Outcome of a request whose response may be cut: status and headers, and whether the body completed. */
async function attempt(port: number, host: string, path: string, signal?: AbortSignal): Promise<{ status: number; headers: Record<string, unknown>; body?: string; error?: Error }> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host }, signal })
  try {
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  } catch (err) {
    return { status: res.statusCode, headers: res.headers, error: err as Error }
  }
}

/** `hold;dur=12.3;desc="cold start", scale;dur=...` → { hold: { dur: 12.3, desc: 'cold start' }, ... } */
function serverTiming(v: unknown): Record<string, { dur: number; desc: string | undefined } | undefined> {
  const out: Record<string, { dur: number; desc: string | undefined }> = {}
  for (const entry of String(v ?? '').split(',')) {
    const [name, ...params] = entry.trim().split(';')
    if (!name) continue
    const dur = Number(/^dur=(.*)$/.exec(params.find((p) => p.startsWith('dur=')) ?? '')?.[1])
    const desc = /^desc="(.*)"$/.exec(params.find((p) => p.startsWith('desc=')) ?? '')?.[1]
    out[name] = { dur, desc }
  }
  return out
}

function urlsSeen(b: Backend): string[] {
  return b.seen.map((r) => r.url)
}

t.test('scale from zero: 200 held requests all reach the first pod, exactly once each', async (t) => {
  const s = await setup(t)
  const b = await backend(t, startBackend('pod-a'))
  const N = 200
  const pending = Array.from({ length: N }, (_, i) => hello(s, `/req/${i}`))
  await waitForQueued(s.gw, REV, N)
  t.equal(await queuedMetric(s.gw, REV), N, 'edge_revision_requests_queued shows the held requests')
  t.equal(b.seen.length, 0, 'nothing reaches the backend before it is ready')

  await setPods(s, [b.port])
  const answers = await within(Promise.all(pending), 'all held requests to be answered')
  t.same(
    answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.headers['x-edge-reason']} ${a.body}`),
    [],
    'every held request succeeded',
  )
  t.equal(b.seen.length, N, 'the backend saw exactly N requests')
  const urls = urlsSeen(b)
  t.equal(new Set(urls).size, N, 'no request was duplicated')
  t.same(
    [...urls].sort(),
    Array.from({ length: N }, (_, i) => `/req/${i}`).sort(),
    'no request was lost',
  )
  const withHeader = answers.filter((a) => {
    const v = a.headers['x-edge-cold-start-ms']
    return typeof v === 'string' && /^\d+$/.test(v)
  })
  t.equal(withHeader.length, N, 'every held response carries x-edge-cold-start-ms')
  // Server-Timing says where the time went: the hold (a cold start), the revision's scale from zero
  // (from the first held request to the pod), and the pod's own time to answer.
  const timings = answers.map((a) => serverTiming(a.headers['server-timing']))
  t.ok(timings.every((st) => st.hold !== undefined && st.hold.desc === 'cold start' && st.scale !== undefined && st.upstream !== undefined), 'every held response has hold, scale and upstream')
  // (A request's hold can be longer than the scale: a first connect to a pod that is not listening
  // yet is retried, and that time is its own.)
  t.ok(timings.every((st) => Math.abs(st.scale!.dur - timings[0]!.scale!.dur) < 0.2), 'scale is the revision\'s: the same for every request of one cold start')
  t.ok(answers.every((a, i) => Math.abs(Number(a.headers['x-edge-cold-start-ms']) - timings[i]!.hold!.dur) <= 0.55), 'hold is x-edge-cold-start-ms (to the tenth of a ms)')
  t.ok(
    answers.every((a) => a.json().backend === 'pod-a'),
    'every body is the pod’s own answer',
  )
  t.equal(await queuedCount(s.gw, REV), 0)

  const warm = await hello(s, '/warm')
  t.equal(warm.status, 200)
  t.equal(warm.headers['x-edge-cold-start-ms'], undefined, 'a request that never waited has no cold-start header')
  t.equal(warm.headers['server-timing'], undefined, 'nor Server-Timing')
})

for (const cc of [1, 3]) {
  t.test(`containerConcurrency=${cc}: no pod ever sees more than ${cc} at once`, async (t) => {
    const pods = await Promise.all(['pod-a', 'pod-b', 'pod-c'].map((n) => backend(t, startBackend(n, delayed(30)))))
    const s = await setup(t, { spec: { containerConcurrency: cc }, ports: pods.map((p) => p.port) })
    const N = 90
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => hello(s, `/cc/${i}`)))
    t.same(
      answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.headers['x-edge-reason']}`),
      [],
      'all requests succeeded',
    )
    for (const p of pods) t.ok(p.maxInFlight <= cc, `${p.name}: max in flight ${p.maxInFlight} ≤ ${cc}`)
    t.equal(
      pods.reduce((n, p) => n + p.seen.length, 0),
      N,
      'every request reached exactly one pod once',
    )
    t.equal(Math.max(...pods.map((p) => p.maxInFlight)), cc, 'the limit was reached (the test did apply pressure)')
    t.ok(
      pods.every((p) => p.seen.length > 0),
      `every pod was used (${pods.map((p) => p.seen.length).join('/')})`,
    )
  })
}

t.test('FIFO under contention: held requests reach the pod in arrival order', async (t) => {
  const b = (await backend(t, startGatedBackend('pod-a'))) as Awaited<ReturnType<typeof startGatedBackend>>
  const s = await setup(t, { spec: { containerConcurrency: 1 }, ports: [b.port] })
  const first = hello(s, '/order/0')
  await waitForSeen(b, 1)
  const rest: Array<Promise<Answer>> = []
  for (let i = 1; i <= 12; i++) {
    rest.push(hello(s, `/order/${i}`))
    await waitForQueued(s.gw, REV, i) // each one is in the queue before the next is sent
  }
  t.equal(b.seen.length, 1, 'the busy pod got nothing more while CC=1 is taken')
  b.open()
  const answers = await within(Promise.all([first, ...rest]), 'the queued requests to be answered')
  t.same(
    answers.map((a) => a.status),
    Array(13).fill(200),
  )
  t.same(
    urlsSeen(b),
    Array.from({ length: 13 }, (_, i) => `/order/${i}`),
    'the pod saw the requests in the order they were queued',
  )
  t.equal(b.maxInFlight, 1)
  const st = serverTiming(answers[5]!.headers['server-timing'])
  t.equal(st.hold?.desc, 'no capacity', 'a request held behind a busy pod says so')
  t.equal(st.scale, undefined, 'and no scale from zero')
  t.ok(st.upstream !== undefined, 'with the pod\'s time')
})

t.test('queue limits answer 503 queue-full with Retry-After', async (t) => {
  t.test('--max-queued-per-revision', async (t) => {
    const b = (await backend(t, startGatedBackend('pod-a'))) as Awaited<ReturnType<typeof startGatedBackend>>
    const s = await setup(t, { spec: { containerConcurrency: 1 }, ports: [b.port], args: ['--max-queued-per-revision', '2'] })
    const running = hello(s, '/q/0')
    await waitForSeen(b, 1)
    const held = [hello(s, '/q/1'), hello(s, '/q/2')]
    await waitForQueued(s.gw, REV, 2)
    const over = await hello(s, '/q/3')
    t.equal(over.status, 503)
    t.equal(over.headers['x-edge-reason'], 'queue-full')
    t.ok(over.headers['retry-after'], 'Retry-After is set')
    t.match(over.body, /too many requests waiting/)
    t.equal(await queuedCount(s.gw, REV), 2, 'the rejected request did not take a place')
    b.open()
    const answers = await Promise.all([running, ...held])
    t.same(
      answers.map((a) => a.status),
      [200, 200, 200],
      'the held requests still complete',
    )
    t.notOk(urlsSeen(b).includes('/q/3'), 'the rejected request never reached the pod')
  })
  t.test('--max-queued-per-namespace: one namespace flooding a revision at zero leaves room for another', async (t) => {
    const dir = tempDir('edge-activator-')
    writeManifest(dir, 'ingress.yaml', [revisionIngress('flood', 'flood.example.com', 'flood-00001', 'flood'), revisionIngress('calm', 'calm.example.com', 'calm-00001', 'calm')])
    writeManifest(dir, 'revision.yaml', [revision('flood-00001', {}, {}, 'flood'), revision('calm-00001', {}, {}, 'calm')])
    const gw = await startTestGateway(dir, ['--max-queued-per-namespace', '3', '--max-queued', '5'])
    const ctl = new AbortController()
    t.teardown(async () => {
      ctl.abort()
      await gw.close()
    })
    const flood = [1, 2, 3].map((i) => attempt(gw.ports.http, 'flood.example.com', `/f/${i}`, ctl.signal).catch(() => undefined))
    await waitForQueued(gw, 'flood-00001', 3, 10_000, 'flood')
    const over = await get(gw.ports.http, 'flood.example.com', '/f/4')
    t.same([over.status, over.headers['x-edge-reason']], [503, 'queue-full'])
    t.match(over.body, /too many requests waiting for namespace flood; retry in \d+s/)
    const calm = [1, 2].map((i) => attempt(gw.ports.http, 'calm.example.com', `/c/${i}`))
    await waitForQueued(gw, 'calm-00001', 2, 10_000, 'calm')
    t.pass("the other namespace's requests are held")
    const b = await backend(t, startBackend('pod-calm'))
    writeManifest(dir, 'pods.yaml', podsSlice('calm-00001', [b.port], 'calm'))
    t.same((await Promise.all(calm)).map((r) => r.status), [200, 200], 'and served when its pod comes')
    void flood
  })
  t.test('--max-queued (global) across revisions', async (t) => {
    const dir = tempDir('edge-activator-')
    const OTHER = 'other-00001'
    writeManifest(dir, 'ingress.yaml', [revisionIngress('hello', HOST, REV), revisionIngress('other', 'other.default.example.com', OTHER)])
    writeManifest(dir, 'revision.yaml', [revision(REV), revision(OTHER)])
    const gw = await startTestGateway(dir, ['--max-queued', '3'])
    const ctl = new AbortController()
    t.teardown(async () => {
      ctl.abort()
      await gw.close()
    })
    const held = [
      attempt(gw.ports.http, HOST, '/g/1', ctl.signal),
      attempt(gw.ports.http, HOST, '/g/2', ctl.signal),
      attempt(gw.ports.http, 'other.default.example.com', '/g/3', ctl.signal),
    ].map((p) => p.catch(() => undefined))
    await waitForQueued(gw, REV, 2)
    await waitForQueued(gw, OTHER, 1)
    const over = await get(gw.ports.http, 'other.default.example.com', '/g/4')
    t.equal(over.status, 503)
    t.equal(over.headers['x-edge-reason'], 'queue-full')
    t.ok(over.headers['retry-after'])
    // Pods appear: the held requests are served and give their places back.
    const b = await backend(t, startBackend('pod-a'))
    writeManifest(dir, 'pods.yaml', [...podsSlice(REV, [b.port]), ...podsSlice(OTHER, [b.port])])
    const done = await Promise.all(held)
    t.same(
      done.map((r) => r?.status),
      [200, 200, 200],
      'the held requests complete once pods are ready',
    )
    t.equal(await queuedCount(gw, REV), 0)
    t.equal(await queuedCount(gw, OTHER), 0)
    t.same(urlsSeen(b).sort(), ['/g/1', '/g/2', '/g/3'], 'the rejected request never reached a pod')
  })
})

t.test('a client that gives up leaves the queue at once and is never sent', async (t) => {
  const s = await setup(t)
  const b = await backend(t, startBackend('pod-a'))
  const ctl = new AbortController()
  const aborted = attempt(s.gw.ports.http, HOST, '/abandoned', ctl.signal).then(
    () => 'completed',
    (err: Error) => err.name,
  )
  const kept = hello(s, '/kept')
  await waitForQueued(s.gw, REV, 2)
  ctl.abort()
  t.equal(await aborted, 'AbortError', 'the client saw its own abort')
  await waitForQueued(s.gw, REV, 1)
  t.equal(await queuedMetric(s.gw, REV), 1, 'the metric agrees')

  await setPods(s, [b.port])
  const k = await kept
  t.equal(k.status, 200)
  // A later request proves the pod has been reachable for a while; the abandoned one still never came.
  t.equal((await hello(s, '/after')).status, 200)
  t.same(urlsSeen(b), ['/kept', '/after'], 'the abandoned request never reached the pod')
  t.equal(await queuedCount(s.gw, REV), 0)
})

t.test('each timeout answers 504 with its own reason', async (t) => {
  t.test('cold start: no pod within --cold-start-timeout', async (t) => {
    const s = await setup(t, { args: ['--cold-start-timeout', '1'] })
    const a = await hello(s, '/cold')
    t.equal(a.status, 504)
    t.equal(a.headers['x-edge-reason'], 'cold-start-timeout')
    t.match(a.body, /cold start/)
    t.equal(await queuedCount(s.gw, REV), 0, 'the timed-out request left the queue')
  })
  t.test('timeoutSeconds on a backend that never answers', async (t) => {
    const b = await backend(t, startSilentBackend('slow'))
    const s = await setup(t, { spec: { timeoutSeconds: 1 }, ports: [b.port] })
    const a = await hello(s, '/slow')
    t.equal(a.status, 504)
    t.equal(a.headers['x-edge-reason'], 'request-timeout')
    t.match(a.body, /timeoutSeconds/)
    await waitFor('the upstream request to be cancelled', () => b.inFlight === 0)
    t.equal(b.seen.length, 1, 'sent once, not retried')
  })
  t.test('responseStartTimeoutSeconds before the first byte', async (t) => {
    const b = await backend(t, startSilentBackend('slow'))
    const s = await setup(t, { spec: { timeoutSeconds: 30, responseStartTimeoutSeconds: 1 }, ports: [b.port] })
    const a = await hello(s, '/slow')
    t.equal(a.status, 504)
    t.equal(a.headers['x-edge-reason'], 'response-start-timeout')
    t.match(a.body, /responseStartTimeoutSeconds/)
    await waitFor('the upstream request to be cancelled', () => b.inFlight === 0)
  })
  t.test('idleTimeoutSeconds before any response byte', async (t) => {
    const b = await backend(t, startSilentBackend('slow'))
    const s = await setup(t, { spec: { timeoutSeconds: 30, idleTimeoutSeconds: 1 }, ports: [b.port] })
    const a = await hello(s, '/slow')
    t.equal(a.status, 504)
    t.equal(a.headers['x-edge-reason'], 'idle-timeout')
  })
  t.test('idleTimeoutSeconds after headers: the stream is cut', async (t) => {
    const b = await backend(t, startStallingBackend('stall'))
    const s = await setup(t, { spec: { timeoutSeconds: 30, idleTimeoutSeconds: 1 }, ports: [b.port] })
    const r = await attempt(s.gw.ports.http, HOST, '/stall')
    t.equal(r.status, 200, 'the pod’s headers had already been relayed')
    t.ok(r.error, `the body did not complete (${r.error?.message ?? `got ${JSON.stringify(r.body)}`})`)
    await waitFor('the upstream request to be cancelled', () => b.inFlight === 0)
  })
  t.test('a response that started in time outlives responseStartTimeoutSeconds and is cut by timeoutSeconds', async (t) => {
    // The timer armed for the response start fires while the body is under way: it must re-check
    // and wait for timeoutSeconds, not cut the stream at the response-start deadline.
    const b = await backend(t, startStallingBackend('stall'))
    const s = await setup(t, { spec: { timeoutSeconds: 2, responseStartTimeoutSeconds: 1 }, ports: [b.port] })
    const started = performance.now()
    const r = await attempt(s.gw.ports.http, HOST, '/stall')
    const elapsed = performance.now() - started
    t.equal(r.status, 200, 'the pod’s headers were relayed')
    t.ok(r.error, 'the body did not complete')
    t.ok(elapsed >= 2000, `cut at timeoutSeconds (after ${Math.round(elapsed)} ms), not at responseStartTimeoutSeconds`)
    await waitFor('the upstream request to be cancelled', () => b.inFlight === 0)
  })
  t.test('a request held while scaled to zero is still bound by timeoutSeconds', async (t) => {
    const s = await setup(t, { spec: { timeoutSeconds: 1 } })
    const a = await hello(s, '/held')
    t.equal(a.status, 504)
    t.equal(a.headers['x-edge-reason'], 'request-timeout')
    t.equal(await queuedCount(s.gw, REV), 0)
  })
})

t.test('connect refused before any byte is retried on a ready pod', async (t) => {
  for (const cc of [0, 1]) {
    t.test(`containerConcurrency=${cc}`, async (t) => {
      const live = await backend(t, startBackend('live'))
      const dead = await closedPort()
      const s = await setup(t, { spec: { containerConcurrency: cc }, ports: [dead, live.port] })
      const N = 40
      const answers: Answer[] = []
      // Some one at a time (round robin / random reaches the dead pod), then a concurrent burst.
      for (let i = 0; i < 10; i++) answers.push(await hello(s, `/seq/${i}`))
      answers.push(...(await Promise.all(Array.from({ length: N - 10 }, (_, i) => hello(s, `/burst/${i}`)))))
      t.same(
        answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.headers['x-edge-reason']} ${a.body}`),
        [],
        'every request succeeded',
      )
      t.equal(live.seen.length, N, 'the live pod saw each request exactly once')
      t.equal(new Set(urlsSeen(live)).size, N)
      const metrics = await (await request(`http://127.0.0.1:${s.gw.ports.admin}/metrics`)).body.text()
      const retries = Number(/edge_upstream_retries_total\{[^}]*revision="hello-00001"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0)
      t.ok(retries > 0, `the refused pod was actually tried and the request retried (${retries} retries)`)
    })
  }
})

t.test('a pod that refused, then starts listening, takes waiters once its backoff ends', async (t) => {
  // The scale-from-zero race: a pod is listed ready before its server listens. The request it
  // refused must not then wait behind a long request on another pod.
  const busy = (await backend(t, startGatedBackend('busy'))) as Awaited<ReturnType<typeof startGatedBackend>>
  const latePort = await closedPort()
  const s = await setup(t, { spec: { containerConcurrency: 1 }, ports: [latePort, busy.port] })
  const first = hello(s, '/long')
  await waitForSeen(busy, 1)
  const second = hello(s, '/second') // refused by the late pod, then held: the busy pod is full
  await waitForQueued(s.gw, REV, 1)
  const late = http.createServer((req, res) => res.end(`late ${req.url}`))
  await new Promise<void>((r) => late.listen(latePort, '127.0.0.1', () => r()))
  t.teardown(() => {
    late.closeAllConnections()
    return new Promise<void>((r) => late.close(() => r()))
  })
  const a = await within(second, 'the refused request to be served by the pod that came up (not behind the busy one)')
  t.equal(a.status, 200)
  t.equal(a.body, 'late /second', 'served by the pod that came up, while the other pod is still busy')
  t.equal(busy.seen.length, 1, 'the busy pod was never given a second request')
  busy.open()
  t.equal((await first).status, 200)
})

t.test('headers sent to revision pods', async (t) => {
  const b = await backend(t, startBackend('pod-a'))
  const s = await setup(t, { ports: [b.port] })
  const a = await hello(s, '/h', { 'K-Proxy-Request': 'client', 'Knative-Serving-Revision': 'someone-else', 'Knative-Serving-Namespace': 'elsewhere' })
  t.equal(a.status, 200)
  const seen = b.seen[0]!
  const values = (name: string): string[] => {
    const out: string[] = []
    for (let i = 0; i < seen.rawHeaders.length; i += 2) if (seen.rawHeaders[i]!.toLowerCase() === name) out.push(seen.rawHeaders[i + 1]!)
    return out
  }
  t.same(values('k-proxy-request'), ['activator'], 'exactly one K-Proxy-Request, the gateway’s')
  t.notOk(values('knative-serving-revision').includes('someone-else'), 'the client’s Knative-Serving-Revision is not passed through')
  t.notOk(values('knative-serving-namespace').includes('elsewhere'), 'the client’s Knative-Serving-Namespace is not passed through')
  t.ok(values('knative-serving-revision').length <= 1, 'at most one Knative-Serving-Revision reaches the pod')
  // Without a client header the gateway still marks the request.
  await hello(s, '/plain')
  t.equal(b.seen[1]!.headers['k-proxy-request'], 'activator')
})

t.test('a WebSocket held through a cold start leaves the queue counts at zero when it closes', async (t) => {
  const s = await setup(t)
  const b = await backend(t, startBackend('ws-pod'))
  const wss = new WebSocketServer({ server: b.server })
  wss.on('connection', (sock) => sock.on('message', (m) => sock.send(`echo ${String(m)}`)))
  t.teardown(() => new Promise<void>((r) => wss.close(() => r())))
  const client = new WebSocket(`ws://127.0.0.1:${s.gw.ports.http}/ws`, { headers: { host: HOST } })
  t.teardown(() => client.terminate())
  const opened = new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve())
    client.once('error', reject)
  })
  await waitForQueued(s.gw, REV, 1)
  await setPods(s, [b.port])
  await opened
  const reply = new Promise<string>((r) => client.once('message', (m) => r(String(m))))
  client.send('hi')
  t.equal(await reply, 'echo hi', 'the held upgrade reached the pod')
  t.equal(await queuedCount(s.gw, REV), 0)
  const closed = new Promise<void>((r) => client.once('close', () => r()))
  client.close()
  await closed
  await waitFor('the pod slot to be released', async () => (await revisionState(s.gw, REV))?.endpoints[0]?.inFlight === 0)
  t.equal(await queuedCount(s.gw, REV), 0, 'closing a granted upgrade does not take a waiter out of the queue again')
  t.equal(s.gw.plane.throttlerByKey(`rev:default/${REV}`)?.queued, 0)
  t.equal((await hello(s, '/after-ws')).status, 200, 'the route still serves')
})
