// The command line and the embedded default, as a user runs them: a real child process.
import t from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePorts, get, waitFor } from './helpers/gateway.ts'
import { parseConfig } from '../src/config.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
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
  const [http, local, admin, https] = await freePorts(4)
  const child: ChildProcess = spawn(process.execPath, [main, '--http-port', String(http), '--local-port', String(local), '--admin-port', String(admin), '--https-port', String(https), '--scale-to-zero-after', '2'], {
    cwd: root,
    env: { ...process.env, EDGE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.on('data', (c) => (stderr += c))
  child.stdout!.resume()
  t.teardown(() => {
    child.kill('SIGINT')
  })
  await waitFor('the gateway to be ready', async () => (await get(admin!, 'localhost', '/readyz').catch(() => undefined))?.status === 200, 20_000)

  const first = await get(http!, 'hello.default.example.com')
  t.equal(first.status, 200, `first request answered (${stderr})`)
  t.match(first.body, /from hello-0000[12]!/)
  t.ok(Number(first.headers['x-edge-cold-start-ms']) >= 0, 'the first request was held for a cold start and says so')

  const counts: Record<string, number> = {}
  for (let i = 0; i < 200; i++) {
    const r = await get(http!, 'hello.default.example.com')
    const rev = /from (hello-\d+)/.exec(r.body)?.[1] ?? r.body
    counts[rev] = (counts[rev] ?? 0) + 1
  }
  t.ok((counts['hello-00001'] ?? 0) >= 160 && (counts['hello-00002'] ?? 0) >= 5, `about 90/10: ${JSON.stringify(counts)}`)
  t.match((await get(http!, 'candidate-hello.default.example.com')).body, /Howdy from hello-00002/)
  t.match((await get(http!, 'hello.default.example.com', '/', { 'Knative-Serving-Tag': 'candidate' })).body, /Howdy from hello-00002/)
  const dm = await get(http!, 'hello.example.org', '/path')
  t.equal(dm.status, 200)
  t.match(dm.body, /You asked for http:\/\/hello\.example\.org\/path/, 'the app sees the custom domain (K-Original-Host)')
  t.match((await get(local!, 'internal.default.svc.cluster.local')).body, /Psst from internal-00001/)
  t.equal((await get(http!, 'internal.default.svc.cluster.local')).status, 404, 'cluster-local is not public')
  const nope = await get(http!, 'nope.example.com')
  t.equal(nope.status, 404)
  t.equal(nope.headers['x-edge-reason'], 'host-not-found')

  // After the idle window the processes stop; the next request starts one again.
  await waitFor('scale to zero', async () => {
    const d = (await get(admin!, 'localhost', '/debug/routes')).json<{ sources: { localRunner: Record<string, unknown[]> } }>()
    return (d.sources.localRunner['default/hello-00001'] ?? []).length === 0
  }, 20_000)
  const again = await get(http!, 'hello.default.example.com', '/', { 'Knative-Serving-Tag': 'candidate' })
  t.equal(again.status, 200)
  t.ok(again.headers['x-edge-cold-start-ms'] !== undefined, 'scaled from zero again')

  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  child.kill('SIGINT')
  t.equal(await exited, 0, 'SIGINT stops the gateway cleanly')
})
