// What tracing costs at saturation: the same build (this checkout's dist/) with tracing off, on at
// a 1% sampling rate, and on at 100%, side by side in interleaved rounds (wrk -t1 -c50, the
// bench's saturation load to bench.example.com). Each gateway is pinned to the proxy core, wrk and
// the backend to the other; the collector is a bare node:http server that accepts every export.
// Besides req/s it reports the gateway's CPU time per request (utime + stime over the round). Both
// move a lot on a shared machine, so it first measures the steadier number: what a request's trace
// work itself costs (begin, dispatch, end, in a loop in this process), unsampled and sampled.
//
//   npm run build && node bench/tracing-ab.ts [--rounds 5] [--seconds 10]
//
// The numbers go to docs/hot-path.md by hand; on a shared machine, read them as ratios within one
// run, and run it more than once.
import http from 'node:http'
import path from 'node:path'
import { pino } from 'pino'
import type { ClientRequest } from '../src/dataplane/client.ts'
import { newRecord } from '../src/dataplane/request-record.ts'
import { Tracing } from '../src/observe/tracing.ts'
import { gatewayManifests, startGatewayProc } from './lib/proxies.ts'
import type { Running } from './lib/proxies.ts'
import { cpuMs, interruptLive, pinned, stop, waitPort, which } from './lib/procs.ts'
import { wrk } from './lib/wrk.ts'
import { median } from './lib/rounds.ts'
import type { LoadResult as WrkResult } from './lib/rounds.ts'

function opt(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1]! : def
}

const ROUNDS = Number(opt('rounds', '5'))
const SECONDS = Number(opt('seconds', '10'))
const LOAD_CPU = 0
const PROXY_CPU = 1
const CONNS = 50
const BACKEND = 18302

if (!which('wrk')) {
  process.stderr.write('wrk is required (apt-get install wrk)\n')
  process.exit(1)
}
process.on('exit', interruptLive)

/** µs a request of the trace work alone (the record included, as in the gateway), median of 3 loops. */
function traceWorkUs(rate: number, traceparent: string | undefined): number {
  // No export during the loop (the batch delay outlasts it): once the buffer is full, sampled spans are
  // made, ended and dropped, so this prices making spans, not encoding and sending them.
  const tracing = new Tracing({ endpoint: 'http://127.0.0.1:9', samplingRate: rate, serviceName: 'bench', instance: 'bench', log: pino({ level: 'silent' }), onDrop: () => {}, tuning: { scheduledDelayMs: 600_000 } })
  const headers: Record<string, string> = { host: 'bench.example.com', 'user-agent': 'wrk', accept: '*/*' }
  if (traceparent) headers.traceparent = traceparent
  const req = { method: 'GET', url: '/', headers, rawHeaders: [], httpVersion: '1.1', httpVersionMajor: 1, httpVersionMinor: 1, socket: { remoteAddress: '127.0.0.1' }, readableDidRead: false } satisfies ClientRequest
  const loop = (n: number): number => {
    const t0 = performance.now()
    for (let i = 0; i < n; i++) {
      const r = newRecord(req, 'public', false)
      const t = tracing.begin(req, r.startedAt, false)
      r.trace = t
      t.dispatch('127.0.0.1', 8080)
      r.status = 200
      t.end(r)
    }
    return ((performance.now() - t0) * 1000) / n
  }
  const n = rate === 1 ? 50_000 : 300_000
  loop(n)
  return median([loop(n), loop(n), loop(n)])
}

const baselineUs = (() => {
  const req = { method: 'GET', url: '/', headers: { host: 'bench.example.com' }, rawHeaders: [], httpVersion: '1.1', httpVersionMajor: 1, httpVersionMinor: 1, socket: null, readableDidRead: false } satisfies ClientRequest
  const loop = (n: number): number => {
    const t0 = performance.now()
    for (let i = 0; i < n; i++) newRecord(req, 'public', false).status = 200
    return ((performance.now() - t0) * 1000) / n
  }
  loop(300_000)
  return median([loop(300_000), loop(300_000), loop(300_000)])
})()
process.stdout.write(`trace work per request, in process (a record alone: ${baselineUs.toFixed(2)} µs):\n`)
for (const [name, rate, tp] of [
  ['unsampled, no traceparent', 0, undefined],
  ["unsampled, caller's flag 00", 1, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00'],
  ['sampled (spans made, not sent)', 1, undefined],
] as const) {
  process.stdout.write(`  ${name.padEnd(32)} ${traceWorkUs(rate, tp).toFixed(2)} µs\n`)
}
process.stdout.write('\n')

// The collector: counts the exports it is sent and answers each with an empty success.
let exports = 0
const collector = http.createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    exports++
    res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
  })
})
await new Promise<void>((r) => collector.listen(0, '127.0.0.1', () => r()))
const endpoint = `http://127.0.0.1:${(collector.address() as { port: number }).port}`

const backend = pinned(LOAD_CPU, process.execPath, [path.join(import.meta.dirname, 'backend.mjs'), String(BACKEND)])
await waitPort(BACKEND)
const manifests = gatewayManifests(BACKEND)
const variants: Array<{ name: string; args: string[]; port: number }> = [
  { name: 'tracing off', args: [], port: 18310 },
  { name: 'tracing on, 1%', args: ['--tracing-endpoint', endpoint, '--tracing-sampling-rate', '0.01'], port: 18320 },
  { name: 'tracing on, 100%', args: ['--tracing-endpoint', endpoint, '--tracing-sampling-rate', '1'], port: 18330 },
]
const running: Running[] = []
for (const v of variants) running.push(await startGatewayProc(v.port, v.port + 5, manifests, PROXY_CPU, 1, v.args))

const results = new Map<string, WrkResult[]>(variants.map((v) => [v.name, []]))
const cpuPerRequest = new Map<string, number[]>(variants.map((v) => [v.name, []]))
try {
  for (const v of variants) await wrk({ url: `http://127.0.0.1:${v.port}/`, host: 'bench.example.com', connections: CONNS, seconds: 2, cpu: LOAD_CPU })
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, v] of variants.entries()) {
      const pid = running[i]!.child.pid
      const before = cpuMs(pid) ?? NaN
      const res = await wrk({ url: `http://127.0.0.1:${v.port}/`, host: 'bench.example.com', connections: CONNS, seconds: SECONDS, cpu: LOAD_CPU })
      const us = (((cpuMs(pid) ?? NaN) - before) * 1000) / (res.rps * SECONDS)
      results.get(v.name)!.push(res)
      cpuPerRequest.get(v.name)!.push(us)
      process.stdout.write(`round ${r + 1} ${v.name}: ${Math.round(res.rps)} req/s p50 ${res.p50.toFixed(2)} ms p99 ${res.p99.toFixed(2)} ms, ${us.toFixed(1)} µs CPU a request${res.errors ? ` errors ${res.errors}` : ''}\n`)
    }
  }
} finally {
  for (const g of running) await g.stop()
  await stop(backend)
  collector.close()
}

const off = median(results.get('tracing off')!.map((r) => r.rps))
const offCpu = median(cpuPerRequest.get('tracing off')!)
process.stdout.write(`\nmedians of ${ROUNDS} rounds of ${SECONDS} s (${exports} exports received):\n`)
for (const v of variants) {
  const rs = results.get(v.name)!
  const rps = median(rs.map((r) => r.rps))
  const cpu = median(cpuPerRequest.get(v.name)!)
  process.stdout.write(`  ${v.name.padEnd(18)} ${Math.round(rps)} req/s (${((rps / off) * 100).toFixed(1)}% of off)  ${cpu.toFixed(1)} µs CPU a request (${((cpu / offCpu) * 100).toFixed(1)}% of off)  p50 ${median(rs.map((r) => r.p50)).toFixed(2)} ms  p99 ${median(rs.map((r) => r.p99)).toFixed(2)} ms\n`)
}
