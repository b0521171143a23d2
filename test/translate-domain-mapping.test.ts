import t from 'tap'
import { domainMappingToIngress } from '../src/translate/domain-mapping.ts'
import type { TranslateOptions } from '../src/translate/options.ts'
import type { DomainMapping } from '../src/model/k8s.ts'
import { problemsOf } from './helpers/problems.ts'

const opts: TranslateOptions = { ingressClass: 'edge.ingress.networking.knative.dev', domain: 'example.com', clusterDomain: 'cluster.local' }

function appMapping(): DomainMapping {
  return {
    apiVersion: 'serving.knative.dev/v1beta1',
    kind: 'DomainMapping',
    metadata: { name: 'app.example.org', namespace: 'default', uid: 'u-1' },
    spec: { ref: { apiVersion: 'serving.knative.dev/v1', kind: 'Service', name: 'hello' } },
  }
}

t.test('the §1.9 example', async (t) => {
  t.strictSame(domainMappingToIngress(appMapping(), opts), {
    apiVersion: 'networking.internal.knative.dev/v1alpha1',
    kind: 'Ingress',
    metadata: {
      name: 'app.example.org',
      namespace: 'default',
      labels: { 'serving.knative.dev/domainMappingNamespace': 'default', 'serving.knative.dev/domainMappingUID': 'u-1' },
      annotations: { 'networking.knative.dev/ingress.class': 'edge.ingress.networking.knative.dev' },
    },
    spec: {
      httpOption: 'Enabled',
      rules: [
        {
          hosts: ['app.example.org'],
          visibility: 'ExternalIP',
          http: {
            paths: [
              {
                rewriteHost: 'hello.default.svc.cluster.local',
                splits: [
                  {
                    serviceNamespace: 'default',
                    serviceName: 'hello',
                    servicePort: 80,
                    percent: 100,
                    appendHeaders: { 'K-Original-Host': 'app.example.org' },
                  },
                ],
              },
            ],
          },
        },
      ],
    },
  })
})

t.test('Route ref, explicit same namespace, other cluster domain, no uid', async (t) => {
  const dm = appMapping()
  dm.metadata = { name: 'api.example.net', namespace: 'team' }
  dm.spec.ref = { kind: 'Route', name: 'api', namespace: 'team' }
  const ing = domainMappingToIngress(dm, { ...opts, clusterDomain: 'corp.internal' })
  t.strictSame(ing.metadata.labels, { 'serving.knative.dev/domainMappingNamespace': 'team' })
  const path = ing.spec.rules?.[0]?.http?.paths[0]
  t.equal(path?.rewriteHost, 'api.team.svc.corp.internal')
  t.match(path?.splits[0], { serviceNamespace: 'team', serviceName: 'api', appendHeaders: { 'K-Original-Host': 'api.example.net' } })
})

t.test('namespace defaults to default', async (t) => {
  const dm = appMapping()
  delete dm.metadata.namespace
  t.equal(domainMappingToIngress(dm, opts).metadata.namespace, 'default')
})

t.test('tls secret adds a tls entry', async (t) => {
  const dm = appMapping()
  dm.spec.tls = { secretName: 'app-cert' }
  t.strictSame(domainMappingToIngress(dm, opts).spec.tls, [{ hosts: ['app.example.org'], secretName: 'app-cert', secretNamespace: 'default' }])
  t.equal(domainMappingToIngress(appMapping(), opts).spec.tls, undefined, 'no tls key without a secret')
})

t.test('http protocol annotation', async (t) => {
  const dm = appMapping()
  dm.metadata.annotations = { 'networking.knative.dev/http-protocol': 'redirected' }
  t.equal(domainMappingToIngress(dm, opts).spec.httpOption, 'Redirected')
  dm.metadata.annotations = { 'networking.knative.dev/http-protocol': 'x' }
  t.match(problemsOf(() => domainMappingToIngress(dm, opts)), [{ field: 'metadata.annotations["networking.knative.dev/http-protocol"]', code: 'EDGE_ERR_HTTP_PROTOCOL' }])
})

t.test('problems', async (t) => {
  const cases: Array<[string, (dm: DomainMapping) => void, string, string]> = [
    ['ref in another namespace', (dm) => (dm.spec.ref.namespace = 'other'), 'spec.ref.namespace', 'EDGE_ERR_DOMAIN_MAPPING_REF'],
    ['ref kind not accepted', (dm) => (dm.spec.ref.kind = 'Broker'), 'spec.ref.kind', 'EDGE_ERR_DOMAIN_MAPPING_REF'],
    ['core Service ref', (dm) => (dm.spec.ref.apiVersion = 'v1'), 'spec.ref.apiVersion', 'EDGE_ERR_DOMAIN_MAPPING_REF'],
    ['ref without name', (dm) => (dm.spec.ref.name = ''), 'spec.ref.name', 'EDGE_ERR_DOMAIN_MAPPING_REF'],
    ['no ref', (dm) => delete (dm.spec as { ref?: unknown }).ref, 'spec.ref', 'EDGE_ERR_DOMAIN_MAPPING_REF'],
    ['tls without secretName', (dm) => (dm.spec.tls = {} as { secretName: string }), 'spec.tls.secretName', 'EDGE_ERR_DOMAIN_MAPPING_TLS'],
  ]
  for (const [name, mutate, field, code] of cases) {
    const dm = appMapping()
    mutate(dm)
    const problems = problemsOf(() => domainMappingToIngress(dm, opts))
    t.match(problems, [{ field, code, source: '', object: 'DomainMapping default/app.example.org' }], name)
    t.equal(problems.length, 1, `${name}: exactly one problem`)
  }
})
