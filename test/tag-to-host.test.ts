// Knative Serving 1.22's `networking.internal.knative.dev/tag-to-host` KIngress annotation (issue 22
// item 8): which hosts belong to which traffic tag. It changes no routing; /debug/routes names each
// host's tag, and a malformed or stale annotation is a configuration problem naming the field while
// the hosts go on being served.
import t from 'tap'
import { endpointSlice, get, kingress, revision, service, startBackend, startTestGateway, tempDir, writeManifest } from './helpers/gateway.ts'
import type { ConfigProblem } from '../src/model/problems.ts'

const ANN = 'networking.internal.knative.dev/tag-to-host'
const FIELD = `metadata.annotations["${ANN}"]`

const pod = await startBackend('pod')
t.teardown(() => pod.close())

function routed(name: string, hosts: string[], annotation: string | undefined): unknown {
  const ing = kingress(name, {
    rules: [{ hosts, visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }],
  }) as { metadata: { annotations: Record<string, string> } }
  if (annotation !== undefined) ing.metadata.annotations[ANN] = annotation
  return ing
}

const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  service('app', [{ name: 'http', port: 80 }]),
  endpointSlice('app', [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1' }], 'default', 'app-slice'),
  // A Route with a tag: the gateway translates it as Serving would, annotation included.
  revision('hello-00001'),
  revision('hello-00002'),
  endpointSlice('hello-00001-private', [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1' }], 'default', 'hello-00001-private'),
  endpointSlice('hello-00002-private', [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1' }], 'default', 'hello-00002-private'),
  {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Route',
    metadata: { name: 'hello', namespace: 'default' },
    status: { url: 'http://hello.default.example.com', traffic: [{ revisionName: 'hello-00001', percent: 100 }, { tag: 'candidate', revisionName: 'hello-00002', percent: 0 }] },
  },
  routed('not-json', ['broken.example.com'], '{candidate: [x]}'),
  routed('two-tags', ['both.example.com'], '{"a":["both.example.com"],"b":["both.example.com"]}'),
  routed('stale', ['fresh.example.com'], '{"blue":["blue.example.com","fresh.example.com"]}'),
])
const gw = await startTestGateway(dir)
t.teardown(() => gw.close())

interface Routes {
  hosts: Array<{ host: string; tag?: string }>
  problems: ConfigProblem[]
}
const routes = (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<Routes>()
const tagOf = (host: string): string | undefined => routes.hosts.find((h) => h.host === host)?.tag

t.test("a Route's tag hosts are named with their tag; the default target's are not", async (t) => {
  t.equal(tagOf('candidate-hello.default.example.com'), 'candidate')
  t.equal(tagOf('candidate-hello.default.svc.cluster.local'), 'candidate')
  t.equal(tagOf('candidate-hello.default'), undefined, 'Serving lists only the primary cluster-local name')
  t.equal(tagOf('hello.default.example.com'), undefined)
  const r = await get(gw.ports.http, 'candidate-hello.default.example.com')
  t.equal(r.status, 200, 'the tag host routes as before')
  t.equal(r.json().headers['knative-serving-tag'], 'candidate')
})

t.test('a bad annotation is a problem naming the field; the hosts are still served', async (t) => {
  const about = (ingress: string): ConfigProblem[] => routes.problems.filter((p) => p.object === `Ingress default/${ingress}`)
  t.match(about('not-json'), [{ field: FIELD, code: 'EDGE_ERR_TAG_TO_HOST', reason: /is not JSON; Knative Serving writes a map from each traffic tag to its hosts/ }])
  t.match(about('two-tags'), [{ field: FIELD, code: 'EDGE_ERR_TAG_TO_HOST', reason: /host both\.example\.com is listed under tags "a" and "b"/ }])
  t.match(about('stale'), [{ field: FIELD, code: 'EDGE_ERR_TAG_TO_HOST', reason: /names blue\.example\.com, which no rule of this ingress has/ }])
  t.equal(tagOf('fresh.example.com'), 'blue', 'what the stale annotation says of a host it does serve still holds')
  for (const host of ['broken.example.com', 'both.example.com', 'fresh.example.com']) {
    t.equal((await get(gw.ports.http, host)).status, 200, `${host} is served`)
  }
})
