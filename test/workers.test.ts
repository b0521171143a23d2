// --workers: a real primary with two worker processes. One source of truth (the primary's files
// source, replicated), containerConcurrency held across workers, metrics summed, and a graceful drain.
import t from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { endpointSlice, freePorts, get, kingress, revision, revisionPods, serviceFor, simpleIngress, startBackend, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import { within } from './helpers/activator.ts'
import { raw } from './helpers/raw.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

/** A backend that holds each request for `ms`, counting its own concurrency. */
function slow(ms: number): (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, b: Backend) => void {
  return (req, res, b) => setTimeout(() => res.end(JSON.stringify({ backend: b.name, url: req.url })), ms)
}

interface WorkersGateway {
  child: ChildProcess
  http: number
  admin: number
  /** What the processes wrote to stderr so far (warnings and errors). */
  stderr(): string
}

/** `src/main.ts --workers 2` on `dir` as a real process, ready (the primary and both workers). */
async function startWorkersGateway(t: Test, dir: string, extraArgs: string[] = []): Promise<WorkersGateway> {
  const [http, local, https, admin] = (await freePorts(4)) as [number, number, number, number]
  const child: ChildProcess = spawn(
    process.execPath,
    [path.join(root, 'src', 'main.ts'), '--workers', '2', '--manifests', dir, '--listen-address', '127.0.0.1', '--http-port', String(http), '--local-port', String(local), '--https-port', String(https), '--admin-port', String(admin), ...extraArgs],
    { cwd: root, env: { ...process.env, EDGE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  child.stderr!.on('data', (c) => (stderr += c))
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  await waitFor('the primary and both workers to be ready', async () => (await get(admin, 'localhost', '/readyz').catch(() => undefined))?.status === 200, 30_000)
  return { child, http, admin, stderr: () => stderr }
}

t.test('two workers: replicated config, CC=1 held across workers, summed metrics, drain on SIGTERM', async (t) => {
  const pod = await startBackend('pod', slow(40))
  const plain = await startBackend('plain')
  const longRunning = await startBackend('long', slow(1500))
  t.teardown(async () => {
    await pod.close()
    await plain.close()
    await longRunning.close()
  })
  const dir = tempDir()
  const rev = (name: string, b: Backend, cc: number): unknown[] => [revision(name, { containerConcurrency: cc }), revisionPods(name, b)]
  writeManifest(dir, 'app.yaml', [
    ...rev('one-00001', pod, 1),
    ...rev('long-00001', longRunning, 0),
    ...serviceFor('plain', plain),
    kingress('one', { rules: [{ hosts: ['one.example.com'], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'one-00001', servicePort: 80, appendHeaders: { 'Knative-Serving-Revision': 'one-00001', 'Knative-Serving-Namespace': 'default' } }] }] } }] }),
    kingress('long', { rules: [{ hosts: ['long.example.com'], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'long-00001', servicePort: 80, appendHeaders: { 'Knative-Serving-Revision': 'long-00001', 'Knative-Serving-Namespace': 'default' } }] }] } }] }),
    simpleIngress('plain', ['plain.example.com'], [['plain', 100]]),
  ])
  const { child, http, admin, stderr } = await startWorkersGateway(t, dir, ['--drain-seconds', '1'])

  // Requests spread over both workers (connections alternate); the per-pod limit still holds.
  const answers = await Promise.all(Array.from({ length: 24 }, (_, i) => get(http, 'one.example.com', `/cc/${i}`)))
  t.same(answers.map((a) => a.status), Array(24).fill(200), `all answered (${stderr()})`)
  t.equal(pod.maxInFlight, 1, 'the CC=1 pod never saw two requests at once, across two workers')
  t.equal(pod.seen.length, 24, 'each request reached the pod once')

  // A config change reaches every worker from the primary's one watch.
  writeManifest(dir, 'more.yaml', [simpleIngress('late', ['late.example.com'], [['plain', 100]])])
  await waitFor('every worker to serve the new host', async () => {
    const rs = await Promise.all(Array.from({ length: 6 }, () => get(http, 'late.example.com')))
    return rs.every((r) => r.status === 200)
  })

  const warm = await get(http, 'one.example.com', '/warm')
  t.equal(warm.headers['x-edge-cold-start-ms'], undefined, 'a request that found a free slot at the broker reports no cold start')
  const debug = (await get(admin, 'localhost', '/debug/routes')).json<{ sources: { slotBroker: Record<string, { pods: number }> } }>()
  t.equal(debug.sources.slotBroker['rev:default/one-00001']?.pods, 1, "/debug/routes shows the broker's view of the CC=1 revision")
  const metrics = (await get(admin, 'localhost', '/metrics')).body
  t.match(metrics, /edge_revision_ready_pods\{namespace="default",revision="one-00001"\} 1\n/, 'a per-process gauge is not multiplied by the number of workers')
  const m = /edge_requests_total\{host="one\.example\.com",namespace="default",revision="one-00001",code="200"\} (\d+)/.exec(metrics)
  t.equal(Number(m?.[1]), 25, "the primary's /metrics sums the workers' counters")

  // /debug/routes on the primary shows a CC = 0 pod's requests in flight, from the workers' reports.
  type Routes = { hosts: Array<{ paths: Array<{ splits: Array<{ revision?: string; endpoints: Array<{ inFlight: number }> }> }> }> }
  const longInFlight = async (): Promise<number | undefined> =>
    (await get(admin, 'localhost', '/debug/routes')).json<Routes>().hosts.flatMap((h) => h.paths.flatMap((p) => p.splits)).find((s) => s.revision === 'default/long-00001')?.endpoints[0]?.inFlight
  t.equal(await longInFlight(), 0)
  const watched = get(http, 'long.example.com', '/watched')
  await waitFor('the primary to show the long request on its pod', async () => (await longInFlight()) === 1)
  t.equal((await watched).status, 200)
  await waitFor('and then none', async () => (await longInFlight()) === 0)

  // SIGTERM: readiness fails at once; a request in flight finishes; the process exits 0.
  const inFlight = get(http, 'long.example.com', '/slow')
  await waitFor('the long request to reach its pod', () => longRunning.seen.length === 1)
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  child.kill('SIGTERM')
  await waitFor('readiness to fail', async () => (await get(admin, 'localhost', '/readyz').catch(() => undefined))?.status === 503)
  t.equal((await inFlight).status, 200, 'the in-flight request finished during the drain')
  t.equal(await exited, 0, 'exit 0 after the drain')
})

t.test('two workers: requests held for a CC > 0 revision follow the Route when its traffic moves, on every worker', async (t) => {
  const next = await startBackend('next')
  t.teardown(() => next.close())
  const dir = tempDir()
  const route = (rev: string): unknown => ({ apiVersion: 'serving.knative.dev/v1', kind: 'Route', metadata: { name: 'app', namespace: 'default' }, status: { url: 'http://app.default.example.com', traffic: [{ revisionName: rev, percent: 100 }] } })
  // app-00001 is at zero and brokered by the primary (containerConcurrency 1); app-00002 has a pod.
  writeManifest(dir, 'revisions.yaml', [revision('app-00001', { containerConcurrency: 1 }), revision('app-00002', { containerConcurrency: 1 }), revisionPods('app-00002', next)])
  writeManifest(dir, 'route.yaml', [route('app-00001')])
  const { http, admin } = await startWorkersGateway(t, dir)
  const held = Array.from({ length: 6 }, (_, i) => get(http, 'app.default.example.com', `/held-${i}`))
  await waitFor('6 requests held at the broker', async () => {
    const debug = (await get(admin, 'localhost', '/debug/routes')).json<{ sources: { slotBroker: Record<string, { queued: number }> } }>()
    return debug.sources.slotBroker['rev:default/app-00001']?.queued === 6
  })
  writeManifest(dir, 'route.yaml', [route('app-00002')])
  const answers = await Promise.all(held)
  t.same(
    answers.map((a) => `${a.status} ${String(a.headers['x-backend'] ?? a.headers['x-edge-reason'])}`),
    Array(6).fill('200 next'),
    'every held request was answered by the revision the traffic moved to',
  )
  t.equal(next.maxInFlight, 1, 'containerConcurrency 1 held for them too')
})

t.test('two workers: the broker bounds the bytes of bodies held for a CC > 0 revision, whichever worker took them', async (t) => {
  const pod = await startBackend('pod', (req, res) => {
    let n = 0
    req.on('data', (c: Buffer) => (n += c.length))
    req.on('end', () => res.end(String(n)))
  })
  t.teardown(() => pod.close())
  const dir = tempDir()
  const route = { apiVersion: 'serving.knative.dev/v1', kind: 'Route', metadata: { name: 'app', namespace: 'default' }, status: { url: 'http://app.default.example.com', traffic: [{ revisionName: 'app-00001', percent: 100 }] } }
  writeManifest(dir, 'revisions.yaml', [revision('app-00001', { containerConcurrency: 1 })])
  writeManifest(dir, 'route.yaml', [route])
  const { http, admin } = await startWorkersGateway(t, dir, ['--max-held-body-bytes-per-namespace', '128Ki'])
  const body = Buffer.alloc(64 * 1024, 7)
  // Separate connections, so the workers share them out.
  const held = [1, 2].map((i) => get(http, 'app.default.example.com', `/held-${i}`, { connection: 'close' }, 'POST', body))
  await waitFor('2 bodies held at the broker', async () => {
    const debug = (await get(admin, 'localhost', '/debug/routes')).json<{ holds: { namespaces: Record<string, { requests: number; bodyBytes: number }> } }>()
    const ns = debug.holds.namespaces.default
    return ns?.requests === 2 && ns.bodyBytes === 2 * body.length
  })
  t.match((await get(admin, 'localhost', '/metrics')).body, /^edge_held_body_bytes\{namespace="default"\} 131072$/m, "/metrics: the broker's bytes, once (the workers hold none of them)")
  const over = await get(http, 'app.default.example.com', '/over', { connection: 'close' }, 'POST', body)
  t.same([over.status, over.headers['x-edge-reason']], [503, 'queue-full'], 'a third body is over the namespace bound')
  t.match(over.body, /too many request bodies held for namespace default/)
  writeManifest(dir, 'pods.yaml', [revisionPods('app-00001', pod)])
  t.same((await Promise.all(held)).map((a) => [a.status, a.body]), [[200, '65536'], [200, '65536']], 'the held ones are served whole when the pod comes')
  t.same(pod.seen.map((s) => s.url).sort(), ['/held-1', '/held-2'], 'the refused one never reached the pod')
})

t.test('two workers: a not-yet-Ready pod of a CC > 0 revision that passes the queue-proxy probe serves the request held at the broker', async (t) => {
  let up = false
  const pod = await startBackend('early', (req, res, b) => {
    if (req.url === '/healthz' && req.headers['k-network-probe'] === 'queue') {
      res.statusCode = up ? 200 : 503
      res.end(up ? 'queue' : 'not yet')
      return
    }
    res.end(JSON.stringify({ backend: b.name, url: req.url }))
  })
  t.teardown(() => pod.close())
  const dir = tempDir()
  writeManifest(dir, 'app.yaml', [
    revision('early-00001', { containerConcurrency: 1 }),
    endpointSlice('early-00001-private', [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1', ready: false }], 'default', 'early-00001-private-slice'),
    kingress('early', { rules: [{ hosts: ['early.example.com'], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'early-00001', servicePort: 80, appendHeaders: { 'Knative-Serving-Revision': 'early-00001', 'Knative-Serving-Namespace': 'default' } }] }] } }] }),
  ])
  const { http, admin } = await startWorkersGateway(t, dir)
  const held = get(http, 'early.example.com', '/first')
  await waitFor('the request to be held at the broker', async () => {
    const debug = (await get(admin, 'localhost', '/debug/routes')).json<{ sources: { slotBroker: Record<string, { queued: number }> } }>()
    return debug.sources.slotBroker['rev:default/early-00001']?.queued === 1
  })
  up = true
  const r = await within(held, 'the held request to be served by the probed pod')
  t.equal(r.status, 200, 'served although Kubernetes still lists the pod as not ready')
  t.equal(r.json().backend, 'early')
})

t.test('two workers: config-edge-gateway reaches every worker live; its problems are the primary\'s to report', async (t) => {
  const dir = tempDir()
  const settings = (data: Record<string, string>): unknown => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'config-edge-gateway', namespace: 'knative-serving' }, data })
  writeManifest(dir, 'settings.yaml', [settings({ 'max-url-length': '100' })])
  const { http, admin } = await startWorkersGateway(t, dir)
  /** Statuses of `n` requests, each on a new connection: the primary hands connections to the workers in turn. */
  const statuses = async (n: number, length: number): Promise<number[]> => {
    const out: number[] = []
    for (let i = 0; i < n; i++) out.push((await raw(http, `GET /${'a'.repeat(length - 1)} HTTP/1.1\r\nHost: nowhere.example.com\r\nConnection: close\r\n\r\n`)).status)
    return out
  }
  t.same(await statuses(6, 150), Array(6).fill(414), 'both workers start with the ConfigMap value (100)')
  writeManifest(dir, 'settings.yaml', [settings({ 'max-url-length': '200' })])
  await waitFor('both workers to take 200', async () => (await statuses(4, 150)).every((s) => s === 404))
  t.same(await statuses(6, 150), Array(6).fill(404), 'every worker serves with 200')
  writeManifest(dir, 'settings.yaml', [settings({ 'max-url-length': 'x' })])
  await waitFor('the primary to list the problem', async () => (await get(admin, 'localhost', '/debug/routes')).json<{ problems: Array<{ field: string }> }>().problems.some((p) => p.field === 'data["max-url-length"]'))
  t.same(await statuses(6, 150), Array(6).fill(404), 'the last good value stays on every worker')
  t.same(await statuses(6, 201), Array(6).fill(414), 'the last good value stays on every worker')
})
