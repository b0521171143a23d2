// The manifest directory: live reload, atomic swaps, and bad input that loses nothing.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { endpointSlice, get, serviceFor, silentLog, simpleIngress, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { ObjectStore } from '../src/sources/store.ts'
import { FilesSource } from '../src/sources/files.ts'
import type { Backend } from './helpers/gateway.ts'
import type { Gateway } from '../src/gateway.ts'

let one: Backend
let two: Backend

t.before(async () => {
  one = await startBackend('one')
  two = await startBackend('two')
})
t.teardown(async () => {
  await one.close()
  await two.close()
})

interface DebugRoutes {
  version: number
  hosts: Array<{ host: string }>
  problems: Array<{ source: string; document?: number; field: string; reason: string; code: string }>
}

async function debug(gw: Gateway): Promise<DebugRoutes> {
  return (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<DebugRoutes>()
}

t.test('a bad file is reported with file, document, field and reason, and its last good version keeps serving', async (t) => {
  const dir = tempDir()
  writeManifest(dir, 'backends.yaml', [...serviceFor('one', one), ...serviceFor('two', two)])
  writeManifest(dir, 'app.yaml', [simpleIngress('app', ['app.example.com'], [['one', 100]])])
  writeManifest(dir, 'other.yaml', [simpleIngress('other', ['other.example.com'], [['two', 100]])])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  t.equal((await get(gw.ports.http, 'app.example.com')).json().backend, 'one')

  // Second document breaks a rule: percents that do not total 100.
  writeManifest(dir, 'app.yaml', [simpleIngress('app', ['app.example.com'], [['two', 100]]), simpleIngress('broken', ['broken.example.com'], [['one', 60], ['two', 30]])])
  await waitFor('the problem to be reported', async () => (await debug(gw)).problems.length > 0)
  const p = (await debug(gw)).problems[0]!
  t.match(p.source, /app\.yaml$/, 'names the file')
  t.equal(p.document, 1, 'names the document')
  t.match(p.field, /spec\.rules\[0\]\.http\.paths\[0\]\.splits/, 'names the field')
  t.match(p.reason, /100/, 'says why')
  t.match(p.code, /^EDGE_ERR_/)
  t.equal((await get(gw.ports.http, 'app.example.com')).json().backend, 'one', 'the last good version of the file still serves')
  t.equal((await get(gw.ports.http, 'broken.example.com')).status, 404, 'nothing of the bad version was applied')

  // Unparseable YAML in an unrelated file: nothing else changes.
  fs.writeFileSync(path.join(dir, 'junk.yaml'), 'kind: [unclosed\n  - : :')
  await waitFor('the parse error to be reported', async () => (await debug(gw)).problems.some((x) => x.code === 'EDGE_ERR_PARSE'))
  const parseProblem = (await debug(gw)).problems.find((x) => x.code === 'EDGE_ERR_PARSE')!
  t.match(parseProblem.source, /junk\.yaml$/, 'the parse error names its file')
  t.match(parseProblem.reason, /^not valid YAML: .+ at line \d+, column \d+$/, 'and the line and column where parsing failed')
  t.equal((await get(gw.ports.http, 'other.example.com')).json().backend, 'two', 'an unrelated bad file drops nothing')

  // Fixing the file applies the new version and clears its problems.
  writeManifest(dir, 'app.yaml', [simpleIngress('app', ['app.example.com'], [['two', 100]])])
  fs.unlinkSync(path.join(dir, 'junk.yaml'))
  await waitFor('the fix to apply', async () => (await get(gw.ports.http, 'app.example.com')).json().backend === 'two')
  await waitFor('problems to clear', async () => (await debug(gw)).problems.length === 0)
  t.pass('fixed file served, problems cleared')
})

t.test('files in subdirectories, JSON files and List objects are read; a kind not served is a problem, never ignored', async (t) => {
  const dir = tempDir()
  writeManifest(dir, 'nested/deeper/backends.yaml', serviceFor('one', one))
  fs.writeFileSync(
    path.join(dir, 'list.json'),
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [simpleIngress('json', ['json.example.com'], [['one', 100]])] }),
  )
  writeManifest(dir, 'deployment.yaml', [{ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' } }])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  t.equal((await get(gw.ports.http, 'json.example.com')).json().backend, 'one')
  const problems = (await debug(gw)).problems
  t.equal(problems.length, 1, 'a Deployment is a problem of its own file')
  t.match(problems[0], { document: 0, field: 'kind', code: 'EDGE_ERR_KIND', reason: /^kind Deployment of apiVersion apps\/v1 is not served; served kinds are / })
})

t.test('a change is applied while traffic flows, and no request fails', async (t) => {
  const dir = tempDir()
  writeManifest(dir, 'backends.yaml', [...serviceFor('one', one), ...serviceFor('two', two)])
  writeManifest(dir, 'app.yaml', [simpleIngress('live', ['live.example.com'], [['one', 100]])])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  let stop = false
  let failures = 0
  let total = 0
  const seen = new Set<string>()
  const worker = async (): Promise<void> => {
    while (!stop) {
      const r = await get(gw.ports.http, 'live.example.com').catch(() => undefined)
      total++
      if (!r || r.status !== 200) failures++
      else seen.add(r.json().backend)
    }
  }
  const workers = Array.from({ length: 8 }, worker)
  for (let i = 0; i < 10; i++) {
    const target = i % 2 === 0 ? 'two' : 'one'
    writeManifest(dir, 'app.yaml', [simpleIngress('live', ['live.example.com'], [[target, 100]])])
    await waitFor(`switch ${i} to ${target}`, async () => (await get(gw.ports.http, 'live.example.com')).json().backend === target)
  }
  stop = true
  await Promise.all(workers)
  t.ok(total > 50, `${total} requests during 10 updates`)
  t.equal(failures, 0, 'no request failed')
  t.same([...seen].sort(), ['one', 'two'])
})

t.test('the gateway refuses to start on a directory that does not exist, naming the option', async (t) => {
  const dir = path.join(tempDir(), 'nope')
  // The code leads the message (what main prints) and is on the error for code that handles it.
  await t.rejects(startTestGateway(dir), { name: 'EdgeError', code: 'EDGE_ERR_MANIFESTS', message: `EDGE_ERR_MANIFESTS: ${dir} is not a readable directory (set --manifests DIR)` })
})

t.test('files that come and go leave nothing of theirs in the store (issue 23: a soak\'s pod files)', async (t) => {
  const dir = tempDir()
  const store = new ObjectStore()
  const files = new FilesSource({ dir, store, log: silentLog })
  writeManifest(dir, 'backends.yaml', serviceFor('one', one))
  await files.start()
  t.teardown(() => files.stop())
  const baseline = store.sourceCount
  t.equal(baseline, 1, 'one file, one source')
  const pods = Array.from({ length: 40 }, (_, i) => `one-pod-${i}`)
  pods.forEach((name, i) => writeManifest(dir, `${name}.yaml`, [endpointSlice('one', [{ name: 'http', port: 10_000 + i }], [{ ip: '127.0.0.1' }], 'default', name)]))
  await waitFor('every pod file read', () => pods.every((name) => store.get('EndpointSlice', `default/${name}`) !== undefined))
  t.equal(store.sourceCount, baseline + pods.length, 'each pod file is a source')
  for (const name of pods) fs.rmSync(path.join(dir, `${name}.yaml`))
  await waitFor('every pod file gone', () => pods.every((name) => store.get('EndpointSlice', `default/${name}`) === undefined))
  t.equal(store.sourceCount, baseline, 'and leaves nothing behind when it goes')
  t.ok(store.get('Service', 'default/one'), 'the file that stayed keeps its objects')
})
