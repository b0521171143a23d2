// npm run soak [-- --minutes N]      (default 10; not part of CI)
// Issue 7's soak: a gateway child process (`node dist/main.js`, one process) on a temp manifest
// directory with local backends, under mixed traffic (plain, split, tag header, WebSocket, 1 MiB
// bodies both ways) while its configuration churns (splits moved, routes changed, revisions replaced,
// pods replaced) and one revision goes through a scale-to-zero cycle. Loopback only, bounded loops,
// stops by itself. Prints what was sent, answered and failed (by reason), and the gateway's memory
// every --sample-seconds (default 60) from its /metrics: RSS, V8 heap, young generation, outside the
// heap (bench/lib/memory-curve.ts), with the growth over the run's second half (issue 23).
// The gateway runs with src/runtime-flags.ts's NODE_FLAGS, as on every launch path; --node-flags ''
// runs it without them (issue 23's first soak did). --heap-snapshots 2,7 writes V8 heap snapshots of
// the gateway at those minutes (SIGUSR2 with --heapsnapshot-signal) into --snapshot-dir, to compare
// with bench/heap-diff.ts. Not in a run whose RSS curve counts: writing a snapshot grows malloc's
// arena by tens of MB that it may never trim again (a 60-minute run's RSS rose 191 -> 239 MB after one).
// Build first: `npm run build`.
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import { WebSocket, WebSocketServer } from 'ws'
import { stringify } from 'yaml'
import { NODE_FLAGS } from '../src/runtime-flags.ts'
import { lateGrowth, memoryRow, memoryTable, parseMemorySample } from './lib/memory-curve.ts'
import type { MemorySample } from './lib/memory-curve.ts'
import { mallocHeapMb, pinned, rssMb, stop, waitPort } from './lib/procs.ts'
import { args, opt } from './lib/args.ts'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const MINUTES = Number(opt('minutes', '10'))
if (!(MINUTES > 0)) throw new Error('--minutes must be a positive number')
const RUN_MS = MINUTES * 60_000
const SAMPLE_MS = Number(opt('sample-seconds', '60')) * 1000
if (!(SAMPLE_MS >= 1000)) throw new Error('--sample-seconds must be at least 1')
// `--node-flags ''` is an empty argument, which opt() would read as absent.
const nodeFlagsAt = args.indexOf('--node-flags')
const GATEWAY_NODE_FLAGS = nodeFlagsAt >= 0 ? (args[nodeFlagsAt + 1] ?? '').split(' ').filter(Boolean) : [...NODE_FLAGS]
const SNAPSHOT_MINUTES = opt('heap-snapshots', '')
  .split(',')
  .filter(Boolean)
  .map((m) => {
    const n = Number(m)
    if (!(n > 0 && n < MINUTES)) throw new Error(`--heap-snapshots: "${m}" is not a minute inside the run (0 < minute < ${MINUTES}); give e.g. --heap-snapshots 2,7`)
    return n
  })
const SNAPSHOT_DIR = path.resolve(opt('snapshot-dir', '.'))
const CHURN_EVERY_MS = 1500
const NS = 'default'
const MIB = 1024 * 1024
// Never hang: whatever happens, the process ends a while after the run should have.
setTimeout(() => {
  process.stderr.write('soak: hard deadline reached, exiting\n')
  process.exit(2)
}, RUN_MS + 180_000).unref()

// ---- local pods ---------------------------------------------------------------------------------

interface Pod {
  name: string
  port: number
  server: http.Server
  inFlight: number
  ws: number
  /** Date.now() once the gateway no longer routes new requests here (Infinity: still routed). */
  retiredAt: number
  closed: boolean
}

const pods = new Map<string, Pod>()
let podSeq = 0
const bigChunk = Buffer.alloc(64 * 1024, 98)

async function startPod(prefix: string): Promise<Pod> {
  const pod: Pod = { name: `${prefix}-p${++podSeq}`, port: 0, server: undefined as unknown as http.Server, inFlight: 0, ws: 0, retiredAt: Infinity, closed: false }
  pod.server = http.createServer((req, res) => {
    pod.inFlight++
    res.once('close', () => pod.inFlight--)
    res.setHeader('x-backend', pod.name)
    if (req.url?.startsWith('/big')) {
      req.resume()
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 16 * bigChunk.length })
      let left = 16
      const pump = (): void => {
        while (left-- > 0) if (!res.write(bigChunk)) return void res.once('drain', pump)
        res.end()
      }
      pump()
      return
    }
    if (req.method === 'POST') {
      let bytes = 0
      req.on('data', (c: Buffer) => (bytes += c.length))
      req.on('end', () => res.end(JSON.stringify({ backend: pod.name, bytes })))
      return
    }
    req.resume()
    const timer = setTimeout(() => res.end(JSON.stringify({ backend: pod.name, url: req.url })), Math.floor(Math.random() * 4))
    res.once('close', () => clearTimeout(timer))
  })
  const wss = new WebSocketServer({ server: pod.server })
  wss.on('connection', (sock) => {
    pod.ws++
    sock.once('close', () => pod.ws--)
    sock.on('message', (m, binary) => sock.send(binary ? m : `${pod.name}: ${String(m)}`))
  })
  await new Promise<void>((r) => pod.server.listen(0, '127.0.0.1', () => r()))
  pod.port = (pod.server.address() as net.AddressInfo).port
  pods.set(pod.name, pod)
  return pod
}

async function closePod(pod: Pod): Promise<void> {
  if (pod.closed) return
  pod.closed = true
  pod.server.closeAllConnections()
  await new Promise<void>((r) => pod.server.close(() => r()))
}

// ---- manifests ----------------------------------------------------------------------------------

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-soak-'))

function write(file: string, objects: unknown[]): void {
  const full = path.join(dir, file)
  fs.writeFileSync(full + '.tmp', objects.map((o) => stringify(o)).join('---\n'))
  fs.renameSync(full + '.tmp', full)
}

function slice(service: string, name: string, port: number): unknown {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: NS, labels: { 'kubernetes.io/service-name': service } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
    ports: [{ name: 'http', port, protocol: 'TCP' }],
  }
}

const revisionObj = (name: string, annotations: Record<string, string> = {}): unknown => ({ apiVersion: 'serving.knative.dev/v1', kind: 'Revision', metadata: { name, namespace: NS, annotations }, spec: {} })
const routeObj = (name: string, traffic: unknown[]): unknown => ({ apiVersion: 'serving.knative.dev/v1', kind: 'Route', metadata: { name, namespace: NS }, status: { url: `http://${name}.${NS}.example.com`, traffic } })

interface Rev {
  name: string
  pods: Pod[]
}
let revSeq = 0
const revName = (): string => `app-${String(++revSeq).padStart(5, '0')}`
const revs: Rev[] = []
let primaryPercent = 80
const revPodFile = (rev: string, pod: Pod): string => `pod-${rev}-${pod.name}.yaml`
const writeRevPod = (rev: string, pod: Pod): void => write(revPodFile(rev, pod), [slice(`${rev}-private`, `${rev}-private-${pod.name}`, pod.port)])
const writeApp = (): void =>
  write('app.yaml', [
    ...revs.map((r) => revisionObj(r.name)),
    routeObj('app', [
      { revisionName: revs[0]!.name, percent: primaryPercent },
      { revisionName: revs[1]!.name, percent: 100 - primaryPercent, tag: 'candidate', url: `http://candidate-app.${NS}.example.com` },
    ]),
  ])

const SVCS = ['svc-a', 'svc-b', 'svc-c']
const svcPods = new Map<string, Pod[]>()
const svcPodFile = (svc: string, pod: Pod): string => `pod-${svc}-${pod.name}.yaml`
const writeSvcPod = (svc: string, pod: Pod): void => write(svcPodFile(svc, pod), [slice(svc, `${svc}-${pod.name}`, pod.port)])
let plainSplits: Array<[string, number]> = [
  ['svc-a', 50],
  ['svc-b', 50],
]
const writePlain = (): void =>
  write('plain.yaml', [
    ...SVCS.map((s) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name: s, namespace: NS }, spec: { type: 'ClusterIP', ports: [{ name: 'http', port: 80 }] } })),
    {
      apiVersion: 'networking.internal.knative.dev/v1alpha1',
      kind: 'Ingress',
      metadata: { name: 'plain', namespace: NS, annotations: { 'networking.knative.dev/ingress.class': 'edge.ingress.networking.knative.dev' }, generation: 1 },
      spec: { rules: [{ hosts: ['plain.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: plainSplits.map(([s, percent]) => ({ serviceNamespace: NS, serviceName: s, servicePort: 80, percent })) }] } }] },
    },
  ])

// The scale-to-zero revision: a real local process, started by the gateway's local runner.
const COLD_REV = 'cold-00001'
write('cold.yaml', [
  revisionObj(COLD_REV, { 'edge.knative.dev/local-command': `${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(ROOT, 'samples/hello/server.mjs'))}` }),
  routeObj('cold', [{ revisionName: COLD_REV, percent: 100 }]),
])

// ---- the gateway --------------------------------------------------------------------------------

async function freePort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

const agent = new Agent({ connections: 32, headersTimeout: 30_000, bodyTimeout: 30_000 })
let ports = { http: 0, admin: 0 }

interface DebugSplit {
  revision?: string
  endpoints: Array<{ address: string }>
}
async function debugSplits(): Promise<DebugSplit[]> {
  const res = await request(`http://127.0.0.1:${ports.admin}/debug/routes`, { dispatcher: agent })
  const body = (await res.body.json()) as { hosts: Array<{ paths: Array<{ splits: DebugSplit[] }> }> }
  return body.hosts.flatMap((h) => h.paths.flatMap((p) => p.splits))
}
const routedPorts = async (): Promise<Set<number>> => new Set((await debugSplits()).flatMap((s) => s.endpoints.map((e) => Number(e.address.slice(e.address.lastIndexOf(':') + 1)))))
const routedRevisions = async (): Promise<Set<string>> => new Set((await debugSplits()).map((s) => s.revision ?? ''))

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await ok()) return
    await sleep(25)
  }
  throw new Error(`soak: timed out waiting for ${what}`)
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

// ---- traffic --------------------------------------------------------------------------------------

const stats = {
  sent: 0,
  answered: 0,
  ok: 0,
  failed: 0,
  byLoop: {} as Record<string, { sent: number; ok: number; failed: number }>,
  failures: {} as Record<string, number>,
  staleBackend: 0,
  examples: [] as string[],
}
let stopping = false

function record(loop: string, failure: string | undefined, answered: boolean): void {
  const l = (stats.byLoop[loop] ??= { sent: 0, ok: 0, failed: 0 })
  l.sent++
  stats.sent++
  if (answered) stats.answered++
  if (failure === undefined) {
    l.ok++
    stats.ok++
    return
  }
  l.failed++
  stats.failed++
  stats.failures[failure] = (stats.failures[failure] ?? 0) + 1
  if (stats.examples.length < 10) stats.examples.push(`${loop}: ${failure}`)
}

function checkBackend(name: string | undefined, startedAt: number): void {
  const pod = name ? pods.get(name) : undefined
  if (pod && startedAt > pod.retiredAt) stats.staleBackend++
}

async function httpOnce(loop: string, host: string, p: string, opts: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: Buffer; expect: (status: number, body: Buffer) => string | undefined }): Promise<void> {
  const startedAt = Date.now()
  try {
    const res = await request(`http://127.0.0.1:${ports.http}${p}`, { method: opts.method ?? 'GET', headers: { host, ...opts.headers }, body: opts.body, dispatcher: agent })
    const body = Buffer.from(await res.body.arrayBuffer())
    if (res.statusCode !== 200) return record(loop, `status ${res.statusCode} ${String(res.headers['x-edge-reason'] ?? '(app)')}`, true)
    checkBackend(res.headers['x-backend'] as string | undefined, startedAt)
    record(loop, opts.expect(res.statusCode, body), true)
  } catch (err) {
    record(loop, `error ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, false)
  }
}

const jsonOk = (_s: number, b: Buffer): string | undefined => {
  try {
    return (JSON.parse(b.toString()) as { backend?: string }).backend ? undefined : 'body: no backend'
  } catch {
    return 'body: not JSON'
  }
}
const upload = Buffer.alloc(MIB, 117)

async function wsOnce(loop: string, host: string): Promise<void> {
  const startedAt = Date.now()
  const failure = await new Promise<string | undefined>((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${ports.http}/ws`, { headers: { host }, handshakeTimeout: 10_000 })
    let got = 0
    let backend: string | undefined
    const timer = setTimeout(() => (ws.terminate(), resolve('ws: timed out')), 30_000)
    const finish = (f: string | undefined): void => {
      clearTimeout(timer)
      resolve(f)
    }
    ws.on('unexpected-response', (_req, res) => {
      finish(`ws: status ${res.statusCode} ${String(res.headers['x-edge-reason'] ?? '')}`)
      ws.terminate()
    })
    ws.on('error', (err) => finish(`ws: error ${(err as NodeJS.ErrnoException).code ?? err.message}`))
    ws.on('open', () => ws.send('m0'))
    ws.on('message', (m) => {
      const text = String(m)
      backend ??= text.slice(0, text.indexOf(':'))
      if (text !== `${backend}: m${got}`) return finish(`ws: bad echo ${text.slice(0, 40)}`), ws.terminate()
      got++
      if (got < 5) ws.send(`m${got}`)
      else ws.close(1000)
    })
    ws.on('close', (code) => {
      if (got === 5) {
        checkBackend(backend, startedAt)
        finish(undefined)
      } else finish(`ws: closed early (${code}) after ${got} echoes`)
    })
  })
  record(loop, failure, failure === undefined || !failure.startsWith('ws: error'))
}

function loop(once: () => Promise<void>): Promise<void> {
  return (async () => {
    while (!stopping) await once()
  })()
}

// ---- churn ----------------------------------------------------------------------------------------

const churn = { splitMoves: 0, routeChanges: 0, revisionReplacements: 0, revisionPodChurn: 0, servicePodChurn: 0, podsRetired: 0 }

/** The pod's slice file is removed; once the gateway no longer routes to it, it drains and closes. */
async function retire(pod: Pod, file: string): Promise<void> {
  fs.rmSync(path.join(dir, file), { force: true })
  await until(`${pod.name} unrouted`, async () => !(await routedPorts()).has(pod.port))
  pod.retiredAt = Math.min(pod.retiredAt, Date.now())
  // A terminating pod finishes what it has (bounded, as a real one's grace period is).
  await until(`${pod.name} drained`, () => pod.inFlight === 0 && pod.ws === 0, 30_000).catch(() => {})
  await closePod(pod)
  churn.podsRetired++
}

async function churnOnce(i: number): Promise<void> {
  switch (i % 5) {
    case 0:
      primaryPercent = 10 * (1 + ((i * 7) % 9))
      writeApp()
      churn.splitMoves++
      return
    case 1: {
      const a = SVCS[i % 3]!
      const b = SVCS[(i + 1) % 3]!
      const pct = 10 * (1 + ((i * 3) % 9))
      plainSplits = [
        [a, pct],
        [b, 100 - pct],
      ]
      writePlain()
      churn.routeChanges++
      return
    }
    case 2: {
      const slot = Math.floor(i / 5) % 2
      const old = revs[slot]!
      const fresh: Rev = { name: revName(), pods: [await startPod('app')] }
      writeRevPod(fresh.name, fresh.pods[0]!)
      await sleep(200) // its pod is known before traffic moves (a request that came earlier would be held, not lost)
      revs[slot] = fresh
      writeApp()
      await until(`${old.name} out of the routes`, async () => !(await routedRevisions()).has(`${NS}/${old.name}`))
      for (const p of old.pods) p.retiredAt = Math.min(p.retiredAt, Date.now())
      for (const p of old.pods) await retire(p, revPodFile(old.name, p))
      churn.revisionReplacements++
      return
    }
    case 3: {
      const rev = revs[i % 2]!
      const old = rev.pods.shift()!
      const fresh = await startPod('app')
      rev.pods.push(fresh)
      writeRevPod(rev.name, fresh)
      await until(`${fresh.name} routed`, async () => (await routedPorts()).has(fresh.port))
      await retire(old, revPodFile(rev.name, old))
      churn.revisionPodChurn++
      return
    }
    case 4: {
      const s = SVCS[i % 3]!
      const list = svcPods.get(s)!
      const old = list.shift()!
      const fresh = await startPod(s)
      list.push(fresh)
      writeSvcPod(s, fresh)
      await until(`${fresh.name} routed`, async () => (await routedPorts()).has(fresh.port))
      await retire(old, svcPodFile(s, old))
      churn.servicePodChurn++
      return
    }
  }
}

// ---- the scale-to-zero cycle ----------------------------------------------------------------------

const coldCycle: string[] = []

async function coldOnce(label: string): Promise<void> {
  const res = await request(`http://127.0.0.1:${ports.http}/`, { headers: { host: `cold.${NS}.example.com` }, dispatcher: agent })
  const text = await res.body.text()
  const ok = res.statusCode === 200 && text.includes(COLD_REV)
  record('scale-to-zero', ok ? undefined : `status ${res.statusCode} ${String(res.headers['x-edge-reason'] ?? '')}`, true)
  coldCycle.push(`${label}: ${res.statusCode}, held ${String(res.headers['x-edge-cold-start-ms'] ?? 0)} ms`)
}

async function scaleToZeroCycle(): Promise<void> {
  await coldOnce('first request (cold start)')
  const idleFrom = Date.now()
  // No traffic to it now: the local runner stops its process after --scale-to-zero-after 5.
  await until('cold revision scaled to zero', async () => (await debugSplits()).some((s) => s.revision === `${NS}/${COLD_REV}` && s.endpoints.length === 0), 60_000)
  coldCycle.push(`scaled to zero after ${((Date.now() - idleFrom) / 1000).toFixed(1)} s idle`)
  await coldOnce('request after scale to zero (cold start)')
}

// ---- main -----------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const mainJs = path.join(ROOT, 'dist/main.js')
  if (!fs.existsSync(mainJs)) throw new Error('dist/main.js is missing: run `npm run build` first')
  for (let i = 0; i < 2; i++) revs.push({ name: revName(), pods: [await startPod('app')] })
  for (const r of revs) for (const p of r.pods) writeRevPod(r.name, p)
  for (const s of SVCS) {
    svcPods.set(s, [await startPod(s)])
    writeSvcPod(s, svcPods.get(s)![0]!)
  }
  writeApp()
  writePlain()

  ports = { http: await freePort(), admin: await freePort() }
  const snapshotFlags = SNAPSHOT_MINUTES.length > 0 ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${SNAPSHOT_DIR}`] : []
  const gwArgs = [
    ...GATEWAY_NODE_FLAGS,
    ...snapshotFlags,
    mainJs,
    ...['--manifests', dir, '--http-port', String(ports.http), '--local-port', String(await freePort()), '--https-port', String(await freePort())],
    ...['--admin-port', String(ports.admin), '--listen-address', '127.0.0.1', '--scale-to-zero-after', '5', '--drain-seconds', '0', '--workers', '1', '--log-level', 'warn'],
  ]
  const gateway = pinned(undefined, process.execPath, gwArgs, { cwd: ROOT })
  let gatewayExit: string | undefined
  gateway.on('exit', (code, signal) => (gatewayExit = `exit ${code ?? signal}`))
  try {
    await waitPort(ports.admin)
    await until('routes served', async () => (await routedRevisions()).has(`${NS}/${revs[1]!.name}`))

    const started = Date.now()
    const rssStart = rssMb(gateway.pid)
    let rssPeak = rssStart ?? 0
    const rssTimer = setInterval(() => (rssPeak = Math.max(rssPeak, rssMb(gateway.pid) ?? 0)), 5000)
    rssTimer.unref()
    console.log(`soak: ${MINUTES} min against gateway pid ${gateway.pid} (node ${[...GATEWAY_NODE_FLAGS, ...snapshotFlags].join(' ')} dist/main.js --workers 1), manifests in ${dir}`)

    const samples: MemorySample[] = []
    const sampleNow = async (): Promise<MemorySample> => {
      const res = await request(`http://127.0.0.1:${ports.admin}/metrics`, { dispatcher: agent })
      return parseMemorySample(await res.body.text(), (Date.now() - started) / 60_000, mallocHeapMb(gateway.pid))
    }
    const takeSample = async (): Promise<void> => {
      const s = await sampleNow()
      samples.push(s)
      console.log(memoryRow(s))
    }
    console.log(memoryTable([]))
    await takeSample()
    const sampler = setInterval(() => void takeSample().catch((err: Error) => console.log(`memory sample failed: ${err.message}`)), SAMPLE_MS)
    sampler.unref()
    const snapshotTimers = SNAPSHOT_MINUTES.map((m) =>
      setTimeout(() => {
        process.kill(gateway.pid!, 'SIGUSR2')
        console.log(`heap snapshot asked at minute ${m} (into ${SNAPSHOT_DIR})`)
      }, m * 60_000).unref(),
    )

    const loops = [
      loop(() => httpOnce('split (app host)', `app.${NS}.example.com`, '/', { expect: jsonOk })),
      loop(() => httpOnce('split (app host) 2', `app.${NS}.example.com`, '/2', { expect: jsonOk })),
      loop(() => httpOnce('tag header', `app.${NS}.example.com`, '/', { headers: { 'knative-serving-tag': 'candidate' }, expect: jsonOk })),
      loop(() => httpOnce('plain (KIngress)', 'plain.example.com', '/', { expect: jsonOk })),
      loop(() =>
        httpOnce('1 MiB upload', 'plain.example.com', '/upload', { method: 'POST', body: upload, headers: { 'content-type': 'application/octet-stream' }, expect: (_s, b) => ((JSON.parse(b.toString()) as { bytes: number }).bytes === MIB ? undefined : 'upload: wrong byte count') }),
      ),
      loop(() => httpOnce('1 MiB download', `candidate-app.${NS}.example.com`, '/big', { expect: (_s, b) => (b.length === MIB ? undefined : `download: ${b.length} bytes`) })),
      loop(() => wsOnce('websocket', `app.${NS}.example.com`)),
    ]
    const cycle = scaleToZeroCycle().catch((err: Error) => void coldCycle.push(`FAILED: ${err.message}`))
    let i = 0
    let churnError: string | undefined
    while (Date.now() - started < RUN_MS && gatewayExit === undefined) {
      await sleep(CHURN_EVERY_MS)
      if (Date.now() - started >= RUN_MS) break
      try {
        await churnOnce(i++)
      } catch (err) {
        churnError = (err as Error).message
        break
      }
    }
    clearInterval(sampler)
    for (const t of snapshotTimers) clearTimeout(t)
    const sampleFailed = (err: Error): void => console.log(`memory sample failed: ${err.message}`)
    await takeSample().catch(sampleFailed)
    stopping = true
    await Promise.all(loops)
    await cycle
    clearInterval(rssTimer)
    const idle = await sampleNow().catch(sampleFailed)
    const rssEnd = rssMb(gateway.pid)
    rssPeak = Math.max(rssPeak, rssEnd ?? 0)
    const secs = (Date.now() - started) / 1000

    const mb = (n: number | undefined): string => (n === undefined ? '?' : `${n.toFixed(1)} MB`)
    console.log(`ran ${secs.toFixed(0)} s`)
    console.log(`requests sent:     ${stats.sent} (${(stats.sent / secs).toFixed(0)}/s; WebSocket sessions count as one each)`)
    console.log(`answered:          ${stats.answered}`)
    console.log(`succeeded:         ${stats.ok}`)
    console.log(`failed:            ${stats.failed}`)
    for (const [reason, n] of Object.entries(stats.failures).sort((a, b) => b[1] - a[1])) console.log(`  ${String(n).padStart(7)}  ${reason}`)
    for (const e of stats.examples) console.log(`  e.g. ${e}`)
    console.log(`answered by a pod retired before the request was sent: ${stats.staleBackend}`)
    console.log('by traffic kind:')
    for (const [name, l] of Object.entries(stats.byLoop)) console.log(`  ${name.padEnd(20)} sent ${String(l.sent).padStart(7)}  ok ${String(l.ok).padStart(7)}  failed ${l.failed}`)
    console.log(`config churn:      ${JSON.stringify(churn)}${churnError ? ` (stopped early: ${churnError})` : ''}`)
    console.log(`scale to zero:     ${coldCycle.join('; ')}`)
    console.log(`gateway RSS:       start ${mb(rssStart)}, end ${mb(rssEnd)}, peak ${mb(rssPeak)}`)
    console.log(`gateway memory, every ${SAMPLE_MS / 1000} s (the last row: when traffic stopped):`)
    console.log(memoryTable(samples))
    if (idle) console.log(`once the traffic loops ended: ${memoryRow(idle)}`)
    const late = lateGrowth(samples, MINUTES)
    if (late) console.log(`growth over the second half (minute ${late.fromMinute.toFixed(1)} → ${late.toMinute.toFixed(1)}): RSS ${late.rssPct.toFixed(1)}% (highest ${late.rssPeakPct.toFixed(1)}% above its start), heap used ${late.heapUsedPct.toFixed(1)}%; RSS trend (least-squares line) ${late.rssTrendPct.toFixed(1)}%`)
    if (gatewayExit) console.log(`gateway ended early: ${gatewayExit}`)
    process.exitCode = stats.failed > 0 || stats.staleBackend > 0 || churnError || gatewayExit ? 1 : 0
  } finally {
    stopping = true
    await stop(gateway)
    for (const p of pods.values()) await closePod(p)
    await agent.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

await main()
