import t from 'tap'
import type { Test } from 'tap'
import { validateObject } from '../src/compile/validate.ts'
import type { ValidationResult } from '../src/compile/validate.ts'
import type { ConfigProblem } from '../src/model/problems.ts'
import { validSamples } from './fixtures/validate-samples.ts'
import type { Sample } from './fixtures/validate-samples.ts'

function problems(result: ValidationResult): ConfigProblem[] {
  return 'problems' in result ? result.problems : []
}

function sample(kind: string): Sample {
  return validSamples()[kind]!
}

/** A sample of `kind`, changed by `mutate`, must fail with exactly one problem at `field` with `code`. */
type Case = [name: string, kind: string, mutate: (o: Sample) => void, field: string, code: string]

function runCases(t: Test, cases: Case[]): void {
  for (const [name, kind, mutate, field, code] of cases) {
    const obj = sample(kind)
    mutate(obj)
    const got = problems(validateObject(obj, 'routes/app.yaml', 3))
    t.strictSame(got.map((p) => [p.field, p.code]), [[field, code]], name)
    t.ok(got.every((p) => p.reason.length > 10), `${name}: reason explains`)
  }
}

t.test('every sample is valid, gets its kind back, and is not mutated', async (t) => {
  for (const [kind, obj] of Object.entries(validSamples())) {
    const before = structuredClone(obj)
    const result = validateObject(obj, 'f.yaml')
    t.match(result, { kind, object: { kind, metadata: { namespace: 'default' } } }, kind)
    t.strictSame(obj, before, `${kind} input untouched`)
  }
})

t.test('namespace defaults to "default" on the returned object', async (t) => {
  const obj = sample('Route')
  delete obj.metadata.namespace
  const result = validateObject(obj, 'f.yaml')
  t.equal('object' in result ? result.object.metadata.namespace : undefined, 'default')
  t.equal(obj.metadata.namespace, undefined, 'input untouched')
})

t.test('problems carry source, document and object', async (t) => {
  const obj = sample('Service')
  obj.metadata.namespace = 'team'
  obj.spec.ports[0].port = 0
  t.strictSame(problems(validateObject(obj, 'routes/app.yaml', 2)), [
    { source: 'routes/app.yaml', document: 2, object: 'Service team/hello-00001', field: 'spec.ports[0].port', reason: 'port must be a number 1-65535, got 0', code: 'EDGE_ERR_SERVICE_PORT' },
  ])
  const noDoc = problems(validateObject(obj, 'kubernetes'))[0]
  t.notOk(noDoc && 'document' in noDoc, 'no document key without a document index')
})

t.test('not an object', async (t) => {
  for (const value of [null, undefined, [], [1], 'kind: Route', 42, true]) {
    t.match(problems(validateObject(value, 'f.yaml')), [{ field: '', code: 'EDGE_ERR_NOT_AN_OBJECT' }], JSON.stringify(value) ?? 'undefined')
  }
})

t.test('apiVersion and kind', async (t) => {
  const noKind = sample('Route')
  delete noKind.kind
  t.match(problems(validateObject(noKind, 'f')), [{ field: 'kind', code: 'EDGE_ERR_KIND' }])
  const noApi = sample('Route')
  noApi.apiVersion = ''
  t.match(problems(validateObject(noApi, 'f')), [{ field: 'apiVersion', code: 'EDGE_ERR_API_VERSION' }])

  const wrongVersion = sample('Route')
  wrongVersion.apiVersion = 'serving.knative.dev/v1beta1'
  t.match(problems(validateObject(wrongVersion, 'f')), [{ field: 'apiVersion', code: 'EDGE_ERR_API_VERSION', reason: /serving\.knative\.dev\/v1/ }])
  const coreWrong = sample('Secret')
  coreWrong.apiVersion = 'v2'
  t.match(problems(validateObject(coreWrong, 'f')), [{ field: 'apiVersion', code: 'EDGE_ERR_API_VERSION' }])

  const alpha = sample('DomainMapping')
  alpha.apiVersion = 'serving.knative.dev/v1alpha1'
  t.match(validateObject(alpha, 'f'), { kind: 'DomainMapping' }, 'DomainMapping v1alpha1 accepted')
})

t.test('kinds the gateway does not serve are problems that say which kinds it serves', async (t) => {
  const others = [
    { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' } },
    { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'x' } },
    { apiVersion: 'v1', kind: 'Pod' },
  ]
  for (const obj of others) {
    const result = validateObject(obj, 'f', 2)
    t.ok('problems' in result, `${obj.apiVersion} ${obj.kind} is a problem`)
    if (!('problems' in result)) continue
    const p = result.problems[0]!
    t.match(p, { source: 'f', document: 2, field: 'kind', code: 'EDGE_ERR_KIND' })
    t.ok(p.reason.startsWith(`kind ${obj.kind} of apiVersion ${obj.apiVersion} is not served; served kinds are `), p.reason)
    t.ok(p.reason.includes('serving.knative.dev/v1 Service') && p.reason.includes('v1 Secret'), 'the served kinds are listed')
  }
  t.match(validateObject({ apiVersion: 'serving.knative.dev/v1', kind: 'Service', metadata: { name: 'hello' }, spec: { template: { spec: { containers: [{ image: 'hello' }] } } } }, 'f'), { kind: 'KService' }, 'a Knative Service is served, as KService')
})

t.test('metadata', async (t) => {
  runCases(t, [
    ['no metadata', 'Secret', (o) => delete o.metadata, 'metadata', 'EDGE_ERR_METADATA'],
    ['no name', 'Secret', (o) => delete o.metadata.name, 'metadata.name', 'EDGE_ERR_METADATA_NAME'],
    ['upper-case name', 'Secret', (o) => (o.metadata.name = 'Cert'), 'metadata.name', 'EDGE_ERR_METADATA_NAME'],
    ['name too long', 'Secret', (o) => (o.metadata.name = 'a'.repeat(254)), 'metadata.name', 'EDGE_ERR_METADATA_NAME'],
    ['dotted namespace', 'Secret', (o) => (o.metadata.namespace = 'a.b'), 'metadata.namespace', 'EDGE_ERR_METADATA_NAMESPACE'],
    ['numeric label value', 'Secret', (o) => (o.metadata.labels = { app: 1 }), 'metadata.labels["app"]', 'EDGE_ERR_METADATA'],
    ['annotations a list', 'Secret', (o) => (o.metadata.annotations = ['a']), 'metadata.annotations', 'EDGE_ERR_METADATA'],
  ])
  const dotted = sample('DomainMapping')
  dotted.metadata.name = 'www.app.example.org'
  t.match(validateObject(dotted, 'f'), { kind: 'DomainMapping' }, 'host names are valid names')
})

const path0 = (o: Sample) => o.spec.rules[0].http.paths[0]
const split0 = (o: Sample) => path0(o).splits[0]
const P = 'spec.rules[0].http.paths[0]'

t.test('Ingress', async (t) => {
  runCases(t, [
    ['no spec', 'Ingress', (o) => delete o.spec, 'spec', 'EDGE_ERR_INGRESS_SPEC'],
    ['no rules', 'Ingress', (o) => (o.spec.rules = []), 'spec.rules', 'EDGE_ERR_INGRESS_RULES'],
    ['rule not a mapping', 'Ingress', (o) => (o.spec.rules = ['x']), 'spec.rules[0]', 'EDGE_ERR_INGRESS_RULES'],
    ['host not a string', 'Ingress', (o) => (o.spec.rules[0].hosts = ['a.com', 7]), 'spec.rules[0].hosts[1]', 'EDGE_ERR_INGRESS_HOST'],
    ['bad visibility', 'Ingress', (o) => (o.spec.rules[0].visibility = 'Public'), 'spec.rules[0].visibility', 'EDGE_ERR_INGRESS_VISIBILITY'],
    ['no http', 'Ingress', (o) => delete o.spec.rules[0].http, 'spec.rules[0].http', 'EDGE_ERR_INGRESS_HTTP'],
    ['no paths', 'Ingress', (o) => (o.spec.rules[0].http.paths = []), 'spec.rules[0].http.paths', 'EDGE_ERR_INGRESS_PATHS'],
    ['path without /', 'Ingress', (o) => (path0(o).path = 'api'), `${P}.path`, 'EDGE_ERR_INGRESS_PATH'],
    ['rewriteHost not a string', 'Ingress', (o) => (path0(o).rewriteHost = 1), `${P}.rewriteHost`, 'EDGE_ERR_INGRESS_REWRITE_HOST'],
    ['empty exact', 'Ingress', (o) => (path0(o).headers = { 'X-A': { exact: '' } }), `${P}.headers["X-A"].exact`, 'EDGE_ERR_INGRESS_HEADER_MATCH'],
    ['match without exact', 'Ingress', (o) => (path0(o).headers = { 'X-A': { prefix: 'a' } }), `${P}.headers["X-A"].exact`, 'EDGE_ERR_INGRESS_HEADER_MATCH'],
    ['bad header name', 'Ingress', (o) => (path0(o).headers = { 'X A': { exact: 'a' } }), `${P}.headers["X A"]`, 'EDGE_ERR_INGRESS_HEADER_MATCH'],
    ['appendHeaders value not a string', 'Ingress', (o) => (path0(o).appendHeaders = { 'X-A': 1 }), `${P}.appendHeaders["X-A"]`, 'EDGE_ERR_INGRESS_APPEND_HEADERS'],
    ['appendHeaders value with newline', 'Ingress', (o) => (split0(o).appendHeaders = { 'X-A': 'a\r\nB: b' }), `${P}.splits[0].appendHeaders["X-A"]`, 'EDGE_ERR_INGRESS_APPEND_HEADERS'],
    ['no splits', 'Ingress', (o) => (path0(o).splits = []), `${P}.splits`, 'EDGE_ERR_INGRESS_SPLITS'],
    ['no serviceName', 'Ingress', (o) => delete split0(o).serviceName, `${P}.splits[0].serviceName`, 'EDGE_ERR_INGRESS_BACKEND'],
    ['no serviceNamespace', 'Ingress', (o) => (split0(o).serviceNamespace = ''), `${P}.splits[0].serviceNamespace`, 'EDGE_ERR_INGRESS_BACKEND'],
    ['serviceNamespace elsewhere', 'Ingress', (o) => (split0(o).serviceNamespace = 'other'), `${P}.splits[0].serviceNamespace`, 'EDGE_ERR_INGRESS_SPLIT_NAMESPACE'],
    ['no servicePort', 'Ingress', (o) => delete split0(o).servicePort, `${P}.splits[0].servicePort`, 'EDGE_ERR_INGRESS_BACKEND'],
    ['servicePort 0', 'Ingress', (o) => (split0(o).servicePort = 0), `${P}.splits[0].servicePort`, 'EDGE_ERR_INGRESS_BACKEND'],
    ['servicePort too big', 'Ingress', (o) => (split0(o).servicePort = 65536), `${P}.splits[0].servicePort`, 'EDGE_ERR_INGRESS_BACKEND'],
    ['percent over 100', 'Ingress', (o) => (split0(o).percent = 101), `${P}.splits[0].percent`, 'EDGE_ERR_INGRESS_PERCENT'],
    ['negative percent', 'Ingress', (o) => (split0(o).percent = -1), `${P}.splits[0].percent`, 'EDGE_ERR_INGRESS_PERCENT'],
    ['fractional percent', 'Ingress', (o) => (split0(o).percent = 69.5), `${P}.splits[0].percent`, 'EDGE_ERR_INGRESS_PERCENT'],
    ['percents total 90', 'Ingress', (o) => (split0(o).percent = 60), `${P}.splits`, 'EDGE_ERR_INGRESS_PERCENT'],
    ['single split at 50', 'Ingress', (o) => (o.spec.rules[0].http.paths[1].splits[0].percent = 50), 'spec.rules[0].http.paths[1].splits', 'EDGE_ERR_INGRESS_PERCENT'],
    ['tls without secretName', 'Ingress', (o) => delete o.spec.tls[0].secretName, 'spec.tls[0].secretName', 'EDGE_ERR_INGRESS_TLS'],
    ['tls without secretNamespace', 'Ingress', (o) => (o.spec.tls[0].secretNamespace = ''), 'spec.tls[0].secretNamespace', 'EDGE_ERR_INGRESS_TLS'],
    ['tls not a list', 'Ingress', (o) => (o.spec.tls = { secretName: 'x' }), 'spec.tls', 'EDGE_ERR_INGRESS_TLS'],
    ['bad httpOption', 'Ingress', (o) => (o.spec.httpOption = 'Disabled'), 'spec.httpOption', 'EDGE_ERR_INGRESS_HTTP_OPTION'],
  ])
})

t.test('Ingress: what Knative accepts', async (t) => {
  const accepted: Array<[string, (o: Sample) => void]> = [
    ['single split with percent 0', (o) => (o.spec.rules[0].http.paths[1].splits[0].percent = 0)],
    ['0% split beside a 100% split', (o) => ((split0(o).percent = 100), (path0(o).splits[1].percent = 0))],
    ['empty path and empty hosts (catch-all)', (o) => ((path0(o).path = ''), (o.spec.rules[0].hosts = []))],
    ['visibility and httpOption left out or null', (o) => ((o.spec.rules[0].visibility = null), delete o.spec.httpOption)],
    ['no namespace: splits in "default"', (o) => delete o.metadata.namespace],
    ['ClusterLocal', (o) => (o.spec.rules[0].visibility = 'ClusterLocal')],
  ]
  for (const [name, mutate] of accepted) {
    const obj = sample('Ingress')
    mutate(obj)
    t.match(validateObject(obj, 'f'), { kind: 'Ingress' }, name)
  }
})

t.test('Ingress: several problems at once', async (t) => {
  const obj = sample('Ingress')
  split0(obj).servicePort = 0
  obj.spec.rules[0].visibility = 'x'
  obj.spec.httpOption = 'y'
  t.strictSame(problems(validateObject(obj, 'f')).map((p) => p.field).sort(), ['spec.httpOption', `${P}.splits[0].servicePort`, 'spec.rules[0].visibility'])
})

t.test('Service', async (t) => {
  runCases(t, [
    ['no spec', 'Service', (o) => delete o.spec, 'spec', 'EDGE_ERR_SERVICE_SPEC'],
    ['port 0', 'Service', (o) => (o.spec.ports[1].port = 0), 'spec.ports[1].port', 'EDGE_ERR_SERVICE_PORT'],
    ['port as a string', 'Service', (o) => (o.spec.ports[0].port = '80'), 'spec.ports[0].port', 'EDGE_ERR_SERVICE_PORT'],
    ['port missing', 'Service', (o) => delete o.spec.ports[0].port, 'spec.ports[0].port', 'EDGE_ERR_SERVICE_PORT'],
    ['bad targetPort', 'Service', (o) => (o.spec.ports[0].targetPort = -1), 'spec.ports[0].targetPort', 'EDGE_ERR_SERVICE_PORT'],
    ['ports not a list', 'Service', (o) => (o.spec.ports = { port: 80 }), 'spec.ports', 'EDGE_ERR_SERVICE_PORT'],
    ['unknown type', 'Service', (o) => (o.spec.type = 'Headless'), 'spec.type', 'EDGE_ERR_SERVICE_TYPE'],
    ['ExternalName without externalName', 'Service', (o) => (o.spec = { type: 'ExternalName' }), 'spec.externalName', 'EDGE_ERR_SERVICE_EXTERNAL_NAME'],
  ])
  const ext = sample('Service')
  ext.spec = { type: 'ExternalName', externalName: 'edge-internal.edge-system.svc.cluster.local', ports: [{ name: 'http2', port: 80 }] }
  t.match(validateObject(ext, 'f'), { kind: 'Service' }, 'ExternalName with a name is fine')
})

t.test('EndpointSlice', async (t) => {
  runCases(t, [
    ['no service-name label', 'EndpointSlice', (o) => delete o.metadata.labels, 'metadata.labels["kubernetes.io/service-name"]', 'EDGE_ERR_ENDPOINTSLICE_SERVICE'],
    ['addresses missing', 'EndpointSlice', (o) => delete o.endpoints[0].addresses, 'endpoints[0].addresses', 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES'],
    ['addresses a string', 'EndpointSlice', (o) => (o.endpoints[0].addresses = '10.0.0.7'), 'endpoints[0].addresses', 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES'],
    ['address not a string', 'EndpointSlice', (o) => (o.endpoints[0].addresses = ['10.0.0.7', 10]), 'endpoints[0].addresses[1]', 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES'],
    ['endpoint not a mapping', 'EndpointSlice', (o) => (o.endpoints = ['10.0.0.7']), 'endpoints[0]', 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES'],
    ['ready not a boolean', 'EndpointSlice', (o) => (o.endpoints[0].conditions.ready = 'yes'), 'endpoints[0].conditions.ready', 'EDGE_ERR_ENDPOINTSLICE_CONDITIONS'],
    ['bad addressType', 'EndpointSlice', (o) => (o.addressType = 'ipv4'), 'addressType', 'EDGE_ERR_ENDPOINTSLICE_ADDRESS_TYPE'],
    ['bad port', 'EndpointSlice', (o) => (o.ports[0].port = 70000), 'ports[0].port', 'EDGE_ERR_ENDPOINTSLICE_PORT'],
  ])
  const empty = sample('EndpointSlice')
  empty.endpoints = null
  t.match(validateObject(empty, 'f'), { kind: 'EndpointSlice' }, 'a slice with no endpoints is fine')
})

t.test('Revision', async (t) => {
  runCases(t, [
    ['negative containerConcurrency', 'Revision', (o) => (o.spec.containerConcurrency = -1), 'spec.containerConcurrency', 'EDGE_ERR_REVISION_CONCURRENCY'],
    ['fractional containerConcurrency', 'Revision', (o) => (o.spec.containerConcurrency = 1.5), 'spec.containerConcurrency', 'EDGE_ERR_REVISION_CONCURRENCY'],
    ['string containerConcurrency', 'Revision', (o) => (o.spec.containerConcurrency = '10'), 'spec.containerConcurrency', 'EDGE_ERR_REVISION_CONCURRENCY'],
    ['timeoutSeconds 0', 'Revision', (o) => (o.spec.timeoutSeconds = 0), 'spec.timeoutSeconds', 'EDGE_ERR_REVISION_TIMEOUT'],
    ['negative idleTimeoutSeconds', 'Revision', (o) => (o.spec.idleTimeoutSeconds = -5), 'spec.idleTimeoutSeconds', 'EDGE_ERR_REVISION_TIMEOUT'],
    ['bad containerPort', 'Revision', (o) => (o.spec.containers[0].ports[0].containerPort = 0), 'spec.containers[0].ports[0].containerPort', 'EDGE_ERR_REVISION_PORT'],
  ])
  const minimal = sample('Revision')
  delete minimal.spec
  t.match(validateObject(minimal, 'f'), { kind: 'Revision' }, 'spec is optional')
})

t.test('Secret', async (t) => {
  runCases(t, [
    ['tls Secret without key', 'Secret', (o) => delete o.data['tls.key'], 'data["tls.key"]', 'EDGE_ERR_SECRET_TLS'],
    ['tls Secret without cert', 'Secret', (o) => (o.data['tls.crt'] = ''), 'data["tls.crt"]', 'EDGE_ERR_SECRET_TLS'],
    ['data value not a string', 'Secret', (o) => (o.data.extra = 5), 'data["extra"]', 'EDGE_ERR_SECRET_DATA'],
    ['data a list', 'Secret', (o) => ((o.type = 'Opaque'), (o.data = [])), 'data', 'EDGE_ERR_SECRET_DATA'],
  ])
  const viaStringData = sample('Secret')
  viaStringData.data = { 'tls.crt': 'Y2VydA==' }
  viaStringData.stringData = { 'tls.key': '-----BEGIN PRIVATE KEY-----' }
  t.match(validateObject(viaStringData, 'f'), { kind: 'Secret' }, 'stringData counts')
  const opaque = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'other' }, type: 'Opaque', data: {} }
  t.match(validateObject(opaque, 'f'), { kind: 'Secret' }, 'other Secret types need no tls keys')
})

t.test('Route shape', async (t) => {
  runCases(t, [
    ['traffic not a list', 'Route', (o) => (o.spec.traffic = { revisionName: 'x' }), 'spec.traffic', 'EDGE_ERR_ROUTE_SHAPE'],
    ['traffic entry not a mapping', 'Route', (o) => (o.spec.traffic = ['x']), 'spec.traffic[0]', 'EDGE_ERR_ROUTE_SHAPE'],
    ['percent a word', 'Route', (o) => (o.spec.traffic[0].percent = 'fifty'), 'spec.traffic[0].percent', 'EDGE_ERR_ROUTE_SHAPE'],
    ['revisionName a number', 'Route', (o) => (o.status.traffic[0].revisionName = 1), 'status.traffic[0].revisionName', 'EDGE_ERR_ROUTE_SHAPE'],
    ['latestRevision a string', 'Route', (o) => (o.spec.traffic[1].latestRevision = 'true'), 'spec.traffic[1].latestRevision', 'EDGE_ERR_ROUTE_SHAPE'],
    ['status.url a number', 'Route', (o) => (o.status.url = 5), 'status.url', 'EDGE_ERR_ROUTE_SHAPE'],
    ['spec a list', 'Route', (o) => (o.spec = []), 'spec', 'EDGE_ERR_ROUTE_SHAPE'],
  ])
  const deeper = sample('Route')
  deeper.spec.traffic = [{ configurationName: 'hello', percent: 40 }]
  delete deeper.status
  t.match(validateObject(deeper, 'f'), { kind: 'Route' }, 'traffic problems are left to translation')
})

t.test('DomainMapping shape', async (t) => {
  runCases(t, [
    ['no spec', 'DomainMapping', (o) => delete o.spec, 'spec', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE'],
    ['no ref', 'DomainMapping', (o) => delete o.spec.ref, 'spec.ref', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE'],
    ['ref without name', 'DomainMapping', (o) => delete o.spec.ref.name, 'spec.ref.name', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE'],
    ['ref without kind', 'DomainMapping', (o) => (o.spec.ref.kind = ''), 'spec.ref.kind', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE'],
    ['ref namespace a number', 'DomainMapping', (o) => (o.spec.ref.namespace = 3), 'spec.ref.namespace', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE'],
    ['tls without secretName', 'DomainMapping', (o) => (o.spec.tls = {}), 'spec.tls.secretName', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE'],
  ])
  const otherNs = sample('DomainMapping')
  otherNs.spec.ref.namespace = 'elsewhere'
  t.match(validateObject(otherNs, 'f'), { kind: 'DomainMapping' }, 'ref namespace is left to translation')
})

t.test('a ConfigMap is read for its data, whose values must be strings', async (t) => {
  const ok = validateObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'config-edge-gateway', namespace: 'knative-serving' }, data: { 'max-url-length': '2048' } }, 'f')
  t.match(ok, { kind: 'ConfigMap' })
  const bad = validateObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'config-edge-gateway' }, data: { 'max-url-length': 2048 } }, 'f', 0)
  t.ok('problems' in bad, 'an unquoted number is a problem')
  if ('problems' in bad) t.match(bad.problems, [{ field: 'data["max-url-length"]', code: 'EDGE_ERR_CONFIGMAP_DATA', reason: /values must be strings, got .*; quote the value/ }])
})
