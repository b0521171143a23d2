// Tracing end to end: a real gateway with --tracing-endpoint, revision pods on loopback that report
// the traceparent they were sent, and an OTLP/HTTP receiver that decodes the protobuf the gateway
// posts (helpers/otlp-receiver.ts). What is checked is what an operator's tracing backend and the
// app would see: span parents and ids, attributes, the pod's parent span, sampling decisions, the
// hold of a cold start, retries, and spans dropped (not requests slowed) when the collector is down.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { request } from 'undici'
import { WebSocket, WebSocketServer } from 'ws'
import { parseConfig, UsageError } from '../src/config.ts'
import type { Gateway, StartOptions } from '../src/gateway.ts'
import { get, revision, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import { closedPort, podsSlice, revisionIngress, startGatedBackend, waitForEndpoints, waitForQueued, waitForSeen, within } from './helpers/activator.ts'
import { projectRoot, startGatewayProcess } from './helpers/gateway-process.ts'
import { startOtlpReceiver } from './helpers/otlp-receiver.ts'
import type { OtlpReceiver, ReceivedSpan } from './helpers/otlp-receiver.ts'

const HOST = 'hello.default.example.com'
const REV = 'hello-00001'
/** Exported spans arrive within a few ms of their request's end, not the SDK's 5 s. */
const QUICK: StartOptions['tracing'] = { scheduledDelayMs: 10 }

interface Setup {
  dir: string
  gw: Gateway
}

async function setup(t: Test, args: string[], opts: { spec?: Record<string, unknown>; ports?: number[]; tuning?: StartOptions['tracing'] } = {}): Promise<Setup> {
  const dir = tempDir('edge-tracing-')
  writeManifest(dir, 'ingress.yaml', [revisionIngress('hello', HOST, REV)])
  writeManifest(dir, 'revision.yaml', [revision(REV, opts.spec ?? {})])
  if (opts.ports?.length) writeManifest(dir, 'pods.yaml', podsSlice(REV, opts.ports))
  const gw = await startTestGateway(dir, args, {}, { tracing: opts.tuning ?? QUICK })
  t.teardown(() => gw.close())
  await waitForEndpoints(gw, REV, opts.ports?.length ?? 0)
  return { dir, gw }
}

async function receiver(t: Test): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver()
  t.teardown(() => r.close())
  return r
}

async function pod(t: Test, name = 'pod'): Promise<Backend> {
  const b = await startBackend(name)
  t.teardown(() => b.close())
  return b
}

/** A traceparent as a caller would send it. */
function traceparent(sampled: boolean): { header: string; traceId: string; spanId: string } {
  const traceId = hex(16)
  const spanId = hex(8)
  return { header: `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`, traceId, spanId }
}

function hex(bytes: number): string {
  let s = ''
  for (let i = 0; i < bytes; i++) s += Math.floor(Math.random() * 256).toString(16).padStart(2, '0')
  return s
}

/** The traceparent the pod saw on its last request, parsed. */
function podSaw(b: Backend, i = b.seen.length - 1): { traceId: string; parentId: string; flags: string; tracestate: unknown } {
  const h = b.seen[i]!.headers
  const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(String(h.traceparent))
  if (!m) throw new Error(`the pod saw no valid traceparent: ${String(h.traceparent)}`)
  return { traceId: m[1]!, parentId: m[2]!, flags: m[3]!, tracestate: h.tracestate }
}

function one(spans: ReceivedSpan[], name: string): ReceivedSpan {
  const found = spans.filter((s) => s.name === name)
  if (found.length !== 1) throw new Error(`expected one '${name}' span, got ${found.length}: ${spans.map((s) => s.name).join(', ')}`)
  return found[0]!
}

async function droppedSpans(gw: Gateway): Promise<number> {
  const text = await (await request(`http://127.0.0.1:${gw.ports.admin}/metrics`)).body.text()
  const m = /^edge_tracing_spans_dropped_total (\d+)$/m.exec(text)
  return m ? Number(m[1]) : -1
}

t.test("a caller's sampled trace: the gateway's span is its child, the pod's parent is the upstream span", async (t) => {
  const rx = await receiver(t)
  const b = await pod(t)
  // Rate 0: only the caller's sampled flag can make this trace exported.
  const s = await setup(t, ['--tracing-endpoint', rx.url, '--tracing-sampling-rate', '0'], { ports: [b.port] })
  const caller = traceparent(true)
  const a = await get(s.gw.ports.http, HOST, '/hello?x=1', { traceparent: caller.header, tracestate: 'vendor=abc' })
  t.equal(a.status, 200)

  const spans = await rx.trace(caller.traceId)
  t.equal(spans.length, 2, 'a server span and one upstream span; no hold (a pod was free)')
  const server = one(spans, `GET ${HOST}`)
  const upstream = one(spans, 'upstream')
  t.equal(server.kind, 'server')
  t.equal(server.parentSpanId, caller.spanId, "the server span's parent is the caller's span")
  t.equal(upstream.kind, 'client')
  t.equal(upstream.parentSpanId, server.spanId, "the upstream span's parent is the server span")
  t.match(server.attributes, {
    'http.request.method': 'GET',
    'url.path': '/hello',
    'url.scheme': 'http',
    'server.address': HOST,
    'http.response.status_code': 200,
    'edge.ingress': 'default/hello',
    'edge.namespace': 'default',
    'edge.revision': REV,
    'edge.pod': `127.0.0.1:${b.port}`,
  })
  t.notOk('edge.reason' in server.attributes, 'the pod answered: no gateway reason')
  t.equal(server.status.code, 'unset')
  t.match(upstream.attributes, { 'server.address': '127.0.0.1', 'server.port': b.port, 'edge.pod': `127.0.0.1:${b.port}`, 'http.response.status_code': 200 })
  t.notOk('http.request.resend_count' in upstream.attributes, 'the first attempt is not a resend')
  t.same(upstream.events, ['request sent'])
  t.ok(server.startNs <= upstream.startNs && upstream.endNs <= server.endNs, 'the upstream span lies within the server span')
  t.equal(server.resource['service.name'], 'edge-gateway', 'the default service name')

  const seen = podSaw(b)
  t.equal(seen.traceId, caller.traceId, 'the pod continues the caller’s trace')
  t.equal(seen.parentId, upstream.spanId, "the pod's parent is the gateway's upstream span")
  t.equal(seen.flags, '01', 'sampled')
  t.equal(seen.tracestate, 'vendor=abc', 'the caller’s tracestate is passed on')
  t.same(rx.posts.map((p) => [p.path, p.contentType]), rx.posts.map(() => ['/v1/traces', 'application/x-protobuf']), 'OTLP/HTTP protobuf to /v1/traces under the base URL')
})

t.test('no traceparent: rate 1 starts an exported trace, rate 0 none, and the pod is told either way', async (t) => {
  const rx = await receiver(t)
  const b = await pod(t)
  for (const rate of ['1', '0']) {
    t.test(`--tracing-sampling-rate ${rate}`, async (t) => {
      const s = await setup(t, ['--tracing-endpoint', rx.url, '--tracing-sampling-rate', rate, '--tracing-service-name', 'edge-test'], { ports: [b.port] })
      const before = rx.spans.length
      t.equal((await get(s.gw.ports.http, HOST, '/untraced')).status, 200)
      const seen = podSaw(b)
      // A marker the caller samples: once its spans are in, the request before it was exported too, if it ever was.
      const marker = traceparent(true)
      t.equal((await get(s.gw.ports.http, HOST, '/marker', { traceparent: marker.header })).status, 200)
      await rx.trace(marker.traceId)
      const started = rx.spans.slice(before).filter((x) => x.traceId === seen.traceId)
      if (rate === '1') {
        t.equal(seen.flags, '01', 'the pod is told the trace is sampled')
        t.equal(started.length, 2, 'the new trace is exported: server and upstream spans')
        const server = one(started, `GET ${HOST}`)
        t.equal(server.parentSpanId, '', 'the gateway started it: its server span is the root')
        t.equal(one(started, 'upstream').spanId, seen.parentId, "the pod's parent is the upstream span")
        t.equal(server.resource['service.name'], 'edge-test', '--tracing-service-name')
      } else {
        t.equal(seen.flags, '00', 'the pod is told the trace is not sampled, so it does not start its own')
        t.same(started, [], 'nothing of it is exported')
        t.same(
          rx.spans.slice(before).map((x) => x.traceId),
          [marker.traceId, marker.traceId],
          'only the marker trace was exported',
        )
      }
    })
  }
})

t.test("a caller's not-sampled flag is honoured, whatever the rate", async (t) => {
  const rx = await receiver(t)
  const b = await pod(t)
  const s = await setup(t, ['--tracing-endpoint', rx.url, '--tracing-sampling-rate', '1'], { ports: [b.port] })
  const caller = traceparent(false)
  t.equal((await get(s.gw.ports.http, HOST, '/', { traceparent: caller.header, tracestate: 'vendor=x' })).status, 200)
  const seen = podSaw(b)
  t.equal(seen.traceId, caller.traceId, 'the trace id is kept')
  t.equal(seen.flags, '00', 'still not sampled')
  t.not(seen.parentId, caller.spanId, "the pod's parent is the gateway's (unexported) span, not the caller's")
  t.equal(seen.tracestate, 'vendor=x')
  const marker = traceparent(true)
  t.equal((await get(s.gw.ports.http, HOST, '/marker', { traceparent: marker.header })).status, 200)
  await rx.trace(marker.traceId)
  t.same(rx.spans.filter((x) => x.traceId === caller.traceId), [], 'nothing of the not-sampled trace was exported')
})

t.test('a held request has a hold span: why, its place in the queue; then its upstream span', async (t) => {
  const rx = await receiver(t)
  t.test('cold start', async (t) => {
    const s = await setup(t, ['--tracing-endpoint', rx.url, '--tracing-sampling-rate', '1'])
    const b = await pod(t, 'late')
    const first = traceparent(true)
    const second = traceparent(true)
    const answers = [get(s.gw.ports.http, HOST, '/1', { traceparent: first.header })]
    await waitForQueued(s.gw, REV, 1)
    answers.push(get(s.gw.ports.http, HOST, '/2', { traceparent: second.header }))
    await waitForQueued(s.gw, REV, 2)
    writeManifest(s.dir, 'pods.yaml', podsSlice(REV, [b.port]))
    t.same((await within(Promise.all(answers), 'the held requests')).map((a) => a.status), [200, 200])
    for (const [caller, position] of [[first, 1], [second, 2]] as const) {
      const spans = await rx.trace(caller.traceId)
      const server = one(spans, `GET ${HOST}`)
      const hold = one(spans, 'hold')
      const upstream = one(spans, 'upstream')
      t.equal(hold.parentSpanId, server.spanId, 'the hold is a child of the server span')
      t.equal(hold.kind, 'internal')
      t.match(hold.attributes, { 'edge.hold.reason': 'cold start', 'edge.hold.queue_position': position })
      t.equal(hold.status.code, 'unset', 'the hold ended with a pod')
      t.ok(hold.endNs <= upstream.startNs, 'the hold ends before the upstream exchange starts')
      t.ok(hold.endNs > hold.startNs, 'it lasted')
      t.equal(upstream.parentSpanId, server.spanId)
    }
  })
  t.test('no capacity', async (t) => {
    const b = await startGatedBackend('busy')
    t.teardown(() => b.close())
    const s = await setup(t, ['--tracing-endpoint', rx.url, '--tracing-sampling-rate', '1'], { spec: { containerConcurrency: 1 }, ports: [b.port] })
    const busy = traceparent(true)
    const waiting = traceparent(true)
    const answers = [get(s.gw.ports.http, HOST, '/busy', { traceparent: busy.header })]
    await waitForSeen(b, 1)
    answers.push(get(s.gw.ports.http, HOST, '/waits', { traceparent: waiting.header }))
    await waitForQueued(s.gw, REV, 1)
    b.open()
    t.same((await within(Promise.all(answers), 'both requests')).map((a) => a.status), [200, 200])
    t.match(one(await rx.trace(waiting.traceId), 'hold').attributes, { 'edge.hold.reason': 'no capacity', 'edge.hold.queue_position': 1 })
    t.same((await rx.trace(busy.traceId)).map((x) => x.name).sort(), [`GET ${HOST}`, 'upstream'], 'the request that found a pod free was not held')
  })
  t.test('a hold that times out ends with the reason', async (t) => {
    const s = await setup(t, ['--tracing-endpoint', rx.url, '--tracing-sampling-rate', '1'], { spec: { timeoutSeconds: 1 } })
    const caller = traceparent(true)
    const a = await get(s.gw.ports.http, HOST, '/never', { traceparent: caller.header })
    t.equal(a.status, 504)
    const spans = await rx.trace(caller.traceId)
    const server = one(spans, `GET ${HOST}`)
    const hold = one(spans, 'hold')
    t.match(hold.attributes, { 'edge.hold.reason': 'cold start', 'error.type': 'request-timeout' })
    t.equal(hold.status.code, 'error')
    t.match(server.attributes, { 'http.response.status_code': 504, 'edge.reason': 'request-timeout' })
    t.equal(server.status.code, 'error', 'a 5xx server span is an error')
  })
})

t.test('a retry on another pod is a second upstream span; the pod sees the one that reached it', async (t) => {
  const rx = await receiver(t)
  const live = await pod(t, 'live')
  const dead = await closedPort()
  // containerConcurrency 1: pods are taken round robin, so the dead one is tried within two requests.
  const s = await setup(t, ['--tracing-endpoint', rx.url, '--tracing-sampling-rate', '1'], { spec: { containerConcurrency: 1 }, ports: [dead, live.port] })
  let retried: { spans: ReceivedSpan[]; saw: ReturnType<typeof podSaw> } | undefined
  for (let i = 0; i < 4 && !retried; i++) {
    const caller = traceparent(true)
    t.equal((await get(s.gw.ports.http, HOST, `/r${i}`, { traceparent: caller.header })).status, 200)
    const spans = await rx.trace(caller.traceId)
    if (spans.filter((x) => x.name === 'upstream').length === 2) retried = { spans, saw: podSaw(live) }
  }
  if (!retried) return t.fail('no request was sent to the refusing pod first')
  const server = one(retried.spans, `GET ${HOST}`)
  const [failed, second] = retried.spans.filter((x) => x.name === 'upstream').sort((a, b) => Number(a.startNs - b.startNs))
  t.equal(failed!.parentSpanId, server.spanId)
  t.equal(second!.parentSpanId, server.spanId)
  t.match(failed!.attributes, { 'edge.pod': `127.0.0.1:${dead}`, 'error.type': 'ECONNREFUSED' })
  t.equal(failed!.status.code, 'error')
  t.match(second!.attributes, { 'edge.pod': `127.0.0.1:${live.port}`, 'http.request.resend_count': 1, 'http.response.status_code': 200 })
  t.equal(retried.saw.parentId, second!.spanId, "the pod's parent is the attempt that reached it")
})

t.test('a WebSocket: the handshake carries the upstream span; the spans end when it closes', async (t) => {
  const rx = await receiver(t)
  const b = await pod(t, 'ws')
  const handshakes: http.IncomingMessage[] = []
  const wss = new WebSocketServer({ server: b.server })
  wss.on('connection', (sock, req) => {
    handshakes.push(req)
    sock.on('message', (m) => sock.send(`echo ${String(m)}`))
  })
  t.teardown(() => new Promise<void>((r) => wss.close(() => r())))
  const s = await setup(t, ['--tracing-endpoint', rx.url, '--tracing-sampling-rate', '1'], { ports: [b.port] })
  const caller = traceparent(true)
  const client = new WebSocket(`ws://127.0.0.1:${s.gw.ports.http}/ws`, { headers: { host: HOST, traceparent: caller.header } })
  t.teardown(() => client.terminate())
  await new Promise<void>((resolve, reject) => {
    client.once('open', () => resolve())
    client.once('error', reject)
  })
  const reply = new Promise<string>((r) => client.once('message', (m) => r(String(m))))
  client.send('hi')
  t.equal(await reply, 'echo hi')
  client.close()
  const spans = await rx.trace(caller.traceId)
  const server = one(spans, `GET ${HOST}`)
  const upstream = one(spans, 'upstream')
  t.equal(server.parentSpanId, caller.spanId)
  t.equal(upstream.parentSpanId, server.spanId)
  t.match(server.attributes, { 'http.response.status_code': 101, 'edge.revision': REV })
  t.match(upstream.attributes, { 'http.response.status_code': 101, 'edge.pod': `127.0.0.1:${b.port}` })
  t.same(upstream.events, ['connected'])
  const seen = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(handshakes[0]?.headers.traceparent))
  t.equal(seen?.[1], caller.traceId)
  t.equal(seen?.[2], upstream.spanId, "the pod's handshake names the upstream span as its parent")
})

t.test("the gateway's own answer is a server span with its reason", async (t) => {
  const rx = await receiver(t)
  const b = await pod(t)
  const s = await setup(t, ['--tracing-endpoint', rx.url, '--tracing-sampling-rate', '1'], { ports: [b.port] })
  const caller = traceparent(true)
  const a = await get(s.gw.ports.http, 'nobody.example.com', '/', { traceparent: caller.header })
  t.equal(a.status, 404)
  const [server] = await rx.trace(caller.traceId)
  t.equal(server!.name, 'GET', 'no route: named by the method alone')
  t.match(server!.attributes, { 'http.response.status_code': 404, 'edge.reason': 'host-not-found', 'server.address': 'nobody.example.com' })
  t.equal(server!.status.code, 'unset', 'a 4xx is not a server error')
  t.equal(b.seen.length, 0)
})

t.test('a collector that is down or slow costs dropped spans, counted; requests are not held up', async (t) => {
  t.test('down: every export fails, and its spans are counted', async (t) => {
    const down = await closedPort()
    const b = await pod(t)
    // An export retries a refused connection for up to its timeout (10 s by default): shortened here.
    const s = await setup(t, ['--tracing-endpoint', `http://127.0.0.1:${down}`, '--tracing-sampling-rate', '1'], { ports: [b.port], tuning: { scheduledDelayMs: 10, exportTimeoutMs: 300 } })
    t.equal(await droppedSpans(s.gw), 0, 'the counter is there from the start')
    const N = 20
    const statuses: number[] = []
    for (let i = 0; i < N; i++) statuses.push((await get(s.gw.ports.http, HOST, `/${i}`)).status)
    t.same(statuses, Array(N).fill(200), 'every request was answered by the pod')
    t.equal(b.seen.length, N)
    // Each request made a server and an upstream span; each failed export drops its spans.
    let last = 0
    await waitFor('every span to be counted as dropped', async () => (last = await droppedSpans(s.gw)) >= 2 * N)
    t.equal(last, 2 * N, 'each span counted once')
  })

  t.test('slow: while an export hangs, spans beyond the buffer are dropped at once', async (t) => {
    const collector = await startSilentCollector(t)
    const b = await pod(t)
    const buffer = 4
    const s = await setup(t, ['--tracing-endpoint', collector.url, '--tracing-sampling-rate', '1'], { ports: [b.port], tuning: { maxQueueSize: buffer, scheduledDelayMs: 10 } })
    t.equal((await get(s.gw.ports.http, HOST, '/first')).status, 200)
    await waitFor('the first export to reach the collector (which does not answer)', () => collector.held === 1)
    const N = 10
    const statuses: number[] = []
    for (let i = 1; i < N; i++) statuses.push((await get(s.gw.ports.http, HOST, `/${i}`)).status)
    t.same(statuses, Array(N - 1).fill(200), 'requests are answered while the export hangs')
    t.equal(collector.held, 1, 'the export is still unanswered: nothing waited for it')
    // The hanging export holds the first request's 2 spans; the buffer has room for 2 more.
    let last = 0
    await waitFor('the spans beyond the buffer to be dropped', async () => (last = await droppedSpans(s.gw)) === 2 * N - buffer)
    t.equal(last, 2 * N - buffer)
    collector.refuse() // 400 to the hanging export and to the next: their spans are dropped too
    await waitFor('every span to be counted as dropped', async () => (last = await droppedSpans(s.gw)) >= 2 * N)
    t.equal(last, 2 * N, 'each span counted once')
  })
})

/** A collector that takes exports and does not answer, until refuse(): then 400 to all, held or new. */
async function startSilentCollector(t: Test): Promise<{ url: string; readonly held: number; refuse(): void }> {
  const held: http.ServerResponse[] = []
  let refusing = false
  const answer = (res: http.ServerResponse): void => {
    res.writeHead(400, { 'content-type': 'text/plain' }).end('refused by the test')
  }
  const server = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => (refusing ? answer(res) : held.push(res)))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((r) => server.close(() => r()))
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get held() {
      return held.length
    },
    refuse: () => {
      refusing = true
      for (const res of held.splice(0)) answer(res)
    },
  }
}

t.test('--workers 2: each worker traces its requests; the drop counter is in the primary’s /metrics', async (t) => {
  const rx = await receiver(t)
  const b = await pod(t)
  const dir = tempDir('edge-tracing-workers-')
  writeManifest(dir, 'ingress.yaml', [revisionIngress('hello', HOST, REV)])
  writeManifest(dir, 'revision.yaml', [revision(REV)])
  writeManifest(dir, 'pods.yaml', podsSlice(REV, [b.port]))
  const gw = await startGatewayProcess(t, process.execPath, [path.join(projectRoot, 'src', 'main.ts'), '--workers', '2', '--manifests', dir, '--listen-address', '127.0.0.1', '--tracing-endpoint', rx.url, '--tracing-sampling-rate', '1', '--log-level', 'warn'], {})
  const callers = Array.from({ length: 4 }, () => traceparent(true))
  for (const c of callers) t.equal((await get(gw.http, HOST, '/', { traceparent: c.header })).status, 200, gw.output())
  // The SDK's batching delay (5 s) applies here: no test tuning reaches a child process.
  for (const c of callers) {
    const spans = await rx.trace(c.traceId, 15_000)
    t.same(spans.map((x) => x.name).sort(), [`GET ${HOST}`, 'upstream'])
  }
  const metrics = await (await request(`http://127.0.0.1:${gw.admin}/metrics`)).body.text()
  t.match(metrics, /^edge_tracing_spans_dropped_total 0$/m, 'summed over the workers, none dropped')
})

t.test('tracing off: the caller’s trace context reaches the pod as it came', async (t) => {
  const b = await pod(t)
  const dir = tempDir('edge-tracing-off-')
  writeManifest(dir, 'ingress.yaml', [revisionIngress('hello', HOST, REV)])
  writeManifest(dir, 'revision.yaml', [revision(REV)])
  writeManifest(dir, 'pods.yaml', podsSlice(REV, [b.port]))
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  await waitForEndpoints(gw, REV, 1)
  const caller = traceparent(true)
  t.equal((await get(gw.ports.http, HOST, '/', { traceparent: caller.header, tracestate: 'a=b' })).status, 200)
  t.equal(b.seen[0]!.headers.traceparent, caller.header)
  t.equal(b.seen[0]!.headers.tracestate, 'a=b')
  t.notOk(/edge_tracing_spans_dropped_total/.test(await (await request(`http://127.0.0.1:${gw.ports.admin}/metrics`)).body.text()), 'no tracing metric without tracing')
})

t.test('tracing options: flags, environment and clear refusals', async (t) => {
  const c = parseConfig(['--tracing-endpoint', 'http://collector:4318', '--tracing-sampling-rate', '0.25'])
  t.equal(c.tracingEndpoint, 'http://collector:4318')
  t.equal(c.tracingSamplingRate, 0.25)
  t.equal(c.tracingServiceName, 'edge-gateway')
  const e = parseConfig([], { EDGE_TRACING_ENDPOINT: 'https://otel.example:4318/prefix', EDGE_TRACING_SAMPLING_RATE: '.5', EDGE_TRACING_SERVICE_NAME: 'edge-east' })
  t.same([e.tracingEndpoint, e.tracingSamplingRate, e.tracingServiceName], ['https://otel.example:4318/prefix', 0.5, 'edge-east'])
  t.equal(parseConfig([]).tracingEndpoint, undefined, 'off by default')
  t.equal(parseConfig([]).tracingSamplingRate, 0.1, "Knative's default rate")
  t.throws(() => parseConfig(['--tracing-sampling-rate', '1.5']), new UsageError('--tracing-sampling-rate: 1.5 is above the maximum 1'))
  t.throws(() => parseConfig(['--tracing-sampling-rate', '10%']), new UsageError("--tracing-sampling-rate: '10%' is not a number (e.g. 0.05)"))
  t.throws(() => parseConfig([], { EDGE_TRACING_SAMPLING_RATE: '-1' }), new UsageError("EDGE_TRACING_SAMPLING_RATE: '-1' is not a number (e.g. 0.05)"))
  t.throws(() => parseConfig(['--tracing-endpoint', 'collector:4318']), /must be an http:\/\/ or https:\/\/ URL/)
  t.throws(() => parseConfig(['--tracing-endpoint', 'not a url']), /is not a URL; give the OTLP\/HTTP collector's base URL/)
  t.throws(() => parseConfig(['--tracing-endpoint', 'http://collector:4318/v1/traces']), new UsageError("--tracing-endpoint: give the collector's base URL without /v1/traces (spans are sent to /v1/traces under it), e.g. http://collector:4318"))
})
