// Benchmarks measured inside one process, where one clock sees both ends:
// - compile time of 10,000 KIngress; an update of one KIngress with them loaded, through the store to
//   the data plane's live snapshot; RSS of a whole gateway process with them loaded (fresh process);
// - cold-start overhead: from the EndpointSlice event that makes a pod ready to the first byte the
//   pod receives of a held request.
import http from 'node:http'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { spawnSync } from 'node:child_process'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { compileSnapshot } from '../src/compile/snapshot.ts'
import type { KIngress, Service, EndpointSlice } from '../src/model/k8s.ts'
import { parseConfig } from '../src/config.ts'
import { startGateway } from '../src/gateway.ts'
import { ingress } from './lib/proxies.ts'
import { median } from './lib/rounds.ts'

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

const compileOpts = { ingressClass: 'edge.ingress.networking.knative.dev', domain: 'example.com', clusterDomain: 'cluster.local', translateServing: true }

function objects(n: number): { ingresses: KIngress[]; services: Service[]; endpointSlices: EndpointSlice[] } {
  const ingresses = Array.from({ length: n }, (_, i) => ingress(`filler-${i}`, [`filler-${i}.example.com`, `www.filler-${i}.example.com`]) as KIngress)
  const services: Service[] = [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'app', namespace: 'default' }, spec: { ports: [{ name: 'http', port: 80 }] } }]
  const endpointSlices: EndpointSlice[] = [
    { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'app-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'app' } }, endpoints: [{ addresses: ['127.0.0.1'] }], ports: [{ name: 'http', port: 1 }] },
  ]
  return { ingresses, services, endpointSlices }
}

function compileBench(n: number): { fullMs: number } {
  const base = objects(n)
  const input = { ...base, routes: [], domainMappings: [], revisions: [], secrets: [] }
  const t = performance.now()
  const snap = compileSnapshot(input, compileOpts, 1)
  const fullMs = performance.now() - t
  if (!snap.publicHosts.has('filler-0.example.com') && n > 0) throw new Error('compile lost a host')
  return { fullMs }
}

async function emptyGateway(): Promise<Awaited<ReturnType<typeof startGateway>>> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-table-'))
  const config = parseConfig(['--manifests', dir, '--http-port', '0', '--local-port', '0', '--https-port', '0', '--admin-port', '0', '--listen-address', '127.0.0.1'], {})
  return startGateway(config, { log: pino({ level: 'silent' }), defaultMetrics: false })
}

/** Resolves once the store has notified its listeners (the gateway's apply runs first: it registered first). */
function nextNotification(gw: Awaited<ReturnType<typeof startGateway>>): Promise<void> {
  return new Promise((r) => {
    const off = gw.store.onChange(() => {
      off()
      r()
    })
  })
}

/**
 * Through a real gateway: n KIngress loaded into the store, then one KIngress changes; measured from
 * `store.upsert` to the new snapshot being the data plane's (what a request arriving next would see).
 */
async function liveUpdateBench(n: number, updates: number): Promise<{ loadMs: number; updateMs: number[] }> {
  const gw = await emptyGateway()
  try {
    const base = objects(n)
    let t = performance.now()
    let live = nextNotification(gw)
    gw.store.batch(() => {
      for (const o of [...base.services, ...base.endpointSlices, ...base.ingresses]) gw.store.upsert(o, 'bench')
    })
    await live
    const loadMs = performance.now() - t
    if (!gw.plane.snapshot.publicHosts.has('filler-0.example.com') && n > 0) throw new Error('load lost a host')
    const updateMs: number[] = []
    for (let k = 0; k < updates; k++) {
      const i = (k * 37) % n
      const host = `changed-${k}.example.com`
      const changed = ingress(`filler-${i}`, [`filler-${i}.example.com`, host]) as KIngress
      live = nextNotification(gw)
      t = performance.now()
      gw.store.upsert(changed, 'bench')
      await live
      updateMs.push(performance.now() - t)
      if (!gw.plane.snapshot.publicHosts.has(host)) throw new Error('the update is not live')
    }
    return { loadMs, updateMs }
  } finally {
    await gw.close()
  }
}

/** Run in a fresh process: RSS of a whole gateway with n KIngress loaded (after a full GC). */
async function rssChild(n: number): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})
  const gw = await emptyGateway()
  gc()
  const empty = process.memoryUsage()
  const live = nextNotification(gw)
  gw.store.batch(() => {
    const base = objects(n)
    for (const o of [...base.services, ...base.endpointSlices, ...base.ingresses]) gw.store.upsert(o, 'bench')
  })
  await live
  for (let k = 0; k < 3; k++) {
    gc()
    await new Promise((r) => setTimeout(r, 50))
  }
  const loaded = process.memoryUsage()
  process.stdout.write(JSON.stringify({ emptyRss: empty.rss, rss: loaded.rss, heapUsed: loaded.heapUsed, emptyHeap: empty.heapUsed }) + '\n')
  await gw.close()
}

/** Each measurement in a fresh process: garbage left by the other benchmarks must not land in it. */
function coldStartInChild(iterations: number, tableSize: number): number[] {
  const r = spawnSync(process.execPath, ['--expose-gc', import.meta.filename, '--cold-child', String(iterations), String(tableSize)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`cold-start child failed: ${r.stderr}`)
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as number[]
}

function measureRss(n: number): { emptyMb: number; rssMb: number; heapMb: number; emptyHeapMb: number } {
  const r = spawnSync(process.execPath, ['--expose-gc', import.meta.filename, '--rss-child', String(n)], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`rss child failed: ${r.stderr}`)
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!) as { emptyRss: number; rss: number; heapUsed: number; emptyHeap: number }
  const mb = (x: number): number => x / 2 ** 20
  return { emptyMb: mb(j.emptyRss), rssMb: mb(j.rss), heapMb: mb(j.heapUsed), emptyHeapMb: mb(j.emptyHeap) }
}

export async function coldStartBench(iterations: number, tableSize = 0): Promise<number[]> {
  let arrivedAt = 0
  const backend = http.createServer((_req, res) => {
    if (arrivedAt === 0) arrivedAt = performance.now()
    res.end('ok')
  })
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()))
  const port = (backend.address() as AddressInfo).port
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-cold-'))
  fs.writeFileSync(
    path.join(dir, 'r.yaml'),
    `apiVersion: serving.knative.dev/v1
kind: Revision
metadata: {name: cold-00001, namespace: default}
spec: {containerConcurrency: 0}
---
apiVersion: serving.knative.dev/v1
kind: Route
metadata: {name: cold, namespace: default}
status:
  url: http://cold.example.com
  traffic: [{revisionName: cold-00001, percent: 100}]
`,
  )
  const config = parseConfig(['--manifests', dir, '--http-port', '0', '--local-port', '0', '--https-port', '0', '--admin-port', '0', '--listen-address', '127.0.0.1'], {})
  const gw = await startGateway(config, { log: pino({ level: 'silent' }), defaultMetrics: false })
  if (tableSize > 0) {
    // A big routing table beside the cold route: the pod-ready event must not pay for it.
    const live = nextNotification(gw)
    const base = objects(tableSize)
    gw.store.batch(() => {
      for (const o of [...base.services, ...base.endpointSlices, ...base.ingresses]) gw.store.upsert(o, 'bench')
    })
    await live
  }
  ;(globalThis as { gc?: () => void }).gc?.()
  const agent = new http.Agent({ keepAlive: true })
  const slice: EndpointSlice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'cold-00001-private-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'cold-00001-private' } },
    endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
    ports: [{ name: 'http', port }],
  }
  const samples: number[] = []
  try {
    // A few cycles first, not counted: the first dispatch in a process pays for JIT and lazy loading.
    for (let i = -5; i < iterations; i++) {
      arrivedAt = 0
      const done = new Promise<void>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: gw.ports.http, path: '/', headers: { host: 'cold.example.com' }, agent }, (res) => {
          res.resume()
          res.on('end', () => resolve())
        })
        req.on('error', reject)
        req.end()
      })
      // Wait until the request is held.
      while ((gw.plane.throttlerByKey('rev:default/cold-00001')?.queued ?? 0) === 0) await new Promise((r) => setImmediate(r))
      // The event: a ready endpoint appears (what an EndpointSlice informer delivers to the store).
      const t0 = performance.now()
      gw.store.upsert(slice, 'bench')
      await done
      if (i >= 0) samples.push(arrivedAt - t0)
      gw.store.remove('EndpointSlice', 'default/cold-00001-private-1', 'bench')
      await new Promise((r) => setTimeout(r, 5))
    }
  } finally {
    agent.destroy()
    await gw.close()
    backend.close()
  }
  return samples
}

export async function runInProcess(): Promise<string[]> {
  const out: string[] = []
  out.push('## Routing table size (in process)')
  out.push('')
  const rows: string[] = []
  for (const n of [10, 10_000]) {
    const c = compileBench(n)
    const u = await liveUpdateBench(n, 200)
    const m = measureRss(n)
    rows.push(
      `| ${n} | ${c.fullMs.toFixed(1)} | ${u.loadMs.toFixed(1)} | ${median(u.updateMs).toFixed(2)} / ${percentile(u.updateMs, 99).toFixed(2)} / ${Math.max(...u.updateMs).toFixed(2)} | ${m.rssMb.toFixed(0)} (${m.emptyMb.toFixed(0)} empty) | ${m.heapMb.toFixed(0)} (${m.emptyHeapMb.toFixed(0)} empty) |`,
    )
  }
  out.push('| KIngress objects | full compile ms | load into a gateway ms | update → live snapshot ms (median / p99 / max of 200) | gateway RSS MB | heap used MB |')
  out.push('|---|---|---|---|---|---|')
  out.push(...rows)
  out.push('')
  out.push('## Cold-start overhead (in process): EndpointSlice event → first byte at the pod')
  out.push('')
  for (const table of [0, 10_000]) {
    const cs = coldStartInChild(300, table)
    out.push(`300 scale-from-zero cycles${table ? `, ${table} other KIngress loaded` : ''} (fresh process): p50 ${percentile(cs, 50).toFixed(2)} ms, p99 ${percentile(cs, 99).toFixed(2)} ms, max ${Math.max(...cs).toFixed(2)} ms (target p99 ≤ 5 ms).`)
  }
  out.push('')
  return out
}

if (import.meta.filename === process.argv[1]) {
  if (process.argv[2] === '--rss-child') await rssChild(Number(process.argv[3]))
  else if (process.argv[2] === '--cold-child') process.stdout.write(JSON.stringify(await coldStartBench(Number(process.argv[3]), Number(process.argv[4]))) + '\n')
  else for (const line of await runInProcess()) process.stdout.write(line + '\n')
}
