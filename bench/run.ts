// npm run bench [-- --scenarios a,b --rounds N --seconds S --baseline REF]
// Measures, in one run on loopback: direct to the backend (the limit), edge-gateway, HAProxy and
// nginx as equivalent one-worker reverse proxies. Rounds are interleaved (A B C D, A B C D...) and
// medians reported, with ratios computed from numbers of the same run. Results: bench/RESULTS.md.
// --baseline REF adds a build of that commit (edge-gateway@<sha>) to the saturation and fixed-rate
// rounds, started the same way, and prints this build's req/s and CPU per request over its.
// --scenarios traffic (or any of chunked, tls, post, tls-new, h2, h2c, h2c-pods) runs the traffic
// shapes of bench/traffic.ts: edge-gateway against HAProxy, req/s and CPU per request.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { execSync } from 'node:child_process'
import net from 'node:net'
import { cpuMs, pinned, rssMb, stop, interruptLive, waitPort, hasTaskset, which } from './lib/procs.ts'
import { wrk } from './lib/wrk.ts'
import { fmt, interleaved as interleavedRounds, med, median } from './lib/rounds.ts'
import type { LoadResult } from './lib/rounds.ts'
import { gatewayManifests, startGatewayProc, startHaproxy, startNginx } from './lib/proxies.ts'
import { NODE_FLAGS } from '../src/runtime-flags.ts'
import type { Running } from './lib/proxies.ts'
import { runInProcess } from './in-process.ts'
import { buildBaseline, CURRENT_BUILD } from './lib/baseline.ts'
import { runTraffic, TRAFFIC_SCENARIOS } from './traffic.ts'
import type { BaselineBuild } from './lib/baseline.ts'
import { args, opt } from './lib/args.ts'

const ROUNDS = Number(opt('rounds', '3'))
const SECONDS = Number(opt('seconds', '10'))
// `traffic` stands for the seven traffic shapes (bench/traffic.ts); they are not in the default list,
// which they would lengthen by about 9 minutes at the default 3 rounds of 10 s.
const KNOWN_SCENARIOS = ['saturation', 'fixed', 'stream', 'split', 'table', 'held', 'workers', 'inprocess', ...TRAFFIC_SCENARIOS]
const SCENARIOS = new Set(
  opt('scenarios', 'saturation,fixed,stream,split,table,held,workers,inprocess')
    .split(',')
    .flatMap((s) => (s === 'traffic' ? [...TRAFFIC_SCENARIOS] : [s])),
)
for (const s of SCENARIOS) {
  if (!KNOWN_SCENARIOS.includes(s)) {
    process.stderr.write(`--scenarios: no scenario named "${s}"; known: ${KNOWN_SCENARIOS.join(', ')}, and traffic for ${TRAFFIC_SCENARIOS.join(', ')}\n`)
    process.exit(2)
  }
}
const TRAFFIC = TRAFFIC_SCENARIOS.filter((s) => SCENARIOS.has(s))
const BASELINE = opt('baseline', '')
if (args.includes('--baseline') && (!BASELINE || BASELINE.startsWith('--'))) {
  process.stderr.write('--baseline needs a git commit, branch or tag to compare with, e.g. --baseline HEAD~1\n')
  process.exit(2)
}
// The scenarios that also run the baseline: the ones "no slower" is judged by.
const AB_SCENARIOS = ['saturation', 'fixed']
const PROXIED = ['saturation', 'fixed', 'stream', 'split']
const CONNS = 50
// Load generator and backend share core 0; each proxy gets core 1 to itself.
const LOAD_CPU = 0
const PROXY_CPU = 1

const report: string[] = []
const log = (s: string): void => {
  process.stdout.write(s + '\n')
  report.push(s)
}

/** The rounds of this run, `--rounds` of them unless a scenario asks for more. */
function interleaved<T extends { name: string }>(targets: T[], run: (t: T) => Promise<LoadResult>, rounds = ROUNDS): Promise<Map<string, LoadResult[]>> {
  return interleavedRounds(targets, run, rounds)
}

interface Target {
  name: string
  port: number
  host?: string
  path?: string
  /** The proxy's process, for its CPU time. */
  pid?: number
}

/** wrk, HAProxy, nginx and h2load come from Debian; try to install what is missing, and say so if that fails. */
function ensureTools(): void {
  // h2load only for the HTTP/2 traffic scenarios.
  const wanted = ['wrk', 'haproxy', 'nginx', ...(TRAFFIC.some((s) => s.startsWith('h2')) ? ['h2load'] : [])]
  const missing = wanted.filter((c) => !which(c))
  if (missing.length === 0) return
  const pkgs = missing.map((c) => ({ nginx: 'nginx-light', h2load: 'nghttp2-client' })[c] ?? c)
  process.stdout.write(`installing ${pkgs.join(', ')} from Debian's packages...\n`)
  try {
    execSync(`apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkgs.join(' ')}`, { stdio: 'ignore' })
  } catch {
    process.stdout.write(`could not install ${pkgs.join(', ')}; the comparisons that need them are skipped\n`)
  }
  for (const [cmd, pkg, why] of [
    ['wrk', 'wrk', 'the benchmark'],
    ['h2load', 'nghttp2-client', `the ${TRAFFIC.filter((s) => s.startsWith('h2')).join(', ')} scenarios`],
  ]) {
    if (wanted.includes(cmd!) && !which(cmd!)) {
      process.stderr.write(`${cmd} is required for ${why} (apt-get install ${pkg})\n`)
      process.exit(1)
    }
  }
}

// However the bench ends (an error, Ctrl-C), stop what it started and delete the baseline build.
let baseline: BaselineBuild | undefined
process.once('exit', () => {
  interruptLive()
  baseline?.remove()
})
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) process.once(signal, () => process.exit(code))

/** This build over the baseline, per round and for the medians; rounds pair up as they ran side by side. */
function abLine(what: string, better: string, current: number[], base: number[], digits: number): string {
  const perRound = current.length === base.length ? current.map((c, i) => fmt(c / base[i]!, 3)).join(', ') : 'n/a (a round went unmeasured)'
  return `${what}, ${CURRENT_BUILD.name} / ${baseline!.name}: ${fmt(median(current) / median(base), 3)} (medians ${fmt(median(current), digits)} vs ${fmt(median(base), digits)}; ${better}); per round: ${perRound}.`
}

async function main(): Promise<void> {
  ensureTools()
  if (BASELINE && AB_SCENARIOS.some((s) => SCENARIOS.has(s))) baseline = buildBaseline(BASELINE)
  else if (BASELINE) process.stdout.write(`--baseline ${BASELINE} ignored: only the ${AB_SCENARIOS.join(' and ')} scenarios run it\n`)
  const backendDirect = 18001
  const backendProxied = 18002
  const nodeV = process.version
  const versions = [`node ${nodeV}`]
  for (const [cmd, re] of [['haproxy -v', /version ([\d.]+)/], ['nginx -v 2>&1', /nginx\/([\d.]+)/], ['wrk -v 2>&1 || true', /wrk (?:debian\/)?([\d.]+)/], ...(TRAFFIC.length ? ([['h2load --version', /nghttp2\/([\d.]+)/]] as const) : [])] as const) {
    try {
      versions.push(`${cmd.split(' ')[0]} ${re.exec(execSync(cmd, { encoding: 'utf8' }))?.[1] ?? '?'}`)
    } catch {
      versions.push(`${cmd.split(' ')[0]} missing`)
    }
  }
  log(`# edge-gateway benchmark results`)
  log('')
  log(`Run: \`npm run bench -- ${args.join(' ')}\` on ${new Date().toISOString().slice(0, 10)}`)
  log(`Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ${os.type()} ${os.release()}`)
  log(`Versions: ${versions.join(', ')}`)
  if (baseline) log(`Baseline: ${baseline.name} (${BASELINE}: ${baseline.sha}, "${baseline.subject}"), built with tsc from git archive and started like ${CURRENT_BUILD.name}, in the ${AB_SCENARIOS.join(' and ')} rounds.`)
  log(`Method: wrk -t1 -c${CONNS} -d${SECONDS}s --latency on loopback, ${ROUNDS} interleaved rounds, medians. ${hasTaskset ? `Load generator and backend pinned to CPU ${LOAD_CPU}, each proxy to CPU ${PROXY_CPU}; direct runs against a backend alone on CPU ${PROXY_CPU}.` : 'taskset missing: nothing pinned.'}`)
  log('')

  const backends = [pinned(PROXY_CPU, process.execPath, [path.join(import.meta.dirname, 'backend.mjs'), String(backendDirect)]), pinned(LOAD_CPU, process.execPath, [path.join(import.meta.dirname, 'backend.mjs'), String(backendProxied)])]
  await waitPort(backendDirect)
  await waitPort(backendProxied)
  // The saturation, fixed, stream and split scenarios share one set of running proxies.
  if (PROXIED.some((s) => SCENARIOS.has(s))) {
    const running: Running[] = []
    const skipped: string[] = []
    let baselineProc: Running | undefined
    let loggedRun: Running | undefined
    try {
      const manifests = gatewayManifests(backendProxied)
      const gw = await startGatewayProc(18100, 18190, manifests, PROXY_CPU)
      running.push(gw)
      if (baseline) baselineProc = await startGatewayProc(18150, 18195, manifests, PROXY_CPU, 1, [], baseline)
      // The same build with its access log on (issue 20: within 15% of req/s); its lines go to
      // stdout, which the bench discards (/dev/null), so this is the cost of making and writing them.
      const logged = SCENARIOS.has('saturation') ? await startGatewayProc(18160, 18196, manifests, PROXY_CPU, 1, ['--access-log']) : undefined
      loggedRun = logged ? { ...logged, name: `${gw.name} +access-log` } : undefined
      const ha = await startHaproxy(18200, backendProxied, PROXY_CPU)
      if (typeof ha === 'string') skipped.push(ha)
      else running.push(ha)
      const ng = await startNginx(18300, backendProxied, PROXY_CPU)
      if (typeof ng === 'string') skipped.push(ng)
      else running.push(ng)
      for (const s of skipped) log(`Skipped: ${s}`)

      const target = (r: Running): Target => ({ name: r.name, port: r.port, host: r.name.startsWith('edge') ? 'bench.example.com' : undefined, pid: r.child.pid })
      const targets: Target[] = [{ name: 'direct', port: backendDirect }, ...running.map(target)]
      // With --baseline, the saturation and fixed rounds run it right after this build.
      const abTargets = baselineProc ? targets.flatMap((t) => (t.name === gw.name ? [t, target(baselineProc!)] : [t])) : targets
      // Warm-up: JIT, pools.
      for (const t of loggedRun ? [...abTargets, target(loggedRun)] : abTargets) await wrk({ url: `http://127.0.0.1:${t.port}/`, host: t.host, connections: CONNS, seconds: 2, cpu: LOAD_CPU })

      if (SCENARIOS.has('saturation')) {
        log('## Small responses at saturation')
        log('')
        const satTargets = loggedRun ? [...abTargets, target(loggedRun!)] : abTargets
        const res = await interleaved(satTargets, (t) => wrk({ url: `http://127.0.0.1:${t.port}/`, host: t.host, connections: CONNS, seconds: SECONDS, cpu: LOAD_CPU }))
        const ha = res.get('haproxy')
        log('| path | req/s | p50 ms | p99 ms | vs direct | vs HAProxy |')
        log('|---|---|---|---|---|---|')
        const direct = med(res.get('direct')!, 'rps')
        for (const [name, rs] of res) {
          const rps = med(rs, 'rps')
          log(`| ${name} | ${fmt(rps)} | ${fmt(med(rs, 'p50'), 2)} | ${fmt(med(rs, 'p99'), 2)} | ${fmt(rps / direct, 2)} | ${ha ? fmt(rps / med(ha, 'rps'), 2) : 'n/a'} |`)
        }
        if (baseline) log(`\n${abLine('req/s at saturation', 'above 1: this build is faster', res.get(CURRENT_BUILD.name)!.map((r) => r.rps), res.get(baseline.name)!.map((r) => r.rps), 0)}`)
        const on = res.get(`${gw.name} +access-log`)
        const off = res.get(gw.name)
        if (on && off) {
          const rounds = on.map((r, i) => fmt(r.rps / off[i]!.rps, 3)).join(', ')
          log(`\nreq/s with the access log on / off: ${fmt(med(on, 'rps') / med(off, 'rps'), 3)} (target ≥ 0.85; per round: ${rounds}).`)
        }
        log('')
      }

      if (SCENARIOS.has('fixed')) {
        // Each connection waits 10 ms on average between a response and its next request: ~5,000
        // req/s, well within every proxy's reach. The wait is random (0–20 ms): with a constant one,
        // the 50 connections stay in step and 50 requests arrive at once every 10 ms; then the p99
        // measures how long a proxy takes to work through a burst, and direct's own p99 moved by
        // 1.5 ms between rounds (0.69–2.15 ms on 2026-12-06), more than HAProxy's whole added p99.
        const delayMs = 10
        // Three floors beside the proxies (bench/floor-proxy.mjs): a bare node:http proxy with undici,
        // the same with no real upstream client at all, and a bare `net` server (no node:http) with
        // that client. They show how much of the gateway's latency is Node's own, and how much of it
        // is node:http's server side.
        const floors = [
          { name: 'floor: node:http + undici Pool', port: 18810, kind: 'undici' },
          { name: 'floor: node:http + bare socket', port: 18820, kind: 'socket' },
          { name: 'floor: net server + bare socket', port: 18830, kind: 'net' },
        ]
        const floorProcs = floors.map((f) => pinned(PROXY_CPU, process.execPath, [...NODE_FLAGS, path.join(import.meta.dirname, 'floor-proxy.mjs'), String(f.port), String(backendProxied), f.kind]))
        for (const f of floors) await waitPort(f.port)
        const fixedTargets: Target[] = [...abTargets, ...floors.map((f, i) => ({ name: f.name, port: f.port, pid: floorProcs[i]!.pid }))]
        for (const f of floors) await wrk({ url: `http://127.0.0.1:${f.port}/`, connections: CONNS, seconds: 2, cpu: LOAD_CPU })
        log(`## Latency added at a fixed rate (~${Math.round((CONNS * 1000) / delayMs)} req/s, connections paced by a random wait of 0–${2 * delayMs} ms, ${Math.max(ROUNDS, 5)} rounds)`)
        log('')
        // Tail latency is the noisiest number here: at least five rounds for its medians.
        let res: Map<string, LoadResult[]>
        // Each proxy's CPU time per request at this rate (µs, from /proc): at a fixed rate a request
        // waits behind the ones the proxy is still working on, so its tail follows this number.
        const cpuPerRequest = new Map<string, number[]>()
        try {
          res = await interleaved(
            fixedTargets,
            async (t) => {
              const before = cpuMs(t.pid)
              const r = await wrk({ url: `http://127.0.0.1:${t.port}/`, host: t.host, connections: CONNS, seconds: SECONDS, cpu: LOAD_CPU, delayMs })
              const after = cpuMs(t.pid)
              if (before !== undefined && after !== undefined && r.rps > 0) (cpuPerRequest.get(t.name) ?? cpuPerRequest.set(t.name, []).get(t.name)!).push(((after - before) * 1000) / (r.rps * SECONDS))
              return r
            },
            Math.max(ROUNDS, 5),
          )
        } finally {
          for (const p of floorProcs) await stop(p)
        }
        const d = res.get('direct')!
        log('| path | req/s | p50 ms | p99 ms | p99.9 ms | p50 added | p99 added | p99.9 added | proxy CPU µs/request |')
        log('|---|---|---|---|---|---|---|---|---|')
        const added: Record<string, number> = {}
        for (const [name, rs] of res) {
          added[name] = med(rs, 'p99') - med(d, 'p99')
          const cpu = cpuPerRequest.get(name)
          log(`| ${name} | ${fmt(med(rs, 'rps'))} | ${fmt(med(rs, 'p50'), 3)} | ${fmt(med(rs, 'p99'), 3)} | ${fmt(med(rs, 'p999'), 3)} | ${fmt(med(rs, 'p50') - med(d, 'p50'), 3)} | ${fmt(added[name]!, 3)} | ${fmt(med(rs, 'p999') - med(d, 'p999'), 3)} | ${cpu ? fmt(median(cpu), 1) : 'n/a'} |`)
        }
        const ha = res.get('haproxy')
        const gw = res.get('edge-gateway')!
        if (ha && added.haproxy !== undefined) {
          // Per round as well: direct's own p99 moves by a few tenths of a millisecond between runs
          // on a VM, which is the size of HAProxy's whole added p99.
          const perRound = gw.map((g, i) => `${fmt(g.p99 - d[i]!.p99, 2)} / ${fmt(ha[i]!.p99 - d[i]!.p99, 2)}`)
          log(`\nAdded p99 per round, edge-gateway / HAProxy (ms): ${perRound.join(', ')}; direct's p99 ranged ${fmt(Math.min(...d.map((x) => x.p99)), 2)}–${fmt(Math.max(...d.map((x) => x.p99)), 2)} ms.`)
          if (added.haproxy < 0.1) {
            log(`HAProxy's added p99 (${fmt(added.haproxy, 3)} ms) is within the run-to-run noise of direct's p99 in this run, so the ratio means nothing here; the p99 column compares the proxies directly (edge-gateway ${fmt(med(gw, 'p99'), 2)} ms, HAProxy ${fmt(med(ha, 'p99'), 2)} ms). Target: edge-gateway's added p99 ≤ 1.5× HAProxy's.`)
          } else log(`edge-gateway's added p99 is ${fmt(added['edge-gateway']! / added.haproxy, 2)}× HAProxy's (target ≤ 1.5×).`)
        }
        const gwCpu = cpuPerRequest.get('edge-gateway')
        const haCpu = cpuPerRequest.get('haproxy')
        if (gwCpu && haCpu) log(`CPU per request at this rate: edge-gateway ${fmt(median(gwCpu), 1)} µs, HAProxy ${fmt(median(haCpu), 1)} µs (${fmt(median(gwCpu) / median(haCpu), 2)}×); per round, edge-gateway: ${gwCpu.map((c) => fmt(c, 1)).join(', ')}.`)
        const baseCpu = baseline && cpuPerRequest.get(baseline.name)
        if (baseCpu && gwCpu) log(abLine('CPU µs per request at this rate', 'below 1: this build uses less', gwCpu, baseCpu, 1))
        log('')
      }

      if (SCENARIOS.has('stream')) {
        log('## 1 MiB streamed responses (throughput, 10 connections)')
        log('')
        const res = await interleaved(targets, (t) => wrk({ url: `http://127.0.0.1:${t.port}/1m`, host: t.host, connections: 10, seconds: SECONDS, cpu: LOAD_CPU }))
        log('| path | responses/s | MB/s | p99 ms |')
        log('|---|---|---|---|')
        for (const [name, rs] of res) log(`| ${name} | ${fmt(med(rs, 'rps'))} | ${fmt(med(rs, 'mbps'))} | ${fmt(med(rs, 'p99'), 2)} |`)
        log('')
      }

      if (SCENARIOS.has('split')) {
        log('## A 90/10 Route split with a tag, against a single-target host (edge-gateway)')
        log('')
        const gwT = targets.find((t) => t.name === 'edge-gateway')!
        const res = await interleaved(
          [
            { ...gwT, name: 'single target' },
            { ...gwT, name: '90/10 split', host: 'split.example.com' },
            { ...gwT, name: 'tag by header', host: 'split.example.com', path: '/' },
          ],
          (t) => wrk({ url: `http://127.0.0.1:${t.port}/`, host: t.host, headers: t.name === 'tag by header' ? { 'Knative-Serving-Tag': 'candidate' } : undefined, connections: CONNS, seconds: SECONDS, cpu: LOAD_CPU }),
        )
        log('| route | req/s | p99 ms |')
        log('|---|---|---|')
        for (const [name, rs] of res) log(`| ${name} | ${fmt(med(rs, 'rps'))} | ${fmt(med(rs, 'p99'), 2)} |`)
        log('')
      }
    } finally {
      for (const r of running) await r.stop()
      await baselineProc?.stop()
      await loggedRun?.stop()
    }
  }

  let trafficFailed: string[] = []
  if (TRAFFIC.length > 0) {
    const r = await runTraffic({ scenarios: TRAFFIC, rounds: ROUNDS, seconds: SECONDS, connections: CONNS, loadCpu: LOAD_CPU, proxyCpu: PROXY_CPU, backendDirect, backendProxied, log })
    trafficFailed = r.failed
  }

  if (SCENARIOS.has('table')) {
    // Rounds at saturation move by ±4% here (the same 10-KIngress gateway: 39.0k–42.0k req/s in one
    // run), as much as the target's margin: at least five rounds for the medians, and the ratio of
    // each round's pair printed beside them.
    const tableRounds = Math.max(ROUNDS, 5)
    log(`## Lookups with 10,000 KIngress loaded vs 10 (edge-gateway, one process, ${tableRounds} rounds)`)
    log('')
    const small = await startGatewayProc(18500, 18590, gatewayManifests(backendProxied, 10), PROXY_CPU)
    const big = await startGatewayProc(18600, 18690, gatewayManifests(backendProxied, 10_000), PROXY_CPU)
    try {
      for (const g of [small, big]) await wrk({ url: `http://127.0.0.1:${g.port}/`, host: 'bench.example.com', connections: CONNS, seconds: 2, cpu: LOAD_CPU })
      const res = await interleaved(
        [
          { name: '10 KIngress', port: small.port, host: 'bench.example.com' },
          { name: '10,000 KIngress', port: big.port, host: 'bench.example.com' },
        ],
        (t) => wrk({ url: `http://127.0.0.1:${t.port}/`, host: t.host, connections: CONNS, seconds: SECONDS, cpu: LOAD_CPU }),
        tableRounds,
      )
      const a = med(res.get('10 KIngress')!, 'rps')
      const b = med(res.get('10,000 KIngress')!, 'rps')
      const perRound = res.get('10,000 KIngress')!.map((r, i) => fmt(r.rps / res.get('10 KIngress')![i]!.rps, 3))
      log('| table | req/s | p99 ms | RSS MB |')
      log('|---|---|---|---|')
      log(`| 10 KIngress | ${fmt(a)} | ${fmt(med(res.get('10 KIngress')!, 'p99'), 2)} | ${fmt(rssMb(small.child.pid) ?? NaN)} |`)
      log(`| 10,000 KIngress | ${fmt(b)} | ${fmt(med(res.get('10,000 KIngress')!, 'p99'), 2)} | ${fmt(rssMb(big.child.pid) ?? NaN)} |`)
      log(`\nratio 10,000 / 10: ${fmt(b / a, 3)} (target ≥ 0.95); per round: ${perRound.join(', ')}. RSS with 10,000 KIngress after load (target ≤ 300 MB).`)
      log('')
    } finally {
      await small.stop()
      await big.stop()
    }
  }

  if (SCENARIOS.has('held')) {
    log('## 10,000 requests held during a cold start (RSS growth)')
    log('')
    const dir = gatewayManifests(backendProxied)
    fs.appendFileSync(
      path.join(dir, 'bench.yaml'),
      `---\napiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata: {name: cold-00001, namespace: default}\n---\napiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: {name: cold, namespace: default}\nstatus:\n  url: http://cold.example.com\n  traffic: [{revisionName: cold-00001, percent: 100}]\n`,
    )
    const g = await startGatewayProc(18700, 18790, dir, PROXY_CPU, 1, ['--max-queued-per-revision', '20000'])
    const gwHeld = async (): Promise<number> => {
      const m = await fetch(`http://127.0.0.1:18790/metrics`).then((r) => r.text())
      return Number(/edge_revision_requests_queued\{namespace="default",revision="cold-00001"\} (\d+)/.exec(m)?.[1] ?? 0)
    }
    let gwRow = ''
    try {
      await wrk({ url: `http://127.0.0.1:${g.port}/`, host: 'bench.example.com', connections: CONNS, seconds: 2, cpu: LOAD_CPU })
      const r = await holdRequests(g.port, g.child.pid, gwHeld)
      gwRow = `| edge-gateway (queued for a revision at zero) | ${r.held} | ${fmt(r.before)} | ${fmt(r.after)} | ${fmt(r.after - r.before)} |`
    } finally {
      await g.stop()
    }
    // The same load against a bare node:http server that holds every request: Node's own cost.
    const floorPort = 18800
    const floor = pinned(PROXY_CPU, process.execPath, [...NODE_FLAGS, path.join(import.meta.dirname, 'held-floor.mjs'), String(floorPort)])
    let floorRow = ''
    try {
      await waitPort(floorPort)
      await wrk({ url: `http://127.0.0.1:${floorPort}/count`, connections: CONNS, seconds: 2, cpu: LOAD_CPU })
      const r = await holdRequests(floorPort, floor.pid, async () => Number(await fetch(`http://127.0.0.1:${floorPort}/count`).then((x) => x.text())))
      floorRow = `| bare node:http, holding each request (the floor) | ${r.held} | ${fmt(r.before)} | ${fmt(r.after)} | ${fmt(r.after - r.before)} |`
    } finally {
      await stop(floor)
    }
    log('| process | held | RSS before MB | RSS holding MB | growth MB |')
    log('|---|---|---|---|---|')
    log(gwRow)
    log(floorRow)
    log('')
    log('Target for the gateway: growth ≤ 100 MB. Each held request is its own HTTP/1.1 connection, so the floor is what Node itself spends per connection and request.')
    log('')
  }

  if (SCENARIOS.has('workers')) {
    log(`## Workers: 1 vs ${os.availableParallelism()} (unpinned, all cores shared with the load generator)`)
    log('')
    const rows: string[] = []
    for (const n of [1, os.availableParallelism()]) {
      const g = await startGatewayProc(18400 + n * 10, 18490 + n, gatewayManifests(backendProxied), undefined, n)
      try {
        await wrk({ url: `http://127.0.0.1:${g.port}/`, host: 'bench.example.com', connections: CONNS, seconds: 2 })
        const rs: LoadResult[] = []
        for (let r = 0; r < ROUNDS; r++) rs.push(await wrk({ url: `http://127.0.0.1:${g.port}/`, host: 'bench.example.com', connections: CONNS, seconds: SECONDS }))
        rows.push(`| ${n} | ${fmt(med(rs, 'rps'))} | ${fmt(med(rs, 'p99'), 2)} |`)
      } finally {
        await g.stop()
      }
    }
    log('| workers | req/s | p99 ms |')
    log('|---|---|---|')
    for (const r of rows) log(r)
    log('')
  }
  for (const b of backends) await stop(b)

  if (SCENARIOS.has('inprocess')) for (const line of await runInProcess()) log(line)

  const out = path.join(import.meta.dirname, 'RESULTS.md')
  fs.writeFileSync(out, report.join('\n') + '\n')
  process.stdout.write(`\nwritten to ${out}\n`)
  if (trafficFailed.length > 0) {
    process.stderr.write(`\nFAILED: ${trafficFailed.join(', ')} (a target answered with errors; see above)\n`)
    process.exitCode = 1
  }
}

/** Opens 10,000 connections, each sending one request that will be held; RSS before and once all are held. */
async function holdRequests(port: number, pid: number | undefined, heldNow: () => Promise<number>): Promise<{ held: number; before: number; after: number }> {
  const sockets: net.Socket[] = []
  try {
    await new Promise((r) => setTimeout(r, 500))
    const before = rssMb(pid) ?? NaN
    for (let i = 0; i < 10_000; i++) {
      const s = net.connect(port, '127.0.0.1')
      s.on('error', () => {})
      s.write(`GET /held/${i} HTTP/1.1\r\nHost: cold.example.com\r\n\r\n`)
      sockets.push(s)
      if (i % 500 === 499) await new Promise((r) => setTimeout(r, 20))
    }
    let held = 0
    for (let k = 0; k < 200 && held < 10_000; k++) {
      await new Promise((r) => setTimeout(r, 100))
      held = await heldNow()
    }
    return { held, before, after: rssMb(pid) ?? NaN }
  } finally {
    for (const s of sockets) s.destroy()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`)
  process.exit(1)
})
