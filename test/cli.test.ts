// The command line and the embedded default, as a user runs them: a real child process.
import t from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { get, waitFor } from './helpers/gateway.ts'
import { projectRoot as root, startGatewayProcess } from './helpers/gateway-process.ts'
import { parseConfig } from '../src/config.ts'

const main = path.join(root, 'src', 'main.ts')

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, ...args], { cwd: root, env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c) => (stdout += c))
    child.stderr.on('data', (c) => (stderr += c))
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('an unknown option exits non-zero with a usage message naming it', async (t) => {
  const r = await run(['--bogus-flag', '1'])
  t.equal(r.code, 2)
  t.match(r.stderr, /unknown option '--bogus-flag'/)
  t.match(r.stderr, /usage: edge-gateway/)
})

t.test('a bad value names the option and the reason', async (t) => {
  const r = await run(['--http-port', 'eighty'])
  t.equal(r.code, 2)
  t.match(r.stderr, /--http-port: 'eighty' is not a whole number/)
  const e = await run([], { EDGE_HTTP_PORT: '70000' })
  t.equal(e.code, 2)
  t.match(e.stderr, /EDGE_HTTP_PORT: 70000 is above the maximum 65535/)
})

t.test('--help lists every option with its environment variable', async (t) => {
  const r = await run(['--help'])
  t.equal(r.code, 0)
  for (const [flag, env] of [['--manifests', 'EDGE_MANIFESTS'], ['--http-port', 'EDGE_HTTP_PORT'], ['--local-port', 'EDGE_LOCAL_PORT'], ['--admin-port', 'EDGE_ADMIN_PORT'], ['--ingress-class', 'EDGE_INGRESS_CLASS'], ['--domain', 'EDGE_DOMAIN']]) {
    t.match(r.stdout, new RegExp(`${flag}.*${env}`), String(flag))
  }
})

t.test('options: flags beat environment, environment beats defaults', async (t) => {
  const env = { EDGE_HTTP_PORT: '9000', EDGE_DOMAIN: 'env.example' }
  const c = parseConfig(['--domain', 'flag.example', '--namespace', 'a', '--namespace', 'b,c'], env)
  t.equal(c.domain, 'flag.example')
  t.equal(c.httpPort, 9000)
  t.equal(c.localPort, 8081)
  t.equal(c.adminPort, 9090)
  t.equal(c.manifests, 'routes')
  t.equal(c.ingressClass, 'edge.ingress.networking.knative.dev')
  t.same(c.namespaces, ['a', 'b', 'c'])
  t.equal(c.kubernetes, false)
  t.equal(parseConfig([], { KUBERNETES_SERVICE_HOST: '10.0.0.1' }).kubernetes, true, 'on by default inside a pod')
  t.equal(parseConfig(['--access-log'], {}).accessLog, true)
})

t.test('the embedded default (routes/): cold start, split, tag, domain mapping, cluster-local, 404', async (t) => {
  const { child, http, local, admin, output } = await startGatewayProcess(t, process.execPath, [main, '--scale-to-zero-after', '2'], { EDGE_LOG_LEVEL: 'warn' })

  const first = await get(http, 'hello.default.example.com')
  t.equal(first.status, 200, `first request answered (${output()})`)
  t.match(first.body, /from hello-0000[12]!/)
  t.ok(Number(first.headers['x-edge-cold-start-ms']) >= 0, 'the first request was held for a cold start and says so')

  const counts: Record<string, number> = {}
  for (let i = 0; i < 200; i++) {
    const r = await get(http, 'hello.default.example.com')
    const rev = /from (hello-\d+)/.exec(r.body)?.[1] ?? r.body
    counts[rev] = (counts[rev] ?? 0) + 1
  }
  t.ok((counts['hello-00001'] ?? 0) >= 160 && (counts['hello-00002'] ?? 0) >= 5, `about 90/10: ${JSON.stringify(counts)}`)
  t.match((await get(http, 'candidate-hello.default.example.com')).body, /Howdy from hello-00002/)
  t.match((await get(http, 'hello.default.example.com', '/', { 'Knative-Serving-Tag': 'candidate' })).body, /Howdy from hello-00002/)
  const dm = await get(http, 'hello.example.org', '/path')
  t.equal(dm.status, 200)
  t.match(dm.body, /You asked for http:\/\/hello\.example\.org\/path/, 'the app sees the custom domain (K-Original-Host)')
  t.match((await get(local, 'internal.default.svc.cluster.local')).body, /Psst from internal-00001/)
  t.equal((await get(http, 'internal.default.svc.cluster.local')).status, 404, 'cluster-local is not public')
  const nope = await get(http, 'nope.example.com')
  t.equal(nope.status, 404)
  t.equal(nope.headers['x-edge-reason'], 'host-not-found')

  // After the idle window the processes stop; the next request starts one again.
  await waitFor('scale to zero', async () => {
    const d = (await get(admin, 'localhost', '/debug/routes')).json<{ sources: { localRunner: Record<string, unknown[]> } }>()
    return (d.sources.localRunner['default/hello-00001'] ?? []).length === 0
  }, 20_000)
  const again = await get(http, 'hello.default.example.com', '/', { 'Knative-Serving-Tag': 'candidate' })
  t.equal(again.status, 200)
  t.ok(again.headers['x-edge-cold-start-ms'] !== undefined, 'scaled from zero again')

  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  child.kill('SIGINT')
  t.equal(await exited, 0, 'SIGINT stops the gateway cleanly')
})

/** The pid of a local revision process (the first request started one: hello-00001's, or 00002's for one in ten). */
async function localPid(admin: number): Promise<number> {
  let pid: number | undefined
  await waitFor('a local revision process', async () => {
    const d = (await get(admin, 'localhost', '/debug/routes')).json<{ sources: { localRunner: Record<string, Array<{ pid?: number }>> } }>()
    pid = Object.values(d.sources.localRunner).flat().find((i) => i.pid !== undefined)?.pid
    return pid !== undefined
  })
  return pid!
}

/** The process runs (where /proc tells, a zombie waiting for init to reap it has stopped running). */
function alive(pid: number): boolean {
  try {
    if (!existsSync('/proc/self/stat')) return process.kill(pid, 0)
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z'
  } catch {
    return false
  }
}

function refused(port: number): Promise<boolean> {
  return get(port, 'hello.default.example.com').then(() => false, () => true)
}

t.test('npm start: a SIGTERM sent to npm alone reaches the gateway, which stops with its local processes', async (t) => {
  // As a process manager or `kill <pid of npm>` stops it: only npm gets the signal, not its process group.
  const { child: npm, http, admin, output } = await startGatewayProcess(t, 'npm', ['start', '--', '--workers', '1'], { EDGE_LOG_LEVEL: 'warn', EDGE_DRAIN_SECONDS: '0' })
  t.equal((await get(http, 'hello.default.example.com')).status, 200, `served (${output()})`)
  const app = await localPid(admin)

  npm.kill('SIGTERM')
  await waitFor('the gateway to stop listening', () => refused(http), 20_000)
  await waitFor('the local revision process to stop', () => !alive(app), 20_000)
  t.pass('nothing of the gateway is left running')
})

t.test('a second signal exits at once, and leaves no local revision process behind', async (t) => {
  const { child, http, admin, output } = await startGatewayProcess(t, process.execPath, [main, '--workers', '1', '--drain-seconds', '30'], { EDGE_LOG_LEVEL: 'info' })
  t.equal((await get(http, 'hello.default.example.com')).status, 200)
  const app = await localPid(admin)

  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  child.kill('SIGTERM')
  // The first SIGTERM starts the 30 s drain; the gateway still serves meanwhile.
  await waitFor('the drain to start', () => output().includes('shutting down'))
  t.equal((await get(http, 'hello.default.example.com')).status, 200, 'still serving while it drains')
  child.kill('SIGTERM')
  t.equal(await exited, 1, 'the second signal exits now, non-zero')
  t.match(output(), /second signal: exiting now/)
  await waitFor('the local revision process to be gone', () => !alive(app), 10_000)
  t.pass('its local revision process went with it')
})
