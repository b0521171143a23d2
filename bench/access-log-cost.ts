// node bench/access-log-cost.ts [--rounds N --seconds S]      (after npm run build; not part of CI)
// Issue 20's access-log cost, measured the way the traffic rows are (bench/traffic.ts): the gateway
// with --access-log and without, each alone on the proxies' core at saturation, interleaved rounds,
// req/s and CPU per request from /proc. CPU per request is the figure that holds on a noisy machine:
// the req/s of a round moves with whatever else the VM runs, the CPU a request costs much less.
import path from 'node:path'
import { cpuMs, pinned, stop, waitPort } from './lib/procs.ts'
import { fmt, interleaved, med, median } from './lib/rounds.ts'
import type { LoadResult } from './lib/rounds.ts'
import { wrk } from './lib/wrk.ts'
import { gatewayManifests, startGatewayProc } from './lib/proxies.ts'
import { opt } from './lib/args.ts'

const ROUNDS = Number(opt('rounds', '5'))
const SECONDS = Number(opt('seconds', '8'))
const LOAD_CPU = 0
const PROXY_CPU = 1
const BACKEND_PORT = 18401

const backend = pinned(LOAD_CPU, process.execPath, [path.join(import.meta.dirname, 'backend.mjs'), String(BACKEND_PORT)])
try {
  await waitPort(BACKEND_PORT)
  const manifests = gatewayManifests(BACKEND_PORT)
  // Access-log lines go to the child's stdout, which the bench discards (as a log shipper would read it).
  const off = await startGatewayProc(18410, 18490, manifests, PROXY_CPU, 1)
  const on = await startGatewayProc(18420, 18491, manifests, PROXY_CPU, 1, ['--access-log'])
  const targets = [
    { name: 'access log off', port: 18410, pid: off.child.pid },
    { name: 'access log on', port: 18420, pid: on.child.pid },
  ]
  const run = async (t: (typeof targets)[number], seconds: number): Promise<LoadResult> => {
    const before = cpuMs(t.pid)
    const started = performance.now()
    const r = await wrk({ url: `http://127.0.0.1:${t.port}/`, host: 'bench.example.com', connections: 50, seconds, cpu: LOAD_CPU })
    const after = cpuMs(t.pid)
    if (r.errors > 0) throw new Error(`${t.name}: ${r.errors} failed requests`)
    if (before !== undefined && after !== undefined) {
      r.cpuUs = ((after - before) * 1000) / r.requests
      r.busy = (after - before) / (performance.now() - started)
    }
    return r
  }
  for (const t of targets) await run(t, 2) // warm-up
  const res = await interleaved(targets, (t) => run(t, SECONDS), ROUNDS)
  const offR = res.get('access log off')!
  const onR = res.get('access log on')!
  console.log(`## The access log's cost (issue 20): ${ROUNDS} interleaved rounds of ${SECONDS} s, wrk -t1 -c50, one gateway process pinned`)
  console.log('')
  console.log('| gateway | req/s | p99 ms | CPU µs/request |')
  console.log('|---|---|---|---|')
  for (const [who, rs] of res) console.log(`| ${who} | ${fmt(med(rs, 'rps'))} | ${fmt(med(rs, 'p99'), 2)} | ${fmt(med(rs, 'cpuUs'), 1)} |`)
  const rps = onR.map((r, i) => r.rps / offR[i]!.rps)
  const cpu = onR.map((r, i) => (offR[i]!.cpuUs ?? NaN) / (r.cpuUs ?? NaN))
  console.log('')
  console.log(`req/s on / off: median ${fmt(median(rps), 3)} (rounds ${rps.map((x) => fmt(x, 3)).join(', ')})`)
  console.log(`requests per CPU second on / off (1 / CPU per request): median ${fmt(median(cpu), 3)} (rounds ${cpu.map((x) => fmt(x, 3)).join(', ')}); target ≥ 0.85`)
  await off.stop()
  await on.stop()
} finally {
  await stop(backend)
}
