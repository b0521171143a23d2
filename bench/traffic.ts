// The traffic shapes beside plain HTTP/1.1 (issue 19): chunked answers, TLS, request bodies, a new
// TLS connection per request, HTTP/2 over TLS, h2c, and h2c to the pods. Each runs edge-gateway
// against HAProxy (one thread) in the same interleaved rounds, at saturation, with each proxy's
// CPU per request read from /proc over every round, so that a ratio of req/s is never read
// without the CPU it cost.
import path from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { cpuMs, pinned, stop, waitPort } from './lib/procs.ts'
import { fmt, interleaved, med, median } from './lib/rounds.ts'
import type { LoadResult } from './lib/rounds.ts'
import { wrk } from './lib/wrk.ts'
import { h2load } from './lib/h2load.ts'
import { probe } from './lib/probe.ts'
import type { ProbeProtocol } from './lib/probe.ts'
import { makeBenchCert } from './lib/tls-cert.ts'
import { gatewayManifests, ingress, startGatewayProc, startHaproxy } from './lib/proxies.ts'
import type { Running } from './lib/proxies.ts'

export const TRAFFIC_SCENARIOS = ['chunked', 'tls', 'post', 'tls-new', 'h2', 'h2c', 'h2c-pods'] as const
export type TrafficScenario = (typeof TRAFFIC_SCENARIOS)[number]

export interface TrafficContext {
  scenarios: TrafficScenario[]
  rounds: number
  seconds: number
  connections: number
  loadCpu: number
  proxyCpu: number
  /** The HTTP/1.1 backend alone on the proxies' core, for the direct rows. */
  backendDirect: number
  /** The HTTP/1.1 backend the proxies forward to, on the load generator's core. */
  backendProxied: number
  log(line: string): void
}

const HOST = 'bench.example.com'
const H2C_HOST = 'h2c.example.com'
const BODY = 'hello world\n'
const POST_BYTES = 4096
const H2_CLIENTS = 50
const H2_STREAMS = 10
const PORTS = {
  h2cDirect: 18005,
  h2cProxied: 18004,
  gateway: 18900,
  /** startGatewayProc puts the TLS listener two ports above the plain one. */
  gatewayTls: 18902,
  gatewayAdmin: 18990,
  haproxy: 18910,
  haproxyTls: 18911,
  haproxyH2c: 18912,
  haproxyH2cPods: 18913,
  floorAnswer: 18920,
  floorAnswerTls: 18921,
  floorProxy: 18922,
  floorProxyH1: 18923,
  floorProxyH1Tls: 18924,
}

interface Target {
  name: string
  port: number
  authority: string
  pid: number | undefined
}

interface Scenario {
  title: string
  /** How the load is generated, for the heading. */
  how: string
  probe: { protocol: ProbeProtocol; path?: string; method?: string; body?: Buffer }
  /** What h2load must report having negotiated, when h2load runs it. */
  h2loadProtocol?: string
  targets: Target[]
  load(t: Target, seconds: number): Promise<LoadResult & { protocol?: string }>
}

/** A target that answered with errors, or a probe that got the wrong answer: the scenario stops. */
class ScenarioFailure extends Error {}

export async function runTraffic(ctx: TrafficContext): Promise<{ failed: string[] }> {
  const { log } = ctx
  const cert = await makeBenchCert([HOST, H2C_HOST])
  // The proxies issue no session tickets (see tls-cert.ts): each new TLS connection is a full handshake.
  const tlsEnv = { OPENSSL_CONF: cert.noTicketsConf }
  const h2cBackends = [pinned(ctx.proxyCpu, process.execPath, [path.join(import.meta.dirname, 'backend-h2c.mjs'), String(PORTS.h2cDirect)]), pinned(ctx.loadCpu, process.execPath, [path.join(import.meta.dirname, 'backend-h2c.mjs'), String(PORTS.h2cProxied)])]
  // The HTTP/2 rows' floors (floor-h2.mjs), on the proxies' core.
  const floor = (kind: string, port: number, upstream = PORTS.h2cProxied): ChildProcess => pinned(ctx.proxyCpu, process.execPath, [path.join(import.meta.dirname, 'floor-h2.mjs'), String(port), kind, String(upstream), cert.pemFile])
  const floors = {
    answer: floor('answer', PORTS.floorAnswer),
    answerTls: floor('answer-tls', PORTS.floorAnswerTls),
    proxy: floor('proxy', PORTS.floorProxy),
    proxyH1: floor('proxy-h1', PORTS.floorProxyH1, ctx.backendProxied),
    proxyH1Tls: floor('proxy-h1-tls', PORTS.floorProxyH1Tls, ctx.backendProxied),
  }
  const running: Running[] = []
  const failed: string[] = []
  const summary: string[] = []
  try {
    for (const p of [PORTS.h2cDirect, PORTS.h2cProxied, PORTS.floorAnswer, PORTS.floorAnswerTls, PORTS.floorProxy, PORTS.floorProxyH1, PORTS.floorProxyH1Tls]) await waitPort(p)
    const manifests = gatewayManifests(ctx.backendProxied, 0, [cert.secret, ...h2cService(PORTS.h2cProxied)])
    const gw = await startGatewayProc(PORTS.gateway, PORTS.gatewayAdmin, manifests, ctx.proxyCpu, 1, ['--default-tls-secret', cert.secretRef], undefined, tlsEnv)
    running.push(gw)
    const ha = await startHaproxy(PORTS.haproxy, ctx.backendProxied, ctx.proxyCpu, { sections: haproxySections(cert.pemFile), ports: [PORTS.haproxyTls, PORTS.haproxyH2c, PORTS.haproxyH2cPods], env: tlsEnv })
    if (typeof ha === 'string') {
      log(`Skipped the traffic scenarios: ${ha}`)
      return { failed: [...ctx.scenarios] }
    }
    running.push(ha)
    log(`## Traffic shapes: edge-gateway against HAProxy at saturation (${ctx.rounds} interleaved rounds)`)
    log('')
    log(`Both proxies serve one self-signed ECDSA P-256 certificate and issue no TLS session tickets (OPENSSL_CONF with NumTickets = 0), so every new TLS connection is a full handshake. HAProxy: nbthread 1, \`alpn h2,http/1.1\` on its TLS bind, \`proto h2\` on its h2c binds and to the h2c backend. CPU µs/request is each process's utime+stime from /proc over a round, divided by the requests its load generator completed; core busy is that CPU time over the round's wall time (100% = the proxy's whole core). h2load reports no latency percentiles: its rows give the mean.`)
    log('')
    const scenarios = defineScenarios(ctx, gw.child, ha.child, floors)
    for (const name of ctx.scenarios) {
      const s = scenarios[name]
      log(`### ${name}: ${s.title}`)
      log('')
      log(s.how)
      log('')
      try {
        const r = await runScenario(ctx, name, s)
        summary.push(`| ${name} | ${fmt(r.rpsRatio, 2)} | ${fmt(r.cpuRatio, 2)} |`)
      } catch (err) {
        if (!(err instanceof ScenarioFailure)) throw err
        failed.push(name)
        summary.push(`| ${name} | FAILED | FAILED |`)
        log(`**${name} FAILED: ${err.message}**`)
        process.stderr.write(`\n${name} FAILED: ${err.message}\n\n`)
      }
      log('')
    }
    log('### Summary: edge-gateway / HAProxy (median of the per-round ratios; below 1 means fewer req/s, above 1 more CPU per request)')
    log('')
    log('| traffic | gateway/HAProxy req/s | gateway/HAProxy CPU per request |')
    log('|---|---|---|')
    for (const row of summary) log(row)
    log('')
    return { failed }
  } finally {
    for (const r of running) await r.stop()
    for (const b of h2cBackends) await stop(b)
    for (const f of Object.values(floors)) await stop(f)
  }
}

/** Targets named so are floors (floor-h2.mjs): reported beside the proxies, never compared as one. */
const FLOOR = 'floor: '

function defineScenarios(ctx: TrafficContext, gw: ChildProcess, ha: ChildProcess, floors: Record<'answer' | 'answerTls' | 'proxy' | 'proxyH1' | 'proxyH1Tls', ChildProcess>): Record<TrafficScenario, Scenario> {
  const c = ctx.connections
  const t = (name: string, port: number, pid: number | undefined, authority = HOST): Target => ({ name, port, authority, pid })
  const direct = t('direct', ctx.backendDirect, undefined)
  const plain = [direct, t('edge-gateway', PORTS.gateway, gw.pid), t('haproxy', PORTS.haproxy, ha.pid)]
  const tls = [t('edge-gateway', PORTS.gatewayTls, gw.pid), t('haproxy', PORTS.haproxyTls, ha.pid)]
  const wrkAt = (x: Target, seconds: number, scheme: string, { path = '/', ...more }: { path?: string; method?: string; bodyBytes?: number; headers?: Record<string, string> } = {}): Promise<LoadResult> =>
    wrk({ url: `${scheme}://127.0.0.1:${x.port}${path}`, host: x.authority, connections: c, seconds, cpu: ctx.loadCpu, ...more })
  const h2At = (x: Target, seconds: number, tlsOn: boolean) => h2load({ port: x.port, authority: x.authority, tls: tlsOn, clients: H2_CLIENTS, streams: H2_STREAMS, seconds, cpu: ctx.loadCpu })
  const h2How = (over: string): string => `h2load -t1 -c${H2_CLIENTS} -m${H2_STREAMS} -D ${ctx.seconds} ${over}.`
  return {
    chunked: {
      title: 'HTTP/1.1, the backend answers chunked (no Content-Length)',
      how: `wrk -t1 -c${c} -d${ctx.seconds}s on \`/chunked\`, which the backend answers with res.write then res.end.`,
      probe: { protocol: 'http/1.1', path: '/chunked' },
      targets: plain,
      load: (x, s) => wrkAt(x, s, 'http', { path: '/chunked' }),
    },
    tls: {
      title: 'HTTPS, HTTP/1.1 keep-alive',
      how: `wrk -t1 -c${c} -d${ctx.seconds}s over https (wrk offers no ALPN: HTTP/1.1 on ${c} kept-alive connections).`,
      probe: { protocol: 'https/1.1' },
      targets: tls,
      load: (x, s) => wrkAt(x, s, 'https'),
    },
    post: {
      title: `POST with a ${POST_BYTES / 1024} KiB body`,
      how: `wrk -t1 -c${c} -d${ctx.seconds}s with a script setting wrk.method = "POST" and a ${POST_BYTES}-byte wrk.body; the backend reads the body to its end before answering.`,
      probe: { protocol: 'http/1.1', method: 'POST', body: Buffer.alloc(POST_BYTES, 120) },
      targets: plain,
      load: (x, s) => wrkAt(x, s, 'http', { method: 'POST', bodyBytes: POST_BYTES }),
    },
    'tls-new': {
      title: 'a new TLS connection per request (full handshakes)',
      how: `wrk -t1 -c${c} -d${ctx.seconds}s -H 'Connection: close' over https: every answer closes its connection and wrk opens the next one. With session tickets wrk would resume every other session; the servers issue none here. (Not h2load: 1.52's --h1 with Connection: close and -D never ends, nghttp2 issue 2250.)`,
      probe: { protocol: 'https/1.1' },
      targets: tls,
      load: (x, s) => wrkAt(x, s, 'https', { headers: { Connection: 'close' } }),
    },
    h2: {
      title: 'HTTP/2 over TLS (ALPN h2)',
      how: h2How('over https (ALPN h2)'),
      probe: { protocol: 'h2' },
      h2loadProtocol: 'h2',
      targets: [...tls, t(`${FLOOR}node:http2 answers itself (TLS)`, PORTS.floorAnswerTls, floors.answerTls.pid), t(`${FLOOR}node:http2 to one HTTP/1.1 socket (TLS)`, PORTS.floorProxyH1Tls, floors.proxyH1Tls.pid)],
      load: (x, s) => h2At(x, s, true),
    },
    h2c: {
      title: 'h2c with prior knowledge, HTTP/1.1 backend',
      how: h2How('over http (h2c with prior knowledge; HAProxy: a `proto h2` bind)'),
      probe: { protocol: 'h2c' },
      h2loadProtocol: 'h2c',
      targets: [t('edge-gateway', PORTS.gateway, gw.pid), t('haproxy', PORTS.haproxyH2c, ha.pid), t(`${FLOOR}node:http2 answers itself`, PORTS.floorAnswer, floors.answer.pid), t(`${FLOOR}node:http2 to one HTTP/1.1 socket`, PORTS.floorProxyH1, floors.proxyH1.pid)],
      load: (x, s) => h2At(x, s, false),
    },
    'h2c-pods': {
      title: 'h2c from the client and to the pods (a node:http2 h2c backend)',
      how: h2How(`over http (h2c) to \`${H2C_HOST}\`, whose Service port is named h2c with appProtocol kubernetes.io/h2c; HAProxy: a \`proto h2\` bind and \`proto h2\` on its server. The backend speaks only h2c`),
      probe: { protocol: 'h2c' },
      h2loadProtocol: 'h2c',
      targets: [t('direct', PORTS.h2cDirect, undefined, H2C_HOST), t('edge-gateway', PORTS.gateway, gw.pid, H2C_HOST), t('haproxy', PORTS.haproxyH2cPods, ha.pid, H2C_HOST), t(`${FLOOR}node:http2 h2c-to-h2c proxy`, PORTS.floorProxy, floors.proxy.pid, H2C_HOST)],
      load: (x, s) => h2At(x, s, false),
    },
  }
}

async function runScenario(ctx: TrafficContext, name: TrafficScenario, s: Scenario): Promise<{ rpsRatio: number; cpuRatio: number }> {
  const { log } = ctx
  for (const x of s.targets) {
    const a = await probe({ port: x.port, authority: x.authority, ...s.probe })
    const wanted = s.probe.protocol === 'https/1.1' ? 'http/1.1' : s.probe.protocol
    const problems = [a.status !== 200 && `status ${a.status}`, a.body !== BODY && `body ${JSON.stringify(a.body.slice(0, 200))}`, a.protocol !== wanted && `protocol ${a.protocol}, not ${wanted}`, name === 'tls-new' && a.tickets && `${a.tickets} session tickets issued (a client could resume)`].filter(Boolean)
    if (problems.length > 0) throw new ScenarioFailure(`${x.name} answered the probe with ${problems.join(', ')}`)
    if (a.tls) process.stdout.write(`  probe ${x.name}: ${a.protocol} over ${a.tls}${a.tickets !== undefined ? `, ${a.tickets} session tickets` : ''}\n`)
  }
  const measured = async (x: Target, seconds: number): Promise<LoadResult> => {
    const before = cpuMs(x.pid)
    const started = performance.now()
    // A load generator that fails (cannot connect, never ends) fails the scenario, not the run.
    const r = await s.load(x, seconds).catch((err: unknown) => {
      throw new ScenarioFailure(`${x.name}: ${err instanceof Error ? err.message : String(err)}`)
    })
    const after = cpuMs(x.pid)
    const wallMs = performance.now() - started
    if (r.errors > 0 || !(r.requests > 0)) throw new ScenarioFailure(`${x.name}: ${r.errors} failed requests, ${r.requests} completed (${r.errorDetail || 'none completed'}); a fast error is not a fast proxy`)
    if (s.h2loadProtocol && r.protocol !== s.h2loadProtocol) throw new ScenarioFailure(`h2load spoke ${r.protocol} to ${x.name}, not ${s.h2loadProtocol}`)
    if (before !== undefined && after !== undefined) {
      r.cpuUs = ((after - before) * 1000) / r.requests
      r.busy = (after - before) / wallMs
    }
    return r
  }
  // Warm-up: JIT, pools, sessions.
  for (const x of s.targets) await measured(x, 2)
  const res = await interleaved(s.targets, (x) => measured(x, ctx.seconds), ctx.rounds)
  const direct = res.get('direct')
  const ha = res.get('haproxy')!
  const gw = res.get('edge-gateway')!
  log('| path | req/s | p50 ms | p99 ms | mean ms | CPU µs/request | core busy | vs direct | vs HAProxy |')
  log('|---|---|---|---|---|---|---|---|---|')
  for (const [who, rs] of res) {
    const rps = med(rs, 'rps')
    log(`| ${who} | ${fmt(rps)} | ${fmt(med(rs, 'p50'), 2)} | ${fmt(med(rs, 'p99'), 2)} | ${fmt(med(rs, 'mean'), 2)} | ${fmt(med(rs, 'cpuUs'), 1)} | ${busyPct(med(rs, 'busy'))} | ${direct ? fmt(rps / med(direct, 'rps'), 2) : 'n/a'} | ${fmt(rps / med(ha, 'rps'), 2)} |`)
  }
  const rpsRounds = gw.map((g, i) => g.rps / ha[i]!.rps)
  const cpuRounds = gw.map((g, i) => (g.cpuUs ?? NaN) / (ha[i]!.cpuUs ?? NaN))
  const gwCpu = med(gw, 'cpuUs')
  const haCpu = med(ha, 'cpuUs')
  log('')
  log(`${name} ratio gateway/HAProxy: median ${fmt(median(rpsRounds), 3)} (rounds ${rpsRounds.map((x) => fmt(x, 3)).join(', ')})`)
  log(`CPU µs/request gateway ${fmt(gwCpu, 1)} vs HAProxy ${fmt(haCpu, 1)} (${fmt(gwCpu / haCpu, 2)}×; rounds ${cpuRounds.map((x) => fmt(x, 2)).join(', ')})`)
  for (const [who, rs] of res) {
    if (!who.startsWith(FLOOR)) continue
    const f = med(rs, 'cpuUs')
    log(`${who}: CPU µs/request ${fmt(f, 1)}, ${fmt(f / haCpu, 2)}× HAProxy's whole proxying; req/s ${fmt(median(rs.map((r, i) => r.rps / ha[i]!.rps)), 3)}× HAProxy's`)
  }
  // A proxy whose core is not busy was not the limit: the load generator (or the machine's other
  // work) was, and its req/s says little; CPU per request still compares the two.
  const busy: [string, number][] = [
    ['HAProxy', med(ha, 'busy')],
    ['edge-gateway', med(gw, 'busy')],
  ]
  const idle = busy.filter(([, b]) => b < 0.9)
  if (idle.length > 0) log(`Not saturated: ${idle.map(([who, b]) => `${who}'s core was ${fmt(b * 100)}% busy`).join(', ')}; the req/s ratio shows the load generator's limit as much as the proxies', the CPU per request does not.`)
  return { rpsRatio: median(rpsRounds), cpuRatio: median(cpuRounds) }
}

function busyPct(share: number): string {
  return Number.isFinite(share) ? `${fmt(share * 100)}%` : 'n/a'
}

/** The h2c app: a Service whose port says h2c (name and appProtocol), its slice, and a KIngress for it. */
function h2cService(port: number): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'app-h2c', namespace: 'default' }, spec: { ports: [{ name: 'h2c', port: 80, appProtocol: 'kubernetes.io/h2c' }] } },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'app-h2c-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'app-h2c' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
      ports: [{ name: 'h2c', port, appProtocol: 'kubernetes.io/h2c' }],
    },
    ingress('h2c', [H2C_HOST], 'app-h2c'),
  ]
}

/** HAProxy's frontends for TLS and h2c beside its plain one (which startHaproxy writes). */
function haproxySections(pemFile: string): string {
  return `frontend fe_tls
  bind 127.0.0.1:${PORTS.haproxyTls} ssl crt ${pemFile} alpn h2,http/1.1
  default_backend be
frontend fe_h2c
  bind 127.0.0.1:${PORTS.haproxyH2c} proto h2
  default_backend be
frontend fe_h2c_pods
  bind 127.0.0.1:${PORTS.haproxyH2cPods} proto h2
  default_backend be_h2c
backend be_h2c
  server s1 127.0.0.1:${PORTS.h2cProxied} proto h2
`
}
