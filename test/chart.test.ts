// The Helm chart and the Dockerfile, checked without helm or docker.
//
// There is no helm binary here: helpers/chart-render.ts renders the chart with a small renderer for
// the subset of Go templates the chart uses (tested first, below).
import { NODE_FLAGS, withNodeFlags } from '../src/runtime-flags.ts'
import t from 'tap'
import { parseConfig } from '../src/config.ts'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { asPromQL, dataPanels, loadDashboard } from './helpers/dashboard.ts'
import { chartYaml, defaultValues, helmTemplate, isObj, only, parseTemplates, render, repo, templateFiles, valuesText } from './helpers/chart-render.ts'
import type { K8sObject, Loose, Obj, Rendered } from './helpers/chart-render.ts'
import { liveOptions } from '../src/settings/configmaps.ts'
import { settingsExample } from '../src/settings/example.ts'

interface EnvVar {
  name: string
  value?: unknown
  valueFrom?: { fieldRef?: { fieldPath: string }; resourceFieldRef?: { resource: string; containerName?: string } }
}
interface ContainerPort {
  name: string
  containerPort: number
}

function gatewayContainer(r: Rendered): Loose {
  const containers = only(r, 'Deployment').spec.template.spec.containers as Array<{ name: string }>
  if (containers.length !== 1) throw new Error(`expected one container, found ${containers.length}`)
  return containers[0]
}

function envOf(r: Rendered): Map<string, EnvVar> {
  const env = gatewayContainer(r).env as EnvVar[]
  return new Map(env.map((e) => [e.name, e]))
}

function containerPort(r: Rendered, ref: string | number): number {
  if (typeof ref === 'number') return ref
  const ports = gatewayContainer(r).ports as ContainerPort[]
  const port = ports.find((p) => p.name === ref)
  if (!port) throw new Error(`no container port named ${ref}`)
  return port.containerPort
}

// ---------------------------------------------------------------- the renderer itself

t.test('the renderer handles the subset the chart uses', async (t) => {
  const files = new Map([
    ['_h.tpl', '{{- define "x.greet" -}}\nhi {{ .Values.who | default "you" }}\n{{- end -}}'],
    [
      'a.yaml',
      'a: {{ include "x.greet" . | quote }}\n{{- if .Values.on }}\nb: 1\n{{- else if eq .Values.who "z" }}\nb: 2\n{{- else }}\nb: 3\n{{- end }}\nc:\n  {{- toYaml .Values.m | nindent 2 }}\nd: {{ printf "%s-%s" "p" (include "x.greet" .) }}\n{{/* gone */}}',
    ],
  ])
  const set = parseTemplates(files)
  const run = (values: Obj): string => render(set, set.files.get('a.yaml')!, { Values: values })
  t.equal(run({ who: '', on: true, m: { k: 'v' } }), 'a: "hi you"\nb: 1\nc:\n  k: v\nd: p-hi you\n')
  t.equal(run({ who: 'z', on: false, m: { k: 'v' } }), 'a: "hi z"\nb: 2\nc:\n  k: v\nd: p-hi z\n')
  t.equal(run({ who: 'q', on: 0, m: { k: 'v' } }), 'a: "hi q"\nb: 3\nc:\n  k: v\nd: p-hi q\n')
  const missing = parseTemplates(new Map([['m.yaml', 'x: {{ .Values.nope }}']]))
  t.throws(() => render(missing, missing.files.get('m.yaml')!, { Values: {} }), /does not exist/, 'printing a missing value fails')
  t.throws(() => render(missing, missing.files.get('m.yaml')!, {}), /nil pointer/, 'a field of a missing map fails')
  const ranged = parseTemplates(new Map([['r.yaml', '{{- range .Values.xs }}\n- {{ . }} of {{ $.Values.name }}{{ if eq . "b" }}!{{ end }}\n{{- else }}\nnone of {{ .Values.name }}\n{{- end }}']]))
  const runRange = (xs: unknown): string => render(ranged, ranged.files.get('r.yaml')!, { Values: { xs, name: 'n' } })
  t.equal(runRange(['a', 'b']), '\n- a of n\n- b of n!', 'range: `.` is the element, `$` the top')
  t.equal(runRange([]), '\nnone of n', 'range else: an empty list')
  t.throws(() => runRange({ k: 'v' }), /only lists/, 'a map is outside the subset')
  t.throws(() => parseTemplates(new Map([['r.yaml', '{{ range $i, $x := .Values.x }}{{ end }}']])), /unsupported template syntax/, 'so are variables')
  t.throws(() => parseTemplates(new Map([['w.yaml', '{{ with .Values.x }}{{ end }}']])), /outside the subset/)
  const method = parseTemplates(new Map([['f.yaml', 'f:\n  {{- .Files.Get "a.json" | nindent 2 }}\ng: {{ .Values.who "x" }}']]))
  const chartFiles = { Get: (name: unknown) => `{"file": "${String(name)}"}\n` }
  t.throws(() => render(method, method.files.get('f.yaml')!, { Files: chartFiles, Values: { who: 'not a method' } }), /non-function/, 'only a method takes arguments')
  const fOnly = parseTemplates(new Map([['f.yaml', 'f:\n  {{- .Files.Get "a.json" | nindent 2 }}']]))
  t.equal(render(fOnly, fOnly.files.get('f.yaml')!, { Files: chartFiles }), 'f:\n  {"file": "a.json"}\n  ', 'a method call (.Files.Get) piped on')
})

// ---------------------------------------------------------------- static checks

t.test('Chart.yaml and values.yaml parse and agree with package.json', async (t) => {
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string; bin: Record<string, string> }
  t.equal(chartYaml.apiVersion, 'v2')
  t.equal(chartYaml.name, 'edge-gateway')
  t.match(chartYaml.version, /^\d+\.\d+\.\d+/)
  t.equal(chartYaml.appVersion, pkg.version, 'appVersion follows package.json')
  t.ok(isObj(defaultValues), 'values.yaml is a map')
  for (const [file, text] of templateFiles) {
    t.notMatch(text, /\t/, `${file} has no tabs`)
  }
})

// Every .Values path a template reads, from the raw template text.
function valuesPathsInTemplates(): Map<string, string> {
  const used = new Map<string, string>()
  for (const [file, text] of templateFiles) {
    for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
      used.set((m[1] ?? '').slice(1), file)
    }
  }
  return used
}

t.test('every .Values path in a template exists in values.yaml', async (t) => {
  const used = valuesPathsInTemplates()
  t.ok(used.size > 30, `found ${used.size} .Values paths`)
  for (const [path, file] of used) {
    let node: unknown = defaultValues
    let ok = true
    for (const key of path.split('.')) {
      if (!isObj(node) || !(key in node)) {
        ok = false
        break
      }
      node = node[key]
    }
    t.ok(ok, `.Values.${path} (${file}) is defined in values.yaml`)
  }
  const all = [...templateFiles.values()].join('\n')
  t.notOk(/\{\{-?\s*with\b/.test(all), 'templates use absolute paths, no with scopes')
  // Inside a range `.` is the element: the top is reached through `$` only, so the paths above hold.
  for (const body of all.matchAll(/\{\{-?\s*range\b[^}]*\}\}([\s\S]*?)\{\{-?\s*end\s*-?\}\}/g)) {
    t.notMatch(body[1], /(^|[^$\w])\.(Values|Release|Chart|Files)\b/, 'a range body reaches the top through $')
  }
})

t.test('every key in values.yaml is read by some template', async (t) => {
  const used = [...valuesPathsInTemplates().keys()]
  const covered = (p: string): boolean => used.some((u) => p === u || p.startsWith(u + '.'))
  const read: string[] = []
  const unread: string[] = []
  const walk = (node: Obj, prefix: string): void => {
    for (const [k, v] of Object.entries(node)) {
      const p = prefix ? `${prefix}.${k}` : k
      if (covered(p)) read.push(p)
      else if (isObj(v) && Object.keys(v).length > 0) walk(v, p)
      else unread.push(p)
    }
  }
  walk(defaultValues, '')
  t.same(unread, [], 'values.yaml keys never read by a template')
  t.ok(read.length > 30, `${read.length} values.yaml keys are read by templates`)
  t.ok(read.includes('image.repository'), 'the walk reaches nested keys (image.repository)')
})

t.test('values.yaml documents each top-level key with a comment', async (t) => {
  const lines = valuesText.split('\n')
  for (const [i, line] of lines.entries()) {
    const m = /^([A-Za-z][A-Za-z0-9]*):/.exec(line)
    if (!m) continue
    let j = i - 1
    while (j >= 0 && /^\s*$/.test(lines[j] ?? '')) j--
    const before = lines[j] ?? ''
    const firstChild = lines[i + 1] ?? ''
    t.ok(/^#/.test(before) || /^\s+#/.test(firstChild), `values.yaml ${m[1]} has a comment`)
  }
})

// ---------------------------------------------------------------- rendered defaults

t.test('default render: Deployment', async (t) => {
  const r = helmTemplate()
  const dep = only(r, 'Deployment')
  const pod = dep.spec.template.spec
  t.equal(dep.metadata.namespace, 'knative-serving')
  t.equal(dep.spec.replicas, 2, 'two replicas')
  t.same(dep.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'edge-gateway', 'app.kubernetes.io/instance': 'edge-gateway' })
  t.match(dep.spec.template.metadata.labels, dep.spec.selector.matchLabels, 'the pod template carries the selector labels')

  const c = gatewayContainer(r)
  t.equal(c.image, `edge-gateway:${String(chartYaml.appVersion)}`, 'image tag defaults to appVersion')
  const env = envOf(r)
  t.equal(env.get('POD_NAME')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name')
  t.equal(env.get('POD_IP')?.valueFrom?.fieldRef?.fieldPath, 'status.podIP')
  t.equal(env.get('POD_NAMESPACE')?.valueFrom?.fieldRef?.fieldPath, 'metadata.namespace')
  t.equal(env.get('EDGE_WORKERS')?.valueFrom?.resourceFieldRef?.resource, 'limits.cpu', 'workers follow the CPU limit')
  t.equal(env.get('EDGE_WORKERS')?.valueFrom?.resourceFieldRef?.containerName, c.name)
  const expected: Record<string, string> = {
    EDGE_KUBERNETES: '1',
    EDGE_INGRESS_CLASS: 'edge.ingress.networking.knative.dev',
    EDGE_DOMAIN: 'example.com',
    EDGE_PUBLIC_SERVICE: 'edge-gateway',
    EDGE_LOCAL_SERVICE: 'edge-gateway-local',
    EDGE_HTTP_PORT: '8080',
    EDGE_HTTPS_PORT: '8443',
    EDGE_LOCAL_PORT: '8081',
    EDGE_LOCAL_HTTPS_PORT: '8444',
    EDGE_ADMIN_PORT: '9090',
    EDGE_DRAIN_SECONDS: '30',
    EDGE_LOG_LEVEL: 'info',
    EDGE_ACCESS_LOG: '1',
    EDGE_LOG_FORMAT: 'json',
    EDGE_AUTOSCALER_URL: 'ws://autoscaler.knative-serving.svc.cluster.local:8080',
  }
  for (const [name, value] of Object.entries(expected)) t.equal(env.get(name)?.value, value, name)
  for (const name of ['EDGE_WATCH_SERVING', 'EDGE_NAMESPACES', 'EDGE_LISTEN_ADDRESS', 'EDGE_ACCESS_LOG_TEMPLATE', 'EDGE_MANIFESTS']) {
    t.notOk(env.has(name), `${name} unset by default`)
  }
  for (const e of env.values()) {
    t.ok(typeof e.value === 'string' || e.valueFrom !== undefined, `env ${e.name} is a string or valueFrom`)
  }

  const ports = new Map((c.ports as ContainerPort[]).map((p) => [p.name, p.containerPort]))
  t.same(Object.fromEntries(ports), { http: 8080, https: 8443, 'http-local': 8081, 'https-local': 8444, admin: 9090 })
  t.equal(c.readinessProbe.httpGet.path, '/readyz')
  t.equal(containerPort(r, c.readinessProbe.httpGet.port), 9090, 'readiness on the admin port')
  t.equal(c.livenessProbe.httpGet.path, '/healthz')
  t.equal(containerPort(r, c.livenessProbe.httpGet.port), 9090, 'liveness on the admin port')

  t.equal(pod.terminationGracePeriodSeconds, 660)
  t.ok(pod.terminationGracePeriodSeconds >= 30 + 600, 'grace covers the drain and the longest revision timeout')
  t.equal(pod.securityContext.runAsNonRoot, true)
  t.equal(pod.securityContext.runAsUser, 65532)
  t.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault')
  t.equal(c.securityContext.runAsNonRoot, true)
  t.equal(c.securityContext.readOnlyRootFilesystem, true, 'read-only root filesystem')
  t.equal(c.securityContext.allowPrivilegeEscalation, false)
  t.same(c.securityContext.capabilities.drop, ['ALL'])
  t.notOk(c.securityContext.capabilities.add, 'no capability added')
  t.same(c.resources.requests, { cpu: '200m', memory: '256Mi' })
  t.ok(c.resources.limits.cpu && c.resources.limits.memory, 'limits set')
  t.ok(
    (c.volumeMounts as Array<{ mountPath: string }>).some((m) => m.mountPath === '/tmp'),
    'a writable /tmp beside the read-only root',
  )
  t.equal(pod.serviceAccountName, only(r, 'ServiceAccount').metadata.name)
  t.equal(pod.topologySpreadConstraints?.[0]?.topologyKey, 'kubernetes.io/hostname')
  t.same(pod.topologySpreadConstraints?.[0]?.labelSelector.matchLabels, dep.spec.selector.matchLabels)
  t.notOk(pod.nodeSelector ?? pod.tolerations ?? pod.affinity, 'no scheduling constraints by default')
  t.notOk(r.objects.some((o) => o.kind === 'HorizontalPodAutoscaler'), 'no HPA by default')
})

t.test('default render: Services', async (t) => {
  const r = helmTemplate()
  const dep = only(r, 'Deployment')
  const pub = only(r, 'Service', 'edge-gateway')
  t.equal(pub.spec.type, 'LoadBalancer')
  const pubPorts = pub.spec.ports as Array<{ name: string; port: number; targetPort: string | number; nodePort?: number }>
  t.same(
    pubPorts.map((p) => [p.name, p.port, containerPort(r, p.targetPort)]),
    [
      ['http', 80, 8080],
      ['https', 443, 8443],
    ],
  )
  t.notOk(pubPorts.some((p) => p.nodePort), 'no fixed node ports by default')
  t.notOk('externalTrafficPolicy' in pub.spec, 'Kubernetes default traffic policy')
  t.same(pub.spec.selector, dep.spec.selector.matchLabels, 'public Service selects the gateway pods')

  const local = only(r, 'Service', 'edge-gateway-local')
  t.equal(local.spec.type, 'ClusterIP')
  const localPorts = local.spec.ports as Array<{ name: string; port: number; targetPort: string | number }>
  t.same(
    localPorts.map((p) => [p.name, p.port, containerPort(r, p.targetPort)]),
    [
      ['http2', 80, 8081],
      ['https', 443, 8444],
    ],
  )
  t.same(local.spec.selector, dep.spec.selector.matchLabels, 'local Service selects the gateway pods')
  t.equal(r.objects.filter((o) => o.kind === 'Service').length, 2)
})

type Rule = { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }

function grants(rules: Rule[]): Set<string> {
  const out = new Set<string>()
  for (const rule of rules) {
    for (const g of rule.apiGroups) for (const res of rule.resources) for (const v of rule.verbs) out.add(`${g}/${res}:${v}`)
  }
  return out
}

// Informers list and watch; nothing gets single objects (test/rbac.test.ts checks the gateway's own requests).
const READ = ['list', 'watch']
const clusterGrants = (extra: string[] = []): string[] =>
  [
    ...READ.map((v) => `networking.internal.knative.dev/ingresses:${v}`),
    'networking.internal.knative.dev/ingresses/status:patch',
    ...READ.map((v) => `serving.knative.dev/revisions:${v}`),
    ...READ.map((v) => `/services:${v}`),
    ...READ.map((v) => `/secrets:${v}`),
    ...READ.map((v) => `discovery.k8s.io/endpointslices:${v}`),
    // The pods of a revision with requests held: why it cannot start (503 revision-failed at once).
    ...READ.map((v) => `/pods:${v}`),
    ...extra,
  ].sort()

t.test('default render: RBAC is least privilege', async (t) => {
  const r = helmTemplate()
  const sa = only(r, 'ServiceAccount')
  const role = only(r, 'ClusterRole')
  const rules = role.rules as Rule[]
  const all = rules.flatMap((x) => [...x.apiGroups, ...x.resources, ...x.verbs])
  t.notOk(all.includes('*'), 'no wildcards')
  t.ok(grants(rules).has('networking.internal.knative.dev/ingresses/status:patch'), 'may patch KIngress status')
  t.same([...grants(rules)].sort(), clusterGrants(), 'exactly the listed grants, nothing more')

  const crb = only(r, 'ClusterRoleBinding')
  t.same(crb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role.metadata.name })
  t.same(crb.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: 'knative-serving' }])

  t.same(r.objects.filter((o) => o.kind === 'Role').map((o) => o.metadata.name).sort(), [`${role.metadata.name}-knative-settings`, `${role.metadata.name}-leases`, `${role.metadata.name}-settings`, `${role.metadata.name}-trust-bundles`], 'four Roles: settings ConfigMaps (its own, Knative\'s), leases, trust bundles')
  const leases = only(r, 'Role', `${role.metadata.name}-leases`)
  t.equal(leases.metadata.namespace, 'knative-serving', 'leases only in the release namespace')
  t.same([...grants(leases.rules as Rule[])].sort(), ['coordination.k8s.io/leases:create', 'coordination.k8s.io/leases:get', 'coordination.k8s.io/leases:update'])
  const rb = only(r, 'RoleBinding', leases.metadata.name)
  t.same(rb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: leases.metadata.name })
  t.same(rb.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: 'knative-serving' }])
})

t.test('RBAC for system-internal-tls: read ConfigMaps in knative-serving only, whatever the release namespace', async (t) => {
  const r = helmTemplate({}, { name: 'eg', namespace: 'edge' })
  const bundles = only(r, 'Role', 'eg-edge-gateway-trust-bundles')
  t.equal(bundles.metadata.namespace, 'knative-serving', "Knative's trust bundles live in knative-serving")
  t.same([...grants(bundles.rules as Rule[])].sort(), READ.map((v) => `/configmaps:${v}`), 'read ConfigMaps, nothing else')
  const rb = only(r, 'RoleBinding', 'eg-edge-gateway-trust-bundles')
  t.equal(rb.metadata.namespace, 'knative-serving')
  t.same(rb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'eg-edge-gateway-trust-bundles' })
  t.same(rb.subjects, [{ kind: 'ServiceAccount', name: 'eg-edge-gateway', namespace: 'edge' }], 'bound to the gateway in its own namespace')
  t.notOk(grants(only(r, 'ClusterRole', 'eg-edge-gateway').rules as Rule[]).has('/configmaps:list'), 'no cluster-wide ConfigMap access')
  t.notOk(envOf(r).has('EDGE_SYSTEM_INTERNAL_TLS'), 'off by default')
  t.equal(envOf(helmTemplate({ gateway: { systemInternalTls: true } })).get('EDGE_SYSTEM_INTERNAL_TLS')?.value, '1', 'gateway.systemInternalTls turns it on')
})

t.test('settings ConfigMaps: config-edge-gateway documents exactly the live options; RBAC reads the three by name', async (t) => {
  const r = helmTemplate({ gateway: { knativeNamespace: 'knative-system' } }, { name: 'eg', namespace: 'edge' })
  const cm = only(r, 'ConfigMap', 'config-edge-gateway') as K8sObject & { data: Record<string, string> }
  t.equal(cm.metadata.namespace, 'edge', "in the gateway's own namespace (its POD_NAMESPACE)")
  t.same(Object.keys(cm.data), ['_example'], 'only the _example block: nothing is set by the chart')
  const example = cm.data._example!
  const keys = [...example.matchAll(/^([a-z0-9-]+): /gm)].map((m) => m[1])
  t.same(keys, liveOptions().map((o) => o.flag), 'every live option, in table order, and nothing else')
  t.equal(example, settingsExample(), `the text made from config.ts (rewrite it: npx node src/settings/example.ts --write)`)
  t.match(example, /\n# characters of the request target \(then 414\) \(at least 64\)\nmax-url-length: "8192"\n/, 'each key under its help, bounds and default')

  t.equal(envOf(r).get('EDGE_KNATIVE_NAMESPACE')?.value, 'knative-system', 'the gateway is told where Knative keeps its ConfigMaps')
  const own = only(r, 'Role', 'eg-edge-gateway-settings')
  t.equal(own.metadata.namespace, 'edge')
  t.same(own.rules, [{ apiGroups: [''], resources: ['configmaps'], resourceNames: ['config-edge-gateway'], verbs: READ }], 'its own ConfigMap, by name, read only')
  const knative = only(r, 'Role', 'eg-edge-gateway-knative-settings')
  t.equal(knative.metadata.namespace, 'knative-system')
  t.same(knative.rules, [{ apiGroups: [''], resources: ['configmaps'], resourceNames: ['config-network', 'config-domain'], verbs: READ }], "Knative's two, by name, read only")
  for (const role of [own, knative]) {
    const rb = only(r, 'RoleBinding', role.metadata.name)
    t.equal(rb.metadata.namespace, role.metadata.namespace)
    t.same(rb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name })
    t.same(rb.subjects, [{ kind: 'ServiceAccount', name: 'eg-edge-gateway', namespace: 'edge' }])
  }
})

t.test('default render: PodDisruptionBudget and NOTES', async (t) => {
  const r = helmTemplate()
  const pdb = only(r, 'PodDisruptionBudget')
  t.equal(pdb.apiVersion, 'policy/v1')
  t.equal(pdb.spec.minAvailable, 1)
  t.same(pdb.spec.selector.matchLabels, only(r, 'Deployment').spec.selector.matchLabels)
  t.match(
    r.notes,
    `kubectl patch configmap/config-network -n knative-serving --type merge \\\n       -p '{"data":{"ingress-class":"edge.ingress.networking.knative.dev"}}'`,
    'NOTES show the config-network switch with the configured class',
  )
  t.match(r.notes, 'kubectl get service edge-gateway -n knative-serving', 'NOTES show how to find the address')
  for (const o of r.objects) {
    t.ok(o.metadata.labels?.['app.kubernetes.io/managed-by'] === 'Helm', `${o.kind} ${o.metadata.name} is labelled`)
  }
})

// ---------------------------------------------------------------- rendered with values changed

t.test('options: NodePort, HPA, watch-serving, namespaces, workers', async (t) => {
  const r = helmTemplate(
    {
      publicService: { type: 'NodePort', externalTrafficPolicy: 'Local', nodePorts: { http: 31080, https: 31443 } },
      autoscaling: { enabled: true, minReplicas: 3, maxReplicas: 7 },
      gateway: { watchServing: true, namespaces: ['team-a', 'team-b'], listenAddresses: ['0.0.0.0', '::'], workers: 4, accessLog: false, accessLogTemplate: '{method} {path} {status}', tracing: { endpoint: 'http://otel-collector.observability:4318', samplingRate: 0.25, serviceName: 'edge-eu' }, extauthz: { host: 'authz.security:9000', protocol: 'http', failureModeAllow: true, timeout: 500, maxRequestBodyBytes: 0, pathPrefix: '/check' }, ingressClass: 'my.class', autoscalerUrl: '' },
      podDisruptionBudget: { maxUnavailable: '50%' },
      extraEnv: [{ name: 'NODE_OPTIONS', value: '--max-old-space-size=512' }],
      nodeSelector: { 'kubernetes.io/os': 'linux' },
    },
    { name: 'eg', namespace: 'edge' },
  )
  const dep = only(r, 'Deployment', 'eg-edge-gateway')
  t.notOk('replicas' in dep.spec, 'the HPA owns replicas')
  const hpa = only(r, 'HorizontalPodAutoscaler')
  t.equal(hpa.apiVersion, 'autoscaling/v2')
  t.same(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'eg-edge-gateway' })
  t.equal(hpa.spec.minReplicas, 3)
  t.equal(hpa.spec.maxReplicas, 7)
  t.equal(hpa.spec.metrics[0].resource.name, 'cpu')

  const pub = only(r, 'Service', 'edge-gateway')
  t.equal(pub.spec.type, 'NodePort')
  t.equal(pub.spec.externalTrafficPolicy, 'Local')
  t.same(
    (pub.spec.ports as Array<{ nodePort?: number }>).map((p) => p.nodePort),
    [31080, 31443],
  )
  t.match(r.notes, '.nodePort}', 'NOTES explain the node port')

  const env = envOf(r)
  t.equal(env.get('EDGE_WATCH_SERVING')?.value, '1')
  t.equal(env.get('EDGE_NAMESPACES')?.value, 'team-a,team-b')
  t.equal(env.get('EDGE_LISTEN_ADDRESS')?.value, '0.0.0.0,::', 'both families, as the gateway parses the list')
  t.equal(env.get('EDGE_WORKERS')?.value, '4')
  t.notOk(env.has('EDGE_ACCESS_LOG'), 'accessLog: false turns the access log off')
  t.equal(env.get('EDGE_ACCESS_LOG_TEMPLATE')?.value, '{method} {path} {status}')
  t.equal(env.get('EDGE_TRACING_ENDPOINT')?.value, 'http://otel-collector.observability:4318')
  t.equal(env.get('EDGE_TRACING_SAMPLING_RATE')?.value, '0.25')
  t.equal(env.get('EDGE_TRACING_SERVICE_NAME')?.value, 'edge-eu')
  const authz = ['HOST', 'PROTOCOL', 'FAILURE_MODE_ALLOW', 'TIMEOUT', 'MAX_REQUEST_BODY_BYTES', 'PATH_PREFIX'].map((k) => env.get(`EDGE_EXTAUTHZ_${k}`)?.value)
  t.same(authz, ['authz.security:9000', 'http', 'true', '500', '0', '/check'], 'gateway.extauthz to the EDGE_EXTAUTHZ_* options')
  const parsed = parseConfig([], Object.fromEntries([...env].filter(([k]) => k.startsWith('EDGE_EXTAUTHZ_')).map(([k, v]) => [k, String(v.value)])))
  t.match(parsed, { extAuthzHost: 'authz.security:9000', extAuthzProtocol: 'http', extAuthzFailureModeAllow: true, extAuthzTimeoutMs: 500, extAuthzMaxRequestBodyBytes: 0, extAuthzPathPrefix: '/check' }, 'which the gateway accepts')
  t.equal(env.get('EDGE_INGRESS_CLASS')?.value, 'my.class')
  t.equal(env.get('NODE_OPTIONS')?.value, '--max-old-space-size=512')
  t.notOk(env.has('EDGE_AUTOSCALER_URL'), 'empty autoscalerUrl leaves the built-in default')
  t.same(dep.spec.template.spec.nodeSelector, { 'kubernetes.io/os': 'linux' })
  t.match(r.notes, '"ingress-class":"my.class"')

  t.same(r.objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding'), [], 'gateway.namespaces: nothing cluster-wide')
  const watchRoles = r.objects.filter((o) => o.kind === 'Role' && o.metadata.name === 'eg-edge-gateway')
  t.same(watchRoles.map((o) => o.metadata.namespace), ['team-a', 'team-b'], 'a Role in each watched namespace')
  const replicas = only(r, 'Role', 'eg-edge-gateway-replicas')
  t.same([replicas.metadata.namespace, [...grants(replicas.rules as Rule[])]], ['edge', ['discovery.k8s.io/endpointslices:list', 'discovery.k8s.io/endpointslices:watch']], 'in the release namespace, only the EndpointSlices (its own replicas)')
  for (const role of watchRoles) {
    t.same(
      [...grants(role.rules as Rule[])].sort(),
      clusterGrants(['routes', 'domainmappings', 'services', 'configurations'].flatMap((res) => READ.map((v) => `serving.knative.dev/${res}:${v}`))),
      'with what the ClusterRole grants otherwise: watch-serving adds read access to routes, domainmappings, Knative services and configurations only',
    )
  }
  const bindings = r.objects.filter((o) => o.kind === 'RoleBinding' && o.metadata.name === 'eg-edge-gateway')
  t.same(bindings.map((b) => [b.metadata.namespace, b.roleRef.kind, b.roleRef.name, b.subjects[0]]), ['team-a', 'team-b'].map((ns) => [ns, 'Role', 'eg-edge-gateway', { kind: 'ServiceAccount', name: 'eg-edge-gateway', namespace: 'edge' }]))
  const certs = only(r, 'Role', 'eg-edge-gateway-routing-certs')
  t.same([certs.metadata.namespace, certs.rules], ['knative-serving', [{ apiGroups: [''], resources: ['secrets'], resourceNames: ['routing-serving-certs'], verbs: ['list', 'watch'] }]], "and system-internal-tls's CA Secret by name, which the ClusterRole covers otherwise")
  const pdb = only(r, 'PodDisruptionBudget')
  t.equal(pdb.spec.maxUnavailable, '50%')
  t.notOk('minAvailable' in pdb.spec, 'maxUnavailable replaces minAvailable')
})

t.test('options: ClusterIP public Service, renamed Services, no RBAC or ServiceAccount', async (t) => {
  const r = helmTemplate({
    publicService: { type: 'ClusterIP', name: 'gw', externalTrafficPolicy: 'Local', nodePorts: { http: 31080, https: '' } },
    localService: { name: 'gw-local' },
    rbac: { create: false },
    serviceAccount: { create: false, name: 'existing' },
    podDisruptionBudget: { enabled: false },
    spreadAcrossNodes: false,
    metrics: { scrapeAnnotations: false },
  })
  const pub = only(r, 'Service', 'gw')
  t.equal(pub.spec.type, 'ClusterIP')
  t.notOk('externalTrafficPolicy' in pub.spec, 'no traffic policy on ClusterIP')
  t.notOk((pub.spec.ports as Array<{ nodePort?: number }>).some((p) => p.nodePort), 'no node ports on ClusterIP')
  only(r, 'Service', 'gw-local')
  const env = envOf(r)
  t.equal(env.get('EDGE_PUBLIC_SERVICE')?.value, 'gw', 'the gateway is told its renamed public Service')
  t.equal(env.get('EDGE_LOCAL_SERVICE')?.value, 'gw-local', 'the gateway is told its renamed local Service')
  const dep = only(r, 'Deployment')
  t.equal(dep.spec.template.spec.serviceAccountName, 'existing')
  t.notOk(dep.spec.template.metadata.annotations, 'no pod annotations')
  t.notOk(dep.spec.template.spec.topologySpreadConstraints, 'no spread constraints')
  for (const kind of ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'PodDisruptionBudget']) {
    t.notOk(
      r.objects.some((o) => o.kind === kind),
      `no ${kind}`,
    )
  }
  t.match(r.notes, 'port-forward -n knative-serving service/gw 8080:80')
})

// ---------------------------------------------------------------- metrics: dashboard and ServiceMonitor

t.test('default render: the Grafana dashboard ConfigMap, no ServiceMonitor', async (t) => {
  const r = helmTemplate()
  const cm = only(r, 'ConfigMap', 'edge-gateway-dashboard') as K8sObject & { data: Record<string, string>; metadata: { annotations?: Record<string, string> } }
  t.equal(cm.metadata.name, 'edge-gateway-dashboard')
  t.equal(cm.metadata.namespace, 'knative-serving')
  t.equal(cm.metadata.labels?.grafana_dashboard, '1', "labelled for Grafana's dashboard sidecar")
  t.notOk(cm.metadata.annotations, 'no annotations by default')
  t.same(Object.keys(cm.data), ['edge-gateway.json'])
  t.same(JSON.parse(cm.data['edge-gateway.json']!), loadDashboard(), 'the dashboard file, whole')
  t.notOk(r.objects.some((o) => o.kind === 'ServiceMonitor'), 'no ServiceMonitor by default')
})

t.test('the dashboard: panels for what an operator watches, each with a query on the chosen data source', async (t) => {
  const d = loadDashboard()
  t.equal(d.uid, 'edge-gateway')
  const variables = d.templating.list.map((v) => v.name)
  t.same(variables, ['datasource', 'job', 'namespace', 'revision'])
  const panels = dataPanels(d)
  t.equal(new Set(d.panels.map((p) => p.id)).size, d.panels.length, 'panel ids are unique')
  const exprs = panels.flatMap((p) => (p.targets ?? []).map((x) => x.expr))
  for (const p of panels) {
    t.ok((p.targets ?? []).length > 0, `${p.title}: has a query`)
    t.same(p.datasource, { type: 'prometheus', uid: '${datasource}' }, `${p.title}: on the chosen data source`)
    for (const x of p.targets ?? []) t.doesNotThrow(() => asPromQL(x.expr, d, '1m'), `${p.title}: uses only the dashboard's variables`)
    t.ok(p.gridPos.x >= 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title}: fits the 24-column grid`)
  }
  const cells = new Set<string>()
  let overlaps = 0
  for (const p of d.panels) {
    for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
        if (cells.has(`${x},${y}`)) overlaps++
        cells.add(`${x},${y}`)
      }
    }
  }
  t.equal(overlaps, 0, 'no two panels overlap')
  const shows = (re: RegExp, what: string): void => {
    t.ok(exprs.some((e) => re.test(e)), `a panel shows ${what}`)
  }
  shows(/rate\(edge_requests_total\{/, 'the request rate')
  shows(/sum by \(code, reason\) \(rate\(edge_requests_total\{[^}]*reason!=""/, "the gateway's answers by reason")
  shows(/histogram_quantile\(0\.99, sum by \(le, namespace, revision\) \(rate\(edge_request_duration_seconds_bucket/, 'latency percentiles per revision')
  shows(/edge_cold_start_wait_seconds_count/, 'cold starts (requests held, by cause)')
  shows(/histogram_quantile\(0\.99, sum by \([^)]*\) \(rate\(edge_cold_start_wait_seconds_bucket/, 'the time held')
  shows(/edge_revision_requests_queued/, 'queued requests')
  shows(/edge_revision_requests_in_flight/, 'requests in flight')
  shows(/edge_revision_ready_pods/, 'pods per revision')
  shows(/edge_autoscaler_connected/, 'the autoscaler link')
  shows(/edge_config_problems/, 'configuration problems')
  shows(/process_cpu_seconds_total/, 'CPU, under its conventional name')
})

t.test('options: dashboard off, ServiceMonitor on with its metrics Service', async (t) => {
  const r = helmTemplate({ metrics: { dashboard: { enabled: false }, serviceMonitor: { enabled: true, interval: '15s', scrapeTimeout: '10s', labels: { release: 'kube-prometheus-stack' } } } }, { name: 'eg', namespace: 'edge' })
  t.notOk(r.objects.some((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-dashboard')), 'no dashboard ConfigMap')
  const sm = only(r, 'ServiceMonitor')
  t.equal(sm.apiVersion, 'monitoring.coreos.com/v1')
  t.equal(sm.metadata.namespace, 'edge')
  t.equal(sm.metadata.labels?.release, 'kube-prometheus-stack', 'extra labels for the Prometheus selector')
  const services = r.objects.filter((o) => o.kind === 'Service')
  const selects = (svc: K8sObject): boolean => Object.entries(sm.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => svc.metadata.labels?.[k] === v)
  const selected = services.filter(selects)
  t.same(selected.map((x) => x.metadata.name), ['eg-edge-gateway-metrics'], 'the ServiceMonitor selects the metrics Service only')
  const metricsSvc = selected[0]!
  t.equal(metricsSvc.spec.clusterIP, 'None', 'headless: Prometheus scrapes each pod')
  t.same(metricsSvc.spec.selector, only(r, 'Deployment').spec.selector.matchLabels, 'it selects the gateway pods')
  t.same(sm.spec.namespaceSelector, { matchNames: ['edge'] })
  const [endpoint] = sm.spec.endpoints as Array<{ port: string; path: string; interval: string; scrapeTimeout?: string }>
  const port = (metricsSvc.spec.ports as Array<{ name: string; targetPort: string | number }>).find((p) => p.name === endpoint!.port)
  t.ok(port, `the endpoint's port ${endpoint!.port} is a port of the metrics Service`)
  t.equal(containerPort(r, port!.targetPort), 9090, 'which is the admin port')
  t.same(endpoint, { port: 'admin', path: '/metrics', interval: '15s', scrapeTimeout: '10s' })

  const withDefaults = helmTemplate({ metrics: { serviceMonitor: { enabled: true }, dashboard: { annotations: { grafana_folder: 'Knative' } } } })
  const [plain] = only(withDefaults, 'ServiceMonitor').spec.endpoints as Array<Record<string, string>>
  t.same(plain, { port: 'admin', path: '/metrics', interval: '30s' }, 'no scrapeTimeout unless set')
  t.same((only(withDefaults, 'ConfigMap', 'edge-gateway-dashboard').metadata as { annotations?: Record<string, string> }).annotations, { grafana_folder: 'Knative' }, 'dashboard annotations')
})

// ---------------------------------------------------------------- Dockerfile

interface Instruction {
  op: string
  args: string
}

function dockerStages(text: string): Instruction[][] {
  const logical = text
    .replace(/\\\r?\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
  const stages: Instruction[][] = []
  for (const line of logical) {
    const m = /^(\S+)\s*(.*)$/.exec(line)
    if (!m) continue
    const ins = { op: (m[1] ?? '').toUpperCase(), args: m[2] ?? '' }
    if (ins.op === 'FROM') stages.push([])
    const stage = stages[stages.length - 1]
    if (!stage) throw new Error(`Dockerfile: ${ins.op} before FROM`)
    stage.push(ins)
  }
  return stages
}

t.test('Dockerfile', async (t) => {
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { bin: Record<string, string> }
  const stages = dockerStages(readFileSync(join(repo, 'Dockerfile'), 'utf8'))
  t.ok(stages.length >= 2, 'multi-stage')
  const build = stages[0]!
  const final = stages[stages.length - 1]!
  const args = (stage: Instruction[], op: string): string[] => stage.filter((i) => i.op === op).map((i) => i.args)

  t.match(args(build, 'FROM')[0], /^node:24-slim\b/, 'build stage on node:24-slim')
  t.ok(args(build, 'RUN').some((a) => /\bnpm ci\b/.test(a)), 'build stage installs with npm ci')
  t.ok(args(build, 'RUN').some((a) => /\bnpm run build\b/.test(a)), 'build stage compiles')

  t.match(args(final, 'FROM')[0], /^node:24-slim\b/, 'final stage FROM node:24-slim')
  const ci = args(final, 'RUN').find((a) => /\bnpm ci\b/.test(a)) ?? ''
  t.match(ci, /--omit=dev/, 'final stage installs production dependencies only')
  t.match(ci, /--ignore-scripts/, 'and runs no install scripts (prepare would build, node would download)')
  t.ok(args(final, 'COPY').some((a) => /--from=\S+/.test(a) && /\bdist\b/.test(a)), 'dist/ comes from the build stage')
  for (const dir of ['routes', 'samples']) {
    t.ok(args(final, 'COPY').some((a) => new RegExp(`\\b${dir}\\b`).test(a)), `${dir}/ is in the image`)
  }
  t.ok(args(final, 'ENV').some((a) => /\bNODE_ENV=production\b/.test(a)), 'NODE_ENV=production')
  const exposed = args(final, 'EXPOSE').join(' ').split(/\s+/)
  for (const port of ['8080', '8081', '8443', '8444', '9090']) t.ok(exposed.includes(port), `EXPOSE ${port}`)

  const users = args(final, 'USER')
  t.ok(users.length > 0, 'final stage sets USER')
  const user = users[users.length - 1] ?? ''
  const uid = user.split(':')[0] ?? ''
  t.notOk(['root', '0', ''].includes(uid), `USER ${user} is not root`)
  const podUser = (defaultValues.podSecurityContext as Obj).runAsUser
  if (/^\d+$/.test(uid)) t.equal(Number(uid), podUser, 'image uid matches the chart runAsUser')

  const entrypoints = args(final, 'ENTRYPOINT')
  const entry = JSON.parse(entrypoints[entrypoints.length - 1] ?? 'null') as unknown
  t.same(entry, ['node', ...NODE_FLAGS, pkg.bin['edge-gateway']], 'ENTRYPOINT is exec form: node, the gateway\'s V8 flags, dist/main.js (the package bin)')
  t.equal(pkg.bin['edge-gateway'], 'dist/main.js')
})

// The V8 flags cannot be set from inside the process, so every way of starting it must pass them.
t.test('every launch path passes the gateway\'s V8 flags (src/runtime-flags.ts)', async (t) => {
  t.ok(NODE_FLAGS.length > 0)
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  t.equal(pkg.scripts.start, `exec node ${NODE_FLAGS.join(' ')} dist/main.js`, 'npm start (exec: see cli.test.ts for why)')
  const shebang = readFileSync(join(repo, 'src', 'main.ts'), 'utf8').split('\n')[0]
  t.equal(shebang, `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`, 'the edge-gateway bin (its shebang)')
  t.same(withNodeFlags(['--inspect']), ['--inspect', ...NODE_FLAGS], 'workers: added to the primary\'s own flags')
  t.same(withNodeFlags(['--max-semi-space-size=64']), ['--max-semi-space-size=64'], 'an operator\'s own value wins')
})
