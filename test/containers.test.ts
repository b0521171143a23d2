// Revisions from container images (files mode): a Revision with an image and no local command runs
// as podman containers, scaled like local processes. Real podman, a real image (built from this
// Node binary by helpers/container-image.ts), real gateways. Without a working podman this file
// fails, saying how to get one: CI installs it (.ci/podman-setup.sh).
import t from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Gateway } from '../src/gateway.ts'
import { scopeOf } from '../src/autoscaler/local-runner.ts'
import { LABEL_CONTAINER_GATEWAY } from '../src/autoscaler/container-launcher.ts'
import { freePorts, get, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Answer } from './helpers/gateway.ts'
import { waitForQueued } from './helpers/activator.ts'
import { APP_PATH, NODE_PATH, containersWith, testImage } from './helpers/container-image.ts'
import type { AppAnswer } from './helpers/container-image.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const image = testImage()

interface Template {
  env?: Record<string, string>
  port?: number
  command?: string[]
  args?: string[]
  readinessProbe?: unknown
  containerConcurrency?: number
  annotations?: Record<string, string>
}

function revision(name: string, tpl: Template = {}): unknown {
  const container: Record<string, unknown> = { image, env: Object.entries(tpl.env ?? {}).map(([n, value]) => ({ name: n, value })) }
  if (tpl.port) container.ports = [{ containerPort: tpl.port }]
  if (tpl.command) container.command = tpl.command
  if (tpl.args) container.args = tpl.args
  if (tpl.readinessProbe) container.readinessProbe = tpl.readinessProbe
  return {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Revision',
    metadata: { name, namespace: 'default', annotations: tpl.annotations ?? {} },
    spec: { containerConcurrency: tpl.containerConcurrency ?? 0, containers: [container] },
  }
}

function route(name: string, traffic: Array<[string, number]>): unknown {
  return {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Route',
    metadata: { name, namespace: 'default' },
    status: { url: `http://${host(name)}`, traffic: traffic.map(([revisionName, percent]) => ({ revisionName, percent })) },
  }
}

function host(name: string): string {
  return `${name}.default.example.com`
}

/** The containers of the gateways serving `dir`, running or not. */
function containersOf(dir: string): Promise<string[]> {
  return containersWith(LABEL_CONTAINER_GATEWAY, scopeOf(dir))
}

function app(a: Answer): AppAnswer {
  return JSON.parse(a.body) as AppAnswer
}

/** A gateway on `dir`, closed at the end of the test if the test did not close it. */
async function gateway(t: Test, dir: string, args: string[] = []): Promise<Gateway & { closeOnce(): Promise<void> }> {
  const gw = await startTestGateway(dir, args)
  let closed: Promise<void> | undefined
  const closeOnce = (): Promise<void> => (closed ??= gw.close())
  t.teardown(closeOnce)
  return Object.assign(gw, { closeOnce })
}

/** Local runner instances of a revision that are not being stopped, from /debug/routes. */
async function instances(admin: number, rev: string): Promise<Array<{ container?: string; ready: boolean }>> {
  const d = (await get(admin, 'localhost', '/debug/routes')).json<{ sources: { localRunner: Record<string, Array<{ container?: string; ready: boolean; stopping: boolean }>> } }>()
  return (d.sources.localRunner[`default/${rev}`] ?? []).filter((i) => !i.stopping)
}

interface Child {
  readonly proc: ChildProcess
  readonly http: number
  readonly admin: number
  readonly exited: Promise<number | null>
  /** Its log so far. */
  output(): string
}

/** A gateway as its own process (`node src/main.ts`), ready; SIGKILLed at the end if still running. */
async function gatewayProcess(t: Test, dir: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Child> {
  const [http, local, https, admin] = (await freePorts(4)) as [number, number, number, number]
  const ports = ['--http-port', String(http), '--local-port', String(local), '--https-port', String(https), '--admin-port', String(admin), '--listen-address', '127.0.0.1']
  const proc = spawn(process.execPath, [path.join(root, 'src', 'main.ts'), '--manifests', dir, '--workers', '1', ...ports, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (c) => (out += c))
  proc.stderr!.on('data', (c) => (out += c))
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  await waitFor('the gateway process to be ready', async () => (await get(admin, 'localhost', '/readyz').catch(() => undefined))?.status === 200, 30_000)
  return { proc, http, admin, exited, output: () => out }
}

t.test('the first request starts a container of the revision image, which answers it; close() removes it', async (t) => {
  const dir = tempDir('edge-containers-')
  // The template's command, args, env and port are the container's; the app is ready 300 ms after it
  // listens, and only its readinessProbe says so.
  const rev = revision('box-00001', {
    command: [NODE_PATH, APP_PATH],
    args: ['--from-args'],
    env: { MESSAGE: 'hello from a container', READY_AFTER_MS: '300' },
    port: 9000,
    readinessProbe: { httpGet: { path: '/healthz' } },
  })
  writeManifest(dir, 'box.yaml', [rev, route('box', [['box-00001', 100]])])
  const gw = await gateway(t, dir)
  t.strictSame(await containersOf(dir), [], 'nothing runs before the first request')

  const r = await get(gw.ports.http, host('box'), '/')
  t.equal(r.status, 200)
  const a = app(r)
  t.equal(a.message, 'hello from a container', "the template's env")
  t.equal(a.revision, 'box-00001', 'K_REVISION')
  t.equal(a.port, '9000', 'PORT is the container port, as Knative sets it')
  t.strictSame(a.argv, ['--from-args'], "the template's command and args")
  t.equal(a.ready, true, 'the request waited for the readinessProbe, not only for the port')
  t.match(r.headers['x-edge-cold-start-ms'], /^\d+$/, 'the response says how long it was held for the cold start')

  const running = await containersOf(dir)
  t.equal(running.length, 1, 'one container runs')
  t.strictSame((await instances(gw.ports.admin, 'box-00001')).map((i) => i.container), running, '/debug/routes names it')
  t.equal(app(await get(gw.ports.http, host('box'), '/')).host, a.host, 'the next request goes to the same container')

  await gw.closeOnce()
  t.strictSame(await containersOf(dir), [], 'close() stopped and removed it')
})

t.test('a 50/50 split between two revisions of one image with different env', async (t) => {
  const dir = tempDir('edge-containers-')
  writeManifest(dir, 'split.yaml', [revision('split-00001', { env: { MESSAGE: 'a' } }), revision('split-00002', { env: { MESSAGE: 'b' } }), route('split', [['split-00001', 50], ['split-00002', 50]])])
  const gw = await gateway(t, dir)
  const counts: Record<string, number> = {}
  for (let i = 0; i < 200; i++) {
    const r = await get(gw.ports.http, host('split'), '/')
    t.equal(r.status, 200, `request ${i}`, { diagnostic: r.status !== 200 })
    if (r.status !== 200) break
    const m = app(r).message
    counts[m] = (counts[m] ?? 0) + 1
  }
  t.strictSame(Object.keys(counts).sort(), ['a', 'b'], 'both revisions answered')
  t.ok(counts.a! >= 60 && counts.a! <= 140, `about half went to each (a: ${counts.a}, b: ${counts.b})`)
  t.equal((await containersOf(dir)).length, 2, 'one container per revision')
})

t.test('a Knative Service rolls out from one container template to another with no failed request', async (t) => {
  const dir = tempDir('edge-containers-')
  const svc = (message: string): unknown => ({
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Service',
    metadata: { name: 'roll', namespace: 'default' },
    spec: { template: { spec: { containers: [{ image, env: [{ name: 'MESSAGE', value: message }] }] } } },
  })
  writeManifest(dir, 'svc.yaml', [svc('one')])
  const gw = await gateway(t, dir)
  t.equal(app(await get(gw.ports.http, host('roll'), '/')).message, 'one', 'roll-00001 in a container')
  const answers: Array<{ status: number; message?: string }> = []
  let looping = true
  const loop = (async () => {
    while (looping) {
      const r = await get(gw.ports.http, host('roll'), '/')
      answers.push({ status: r.status, message: r.status === 200 ? app(r).message : undefined })
    }
  })()
  await waitFor('answers before the edit', () => answers.length >= 5)
  writeManifest(dir, 'svc.yaml', [svc('two')])
  await waitFor('traffic on the new container', () => answers.some((a) => a.message === 'two'), 60_000)
  await waitFor('more answers from it', () => answers.length >= answers.findIndex((a) => a.message === 'two') + 5)
  looping = false
  await loop
  t.same(answers.filter((a) => a.status !== 200), [], `no failed request among ${answers.length}`)
  const first = answers.findIndex((a) => a.message === 'two')
  t.ok(answers.slice(0, first).every((a) => a.message === 'one') && answers.slice(first).every((a) => a.message === 'two'), 'one revision, then the other')
})

t.test('containerConcurrency holds per container, and scale-out stops at max-scale', async (t) => {
  const dir = tempDir('edge-containers-')
  const rev = revision('busy-00001', { containerConcurrency: 1, annotations: { 'autoscaling.knative.dev/max-scale': '2' } })
  writeManifest(dir, 'busy.yaml', [rev, route('busy', [['busy-00001', 100]])])
  const gw = await gateway(t, dir)
  const requests = Array.from({ length: 4 }, () => get(gw.ports.http, host('busy'), '/?ms=1500'))
  const answers = await Promise.all(requests)
  t.strictSame(answers.map((r) => r.status), [200, 200, 200, 200])
  t.strictSame(answers.map((r) => app(r).inflight), [1, 1, 1, 1], 'no container ever had more than one request at once')
  t.equal(new Set(answers.map((r) => app(r).host)).size, 2, 'four waiting requests scaled the revision out to two containers')
  // Nothing scales down within the default 30 s idle window, so the engine still lists every
  // container started for these requests: a third one would be here.
  t.equal((await containersOf(dir)).length, 2, 'never more than max-scale: two containers were started in all')
})

t.test('scale to zero removes the container; the next request starts a new one', async (t) => {
  const dir = tempDir('edge-containers-')
  writeManifest(dir, 'idle.yaml', [revision('idle-00001'), route('idle', [['idle-00001', 100]])])
  const gw = await gateway(t, dir, ['--scale-to-zero-after', '1'])
  const first = await get(gw.ports.http, host('idle'), '/')
  t.equal(first.status, 200)
  t.equal((await containersOf(dir)).length, 1)
  await waitFor('no container left after the idle window', async () => (await containersOf(dir)).length === 0, 15_000)
  t.strictSame(await instances(gw.ports.admin, 'idle-00001'), [], '/debug/routes lists none either')
  const again = await get(gw.ports.http, host('idle'), '/')
  t.equal(again.status, 200)
  t.match(again.headers['x-edge-cold-start-ms'], /^\d+$/, 'a cold start again')
  t.not(app(again).host, app(first).host, 'from a new container')
})

t.test("containers of a gateway killed with SIGKILL are removed by the next gateway on the same manifests", async (t) => {
  const dir = tempDir('edge-containers-')
  writeManifest(dir, 'left.yaml', [revision('left-00001'), route('left', [['left-00001', 100]])])
  const child = await gatewayProcess(t, dir)
  t.equal((await get(child.http, host('left'), '/')).status, 200)
  child.proc.kill('SIGKILL')
  await child.exited
  t.equal((await containersOf(dir)).length, 1, 'its container outlived it')

  await gateway(t, dir)
  await waitFor('the next gateway to remove it', async () => (await containersOf(dir)).length === 0, 15_000)
  t.pass('removed without any request')
})

t.test('a second signal exits at once and leaves no container behind', async (t) => {
  const dir = tempDir('edge-containers-')
  writeManifest(dir, 'quit.yaml', [revision('quit-00001'), route('quit', [['quit-00001', 100]])])
  const child = await gatewayProcess(t, dir, ['--drain-seconds', '30'])
  t.equal((await get(child.http, host('quit'), '/')).status, 200)
  t.equal((await containersOf(dir)).length, 1)
  // The first SIGTERM starts a 30 s drain, during which the container keeps serving.
  child.proc.kill('SIGTERM')
  await waitFor('the drain to start', () => child.output().includes('shutting down'))
  t.equal((await containersOf(dir)).length, 1, 'still running while the gateway drains')
  child.proc.kill('SIGTERM')
  t.equal(await child.exited, 1, 'the second signal exits at once')
  t.strictSame(await containersOf(dir), [], 'its container was removed as it exited')
})

t.test('an image that cannot be pulled, or a command the image lacks: held requests answered 503 revision-failed with why', async (t) => {
  const dir = tempDir('edge-containers-')
  const missing = 'localhost/edge-gateway-no-such-image:1'
  const pullFails = revision('nopull-00001') as { spec: { containers: Array<Record<string, unknown>> } }
  pullFails.spec.containers[0]!.image = missing
  writeManifest(dir, 'apps.yaml', [pullFails, route('nopull', [['nopull-00001', 100]]), revision('nocmd-00001', { command: ['/no/such/command'] }), route('nocmd', [['nocmd-00001', 100]])])
  // A long cold-start budget: an answer before it can only be the fast failure.
  const gw = await gateway(t, dir, ['--cold-start-timeout', '600'])
  const held = await Promise.all([1, 2].map((i) => get(gw.ports.http, host('nopull'), `/held/${i}`)))
  t.same(held.map((r) => [r.status, r.headers['x-edge-reason'], r.headers['retry-after']]), Array(2).fill([503, 'revision-failed', '2']), 'both held requests answered 503 revision-failed')
  t.match(held[0]!.body, `revision default/nopull-00001 cannot start: its image ${missing} could not be pulled or found: Error: `)
  t.match(held[0]!.body, /check the image's name and tag, and that its registry is reachable \(try '\S*(podman|docker) pull localhost\/edge-gateway-no-such-image:1'\)/)
  const again = await get(gw.ports.http, host('nopull'), '/again')
  t.equal(again.headers['x-edge-reason'], 'revision-failed', 'a new request gets the same answer')

  const nocmd = await get(gw.ports.http, host('nocmd'), '/')
  t.same([nocmd.status, nocmd.headers['x-edge-reason']], [503, 'revision-failed'])
  t.match(nocmd.body, /revision default\/nocmd-00001 cannot start: the container's command \/no\/such\/command was not found in image \S+: .*(catatonit|tini|Error)/, 'it names the command, and the engine says the rest')
})

t.test('without a container engine: 503 no-runtime at once, held requests let go, the problem in /debug/routes', async (t) => {
  const dir = tempDir('edge-containers-')
  // The Route comes first: a request for its revision waits, as for any revision not running yet.
  writeManifest(dir, 'route.yaml', [route('none', [['none-00001', 100]])])
  const gw = await gateway(t, dir, ['--container-engine', 'none', '--cold-start-timeout', '60'])
  const held = get(gw.ports.http, host('none'), '/held')
  await waitForQueued(gw, 'none-00001', 1)
  writeManifest(dir, 'revision.yaml', [revision('none-00001')])
  const h = await held
  t.equal(h.status, 503, 'the held request is answered once the Revision shows it cannot run')
  t.equal(h.headers['x-edge-reason'], 'no-runtime')

  const started = Date.now()
  const r = await get(gw.ports.http, host('none'), '/')
  t.equal(r.status, 503)
  t.equal(r.headers['x-edge-reason'], 'no-runtime')
  t.ok(Date.now() - started < 5000, 'answered at once, not after the cold-start timeout')
  t.match(r.body, /podman or docker/, 'the body names one way to fix it')
  t.match(r.body, /edge\.knative\.dev\/local-command/, 'and the other')

  const problems = (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<{ problems: Array<{ code: string; object: string; source: string; reason: string }> }>().problems
  const p = problems.find((x) => x.code === 'EDGE_ERR_NO_RUNTIME')
  t.ok(p, 'EDGE_ERR_NO_RUNTIME is a configuration problem')
  t.equal(p?.object, 'Revision default/none-00001')
  t.equal(p?.source, 'local-runner')
  t.equal(p?.reason, r.body.trim(), 'the same words as the 503')
  t.strictSame(await containersOf(dir), [], 'nothing was started')
})

t.test('auto with neither podman nor docker on PATH finds no engine; with --workers the workers answer no-runtime', async (t) => {
  const dir = tempDir('edge-containers-')
  writeManifest(dir, 'none.yaml', [revision('none-00001'), route('none', [['none-00001', 100]])])
  const child = await gatewayProcess(t, dir, ['--workers', '2'], { PATH: tempDir('edge-empty-path-'), EDGE_CONTAINER_ENGINE: 'auto' })
  for (let i = 0; i < 4; i++) {
    const r = await get(child.http, host('none'), '/')
    t.equal(r.headers['x-edge-reason'], 'no-runtime', `request ${i}: 503 no-runtime`)
    t.match(r.body, /podman: not found on PATH; docker: not found on PATH/, 'it says what was looked for')
  }
  t.match(child.output(), /no container engine/, 'the log says why there is none')
  child.proc.kill('SIGINT')
  t.equal(await child.exited, 0)
})
