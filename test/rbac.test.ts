// The chart's RBAC against what the gateway really asks for. For each chart variant that changes
// RBAC or the gateway's use of the API, the chart is rendered, the gateway runs in cluster mode with
// the environment the chart gives its container, against the fake API server enforcing the chart's
// Roles, ClusterRoles and bindings as the chart's ServiceAccount. The gateway then does what it does in
// a cluster (EXERCISES below). Asserted: no request was refused (403), and every grant of the chart's
// roles (verb x API group x resource) was used by some request, so the chart allows exactly what the
// gateway was seen to ask for. A grant the gateway never uses is removed from the chart, or listed in
// UNUSED_GRANTS with the reason it stays.
//
// Adding a grant together with the code that uses it: add (or extend) an exercise that makes the
// gateway use it; the test then holds the chart to it.
import t from 'tap'
import { FakeApiServer, ruleAllows } from './fake-apiserver/server.ts'
import type { PolicyRule, RequestLogEntry } from './fake-apiserver/server.ts'
import { helmTemplate, only } from './helpers/chart-render.ts'
import type { Loose, Obj, Rendered } from './helpers/chart-render.ts'
import { makeCA, makeCert, tlsSecret } from './helpers/certs.ts'
import { endpointSlice, get, kingress, revision, serviceFor, startBackend, startTestGateway, tempDir, waitFor } from './helpers/gateway.ts'
import { revisionIngress, revisionState } from './helpers/activator.ts'
import { apply } from './helpers/kube.ts'
import type { Gateway } from '../src/gateway.ts'
import { FAST_STATUS_WRITER } from './helpers/status.ts'

const RELEASE = { name: 'edge-gateway', namespace: 'knative-serving' }
/** Where the test's Knative objects live (the namespaced variant watches only it). */
const APP_NS = 'default'

/** Grants the gateway is allowed not to use, as `apiGroup/resource:verb`, each with the reason it stays. */
const UNUSED_GRANTS: Record<string, string> = {}

interface Variant {
  name: string
  values: Obj
}

const VARIANTS: Variant[] = [
  { name: 'default values', values: {} },
  { name: 'gateway.watchServing', values: { gateway: { watchServing: true } } },
  { name: 'gateway.namespaces', values: { gateway: { namespaces: [APP_NS] } } },
]

interface Run {
  api: FakeApiServer
  gw: Gateway
  rendered: Rendered
  teardown(fn: () => unknown): void
}

interface Exercise {
  what: string
  /** Makes the gateway use the API for this (objects in the cluster, calls on the gateway). */
  start(run: Run): Promise<void> | void
  /** Holds once the gateway's requests show it was done. */
  done(requests: readonly RequestLogEntry[], run: Run): boolean
}

/** The gateway asked for this (allowed or not: a refusal is reported by the test, not waited out). */
const did = (requests: readonly RequestLogEntry[], verb: string, resource: string, subresource = ''): boolean =>
  requests.some((r) => r.status !== 0 && r.attributes.verb === verb && r.attributes.resource === resource && r.attributes.subresource === subresource)

const EXERCISES: Exercise[] = [
  {
    what: 'every informer has listed and is watching',
    start: () => undefined,
    done: (requests, { gw }) => {
      const informers = Object.values(gw.kube?.source.describe().informers ?? {})
      if (informers.length === 0 || !informers.every((i) => i.synced)) return false
      // A watch is recorded with its status as soon as its headers go out.
      return informers.every((i) => requests.some((r) => r.watch && r.status === 200 && r.path === i.path))
    },
  },
  {
    what: 'a served KIngress with a TLS Secret gets its status patched by the elected replica',
    start: async ({ api, gw, teardown }) => {
      const backend = await startBackend('hello')
      teardown(() => backend.close())
      const ca = await makeCA()
      apply(api, serviceFor('hello', backend, APP_NS), tlsSecret('hello-cert', await makeCert(ca, 'hello.example.com'), APP_NS))
      apply(api, revision('hello-00001', {}, {}, APP_NS))
      apply(api, kingress('hello', {
        tls: [{ hosts: ['hello.example.com'], secretName: 'hello-cert', secretNamespace: APP_NS }],
        rules: [{ hosts: ['hello.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: APP_NS, serviceName: 'hello', servicePort: 80, percent: 100 }] }] } }],
      }, { ns: APP_NS }))
      // The gateway's own replica, as the local Service's EndpointSlice names it (the prober dials it).
      api.put('discovery.k8s.io', 'v1', 'endpointslices', endpointSlice(gw.config.localService, [{ name: 'http', port: gw.ports.local }], [{ ip: '127.0.0.1' }], RELEASE.namespace, 'self') as object)
    },
    done: (requests) => did(requests, 'patch', 'ingresses', 'status'),
  },
  {
    what: "a request held for a revision with no pod: that revision's pods are listed and watched (why it cannot start)",
    start: ({ api, gw }) => {
      apply(api, revision('cold-00001', {}, {}, APP_NS), revisionIngress('cold', 'cold.example.com', 'cold-00001', APP_NS))
      // Held until the gateway closes (then answered 503): only the pod watch it starts matters here.
      void waitFor('the cold revision to be routed', async () => (await revisionState(gw, 'cold-00001', APP_NS)) !== undefined).then(() => get(gw.ports.http, 'cold.example.com', '/').catch(() => undefined))
    },
    done: (requests) => did(requests, 'list', 'pods') && did(requests, 'watch', 'pods'),
  },
  {
    what: 'the Lease is created, then renewed',
    start: () => undefined,
    done: (requests) => did(requests, 'create', 'leases') && did(requests, 'update', 'leases'),
  },
]

/** The container's environment as the chart renders it, without what only concerns the pod itself. */
function chartEnv(r: Rendered): Record<string, string> {
  const container = (only(r, 'Deployment').spec.template.spec.containers as Loose[])[0]
  const env: Record<string, string> = {}
  // Ports, logs, tracing and workers change nothing the gateway asks of the API server; the test binds
  // ephemeral ports, keeps its output quiet and runs in-process.
  const local = /_PORT$|^EDGE_ACCESS_LOG|^EDGE_LOG_|^EDGE_TRACING_|^EDGE_WORKERS$|^EDGE_DRAIN_SECONDS$/
  for (const e of container.env as Array<{ name: string; value?: unknown }>) {
    if (typeof e.value === 'string' && !local.test(e.name)) env[e.name] = e.value
  }
  return env
}

interface Grant {
  role: string
  /** A Role's namespace: only requests there count. */
  namespace: string | undefined
  rule: PolicyRule
  key: string
}

/** Every single grant (one verb, one API group, one resource) of the rendered Roles and ClusterRoles. */
function grantsOf(r: Rendered): Grant[] {
  const out: Grant[] = []
  for (const o of r.objects) {
    if (o.kind !== 'Role' && o.kind !== 'ClusterRole') continue
    const role = `${o.kind}/${o.metadata.name}`
    for (const rule of (o.rules ?? []) as PolicyRule[]) {
      for (const apiGroup of rule.apiGroups ?? []) {
        for (const resource of rule.resources ?? []) {
          for (const verb of rule.verbs) {
            const single: PolicyRule = { verbs: [verb], apiGroups: [apiGroup], resources: [resource], ...(rule.resourceNames ? { resourceNames: rule.resourceNames } : {}) }
            out.push({ role, namespace: o.kind === 'Role' ? o.metadata.namespace : undefined, rule: single, key: `${apiGroup}/${resource}:${verb}` })
          }
        }
      }
    }
  }
  return out
}

const describeRequest = (r: RequestLogEntry): string => {
  const a = r.attributes
  if (!a.resourceRequest) return `${a.verb} ${a.path}`
  return `${a.verb} ${a.apiGroup}/${a.resource}${a.subresource ? `/${a.subresource}` : ''}${a.namespace ? ` in ${a.namespace}` : ''}`
}

for (const variant of VARIANTS) {
  t.test(`chart RBAC (${variant.name}) allows exactly what the gateway asks for`, async (t) => {
    const rendered = helmTemplate(variant.values, RELEASE)
    const sa = only(rendered, 'ServiceAccount')
    const user = `system:serviceaccount:${RELEASE.namespace}:${sa.metadata.name}`
    const api = await FakeApiServer.start({ rbac: { user, objects: rendered.objects } })
    const dir = tempDir('edge-rbac-')
    t.teardown(() => api.stop())
    const gw = await startTestGateway(dir, [
      '--kubeconfig', api.writeKubeconfig(dir), '--pod-name', 'gw-1', '--pod-namespace', RELEASE.namespace,
    ], chartEnv(rendered), { statusWriter: FAST_STATUS_WRITER, kubernetes: { backoff: { initialMs: 50, maxMs: 500 } } })
    let closed = false
    t.teardown(() => (closed ? undefined : gw.close()))
    t.ok(gw.kube, 'the chart runs the gateway in cluster mode')

    const run: Run = { api, gw, rendered, teardown: (fn) => t.teardown(fn) }
    // An exercise a refusal keeps from completing (no Lease renewal without its creation) stops the
    // run, so that the refusals below say why.
    let incomplete: string | undefined
    for (const ex of EXERCISES) {
      await ex.start(run)
      try {
        await waitFor(ex.what, () => ex.done(api.requests, run))
      } catch (err) {
        incomplete = (err as Error).message
        break
      }
    }
    // Closing releases the Lease: part of what the gateway asks for.
    closed = true
    await gw.close()

    const refused = api.requests.filter((r) => r.status === 403).map(describeRequest)
    t.same([...new Set(refused)], [], 'no request of the gateway was refused')
    t.equal(incomplete, undefined, 'the gateway did everything it does in a cluster')
    if (incomplete !== undefined) return

    const allowed = api.requests.filter((r) => r.status !== 403 && r.status !== 401)
    const grants = grantsOf(rendered)
    t.ok(grants.length > 0, 'the chart renders roles')
    const unused = grants.filter((g) => !allowed.some((r) =>
      (g.namespace === undefined || r.attributes.namespace === g.namespace) && ruleAllows(g.rule, r.attributes)))
    const unexplained = unused.filter((g) => UNUSED_GRANTS[g.key] === undefined).map((g) => `${g.role}: ${g.key}`)
    t.same(unexplained, [], 'every grant of the chart was used by some request of the gateway')
    for (const [key, why] of Object.entries(UNUSED_GRANTS)) {
      t.ok(grants.some((g) => g.key === key), `the exempt grant ${key} is still in the chart (${why})`)
    }
  })
}

t.test('the fake refuses what the chart does not grant, as the real server words it', async (t) => {
  const rendered = helmTemplate({}, RELEASE)
  const user = `system:serviceaccount:${RELEASE.namespace}:${only(rendered, 'ServiceAccount').metadata.name}`
  const api = await FakeApiServer.start({ rbac: { user, objects: rendered.objects } })
  t.teardown(() => api.stop())
  const res = await fetch(`${api.url}/api/v1/namespaces/${APP_NS}/configmaps`, { headers: { Authorization: 'Bearer fake-token' } })
  t.equal(res.status, 403)
  t.same(await res.json(), {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: `configmaps is forbidden: User "${user}" cannot list resource "configmaps" in API group "" in the namespace "${APP_NS}"`,
    reason: 'Forbidden',
    details: { kind: 'configmaps' },
    code: 403,
  })
  t.match(api.requests.at(-1), { status: 403, attributes: { verb: 'list', apiGroup: '', resource: 'configmaps', namespace: APP_NS } }, 'the refusal is recorded')
})
