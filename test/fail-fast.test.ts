// A revision that cannot start fails fast and says why: a local process that exits before it is ready
// answers its held requests at once with 503 revision-failed, the exit code and its last lines of
// output, instead of letting them wait for the cold-start timeout; new requests get the same answer
// without being held; once the Revision is fixed, requests are held and served again.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { get, revision, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { revisionIngress } from './helpers/activator.ts'

const APP = `import http from 'node:http'
http.createServer((req, res) => res.end('fixed')).listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
`

function manifests(dir: string, command: string): void {
  writeManifest(dir, 'app.yaml', [revision('crash-00001', {}, { 'edge.knative.dev/local-command': command }), revisionIngress('crash', 'crash.example.com', 'crash-00001')])
}

t.test('a process that exits before it is ready: held requests answered at once, with why; then fixed', async (t) => {
  const dir = tempDir()
  fs.writeFileSync(path.join(dir, 'app.mjs'), APP)
  fs.writeFileSync(path.join(dir, 'crash.mjs'), `console.error('boom: DATABASE_URL is not set'); process.exit(3)\n`)
  manifests(dir, 'node crash.mjs')
  // A long cold-start budget: an answer before it can only be the fast failure.
  const gw = await startTestGateway(dir, ['--cold-start-timeout', '600'])
  t.teardown(() => gw.close())
  const held = await Promise.all(Array.from({ length: 5 }, (_, i) => get(gw.ports.http, 'crash.example.com', `/held/${i}`)))
  t.same(held.map((r) => [r.status, r.headers['x-edge-reason']]), Array(5).fill([503, 'revision-failed']), 'every held request answered 503 revision-failed')
  t.match(held[0]!.body, /revision default\/crash-00001 exited with code 3 before it was ready; its last output: boom: DATABASE_URL is not set; check edge\.knative\.dev\/local-command/)
  t.equal(held[0]!.headers['retry-after'], '2')

  const queuedBefore = gw.plane.throttlerByKey('rev:default/crash-00001')?.queued ?? 0
  const again = await get(gw.ports.http, 'crash.example.com', '/again')
  t.equal(again.headers['x-edge-reason'], 'revision-failed', 'a new request gets the same answer')
  t.equal(gw.plane.throttlerByKey('rev:default/crash-00001')?.queued ?? 0, queuedBefore, 'without being held')
  const metrics = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  t.match(metrics, /^edge_revision_fast_failures_total\{reason="process-exited"\} 6$/m, 'six fast failures counted (five held, one new)')

  manifests(dir, 'node app.mjs')
  await waitFor('the fixed revision to serve', async () => (await get(gw.ports.http, 'crash.example.com', '/fixed')).body === 'fixed', 20_000)
  t.pass('a fixed Revision is held and served again')
})

t.test('a command that does not exist says so', async (t) => {
  const dir = tempDir()
  manifests(dir, 'no-such-command-for-edge-gateway --port $PORT')
  const gw = await startTestGateway(dir, ['--cold-start-timeout', '600'])
  t.teardown(() => gw.close())
  const r = await get(gw.ports.http, 'crash.example.com')
  t.equal(r.status, 503)
  t.match(r.body, /exited with code 127 \(command not found\) before it was ready; its last output: .*no-such-command-for-edge-gateway.*not found/)
  const st = (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<{ hosts: Array<{ host: string; paths: Array<{ splits: Array<{ failing?: { reason: string; detail: string } }> }> }>; sources: { localRunner: Record<string, unknown> } }>()
  t.ok(st.sources.localRunner, 'the local runner is described in /debug/routes')
  const split = st.hosts.find((h) => h.host === 'crash.example.com')?.paths[0]?.splits[0]
  t.match(split?.failing, { reason: 'revision-failed', detail: /command not found/ }, 'the failing revision and why, on its split')
})
