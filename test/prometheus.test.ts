// The chart's Grafana dashboard against a real Prometheus: two gateways (one process, and a primary
// with two workers, whose /metrics merges three processes) under traffic with a cold start, a split,
// a 404 and 503s, scraped every second; then every panel's query and every variable must return
// data through Prometheus's query API, and `promtool check metrics` must accept both /metrics.
// Needs Debian's prometheus package (.ci/prometheus-setup.sh); fails, saying so, without it.
import t from 'tap'
import type { Test } from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { FakeAutoscaler } from './helpers/fake-autoscaler.ts'
import { freePorts, get, revision, revisionPods, service, serviceFor, simpleIngress, startBackend, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import { projectRoot, startGatewayProcess } from './helpers/gateway-process.ts'
import type { GatewayProcess } from './helpers/gateway-process.ts'
import { delayed, revisionIngress } from './helpers/activator.ts'
import { asPromQL, dataPanels, loadDashboard, variableQuery } from './helpers/dashboard.ts'
import { promtoolCheck, requireBinary, startPrometheus } from './helpers/prometheus.ts'
import type { Prometheus } from './helpers/prometheus.ts'

// The local-command revision: a process the gateway starts on the first request (a cold start).
const APP = `import http from 'node:http'
http.createServer((req, res) => res.end('cold ' + req.url)).listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
`

function manifests(dir: string, a: Backend, b: Backend, busy: Backend): void {
  fs.writeFileSync(path.join(dir, 'app.mjs'), APP)
  writeManifest(dir, 'cold.yaml', [
    revision('cold-00001', {}, { 'edge.knative.dev/local-command': 'node app.mjs' }, 'demo'),
    { apiVersion: 'serving.knative.dev/v1', kind: 'Route', metadata: { name: 'cold', namespace: 'demo' }, status: { url: 'http://cold.demo.example.com', traffic: [{ revisionName: 'cold-00001', percent: 100 }] } },
  ])
  writeManifest(dir, 'busy.yaml', [revision('busy-00001', { containerConcurrency: 1 }), revisionPods('busy-00001', busy), revisionIngress('busy', 'busy.example.com', 'busy-00001')])
  writeManifest(dir, 'split.yaml', [...serviceFor('a', a), ...serviceFor('b', b), simpleIngress('split', ['split.example.com'], [['a', 50], ['b', 50]])])
  writeManifest(dir, 'empty.yaml', [service('empty', [{ name: 'http', port: 80 }]), simpleIngress('empty', ['empty.example.com'], [['empty', 100]])])
}

/** One round of the traffic mix; returns the answers in the order sent. */
async function round(port: number): Promise<Array<{ what: string; status: number; reason: unknown; held: unknown }>> {
  const sends: Array<[string, string, string]> = [
    ['cold start', 'cold.demo.example.com', '/'],
    ['split', 'split.example.com', '/1'],
    ['split', 'split.example.com', '/2'],
    ["the application's 503", 'split.example.com', '/fail'],
    // Two at once to a revision with containerConcurrency 1: one waits for the other (no capacity).
    ['busy', 'busy.example.com', '/1'],
    ['busy', 'busy.example.com', '/2'],
    ['unknown host', 'nowhere.example.com', '/'],
    ["the gateway's 503", 'empty.example.com', '/'],
  ]
  return Promise.all(
    sends.map(async ([what, host, p]) => {
      const a = await get(port, host, p)
      return { what, status: a.status, reason: a.headers['x-edge-reason'], held: a.headers['x-edge-cold-start-ms'] }
    }),
  )
}

t.test("every dashboard query has data in a real Prometheus; promtool accepts /metrics with and without --workers", async (t) => {
  requireBinary('prometheus')
  requireBinary('promtool')
  const app = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
    if (req.url === '/fail') res.writeHead(503).end('app says no')
    else res.end('ok')
  }
  const a = await startBackend('a', app)
  const b = await startBackend('b', app)
  const busy = await startBackend('busy', delayed(30))
  const autoscaler = new FakeAutoscaler()
  await autoscaler.listen()
  t.teardown(async () => {
    await Promise.all([a.close(), b.close(), busy.close(), autoscaler.stop()])
  })
  const dir = tempDir()
  manifests(dir, a, b, busy)
  // Prometheus first: it sends its static targets to the scrapers only about 5 s after it starts
  // (its discovery updates go out at most every 5 s), which the gateways' start then overlaps.
  const admins = await freePorts(2)
  const prom = await startPrometheus(t, 'edge-gateway', admins.map((port) => `127.0.0.1:${port}`))
  const start = (workers: number, adminPort: number): Promise<GatewayProcess> =>
    startGatewayProcess(t, process.execPath, [path.join(projectRoot, 'src', 'main.ts'), '--manifests', dir, '--workers', String(workers), '--listen-address', '127.0.0.1', '--autoscaler-url', autoscaler.url, '--scale-to-zero-after', '60', '--log-level', 'warn'], {}, { adminPort })
  const gateways = await Promise.all([start(1, admins[0]!), start(2, admins[1]!)])

  for (const gw of gateways) {
    const answers = await round(gw.http)
    const by = (what: string) => answers.filter((x) => x.what === what)
    t.same(by('cold start').map((x) => [x.status, typeof x.held]), [[200, 'string']], 'the first request to the local revision is held for its cold start')
    t.same(by('split').map((x) => x.status), [200, 200])
    t.same(by("the application's 503").map((x) => [x.status, x.reason]), [[503, undefined]])
    t.same(by('busy').map((x) => x.status), [200, 200])
    t.same(by('unknown host').map((x) => [x.status, x.reason]), [[404, 'host-not-found']])
    t.same(by("the gateway's 503").map((x) => [x.status, x.reason]), [[503, 'no-backend']])
  }

  // promtool reads the exposition as Prometheus does, and lints it (an empty text would pass: it is checked to have the metrics).
  for (const [gw, mode] of [[gateways[0]!, 'one process'], [gateways[1]!, '--workers 2']] as const) {
    const text = (await get(gw.admin, 'localhost', '/metrics')).body
    for (const name of ['process_cpu_seconds_total', 'process_start_time_seconds', 'nodejs_eventloop_lag_p99_seconds', 'edge_requests_total', 'edge_request_duration_seconds_bucket', 'edge_cold_start_wait_seconds_bucket']) {
      t.match(text, new RegExp(`^${name}[{ ]`, 'm'), `${mode}: /metrics has ${name}`)
    }
    const check = await promtoolCheck(text)
    t.same(check, { code: 0, output: '' }, `${mode}: promtool check metrics accepts /metrics`)
  }

  // Traffic keeps coming while Prometheus scrapes, so every rate has something to show.
  const trafficStarted = Date.now()
  let stop = false
  let trafficError: unknown
  const trickle = (async () => {
    while (!stop) {
      try {
        await Promise.all(gateways.map((gw) => round(gw.http)))
      } catch (err) {
        trafficError = err
        return
      }
      await new Promise((r) => setTimeout(r, 100)) // pacing a trickle of traffic; nothing waits on this
    }
  })()
  try {
    await checkDashboard(t, prom, trafficStarted)
  } finally {
    stop = true
    await trickle
  }
  t.equal(trafficError, undefined, 'the traffic went on without a failure')
})

/** Once Prometheus has scraped both gateways twice since the traffic began: every query of the dashboard. */
async function checkDashboard(t: Test, prom: Prometheus, trafficStarted: number): Promise<void> {
  let scrapes: string[] = []
  await waitFor(
    'two successful scrapes of both gateways since the traffic began',
    async () => {
      const up = await prom.query(`sum_over_time(up{job="edge-gateway"}[${Date.now() - trafficStarted}ms])`)
      scrapes = up.map((s) => `${s.metric.instance}: ${s.value}`)
      return up.length === 2 && up.every((s) => Number(s.value) >= 2)
    },
    30_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (successful scrapes so far: ${scrapes.join(', ') || 'none'})`)
  })

  const dashboard = loadDashboard()
  const panels = dataPanels(dashboard)
  t.ok(panels.length >= 15, `${panels.length} panels`)
  for (const panel of panels) {
    for (const target of panel.targets ?? []) {
      const expr = asPromQL(target.expr, dashboard, '1m')
      const result = await prom.query(expr)
      const shown = JSON.stringify(result).slice(0, 300)
      t.ok(result.length > 0, `${panel.title} (${target.refId}) has data: ${expr}`)
      t.ok(result.some((s) => Number.isFinite(Number(s.value))), `${panel.title} (${target.refId}) has a number, not only NaN: ${shown}`)
    }
  }
  for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) {
    const { promql, label } = variableQuery(v)
    const values = (await prom.query(asPromQL(promql, dashboard, '1m'))).map((s) => s.metric[label])
    t.ok(values.some((x) => x), `variable ${v.name} has values: ${values.join(', ')}`)
  }
  const revisions = (await prom.query('count by (revision) (edge_revision_ready_pods)')).map((s) => s.metric.revision).sort()
  t.same(revisions, ['busy-00001', 'cold-00001'], 'the revision variable offers the two revisions')
}
