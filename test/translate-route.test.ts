import t from 'tap'
import { routeToIngress } from '../src/translate/route.ts'
import type { TranslateOptions } from '../src/translate/options.ts'
import type { IngressBackendSplit, Route } from '../src/model/k8s.ts'
import { problemsOf } from './helpers/problems.ts'

const opts: TranslateOptions = { ingressClass: 'edge.ingress.networking.knative.dev', domain: 'example.com', clusterDomain: 'cluster.local' }

function split(rev: string, percent: number, ns = 'default'): IngressBackendSplit {
  return {
    serviceNamespace: ns,
    serviceName: rev,
    servicePort: 80,
    percent,
    appendHeaders: { 'Knative-Serving-Revision': rev, 'Knative-Serving-Namespace': ns },
  }
}

// The §1.8 Route: hello-00001 90%, hello-00002 10% tagged candidate, as Serving resolves it.
function helloRoute(): Route {
  return {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Route',
    metadata: { name: 'hello', namespace: 'default', labels: { 'serving.knative.dev/service': 'hello' } },
    spec: {
      traffic: [
        { configurationName: 'hello', latestRevision: false, revisionName: 'hello-00001', percent: 90 },
        { tag: 'candidate', revisionName: 'hello-00002', percent: 10 },
      ],
    },
    status: {
      url: 'http://hello.default.example.com',
      traffic: [
        { revisionName: 'hello-00001', latestRevision: false, percent: 90 },
        { tag: 'candidate', revisionName: 'hello-00002', latestRevision: false, percent: 10, url: 'http://candidate-hello.default.example.com' },
      ],
    },
  }
}

t.test('the §1.8 example, plus tag-header routing', async (t) => {
  const defaultSplits = () => [split('hello-00001', 90), split('hello-00002', 10)]
  const candidateSplits = () => [split('hello-00002', 100)]
  const defaultPaths = () => [
    { headers: { 'Knative-Serving-Tag': { exact: 'candidate' } }, splits: candidateSplits() },
    { splits: defaultSplits(), appendHeaders: { 'Knative-Serving-Default-Route': 'true' } },
  ]
  const candidatePaths = () => [{ splits: candidateSplits(), appendHeaders: { 'Knative-Serving-Tag': 'candidate' } }]

  t.strictSame(routeToIngress(helloRoute(), opts), {
    apiVersion: 'networking.internal.knative.dev/v1alpha1',
    kind: 'Ingress',
    metadata: {
      name: 'hello',
      namespace: 'default',
      labels: {
        'serving.knative.dev/route': 'hello',
        'serving.knative.dev/routeNamespace': 'default',
        'serving.knative.dev/service': 'hello',
      },
      annotations: {
        'networking.knative.dev/ingress.class': 'edge.ingress.networking.knative.dev',
        // As Serving 1.22 writes it (route/resources/ingress_test.go): the tag's primary host per visibility.
        'networking.internal.knative.dev/tag-to-host': '{"candidate":["candidate-hello.default.svc.cluster.local","candidate-hello.default.example.com"]}',
      },
    },
    spec: {
      httpOption: 'Enabled',
      rules: [
        { hosts: ['hello.default', 'hello.default.svc', 'hello.default.svc.cluster.local'], visibility: 'ClusterLocal', http: { paths: defaultPaths() } },
        { hosts: ['hello.default.example.com'], visibility: 'ExternalIP', http: { paths: defaultPaths() } },
        {
          hosts: ['candidate-hello.default', 'candidate-hello.default.svc', 'candidate-hello.default.svc.cluster.local'],
          visibility: 'ClusterLocal',
          http: { paths: candidatePaths() },
        },
        { hosts: ['candidate-hello.default.example.com'], visibility: 'ExternalIP', http: { paths: candidatePaths() } },
      ],
    },
  })
})

t.test('rules do not share objects', async (t) => {
  const ing = routeToIngress(helloRoute(), opts)
  const [a, b] = ing.spec.rules ?? []
  t.not(a?.http?.paths[1], b?.http?.paths[1])
  t.not(a?.http?.paths[1]?.splits[0]?.appendHeaders, b?.http?.paths[1]?.splits[0]?.appendHeaders)
})

t.test('route annotations carried over; class forced; alternate class key dropped', async (t) => {
  const route = helloRoute()
  route.metadata.annotations = {
    'networking.knative.dev/ingress-class': 'other',
    'networking.knative.dev/ingress.class': 'other',
    'serving.knative.dev/creator': 'me',
    'kubectl.kubernetes.io/last-applied-configuration': '{}',
  }
  t.strictSame(routeToIngress(route, opts).metadata.annotations, {
    'networking.knative.dev/ingress.class': 'edge.ingress.networking.knative.dev',
    'serving.knative.dev/creator': 'me',
    'networking.internal.knative.dev/tag-to-host': '{"candidate":["candidate-hello.default.svc.cluster.local","candidate-hello.default.example.com"]}',
  })
})

t.test('tag-to-host: only with tags; tags in Go map order; a cluster-local Route lists its cluster-local host only', async (t) => {
  const ANN = 'networking.internal.knative.dev/tag-to-host'
  const untagged = helloRoute()
  untagged.status!.traffic = [{ revisionName: 'hello-00001', percent: 100 }]
  t.notOk(ANN in (routeToIngress(untagged, opts).metadata.annotations ?? {}), 'no tags: no annotation (Serving adds it only when there are tags)')

  const numbered = helloRoute()
  numbered.status!.traffic = [
    { revisionName: 'hello-00001', percent: 100 },
    { tag: 'v9', revisionName: 'hello-00001', percent: 0 },
    { tag: 'v10', revisionName: 'hello-00002', percent: 0 },
  ]
  const written = routeToIngress(numbered, opts).metadata.annotations?.[ANN]
  t.equal(written, '{"v10":["v10-hello.default.svc.cluster.local","v10-hello.default.example.com"],"v9":["v9-hello.default.svc.cluster.local","v9-hello.default.example.com"]}')

  const local = helloRoute()
  local.metadata.labels = { 'networking.knative.dev/visibility': 'cluster-local' }
  t.equal(routeToIngress(local, opts).metadata.annotations?.[ANN], '{"candidate":["candidate-hello.default.svc.cluster.local"]}')
})

t.test('cluster-local label: no ExternalIP rules', async (t) => {
  const route = helloRoute()
  route.metadata.labels = { 'networking.knative.dev/visibility': 'cluster-local' }
  const rules = routeToIngress(route, opts).spec.rules ?? []
  t.strictSame(rules.map((r) => r.visibility), ['ClusterLocal', 'ClusterLocal'])
  t.strictSame(rules.map((r) => r.hosts?.[0]), ['hello.default', 'candidate-hello.default'])
})

t.test('external hosts: status.url and traffic url win over the default domain', async (t) => {
  const route = helloRoute()
  route.status!.url = 'https://hello.custom.dev:8443/ignored'
  route.status!.traffic![1]!.url = 'http://cand.custom.dev'
  const ext = (routeToIngress(route, opts).spec.rules ?? []).filter((r) => r.visibility === 'ExternalIP')
  t.strictSame(ext.map((r) => r.hosts), [['hello.custom.dev'], ['cand.custom.dev']])

  delete route.status!.url
  delete route.status!.traffic![1]!.url
  const ext2 = (routeToIngress(route, { ...opts, domain: 'apps.local' }).spec.rules ?? []).filter((r) => r.visibility === 'ExternalIP')
  t.strictSame(ext2.map((r) => r.hosts), [['hello.default.apps.local'], ['candidate-hello.default.apps.local']])
})

t.test('cluster domain and all-digit namespace', async (t) => {
  const route = helloRoute()
  route.metadata.namespace = '1234'
  delete route.status
  const ing = routeToIngress(route, { ...opts, clusterDomain: 'corp.internal' })
  t.strictSame(ing.spec.rules?.[0]?.hosts, ['hello.1234.svc', 'hello.1234.svc.corp.internal'], '"hello.1234" is not a valid host')
  t.equal(ing.spec.rules?.[0]?.http?.paths[1]?.splits[0]?.serviceNamespace, '1234')
  t.equal(ing.spec.rules?.[1]?.hosts?.[0], 'hello.1234.example.com')
})

t.test('spec.traffic fallback when status.traffic is empty', async (t) => {
  const route = helloRoute()
  route.status = { traffic: [] }
  route.spec = { traffic: [{ revisionName: 'r1', percent: 100 }] }
  t.strictSame(routeToIngress(route, opts).spec.rules, [
    {
      hosts: ['hello.default', 'hello.default.svc', 'hello.default.svc.cluster.local'],
      visibility: 'ClusterLocal',
      http: { paths: [{ splits: [split('r1', 100)], appendHeaders: { 'Knative-Serving-Default-Route': 'true' } }] },
    },
    {
      hosts: ['hello.default.example.com'],
      visibility: 'ExternalIP',
      http: { paths: [{ splits: [split('r1', 100)], appendHeaders: { 'Knative-Serving-Default-Route': 'true' } }] },
    },
  ])
})

t.test('status.traffic is preferred over spec.traffic', async (t) => {
  const route = helloRoute()
  route.spec = { traffic: [{ revisionName: 'something-else', percent: 100 }] }
  const splits = routeToIngress(route, opts).spec.rules?.[0]?.http?.paths[1]?.splits ?? []
  t.strictSame(splits.map((s) => s.serviceName), ['hello-00001', 'hello-00002'])
})

t.test('0% entries are skipped in the default target, yet a 0% tag routes at 100%', async (t) => {
  const route = helloRoute()
  route.status!.traffic = [
    { revisionName: 'r1', percent: 100 },
    { revisionName: 'r2', percent: 0 },
    { tag: 'latest', revisionName: 'r3', percent: 0 },
  ]
  const rules = routeToIngress(route, opts).spec.rules ?? []
  const defaultPaths = rules[0]?.http?.paths ?? []
  t.strictSame(defaultPaths[1]?.splits, [split('r1', 100)])
  t.strictSame(defaultPaths[0]?.splits, [split('r3', 100)], 'tag-header path to the 0% tag')
  t.strictSame(rules[2]?.http?.paths[0]?.splits, [split('r3', 100)])
  t.strictSame(rules[3]?.hosts, ['latest-hello.default.example.com'])
})

t.test('duplicate revisions in the default target are merged', async (t) => {
  const route = helloRoute()
  route.status!.traffic = [
    { revisionName: 'r1', percent: 50 },
    { revisionName: 'r2', percent: 20 },
    { tag: 'pinned', revisionName: 'r1', percent: 30 },
  ]
  const rules = routeToIngress(route, opts).spec.rules ?? []
  t.strictSame(rules[0]?.http?.paths[1]?.splits, [split('r1', 80), split('r2', 20)])
  t.strictSame(rules[2]?.http?.paths[0]?.splits, [split('r1', 100)])
})

t.test('tags are sorted and each gets its header path in the default rules', async (t) => {
  const route = helloRoute()
  route.status!.traffic = [
    { revisionName: 'r1', percent: 100 },
    { tag: 'zeta', revisionName: 'r2', percent: 0 },
    { tag: 'alpha', revisionName: 'r3', percent: 0 },
  ]
  delete route.status!.url
  const rules = routeToIngress(route, opts).spec.rules ?? []
  t.strictSame(rules.map((r) => r.hosts?.at(-1)), [
    'hello.default.svc.cluster.local',
    'hello.default.example.com',
    'alpha-hello.default.svc.cluster.local',
    'alpha-hello.default.example.com',
    'zeta-hello.default.svc.cluster.local',
    'zeta-hello.default.example.com',
  ])
  t.strictSame(rules[1]?.http?.paths.map((p) => p.headers?.['Knative-Serving-Tag']?.exact ?? null), ['alpha', 'zeta', null])
})

t.test('a tag spread over revisions keeps its percents when they total 100', async (t) => {
  const route = helloRoute()
  route.status!.traffic = [
    { tag: 'ab', revisionName: 'r1', percent: 40 },
    { tag: 'ab', revisionName: 'r2', percent: 60 },
  ]
  const rules = routeToIngress(route, opts).spec.rules ?? []
  t.strictSame(rules[2]?.http?.paths[0]?.splits, [split('r1', 40), split('r2', 60)])
})

t.test('httpOption from annotations', async (t) => {
  const cases: Array<[Record<string, string> | undefined, string]> = [
    [undefined, 'Enabled'],
    [{ 'networking.knative.dev/http-protocol': 'enabled' }, 'Enabled'],
    [{ 'networking.knative.dev/http-protocol': 'Redirected' }, 'Redirected'],
    [{ 'networking.knative.dev/http-protocol': 'disabled' }, ''],
    [{ 'networking.knative.dev/httpOption': 'redirected', 'networking.knative.dev/http-protocol': 'enabled' }, 'Redirected'],
  ]
  for (const [annotations, want] of cases) {
    const route = helloRoute()
    if (annotations) route.metadata.annotations = annotations
    t.equal(routeToIngress(route, opts).spec.httpOption, want, JSON.stringify(annotations))
  }
  const route = helloRoute()
  route.metadata.annotations = { 'networking.knative.dev/http-protocol': 'sometimes' }
  const [p] = problemsOf(() => routeToIngress(route, opts))
  t.equal(p?.field, 'metadata.annotations["networking.knative.dev/http-protocol"]')
  t.equal(p?.code, 'EDGE_ERR_HTTP_PROTOCOL')
})

t.test('problems', async (t) => {
  t.test('missing revisionName in a hand-written spec.traffic: name the revision, or write a Knative Service', async (t) => {
    const route = helloRoute()
    delete route.status
    route.spec = { traffic: [{ configurationName: 'hello', latestRevision: true, percent: 100 }] }
    const problems = problemsOf(() => routeToIngress(route, opts))
    t.equal(problems.length, 1)
    t.match(problems[0], { field: 'spec.traffic[0].revisionName', code: 'EDGE_ERR_ROUTE_REVISION', source: '', object: 'Route default/hello' })
    t.match(problems[0]?.reason, /a hand-written Route must name its revisions .*write a Knative Service/)
  })

  t.test('percents of the default target must total 100', async (t) => {
    const route = helloRoute()
    route.status!.traffic = [
      { revisionName: 'r1', percent: 50 },
      { revisionName: 'r2', percent: 20 },
    ]
    const problems = problemsOf(() => routeToIngress(route, opts))
    t.match(problems, [{ field: 'status.traffic', code: 'EDGE_ERR_ROUTE_TRAFFIC', reason: /total 70/ }])
  })

  t.test('bad percent names the entry', async (t) => {
    const route = helloRoute()
    route.status!.traffic = [
      { revisionName: 'r1', percent: 50 },
      { revisionName: 'r2', percent: 25 },
      { revisionName: 'r3', percent: 25.5 },
    ]
    t.match(problemsOf(() => routeToIngress(route, opts)), [{ field: 'status.traffic[2].percent', code: 'EDGE_ERR_ROUTE_TRAFFIC' }])
  })

  t.test('no traffic at all', async (t) => {
    const route = helloRoute()
    delete route.status
    delete route.spec
    t.match(problemsOf(() => routeToIngress(route, opts)), [{ field: 'spec.traffic', code: 'EDGE_ERR_ROUTE_NO_TRAFFIC' }])
  })

  t.test('bad status.url', async (t) => {
    for (const url of ['not a url', 'ftp://hello.default.example.com', 'http://']) {
      const route = helloRoute()
      route.status!.url = url
      t.match(problemsOf(() => routeToIngress(route, opts)), [{ field: 'status.url', code: 'EDGE_ERR_ROUTE_URL' }], url)
    }
  })

  t.test('bad tag url', async (t) => {
    const route = helloRoute()
    route.status!.traffic![1]!.url = '::'
    t.match(problemsOf(() => routeToIngress(route, opts)), [{ field: 'status.traffic[1].url', code: 'EDGE_ERR_ROUTE_URL' }])
  })

  t.test('a tag on two revisions whose percents do not total 100', async (t) => {
    const route = helloRoute()
    route.status!.traffic = [
      { tag: 'ab', revisionName: 'r1', percent: 90 },
      { tag: 'ab', revisionName: 'r2', percent: 0 },
      { revisionName: 'r1', percent: 10 },
    ]
    t.match(problemsOf(() => routeToIngress(route, opts)), [{ field: 'status.traffic[1].tag', code: 'EDGE_ERR_ROUTE_TAG' }])
  })

  t.test('several problems are reported together', async (t) => {
    const route = helloRoute()
    delete route.status
    route.metadata.annotations = { 'networking.knative.dev/http-protocol': 'nope' }
    route.spec = { traffic: [{ percent: 50 }, { configurationName: 'c', percent: 50 }] }
    const fields = problemsOf(() => routeToIngress(route, opts)).map((p) => p.field).sort()
    t.strictSame(fields, ['metadata.annotations["networking.knative.dev/http-protocol"]', 'spec.traffic[0].revisionName', 'spec.traffic[1].revisionName'])
  })
})
