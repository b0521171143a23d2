// In a cluster, a revision that cannot become ready fails fast and says why: requests held for it at
// zero are answered 503 revision-failed as soon as its Pod turns to ImagePullBackOff (or its Revision
// says ResourcesAvailable=False), with Kubernetes' reason and message, instead of waiting out the
// cold-start timeout; new requests get the same answer without being held; once that changes,
// requests are held and served again. A pod that is merely starting keeps its requests held.
// Against the fake API server, which serves Pods and Revision status as a real one does.
import t from 'tap'
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { get, revision, revisionPods, startBackend } from './helpers/gateway.ts'
import type { Answer } from './helpers/gateway.ts'
import { apply, startKubeEnv, startKubeGateway, waitReady } from './helpers/kube.ts'
import type { KubeEnv } from './helpers/kube.ts'
import { revisionIngress, revisionState, waitForQueued, within } from './helpers/activator.ts'
import { waitFor } from './helpers/wait.ts'
import { projectRoot, startGatewayProcess } from './helpers/gateway-process.ts'
import type { Gateway } from '../src/gateway.ts'

const REV = 'boot-00001'
const HOST = 'boot.example.com'
const POD = `${REV}-deployment-7f9c-x2x4p`

type Waiting = { reason: string; message?: string }

/** The revision's one pod as the kubelet reports it: a user container waiting for `waiting`, or running and ready. */
function pod(state: Waiting | 'ready', ns = 'default', rev = REV): unknown {
  const container = state === 'ready' ? { name: 'user-container', ready: true, state: { running: { startedAt: '2026-01-01T00:00:00Z' } } } : { name: 'user-container', ready: false, state: { waiting: state } }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `${rev}-deployment-7f9c-x2x4p`, namespace: ns, labels: { 'serving.knative.dev/revision': rev } },
    status: { phase: state === 'ready' ? 'Running' : 'Pending', conditions: [{ type: 'PodScheduled', status: 'True' }], containerStatuses: [container] },
  }
}

function revisionWith(conditions: unknown[]): unknown {
  return { ...(revision(REV) as object), status: { conditions } }
}

interface Routes {
  hosts: Array<{ host: string; paths: Array<{ splits: Array<{ revision?: string; failing?: { reason: string; detail: string } }> }> }>
  sources: { revisionHealth: { podWatches: Record<string, { synced: boolean; pods: number }>; failing: Record<string, { reason: string; detail: string }> } }
}

async function routes(gw: Gateway): Promise<Routes> {
  return (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<Routes>()
}

async function fastFailures(gw: Gateway, reason: string): Promise<number> {
  const text = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  return Number(new RegExp(`^edge_revision_fast_failures_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0)
}

/** Requests sent now, each noting whether `after()` held when its answer came. */
function sendHeld(gw: Gateway, n: number, after: () => boolean): Array<Promise<Answer & { afterChange: boolean }>> {
  return Array.from({ length: n }, (_, i) => get(gw.ports.http, HOST, `/held/${i}`).then((r) => ({ ...r, afterChange: after() })))
}

/** `edge-gateway status` as a user runs it. */
function statusCommand(adminPort: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(projectRoot, 'src', 'main.ts'), 'status', '--admin-port', String(adminPort)], { cwd: projectRoot })
    let out = ''
    child.stdout.on('data', (c) => (out += c))
    child.on('exit', () => resolve(out))
  })
}

/**
 * Once the revision is no longer failing, a request is held again (not answered at once), and served
 * when a pod becomes its endpoint: the answer's status.
 */
async function heldThenServed(t: Test, gw: Gateway, env: KubeEnv): Promise<number> {
  await waitFor('the revision to be no longer failing', async () => (await routes(gw)).sources.revisionHealth.failing[`default/${REV}`] === undefined)
  const b = await startBackend('boot')
  t.teardown(() => b.close())
  const next = get(gw.ports.http, HOST, '/after')
  await waitForQueued(gw, REV, 1)
  apply(env.api, revisionPods(REV, b))
  return (await within(next, 'the held request to be served')).status
}

t.test('a pod in ImagePullBackOff: held requests answered at once with why, new ones not held; a ready pod serves again', async (t) => {
  const env = await startKubeEnv(t)
  apply(env.api, revision(REV), revisionIngress('boot', HOST, REV), pod({ reason: 'ContainerCreating' }))
  // A long cold-start budget: an answer before it can only be the fast failure.
  const gw = await startKubeGateway(t, env, ['--cold-start-timeout', '600'])
  await waitReady(gw)
  t.notOk(env.api.requests.some((r) => r.path.endsWith('/pods')), 'no pod is watched before a request is held')

  let changed = false
  const held = sendHeld(gw, 3, () => changed)
  await waitForQueued(gw, REV, 3)
  // The pod watch opens with the first held request; the pod is still being created: merely slow.
  await waitFor('the held revision\'s pod to be watched', async () => (await routes(gw)).sources.revisionHealth.podWatches[`default/${REV}`]?.pods === 1)
  const podRequests = env.api.requests.filter((r) => r.path.endsWith('/pods'))
  t.ok(podRequests.length > 0 && podRequests.every((r) => r.path === '/api/v1/namespaces/default/pods' && r.query.labelSelector === `serving.knative.dev/revision=${REV}`), 'namespaced, by the revision label')
  // One more slow state, then the failure: the answers must all come after the failure was written.
  apply(env.api, pod({ reason: 'ContainerCreating', message: 'pulling image' }))
  changed = true
  apply(env.api, pod({ reason: 'ImagePullBackOff', message: 'Back-off pulling image "registry.example/nope:1"' }))
  const answers = await within(Promise.all(held), 'the held requests to be answered')
  t.same(answers.map((a) => [a.status, a.headers['x-edge-reason'], a.headers['retry-after'], a.afterChange]), Array(3).fill([503, 'revision-failed', '2', true]), 'all three answered 503 revision-failed after the pod failed, none before')
  t.match(answers[0]!.body, `revision default/${REV} cannot become ready: pod ${POD} container user-container is ImagePullBackOff: Back-off pulling image "registry.example/nope:1"; check the image's name and tag`)

  const again = await get(gw.ports.http, HOST, '/new')
  t.equal(again.headers['x-edge-reason'], 'revision-failed', 'a new request gets the same answer')
  t.equal((await revisionState(gw, REV))?.queued, 0, 'without being held')
  t.equal(await fastFailures(gw, 'ImagePullBackOff'), 4, 'four fast failures counted, by Kubernetes reason')

  const split = (await routes(gw)).hosts.find((h) => h.host === HOST)!.paths[0]!.splits[0]!
  t.match(split.failing, { reason: 'revision-failed', detail: /ImagePullBackOff/ }, '/debug/routes shows the failing revision and why')
  const shown = await statusCommand(gw.ports.admin)
  t.match(shown, new RegExp(`${HOST} -> ${REV}: failing \\(503 revision-failed\\): .*ImagePullBackOff`), 'edge-gateway status says why')

  // The pod recovers: requests are held again, and served once the pod is an endpoint.
  apply(env.api, pod('ready'))
  t.equal(await heldThenServed(t, gw, env), 200, 'held, then served by the ready pod')
  t.equal(await fastFailures(gw, 'ImagePullBackOff'), 4, 'no more fast failures')
  await waitFor('the pod watch to close once the revision serves', async () => Object.keys((await routes(gw)).sources.revisionHealth.podWatches).length === 0)
})

t.test('a Revision with ResourcesAvailable=False answers its held requests at once; Deploying again holds them', async (t) => {
  const env = await startKubeEnv(t)
  apply(env.api, revision(REV), revisionIngress('boot', HOST, REV))
  const gw = await startKubeGateway(t, env, ['--cold-start-timeout', '600'])
  await waitReady(gw)
  let changed = false
  const held = sendHeld(gw, 2, () => changed)
  await waitForQueued(gw, REV, 2)
  changed = true
  apply(env.api, revisionWith([
    { type: 'Ready', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'Initial scale was never achieved' },
    { type: 'ResourcesAvailable', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'Initial scale was never achieved' },
  ]))
  const answers = await within(Promise.all(held), 'the held requests to be answered')
  t.same(answers.map((a) => [a.status, a.headers['x-edge-reason'], a.afterChange]), Array(2).fill([503, 'revision-failed', true]))
  t.match(answers[0]!.body, `revision default/${REV} cannot become ready: its ResourcesAvailable condition is ProgressDeadlineExceeded: Initial scale was never achieved`)
  t.equal((await get(gw.ports.http, HOST, '/new')).headers['x-edge-reason'], 'revision-failed', 'a new request is answered at once')
  t.equal(await fastFailures(gw, 'ProgressDeadlineExceeded'), 3)

  apply(env.api, revisionWith([{ type: 'ResourcesAvailable', status: 'Unknown', reason: 'Deploying' }]))
  t.equal(await heldThenServed(t, gw, env), 200, 'held again, then served')
})

t.test('with --namespace, pods are watched only in that namespace; a crash loop says its last exit', async (t) => {
  const env = await startKubeEnv(t)
  const ns = 'team-a'
  apply(env.api, revision(REV, {}, {}, ns), revisionIngress('boot', HOST, REV, ns), pod({ reason: 'ContainerCreating' }, ns))
  const gw = await startKubeGateway(t, env, ['--cold-start-timeout', '600', '--namespace', ns])
  await waitReady(gw)
  const held = get(gw.ports.http, HOST, '/held')
  await waitForQueued(gw, REV, 1, 10_000, ns)
  const crashing = pod({ reason: 'CrashLoopBackOff', message: 'back-off 10s restarting failed container' }, ns) as { status: { containerStatuses: Array<Record<string, unknown>> } }
  crashing.status.containerStatuses[0]!.lastState = { terminated: { exitCode: 1, reason: 'Error', message: 'DATABASE_URL is not set' } }
  apply(env.api, crashing)
  const r = await within(held, 'the held request to be answered')
  t.equal(r.headers['x-edge-reason'], 'revision-failed')
  t.match(r.body, 'is CrashLoopBackOff: back-off 10s restarting failed container; last exit code 1 (Error): DATABASE_URL is not set; the container exits; read its logs')
  t.equal(await fastFailures(gw, 'CrashLoopBackOff'), 1)
  const podRequests = env.api.requests.filter((q) => q.path.endsWith('/pods'))
  t.ok(podRequests.length > 0, 'the pods were watched')
  t.ok(podRequests.every((q) => q.path === `/api/v1/namespaces/${ns}/pods`), 'only in the namespace the gateway is scoped to')
})

t.test('--workers: the primary watches the pods, the workers answer their held requests', async (t) => {
  const env = await startKubeEnv(t)
  apply(env.api, revision(REV), revisionIngress('boot', HOST, REV), pod({ reason: 'ContainerCreating' }))
  const main = path.join(projectRoot, 'src', 'main.ts')
  const gw = await startGatewayProcess(t, process.execPath, [main, '--kubernetes', '--kubeconfig', env.kubeconfig, '--workers', '2', '--cold-start-timeout', '600', '--log-level', 'warn'], {})
  const metric = async (re: RegExp): Promise<number> => Number(re.exec((await get(gw.admin, 'localhost', '/metrics')).body)?.[1] ?? 0)
  let changed = false
  const held = Array.from({ length: 4 }, (_, i) => get(gw.http, HOST, `/held/${i}`).then((r) => ({ ...r, afterChange: changed })))
  await waitFor('4 requests held across the workers', async () => (await metric(new RegExp(`^edge_revision_requests_queued\\{namespace="default",revision="${REV}"\\} (\\d+)$`, 'm'))) === 4)
  await waitFor('the primary to watch the pods', async () => (await get(gw.admin, 'localhost', '/debug/routes')).json<Routes>().sources.revisionHealth.podWatches[`default/${REV}`]?.pods === 1)
  changed = true
  apply(env.api, pod({ reason: 'ErrImagePull', message: 'manifest unknown' }))
  const answers = await within(Promise.all(held), 'the held requests to be answered')
  t.same(answers.map((a) => [a.status, a.headers['x-edge-reason'], a.afterChange]), Array(4).fill([503, 'revision-failed', true]), 'the workers let their held requests go, after the pod failed')
  t.match(answers[0]!.body, 'is ErrImagePull: manifest unknown')
  t.equal((await get(gw.http, HOST, '/new')).headers['x-edge-reason'], 'revision-failed', 'a new request is answered at once')
  t.equal(await metric(/^edge_revision_fast_failures_total\{reason="ErrImagePull"\} (\d+)$/m), 5, 'counted in the workers, summed by the primary')
})
