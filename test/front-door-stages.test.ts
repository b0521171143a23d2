// The front door's pure stages, each on its own: screen (is this a request the gateway may route?),
// identify (which route, or which answer of the gateway's own?) and the policy chain (who refuses
// first, synchronously or not). End to end, the same cases are in front-door-parity.test.ts.
import t from 'tap'
import { screen } from '../src/dataplane/screen.ts'
import { isValidHost, normaliseHostHeader } from '../src/dataplane/host.ts'
import type { ScreenLimits } from '../src/dataplane/screen.ts'
import { identify, isAnswer } from '../src/dataplane/identify.ts'
import { runPolicies } from '../src/dataplane/policy.ts'
import type { Policy, PolicyInput } from '../src/dataplane/policy.ts'
import type { ClientRequest } from '../src/dataplane/client.ts'
import type { Answer } from '../src/dataplane/reply.ts'
import type { Resolution } from '../src/dataplane/resolve.ts'
import { compileSnapshot } from '../src/compile/snapshot.ts'
import type { CompileInput } from '../src/compile/snapshot.ts'

const LIMITS: ScreenLimits = { maxUrlLength: 64, maxBodyBytes: 1000 }

function req(url: string, headers: Record<string, string>, opts: { raw?: string[]; version?: [number, number] } = {}): ClientRequest {
  const [major, minor] = opts.version ?? [1, 1]
  const raw = opts.raw ?? Object.entries(headers).flat()
  return { method: 'GET', url, headers, rawHeaders: raw, httpVersion: `${major}.${minor}`, httpVersionMajor: major, httpVersionMinor: minor, socket: { remoteAddress: '127.0.0.1' }, readableDidRead: false }
}

function answered(a: Answer | undefined): [number, string] | undefined {
  return a ? [a.status, a.reason] : undefined
}

t.test('screen: what no route may be chosen for, in order, with the same answer for h1 and h2', async (t) => {
  const cases: Array<[string, ClientRequest, 'h1' | 'h2', [number, string] | undefined]> = [
    ['a plain request passes', req('/x', { host: 'a.example.com' }), 'h1', undefined],
    ['a target over the limit: 414 before anything else', req(`/${'x'.repeat(64)}`, {}), 'h1', [414, 'uri-too-long']],
    ['HTTP/2.0 over HTTP/1 framing', req('/', { host: 'a' }, { version: [2, 0] }), 'h1', [505, 'bad-request']],
    ['two Host headers', req('/', { host: 'a' }, { raw: ['Host', 'a', 'host', 'b'] }), 'h1', [400, 'bad-request']],
    ['Transfer-Encoding on HTTP/1.0', req('/', { host: 'a', 'transfer-encoding': 'chunked' }, { version: [1, 0] }), 'h1', [400, 'bad-request']],
    ['a coding other than chunked', req('/', { host: 'a', 'transfer-encoding': 'gzip, chunked' }), 'h1', [501, 'bad-request']],
    ['no Host', req('/', {}), 'h1', [400, 'bad-request']],
    ['no Host, HTTP/2', req('/', {}), 'h2', [400, 'bad-request']],
    ['a malformed Host', req('/', { host: 'bad host!' }), 'h1', [400, 'bad-request']],
    ['a malformed :authority', req('/', { ':authority': '[zz' }), 'h2', [400, 'bad-request']],
    ['Host and :authority disagree', req('/', { ':authority': 'a.example.com', host: 'b.example.com' }), 'h2', [400, 'bad-request']],
    ['Host and :authority agree up to case and port', req('/', { ':authority': 'A.example.com:443', host: 'a.example.com' }), 'h2', undefined],
    ['a target that is no path', req('*', { host: 'a' }), 'h1', [400, 'bad-request']],
    ['an absolute target naming another host', req('http://b.example.com/x', { host: 'a.example.com' }), 'h1', [400, 'bad-request']],
    ['a declared body over the limit', req('/', { host: 'a', 'content-length': '1001' }), 'h1', [413, 'body-too-large']],
    ['a declared body at the limit', req('/', { host: 'a', 'content-length': '1000' }), 'h1', undefined],
  ]
  for (const [name, r, framing, want] of cases) {
    const got = screen(r, LIMITS, framing)
    t.same(answered(got), want, name)
    if (got) t.equal(got.close, true, `${name}: the connection's remaining bytes are not trusted`)
  }
})

t.test('screen\'s in-place Host check agrees with the normalisation identify uses', async (t) => {
  const samples = ['a.example.com', 'A.Example.COM.', 'a.example.com:8080', '.', '.:80', 'a.', '[::1]', '[::1]:443', '[zz', '[]', 'bad host!', 'a:', 'a:123456', 'a:8x', '', 'ü.example', 'x'.repeat(255), 'x'.repeat(256), '%41.b', "a!$&'()*+,;=b"]
  for (const h of samples) t.equal(isValidHost(h), normaliseHostHeader(h) !== undefined, JSON.stringify(h))
})

t.test('screen: an absolute-form target with the Host\'s own authority becomes origin form, byte for byte', async (t) => {
  for (const [target, path] of [
    ['http://a.example.com/p/../q%2F?x=1', '/p/../q%2F?x=1'],
    ['HTTPS://A.example.com:8443', '/'],
    ['http://a.example.com?x', '/?x'],
  ]) {
    const r = req(target!, { host: 'a.example.com' })
    t.equal(screen(r, LIMITS, 'h1'), undefined, target!)
    t.equal(r.url, path, `${target} → ${path}`)
  }
})

const CLASS = 'edge.ingress.networking.knative.dev'
function input(): CompileInput {
  const rule = (hosts: string[], visibility: string, path: string, httpOption?: string): unknown => ({ hosts, visibility, http: { paths: [{ path, splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] }, httpOption })
  const ing = (name: string, spec: unknown): unknown => ({
    apiVersion: 'networking.internal.knative.dev/v1alpha1',
    kind: 'Ingress',
    metadata: { name, namespace: 'default', annotations: { 'networking.knative.dev/ingress.class': CLASS }, creationTimestamp: '2026-01-01T00:00:00Z', generation: 1 },
    spec,
  })
  return {
    ingresses: [
      ing('pub', { rules: [rule(['pub.example.com'], 'ExternalIP', '/app')] }),
      ing('local', { rules: [rule(['local.default.svc.cluster.local'], 'ClusterLocal', '')] }),
      ing('secure', { httpOption: 'Redirected', rules: [rule(['secure.example.com'], 'ExternalIP', '')] }),
    ],
    routes: [],
    domainMappings: [],
    revisions: [],
    services: [{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'app', namespace: 'default' }, spec: { ports: [{ port: 80 }] } }],
    endpointSlices: [],
    secrets: [],
  } as unknown as CompileInput
}

t.test('identify: the listener side, host, redirect, path and probe', async (t) => {
  const snap = compileSnapshot(input(), { ingressClass: CLASS, domain: 'example.com', clusterDomain: 'cluster.local', translateServing: true }, 1)
  const id = (url: string, headers: Record<string, string>, listener: 'public' | 'local', secure = false): ReturnType<typeof identify> => identify(snap, req(url, headers), listener, secure)

  const routed = id('/app/x', { host: 'PUB.example.com:80' }, 'public')
  t.notOk(isAnswer(routed), 'a served host and path is routed')
  t.equal((routed as Resolution).entry.host, 'pub.example.com')

  const notFound = id('/', { host: 'nope.example.com' }, 'public') as Answer
  t.same([notFound.status, notFound.reason], [404, 'host-not-found'])
  t.match(notFound.detail, /no route for host nope\.example\.com on the public listener/)
  t.same(answered(id('/', { host: 'local.default.svc.cluster.local' }, 'public') as Answer), [404, 'host-not-found'], 'a cluster-local host is not public')
  t.notOk(isAnswer(id('/', { host: 'local.default.svc.cluster.local' }, 'local')), 'but is served on the local listener')
  t.notOk(isAnswer(id('/app', { host: 'pub.example.com' }, 'local')), 'the local listener serves every host')

  const path = id('/other', { host: 'pub.example.com' }, 'public') as Answer
  t.same([path.status, path.reason], [404, 'path-not-found'])

  const redirect = id('/a?b=c', { host: 'secure.example.com' }, 'public') as Answer
  t.same([redirect.status, redirect.reason, redirect.headers?.location], [301, 'https-redirect', 'https://secure.example.com/a?b=c'])
  t.notOk(isAnswer(id('/', { host: 'secure.example.com' }, 'public', true)), 'over TLS it is served')
  t.notOk(isAnswer(id('/', { host: 'secure.example.com' }, 'local')), 'the cluster-local listener never redirects')

  const probe = id('/app', { host: 'pub.example.com', 'k-network-probe': 'probe', 'k-network-hash': 'override' }, 'public') as Answer
  t.same([probe.status, probe.reason], [200, 'probe'])
  t.equal(probe.headers?.['k-network-hash'], snap.publicHosts.get('pub.example.com')!.ingress.hash, 'override: the ingress hash')
  const echo = id('/app', { host: 'pub.example.com', 'k-network-probe': 'probe', 'k-network-hash': 'abc' }, 'public') as Answer
  t.equal(echo.headers?.['k-network-hash'], 'abc', 'any other hash is echoed')
  t.same(answered(id('/app', { host: 'pub.example.com', 'k-network-probe': 'probe' }, 'public') as Answer), [400, 'bad-request'], 'a probe without a hash')
  t.same(answered(id('/app', { host: 'pub.example.com', 'k-network-probe': 'queue', 'k-network-hash': 'x' }, 'public') as Answer), [400, 'bad-request'], 'an unknown probe')
})

t.test('policy chain: the first answer wins, in order, whether policies answer at once or later', async (t) => {
  const input = {} as PolicyInput
  const asked: string[] = []
  const policy = (name: string, verdict: Answer | undefined, later = false): Policy => ({
    name,
    check: () => {
      asked.push(name)
      return later ? Promise.resolve(verdict) : verdict
    },
  })
  const deny: Answer = { status: 403, reason: 'bad-request', detail: 'no' }
  t.equal(runPolicies([], input), undefined, 'no policy: passes, synchronously')
  t.equal(runPolicies([policy('a', undefined), policy('b', undefined)], input), undefined, 'all pass synchronously: no promise')
  t.same(asked, ['a', 'b'])
  asked.length = 0
  t.equal(runPolicies([policy('a', undefined), policy('b', deny), policy('c', undefined)], input), deny, 'b answers')
  t.same(asked, ['a', 'b'], 'c is never asked')
  asked.length = 0
  const later = runPolicies([policy('a', undefined, true), policy('b', undefined), policy('c', deny, true), policy('d', undefined)], input)
  t.ok(later instanceof Promise, 'an asynchronous policy makes the verdict a promise')
  t.same(asked, ['a'], 'the next policy waits for the one before it')
  t.equal(await later, deny)
  t.same(asked, ['a', 'b', 'c'])
})
