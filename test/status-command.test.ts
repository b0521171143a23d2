// `edge-gateway status` as a user runs it: a real gateway on a manifest directory, the command as a
// child process, and its table read back row by row; and what it says when no gateway answers.
import t from 'tap'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import { freePorts, get, revision, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { projectRoot as root, startGatewayProcess } from './helpers/gateway-process.ts'

const main = path.join(root, 'src', 'main.ts')

function status(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, 'status', ...args], { cwd: root, env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c) => (stdout += c))
    child.stderr.on('data', (c) => (stderr += c))
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

type Row = Record<'host' | 'revision' | 'traffic' | 'tag' | 'ready' | 'inFlight' | 'queued' | 'lastColdStart', string>

/** The table's rows, by `host revision`: columns are two or more spaces apart, cells have none. */
function rows(stdout: string): Map<string, Row> {
  const lines = stdout.split('\n')
  const head = lines.findIndex((l) => l.startsWith('HOST'))
  const out = new Map<string, Row>()
  for (const line of lines.slice(head + 1)) {
    if (line.trim() === '') break
    const [host, revision, traffic, tag, ready, inFlight, queued, lastColdStart] = line.split(/ {2,}/) as string[]
    out.set(`${host} ${revision}`, { host: host!, revision: revision!, traffic: traffic!, tag: tag!, ready: ready!, inFlight: inFlight!, queued: queued!, lastColdStart: lastColdStart! })
  }
  return out
}

/**
 * A Route `shop`: 80% to shop-00001, 20% to shop-00002 (tag canary), shop-00003 only by its tag
 * `next`. Each revision is a local process; /hold requests wait until a file `release` appears.
 */
function shopManifests(): string {
  const dir = tempDir()
  fs.writeFileSync(
    path.join(dir, 'app.mjs'),
    `import fs from 'node:fs'
import http from 'node:http'
const held = []
const released = () => fs.existsSync('release')
fs.watch('.', () => { if (released()) for (const res of held.splice(0)) res.end('released') })
http.createServer((req, res) => (req.url === '/hold' && !released() ? held.push(res) : res.end(process.env.NAME))).listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
`,
  )
  const rev = (name: string, cc: number): unknown => {
    const r = revision(name, { containerConcurrency: cc }, { 'edge.knative.dev/local-command': `NAME=${name} node app.mjs`, 'autoscaling.knative.dev/max-scale': '1' }) as { metadata: { labels?: Record<string, string> } }
    r.metadata.labels = { 'serving.knative.dev/service': 'shop' }
    return r
  }
  writeManifest(dir, 'shop.yaml', [
    rev('shop-00001', 0),
    rev('shop-00002', 1),
    rev('shop-00003', 0),
    {
      apiVersion: 'serving.knative.dev/v1',
      kind: 'Route',
      metadata: { name: 'shop', namespace: 'default', labels: { 'serving.knative.dev/service': 'shop' } },
      status: {
        traffic: [
          { revisionName: 'shop-00001', percent: 80 },
          { revisionName: 'shop-00002', percent: 20, tag: 'canary' },
          { revisionName: 'shop-00003', percent: 0, tag: 'next' },
        ],
      },
    },
  ])
  return dir
}

interface SplitState { revision?: string; queued?: number; endpoints: Array<{ inFlight: number }>; lastColdStart?: { startedAt: string; readyAfterMs?: number } }

async function split(admin: number, host: string, rev: string): Promise<SplitState | undefined> {
  const d = (await get(admin, 'localhost', '/debug/routes')).json<{ hosts: Array<{ host: string; paths: Array<{ splits: SplitState[] }> }> }>()
  return d.hosts.find((h) => h.host === host)?.paths.flatMap((p) => p.splits).find((s) => s.revision === rev)
}

/** How the table shows a cold start's length. */
const shown = (ms: number): string => (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`)

t.test('status: hosts, traffic, tags, and a revision with a request in flight, one queued and its cold start', async (t) => {
  const dir = shopManifests()
  const gw = await startTestGateway(dir)
  t.teardown(async () => {
    fs.writeFileSync(path.join(dir, 'release'), '')
    await gw.close()
  })
  const admin = String(gw.ports.admin)

  const before = await status(['--admin-port', admin])
  t.equal(before.code, 0, before.stderr)
  t.match(before.stdout, new RegExp(`^edge-gateway at http://localhost:${admin}, configuration version \\d+\\n`))
  const idle = rows(before.stdout)
  const expect = (host: string, rev: string, traffic: string, tag: string): void => {
    const r = idle.get(`${host} ${rev}`)
    t.ok(r, `a row for ${host} → ${rev}`)
    t.same(r && [r.traffic, r.tag, r.ready, r.inFlight, r.queued, r.lastColdStart], [traffic, tag, traffic === '0%' ? '-' : '0', traffic === '0%' ? '-' : '0', traffic === '0%' ? '-' : '0', '-'], `${host} ${rev}: ${traffic}, tag ${tag}, nothing running`)
  }
  for (const host of ['shop.default.example.com', 'shop.default.svc.cluster.local']) {
    expect(host, 'shop-00001', '80%', '-')
    expect(host, 'shop-00002', '20%', 'canary')
    expect(host, 'shop-00003', '0%', 'next')
  }
  for (const domain of ['default.example.com', 'default.svc.cluster.local']) {
    expect(`canary-shop.${domain}`, 'shop-00002', '100%', 'canary')
    expect(`next-shop.${domain}`, 'shop-00003', '100%', 'next')
  }
  t.equal(idle.size, 10, 'the short cluster-local names (shop.default, shop.default.svc) are not rows of their own')

  // The first request to shop-00002 starts its process (a cold start) and stays in flight; with
  // containerConcurrency 1 and one process at most, the second waits in the queue.
  const canary = 'canary-shop.default.example.com'
  const first = get(gw.ports.http, canary, '/hold')
  await waitFor('the first request in flight', async () => (await split(gw.ports.admin, canary, 'default/shop-00002'))?.endpoints[0]?.inFlight === 1, 20_000)
  const second = get(gw.ports.http, canary, '/hold', {}, 'POST', 'x'.repeat(100))
  await waitFor('the second request queued', async () => (await split(gw.ports.admin, canary, 'default/shop-00002'))?.queued === 1)
  const cold = (await split(gw.ports.admin, canary, 'default/shop-00002'))!.lastColdStart!
  t.ok(cold.readyAfterMs !== undefined && cold.readyAfterMs >= 0, `/debug/routes has the cold start: ${JSON.stringify(cold)}`)

  const busy = await status(['--admin-port', admin])
  t.equal(busy.code, 0, busy.stderr)
  const now = rows(busy.stdout)
  for (const host of [canary, 'shop.default.example.com', 'canary-shop.default.svc.cluster.local']) {
    const r = now.get(`${host} shop-00002`)!
    t.same([r.ready, r.inFlight, r.queued], ['1', '1', '1'], `${host} shop-00002: one ready instance, one request in flight, one queued`)
    t.match(r.lastColdStart, new RegExp(`^${shown(cold.readyAfterMs!)}, \\d+s ago$`), `${host} shop-00002: the cold start (${r.lastColdStart})`)
  }
  t.match(busy.stdout, /^held for pods: 1 request\(s\) with 100 bytes of bodies; by namespace: default 1 \(100 bytes\)$/m, 'what is held, and the bytes of its body')
  t.equal(now.get('shop.default.example.com shop-00001')!.lastColdStart, '-', 'no cold start for the revision nobody asked for')
  t.equal(now.get('shop.default.example.com shop-00001')!.ready, '0')

  fs.writeFileSync(path.join(dir, 'release'), '')
  const [a, b] = await Promise.all([first, second])
  t.equal(a.status, 200)
  t.equal(b.status, 200)
  // The first request's own wait covers the revision's cold start, which began after it arrived
  // and ended before it was sent on.
  t.ok(cold.readyAfterMs! <= Number(a.headers['x-edge-cold-start-ms']) + 1, `cold start ${cold.readyAfterMs} ms ≤ the first request's wait ${String(a.headers['x-edge-cold-start-ms'])} ms`)
  t.same((await split(gw.ports.admin, canary, 'default/shop-00002'))!.lastColdStart, cold, 'the queued request, which waited for a busy pod, is no cold start')
})

t.test('status with --workers: the primary knows the cold start, and says queued counts are per worker', async (t) => {
  const dir = shopManifests()
  fs.writeFileSync(path.join(dir, 'release'), '') // nothing is held here
  const { http: httpPort, admin, output } = await startGatewayProcess(t, process.execPath, [main, '--manifests', dir, '--workers', '2', '--listen-address', '127.0.0.1'], { EDGE_LOG_LEVEL: 'warn' })
  const r = await get(httpPort, 'next-shop.default.example.com')
  t.equal(r.status, 200, output())
  t.equal(r.body, 'shop-00003')
  const s = await status([], { EDGE_ADMIN_PORT: String(admin) })
  t.equal(s.code, 0, s.stderr)
  const next = rows(s.stdout).get('next-shop.default.example.com shop-00003')!
  t.equal(next.ready, '1')
  t.match(next.lastColdStart, /^(\d+ ms|\d+\.\d s), \d+s ago$/, `the cold start a worker asked for (${next.lastColdStart})`)
  t.equal(next.queued, '-', 'the primary holds no requests: queued is not known there')
  t.match(s.stdout, /QUEUED is per worker process with --workers > 1/)
})

t.test('status without a gateway: one line saying where it looked and what to do', async (t) => {
  const [port] = (await freePorts(1)) as [number]
  const r = await status(['--admin-port', String(port)])
  t.equal(r.code, 1)
  t.equal(r.stdout, '')
  t.match(r.stderr, new RegExp(`^edge-gateway status: no gateway answering on http://localhost:${port} — is it running\\? start it with npm start, or pass --admin-port \\(.*ECONNREFUSED.*\\)\\n$`))

  const byUrl = await status(['--admin-url', `http://127.0.0.1:${port}/`])
  t.equal(byUrl.code, 1)
  t.match(byUrl.stderr, `no gateway answering on http://127.0.0.1:${port} — is it running?`)
})

t.test('status against something that is not the admin port says so', async (t) => {
  const other = http.createServer((_req, res) => res.writeHead(404).end('not here'))
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => other.close(() => r())))
  const port = (other.address() as AddressInfo).port
  const r = await status(['--admin-url', `http://127.0.0.1:${port}`])
  t.equal(r.code, 1)
  t.match(r.stderr, `edge-gateway status: http://127.0.0.1:${port}/debug/routes answered 404 but not with a routing table: is this the gateway's admin port?`)
})

t.test('status: a bad option exits 2 naming it; --help lists its options', async (t) => {
  const bad = await status(['--admin-url', 'ftp://example.org'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /--admin-url: 'ftp:\/\/example.org' is not an http:\/\/ or https:\/\/ URL/)
  const port = await status([], { EDGE_ADMIN_PORT: 'ninety' })
  t.equal(port.code, 2)
  t.match(port.stderr, /EDGE_ADMIN_PORT: 'ninety' is not a whole number/)
  const help = await status(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /--admin-url VALUE\s+EDGE_ADMIN_URL/)
  t.match(help.stdout, /--admin-port N\s+EDGE_ADMIN_PORT/)
})
