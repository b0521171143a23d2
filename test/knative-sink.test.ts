import t from 'tap'
import { KnativeStatSink } from '../src/autoscaler/knative-sink.ts'
import { StatReporter } from '../src/autoscaler/reporter.ts'
import type { StatEntry } from '../src/autoscaler/stat-encoding.ts'
import { FakeAutoscaler } from './helpers/fake-autoscaler.ts'
import type { Frame } from './helpers/fake-autoscaler.ts'
import { waitFor } from './helpers/wait.ts'

const HELLO = { namespace: 'default', name: 'hello-00001' }
const FAST_BACKOFF = { initialMs: 20, factor: 1.5, maxMs: 200 }

const quietLog = { info: () => {}, warn: () => {} }

async function setup(t: { teardown(fn: () => unknown): void }, opts: { pongTimeoutMs?: number; autoPong?: boolean } = {}) {
  const server = new FakeAutoscaler()
  const port = await server.listen(0, opts.autoPong === undefined ? {} : { autoPong: opts.autoPong })
  const sinkOpts = { url: `ws://127.0.0.1:${port}`, log: quietLog, backoff: FAST_BACKOFF, handshakeTimeoutMs: 1000 }
  const sink = new KnativeStatSink(opts.pongTimeoutMs === undefined ? sinkOpts : { ...sinkOpts, pongTimeoutMs: opts.pongTimeoutMs })
  t.teardown(async () => {
    await sink.close()
    await server.stop()
  })
  return { server, port, sink }
}

t.test('poke arrives before the first tick, then ticks carry the window numbers', async (t) => {
  const { server, sink } = await setup(t)
  sink.start()
  await waitFor('sink connected', () => sink.connected)

  let clock = 0
  const reporter = new StatReporter({ podName: 'gw-0', now: () => clock, sinks: [sink], intervalMs: 3_600_000 })
  t.teardown(() => reporter.stop())
  const { demand } = reporter

  demand.requestIn(HELLO, clock) // held from 0, e.g. waiting for a pod
  clock = 250
  demand.requestIn(HELLO, clock)
  clock = 750
  demand.requestOut(HELLO, clock)
  clock = 1000
  reporter.tick() // [0,250) 1, [250,750) 2, [750,1000) 1 → 1.5 raw, minus the poke
  clock = 2000
  demand.requestOut(HELLO, clock)
  reporter.tick() // held all window → 1
  clock = 3000
  reporter.tick() // final zero
  clock = 4000
  reporter.tick() // nothing left to report: no frame

  await waitFor('4 frames', () => server.frames.length >= 4)
  t.ok(server.frames.every((f) => f.binary), 'every frame is binary')
  const pick = (f: Frame) => f.entries.map((e) => [e.podName, e.namespace, e.name, e.averageConcurrentRequests, e.requestCount])
  t.same(server.frames.map(pick), [
    [['gw-0', 'default', 'hello-00001', 1, 1]], // poke
    [['gw-0', 'default', 'hello-00001', 0.5, 1]],
    [['gw-0', 'default', 'hello-00001', 1, 0]],
    [['gw-0', 'default', 'hello-00001', 0, 0]],
  ])
  t.same(sink.stats, { sent: 4, dropped: 0, connects: 1, errors: 0 })
  // A frame for the empty tick would reach the server before anything sent after it on the same
  // connection: send a marker, and once it has arrived count the frames ahead of it.
  t.equal(sink.send([{ namespace: 'default', name: 'marker', podName: 'gw-0', averageConcurrentRequests: 1, requestCount: 1 }]), true)
  await waitFor('the marker frame', () => server.frames.some((f) => f.entries.some((e) => e.name === 'marker')))
  t.equal(server.frames.findIndex((f) => f.entries.some((e) => e.name === 'marker')), 4, 'no frame for an empty tick')
  t.equal(server.frames.length, 5, 'nothing after the marker either')
})

t.test('a real reporter on a short interval: poke first, then ticks', async (t) => {
  const { server, sink } = await setup(t)
  sink.start()
  await waitFor('sink connected', () => sink.connected)
  const reporter = new StatReporter({ podName: 'gw-1', intervalMs: 20, sinks: [sink] })
  t.teardown(() => reporter.stop())
  reporter.start()

  reporter.demand.requestIn(HELLO, reporter.now())
  await waitFor('poke and 3 ticks', () => server.frames.length >= 4)
  reporter.demand.requestOut(HELLO, reporter.now())
  reporter.stop()

  const [poke, ...ticks] = server.frames
  t.same(poke!.entries.map((e) => [e.averageConcurrentRequests, e.requestCount]), [[1, 1]], 'first frame is the poke')
  t.ok(ticks.every((f) => f.binary && f.entries.length === 1 && f.entries[0]!.podName === 'gw-1'))
  t.ok(
    ticks.every((f) => f.entries[0]!.averageConcurrentRequests > 0),
    'never idle while the request is held',
  )
  t.equal(ticks[0]!.entries[0]!.requestCount, 0, 'the first tick subtracts the poke')
})

t.test('reconnects after the server closes with 1012', async (t) => {
  const { server, sink } = await setup(t)
  sink.start()
  await waitFor('first connect', () => sink.connected)
  server.restartClients()
  await waitFor('disconnect seen', () => !sink.connected || sink.stats.connects >= 2)
  await waitFor('reconnected', () => sink.connected && sink.stats.connects === 2)
  t.equal(server.connections, 2)

  t.equal(sink.send([{ ...HELLO, podName: 'gw-0', averageConcurrentRequests: 2, requestCount: 3 }]), true)
  await waitFor('frame after reconnect', () => server.frames.length === 1)
  t.same(server.frames[0]!.entries.map((e) => e.averageConcurrentRequests), [2])
  t.ok(server.frames.every((f) => f.binary))
})

t.test('server stopped and restarted on the same port: drops while down, reconnects after', async (t) => {
  const { server, port, sink } = await setup(t)
  sink.start()
  await waitFor('first connect', () => sink.connected)
  await server.stop()
  await waitFor('disconnected', () => !sink.connected)

  const batch: StatEntry[] = [{ ...HELLO, podName: 'gw-0', averageConcurrentRequests: 1, requestCount: 1 }]
  t.equal(sink.send(batch), false, 'send returns false while disconnected')
  t.equal(sink.send(batch), false)
  t.equal(sink.stats.dropped, 2, 'dropped, not buffered')
  await waitFor('a failed reconnect attempt', () => sink.stats.errors >= 1)

  const restarted = new FakeAutoscaler()
  t.teardown(() => restarted.stop())
  await restarted.listen(port)
  await waitFor('reconnected to the restarted server', () => sink.connected)
  t.equal(sink.stats.connects, 2)
  t.equal(sink.send(batch), true)
  await waitFor('frame on the restarted server', () => restarted.frames.length === 1)
  t.equal(restarted.frames.length, 1, 'the batches dropped while down were not replayed')
  t.ok(restarted.frames[0]!.binary)
  t.same(restarted.frames[0]!.entries.map((e) => e.name), ['hello-00001'])
})

t.test('a connection without pongs is treated as dead and replaced', async (t) => {
  const { server, sink } = await setup(t, { pongTimeoutMs: 150, autoPong: false })
  sink.start()
  await waitFor('reconnected after missing pongs', () => sink.stats.connects >= 2)
  t.ok(server.connections >= 2)
})

t.test('a connection that answers pings stays up', async (t) => {
  const { server, sink } = await setup(t, { pongTimeoutMs: 150 })
  sink.start()
  await waitFor('connected', () => sink.connected)
  let pings = 0
  for (const c of server.clients()) c.on('ping', () => pings++)
  await waitFor('several ping/pong rounds', () => pings >= 6)
  t.equal(sink.stats.connects, 1, 'never reconnected')
  t.equal(server.connections, 1)
})

t.test('no server at all: send returns false, nothing throws, close resolves', async (t) => {
  // Grab a free port, then close it so nothing listens there.
  const probe = new FakeAutoscaler()
  const port = await probe.listen(0)
  await probe.stop()
  const sink = new KnativeStatSink({ url: `ws://127.0.0.1:${port}`, log: quietLog, backoff: FAST_BACKOFF })
  t.equal(sink.send([]), false, 'before start')
  sink.start()
  await waitFor('several failed attempts', () => sink.stats.errors >= 3)
  t.equal(sink.connected, false)
  t.equal(sink.send([{ ...HELLO, podName: 'gw-0', averageConcurrentRequests: 1, requestCount: 1 }]), false)
  await sink.close()
  const errorsAfterClose = sink.stats.errors
  // A control sink on the same port, started after the close: six of its failures span more than
  // the longest backoff (maxMs), so a closed sink still retrying would have failed again meanwhile.
  const control = new KnativeStatSink({ url: `ws://127.0.0.1:${port}`, log: quietLog, backoff: FAST_BACKOFF })
  control.start()
  await waitFor('six failed attempts of the control sink', () => control.stats.errors >= 6)
  await control.close()
  t.equal(sink.stats.errors, errorsAfterClose, 'no reconnect attempts after close')
})

t.test('an unreachable autoscaler is logged once, then summarised at doubling intervals, then its return', async (t) => {
  const probe = new FakeAutoscaler()
  const port = await probe.listen(0)
  await probe.stop()
  const lines: Array<{ level: string; msg: string; o: Record<string, unknown> }> = []
  const log = { info: (o: object, msg?: string) => lines.push({ level: 'info', msg: msg ?? '', o: o as Record<string, unknown> }), warn: (o: object, msg?: string) => lines.push({ level: 'warn', msg: msg ?? '', o: o as Record<string, unknown> }) }
  const sink = new KnativeStatSink({ url: `ws://127.0.0.1:${port}`, log, backoff: { initialMs: 5, factor: 1, maxMs: 5 }, summaryAfterMs: 100 })
  sink.start()
  t.teardown(() => sink.close())
  await waitFor('many failed attempts and two summaries', () => sink.stats.errors >= 30 && lines.filter((l) => l.msg === 'autoscaler stats: still unreachable').length >= 2)
  const warns = lines.filter((l) => l.level === 'warn')
  t.match(warns[0]!.msg, /cannot reach the autoscaler/, 'the first failure is said')
  t.ok(warns.length < sink.stats.errors / 3, `far fewer lines (${warns.length}) than attempts (${sink.stats.errors})`)
  const [s1, s2] = warns.filter((l) => l.msg === 'autoscaler stats: still unreachable')
  t.ok((s2!.o.downForMs as number) - (s1!.o.downForMs as number) >= 190, 'the second summary waited twice as long as the first')
  t.ok((s1!.o.failedAttempts as number) > 1, 'a summary counts the attempts')
  const back = new FakeAutoscaler()
  await back.listen(port)
  t.teardown(() => back.stop())
  await waitFor('connected again', () => sink.connected)
  const again = lines.find((l) => l.msg === 'autoscaler stats: connected again')
  t.ok(again && (again.o.failedAttempts as number) >= 30, 'its return says how many attempts failed')
})

t.test('a throwing sink does not break the poke path or other sinks', async (t) => {
  const got: StatEntry[][] = []
  const warnings: object[] = []
  const reporter = new StatReporter({
    podName: 'gw-0',
    now: () => 0,
    sinks: [{ send: () => { throw new Error('boom') } }, { send: (e) => (got.push(e), true) }],
    log: { warn: (o) => warnings.push(o) },
  })
  reporter.demand.requestIn(HELLO, 0)
  t.equal(got.length, 1, 'the poke reached the healthy sink')
  t.equal(warnings.length, 1)
  t.equal(reporter.demand.concurrency(HELLO), 1, 'accounting intact')
})
