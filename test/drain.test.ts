// Graceful shutdown as Kubernetes asks for it (SIGTERM), on a real gateway process: readiness fails at
// once, serving goes on through --drain-seconds with HTTP/1.1 connections closed after each response,
// a request in flight finishes, a request still waiting for a pod gets a clear 503, and the exit is 0.
import t from 'tap'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePorts, get, kingress, revision, revisionPods, serviceFor, simpleIngress, startBackend, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

t.test('SIGTERM: readiness fails, Connection: close, in-flight finishes, held gets 503 draining, exit 0', async (t) => {
  const app = await startBackend('app')
  const slow = await startBackend('slow', (_req, res) => setTimeout(() => res.end('finished'), 3000))
  t.teardown(async () => {
    await app.close()
    await slow.close()
  })
  const dir = tempDir()
  const revRoute = (name: string, rev: string): unknown =>
    kingress(name, { rules: [{ hosts: [`${name}.example.com`], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: rev, servicePort: 80, appendHeaders: { 'Knative-Serving-Revision': rev, 'Knative-Serving-Namespace': 'default' } }] }] } }] })
  writeManifest(dir, 'app.yaml', [
    ...serviceFor('app', app),
    simpleIngress('app', ['app.example.com'], [['app', 100]]),
    revision('slow-00001'),
    revisionPods('slow-00001', slow),
    revRoute('slow', 'slow-00001'),
    revision('cold-00001'), // no pods: requests are held
    revRoute('cold', 'cold-00001'),
  ])
  const [http, local, https, admin] = await freePorts(4)
  const child = spawn(
    process.execPath,
    [path.join(root, 'src', 'main.ts'), '--workers', '1', '--manifests', dir, '--listen-address', '127.0.0.1', '--http-port', String(http), '--local-port', String(local), '--https-port', String(https), '--admin-port', String(admin), '--drain-seconds', '2'],
    { cwd: root, env: { ...process.env, EDGE_LOG_LEVEL: 'warn' }, stdio: 'ignore' },
  )
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  await waitFor('the gateway to be ready', async () => (await get(admin!, 'localhost', '/readyz').catch(() => undefined))?.status === 200, 20_000)

  const inFlight = get(http!, 'slow.example.com')
  const held = get(http!, 'cold.example.com')
  await waitFor('the slow request to reach its pod', () => slow.seen.length === 1)
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  child.kill('SIGTERM')
  await waitFor('readiness to fail', async () => (await get(admin!, 'localhost', '/readyz').catch(() => undefined))?.status === 503)
  const during = await get(http!, 'app.example.com')
  t.equal(during.status, 200, 'still serving during the drain period')
  t.equal(during.headers.connection, 'close', 'and asking clients to reconnect elsewhere')
  const h = await held
  t.equal(h.status, 503, 'the request still waiting for a pod at the end of the drain')
  t.equal(h.headers['x-edge-reason'], 'draining')
  t.equal(h.headers['retry-after'], '1')
  const f = await inFlight
  t.equal(f.status, 200)
  t.equal(f.body, 'finished', 'the request in flight finished')
  t.equal(await exited, 0, 'exit 0')
})
