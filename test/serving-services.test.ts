// Knative Services as users write them, in the files source: a Service becomes a Configuration, a
// Route and a Revision per template change, served at the domain template's host; a template edit
// rolls out with no failed request, the new revision taking traffic only once it is ready; Serving's
// validation rejects a bad file whole (its last good version keeps serving), and a traffic entry
// naming another Service's revision is refused with the Service's last good traffic kept.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { get, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Gateway } from '../src/gateway.ts'

// The app: says who answered; `DELAY` ms before it listens (a slow start), then ready.
const APP = `import http from 'node:http'
const greeting = process.env.GREETING ?? 'Hello'
setTimeout(() => http.createServer((req, res) => res.end(greeting + ' from ' + process.env.K_REVISION + ' of ' + process.env.K_SERVICE)).listen(Number(process.env.PORT), '127.0.0.1'), Number(process.env.DELAY ?? 0))
process.on('SIGTERM', () => process.exit(0))
`

function service(name: string, opts: { greeting?: string; delay?: number; revisionName?: string; traffic?: unknown[]; labels?: Record<string, string> } = {}): unknown {
  const env = [`GREETING=${opts.greeting ?? 'Hello'}`, `DELAY=${opts.delay ?? 0}`].join(' ')
  return {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Service',
    metadata: { name, namespace: 'example', labels: opts.labels },
    spec: {
      template: {
        metadata: { name: opts.revisionName, annotations: { 'edge.knative.dev/local-command': `${env} node app.mjs` } },
        spec: { containers: [{ image: 'example.com/app', ports: [{ containerPort: 8080 }] }] },
      },
      traffic: opts.traffic,
    },
  }
}

interface Described {
  problems: Array<{ source: string; document?: number; object?: string; field: string; reason: string; code: string }>
  sources: { serving: { services: Array<{ service: string; url: string; latestCreatedRevision?: string; latestReadyRevision?: string; revisions: string[]; traffic?: Array<{ revisionName: string; percent: number; tag?: string }> }> } }
}

async function routes(gw: Gateway): Promise<Described> {
  return (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<Described>()
}

async function serviceState(gw: Gateway, key: string): Promise<Described['sources']['serving']['services'][number] | undefined> {
  return (await routes(gw)).sources.serving.services.find((s) => s.service === key)
}

async function setup(t: { teardown(fn: () => unknown): void }, objects: unknown[], args: string[] = []): Promise<{ gw: Gateway; dir: string }> {
  const dir = tempDir()
  fs.writeFileSync(path.join(dir, 'app.mjs'), APP)
  writeManifest(dir, 'service.yaml', objects)
  const gw = await startTestGateway(dir, ['--scale-to-zero-after', '30', ...args])
  t.teardown(() => gw.close())
  return { gw, dir }
}

t.test('a Service as a tutorial writes it: its URL, a first revision started by the first request', async (t) => {
  const { gw } = await setup(t, [service('helloworld')])
  const first = await get(gw.ports.http, 'helloworld.example.example.com', '/')
  t.equal(first.status, 200)
  t.equal(first.body, 'Hello from helloworld-00001 of helloworld', 'the derived revision, with K_REVISION and K_SERVICE set')
  t.ok(first.headers['x-edge-cold-start-ms'] !== undefined, 'it was started by this request')
  const cl = await get(gw.ports.local, 'helloworld.example.svc.cluster.local', '/')
  t.equal(cl.status, 200, 'and its cluster-local name on the local listener')
  await waitFor('the revision to be seen ready', async () => (await serviceState(gw, 'example/helloworld'))?.latestReadyRevision === 'helloworld-00001')
  const st = (await serviceState(gw, 'example/helloworld'))!
  t.same({ url: st.url, created: st.latestCreatedRevision, revisions: st.revisions, traffic: st.traffic }, {
    url: 'http://helloworld.example.example.com',
    created: 'helloworld-00001',
    revisions: ['helloworld-00001'],
    traffic: [{ revisionName: 'helloworld-00001', percent: 100, latestRevision: true }],
  })
  const rev = gw.store.get('Revision', 'example/helloworld-00001')!
  t.match(rev.metadata.labels, { 'serving.knative.dev/service': 'helloworld', 'serving.knative.dev/configuration': 'helloworld', 'serving.knative.dev/configurationGeneration': '1' }, 'labelled as Serving labels it')
  t.ok(gw.store.get('Configuration', 'example/helloworld'), 'a Configuration of the same name')
})

t.test('a template edit rolls out: the old revision serves until the new one is ready, no request fails', async (t) => {
  const { gw, dir } = await setup(t, [service('roll')])
  t.equal((await get(gw.ports.http, 'roll.example.example.com')).body, 'Hello from roll-00001 of roll')
  await waitFor('roll-00001 ready', async () => (await serviceState(gw, 'example/roll'))?.latestReadyRevision === 'roll-00001')

  // The new template starts slowly (600 ms before it listens): traffic must stay on roll-00001 meanwhile.
  const answers: Array<{ status: number; body: string; held: boolean }> = []
  let looping = true
  const loop = (async () => {
    while (looping) {
      const r = await get(gw.ports.http, 'roll.example.example.com')
      answers.push({ status: r.status, body: r.body, held: r.headers['x-edge-cold-start-ms'] !== undefined })
    }
  })()
  await waitFor('answers before the edit', () => answers.length >= 5)
  writeManifest(dir, 'service.yaml', [service('roll', { greeting: 'Howdy', delay: 600 })])
  await waitFor('traffic on roll-00002', () => answers.some((a) => a.body.startsWith('Howdy from roll-00002')), 20_000)
  await waitFor('a few more answers', () => answers.length >= answers.findIndex((a) => a.body.startsWith('Howdy')) + 5)
  looping = false
  await loop
  t.same(answers.filter((a) => a.status !== 200), [], `no failed request among ${answers.length}`)
  const firstNew = answers.findIndex((a) => a.body.startsWith('Howdy from roll-00002'))
  t.ok(answers.slice(0, firstNew).every((a) => a.body === 'Hello from roll-00001 of roll'), 'until then, roll-00001 answered')
  t.notOk(answers.some((a) => a.held), 'no request was held: the new revision was started ahead of its traffic')
  t.ok(answers.slice(firstNew).every((a) => a.body === 'Howdy from roll-00002 of roll'), 'from then on, roll-00002')
  const st = (await serviceState(gw, 'example/roll'))!
  t.same([st.revisions, st.latestCreatedRevision, st.latestReadyRevision], [['roll-00001', 'roll-00002'], 'roll-00002', 'roll-00002'])
})

t.test('traffic by revision name and tag: a split, a tag host, a tag header', async (t) => {
  const { gw, dir } = await setup(t, [service('split', { revisionName: 'split-blue' })])
  t.equal((await get(gw.ports.http, 'split.example.example.com')).body, 'Hello from split-blue of split')
  writeManifest(dir, 'service.yaml', [
    service('split', { revisionName: 'split-green', greeting: 'Hi', traffic: [{ revisionName: 'split-blue', percent: 50 }, { latestRevision: true, percent: 50, tag: 'candidate' }] }),
  ])
  // latestRevision follows the latest *ready* revision: split-blue until split-green has started.
  await waitFor('split-green to be ready and in the traffic', async () => {
    const st = await serviceState(gw, 'example/split')
    return st?.latestReadyRevision === 'split-green' && st.traffic?.some((x) => x.revisionName === 'split-green') === true
  })
  t.equal((await get(gw.ports.http, 'candidate-split.example.example.com')).body, 'Hi from split-green of split', 'the tag host reaches the tagged revision')
  t.equal((await get(gw.ports.http, 'split.example.example.com', '/', { 'knative-serving-tag': 'candidate' })).body, 'Hi from split-green of split', 'so does the tag header')
  const counts = new Map<string, number>()
  for (let i = 0; i < 200; i++) {
    const body = (await get(gw.ports.http, 'split.example.example.com')).body
    counts.set(body, (counts.get(body) ?? 0) + 1)
  }
  const blue = counts.get('Hello from split-blue of split') ?? 0
  const green = counts.get('Hi from split-green of split') ?? 0
  t.equal(blue + green, 200, 'every answer came from one of the two')
  t.ok(blue >= 60 && green >= 60, `roughly 50/50 (${blue}/${green}; a fair split falls outside 60-140 less than once in 10^7)`)
})

t.test('Serving\'s validation: a bad file is rejected whole and the last good version keeps serving', async (t) => {
  const { gw, dir } = await setup(t, [service('valid')])
  t.equal((await get(gw.ports.http, 'valid.example.example.com')).status, 200)
  writeManifest(dir, 'service.yaml', [
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'settings' } },
    service('valid', { traffic: [{ latestRevision: true, percent: 60 }, { latestRevision: true, percent: 30, tag: 'Bad_Tag' }] }),
  ])
  await waitFor('the problems to be reported', async () => (await routes(gw)).problems.length >= 3)
  const problems = (await routes(gw)).problems.map((p) => [p.document, p.field, p.code, p.source.endsWith('service.yaml')])
  t.same(problems, [
    [0, 'kind', 'EDGE_ERR_KIND', true],
    [1, 'spec.traffic[1].tag', 'EDGE_ERR_ROUTE_TAG', true],
    [1, 'spec.traffic', 'EDGE_ERR_KSERVICE_TRAFFIC', true],
  ], 'each problem names the file, the document and the field')
  t.equal((await get(gw.ports.http, 'valid.example.example.com')).status, 200, 'the last good Service keeps serving')
})

t.test('a traffic entry naming a revision the Service does not own, and a changed template under an old name', async (t) => {
  const { gw, dir } = await setup(t, [service('owned', { revisionName: 'owned-one' })])
  t.equal((await get(gw.ports.http, 'owned.example.example.com')).body, 'Hello from owned-one of owned')
  writeManifest(dir, 'service.yaml', [service('owned', { revisionName: 'owned-one', traffic: [{ revisionName: 'other-00001', percent: 100 }] })])
  await waitFor('RevisionNotOwned', async () => (await routes(gw)).problems.some((p) => p.code === 'EDGE_ERR_REVISION_NOT_OWNED'))
  const p = (await routes(gw)).problems.find((x) => x.code === 'EDGE_ERR_REVISION_NOT_OWNED')!
  t.match(p, { object: 'Service example/owned', field: 'spec.traffic[0].revisionName', document: 0, reason: /other-00001 is not a revision of this Service \(its revisions: owned-one\)/ })
  t.equal((await get(gw.ports.http, 'owned.example.example.com')).body, 'Hello from owned-one of owned', 'the last good traffic stays')

  writeManifest(dir, 'service.yaml', [service('owned', { revisionName: 'owned-one', greeting: 'Changed' })])
  await waitFor('the changed template under an old name', async () => (await routes(gw)).problems.some((x) => x.code === 'EDGE_ERR_REVISION_TEMPLATE_CHANGED'))
  t.notOk((await routes(gw)).problems.some((x) => x.code === 'EDGE_ERR_REVISION_NOT_OWNED'), 'the traffic problem is gone with its cause')
  t.equal((await get(gw.ports.http, 'owned.example.example.com')).body, 'Hello from owned-one of owned', 'the revision of the old template keeps serving')
})

t.test('the template\'s container env reaches the revision\'s process', async (t) => {
  const svc = {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Service',
    metadata: { name: 'env', namespace: 'example' },
    spec: { template: { metadata: { annotations: { 'edge.knative.dev/local-command': 'node app.mjs' } }, spec: { containers: [{ image: 'example.com/app', env: [{ name: 'GREETING', value: 'Servus' }] }] } } },
  }
  const { gw } = await setup(t, [svc])
  t.equal((await get(gw.ports.http, 'env.example.example.com')).body, 'Servus from env-00001 of env')
})

t.test('--domain-template and a cluster-local Service', async (t) => {
  const { gw } = await setup(t, [service('templ'), service('quiet', { labels: { 'networking.knative.dev/visibility': 'cluster-local' } })], ['--domain-template', '{{.Name}}-{{.Namespace}}.{{.Domain}}', '--domain', 'apps.test'])
  t.equal((await get(gw.ports.http, 'templ-example.apps.test')).status, 200, 'the host follows the template')
  t.equal((await get(gw.ports.http, 'templ.example.apps.test')).status, 404, 'not the default form')
  t.equal((await get(gw.ports.http, 'quiet-example.apps.test')).status, 404, 'a cluster-local Service has no public host')
  t.equal((await get(gw.ports.local, 'quiet.example.svc.cluster.local')).body, 'Hello from quiet-00001 of quiet')
  t.equal((await serviceState(gw, 'example/quiet'))?.url, 'http://quiet.example.svc.cluster.local')
})
