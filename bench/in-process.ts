// Benchmarks measured inside one process, where one clock sees both ends:
// - compile time of 10,000 KIngress, and an incremental update with them loaded (to a live snapshot);
// - cold-start overhead: from the EndpointSlice event that makes a pod ready to the first byte the
//   pod receives of a held request.
import http from 'node:http'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { compileSnapshot } from '../src/compile/snapshot.ts'
import type { KIngress, Service, EndpointSlice } from '../src/model/k8s.ts'
import { parseConfig } from '../src/config.ts'
import { startGateway } from '../src/gateway.ts'
import { ingress } from './lib/proxies.ts'
import { median } from './lib/wrk.ts'

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

function compileBench(n: number): { fullMs: number; incrementalMs: number[]; rssMb: number } {
  const base = objects(n)
  const input = { ...base, routes: [], domainMappings: [], revisions: [], secrets: [] }
  const rss0 = process.memoryUsage().rss
  let t = performance.now()
  let snap = compileSnapshot(input, compileOpts, 1)
  const fullMs = performance.now() - t
  const incremental: number[] = []
  for (let k = 0; k < 20; k++) {
    // One KIngress changes (as an informer update replaces one object), then a live snapshot.
    const i = k * 37 % n
    const changed = ingress(`filler-${i}`, [`filler-${i}.example.com`, `changed-${k}.example.com`]) as KIngress
    const next = { ...input, ingresses: input.ingresses.map((x, j) => (j === i ? changed : x)) }
    t = performance.now()
    snap = compileSnapshot(next, compileOpts, k + 2)
    incremental.push(performance.now() - t)
    input.ingresses = next.ingresses
  }
  if (!snap.publicHosts.has('filler-0.example.com') && n > 0) throw new Error('compile lost a host')
  return { fullMs, incrementalMs: incremental, rssMb: (process.memoryUsage().rss - rss0) / 2 ** 20 }
}

async function coldStartBench(iterations: number): Promise<number[]> {
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
    for (let i = 0; i < iterations; i++) {
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
      samples.push(arrivedAt - t0)
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
  const small = compileBench(10)
  const big = compileBench(10_000)
  out.push('| KIngress objects | full compile ms | incremental update ms (median / max of 20) | RSS growth MB |')
  out.push('|---|---|---|---|')
  for (const [n, r] of [[10, small], [10_000, big]] as const) {
    out.push(`| ${n} | ${r.fullMs.toFixed(1)} | ${median(r.incrementalMs).toFixed(2)} / ${Math.max(...r.incrementalMs).toFixed(2)} | ${r.rssMb.toFixed(0)} |`)
  }
  out.push('')
  out.push('## Cold-start overhead (in process): EndpointSlice event → first byte at the pod')
  out.push('')
  const cs = await coldStartBench(200)
  out.push(`200 scale-from-zero cycles: p50 ${percentile(cs, 50).toFixed(2)} ms, p99 ${percentile(cs, 99).toFixed(2)} ms, max ${Math.max(...cs).toFixed(2)} ms (target p99 ≤ 5 ms).`)
  out.push('')
  return out
}

if (import.meta.filename === process.argv[1]) {
  for (const line of await runInProcess()) process.stdout.write(line + '\n')
}
