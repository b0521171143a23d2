// The Kubernetes and Knative objects the gateway reads, typed as far as the gateway uses them.
// Sources (files, cluster) produce these; translate and compile consume them. Fields the gateway
// never reads are left out on purpose: the objects keep them, the types just do not name them.

export interface ObjectMeta {
  name: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  generation?: number
  creationTimestamp?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

export interface KubeObject {
  apiVersion: string
  kind: string
  metadata: ObjectMeta
}

// ---- networking.internal.knative.dev/v1alpha1 Ingress (KIngress) ----

export type Visibility = 'ExternalIP' | 'ClusterLocal'
export type HTTPOption = '' | 'Enabled' | 'Redirected'

export interface IngressBackendSplit {
  serviceNamespace: string
  serviceName: string
  servicePort: number | string
  percent?: number
  appendHeaders?: Record<string, string>
}

export interface HTTPIngressPath {
  path?: string
  rewriteHost?: string
  headers?: Record<string, { exact: string }>
  splits: IngressBackendSplit[]
  appendHeaders?: Record<string, string>
}

export interface IngressRule {
  hosts?: string[]
  visibility?: Visibility
  http?: { paths: HTTPIngressPath[] }
}

export interface IngressTLS {
  hosts?: string[]
  secretName?: string
  secretNamespace?: string
}

export interface IngressSpec {
  tls?: IngressTLS[]
  rules?: IngressRule[]
  httpOption?: HTTPOption
}

export interface Condition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason?: string
  message?: string
  lastTransitionTime?: string
  severity?: string
}

export interface LoadBalancerStatus {
  ingress?: Array<{ ip?: string; domain?: string; domainInternal?: string; meshOnly?: boolean }>
}

export interface IngressStatus {
  observedGeneration?: number
  conditions?: Condition[]
  publicLoadBalancer?: LoadBalancerStatus
  privateLoadBalancer?: LoadBalancerStatus
  annotations?: Record<string, string>
}

export interface KIngress extends KubeObject {
  kind: 'Ingress'
  spec: IngressSpec
  status?: IngressStatus
}

// ---- serving.knative.dev/v1 Route ----

export interface TrafficTarget {
  tag?: string
  revisionName?: string
  configurationName?: string
  latestRevision?: boolean
  percent?: number
  url?: string
}

export interface Route extends KubeObject {
  kind: 'Route'
  spec?: { traffic?: TrafficTarget[] }
  status?: { url?: string; traffic?: TrafficTarget[]; address?: { url?: string } }
}

// ---- serving.knative.dev/v1 Configuration and Service ----

export interface RevisionTemplate {
  metadata?: { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
  spec?: NonNullable<Revision['spec']>
}

export interface Configuration extends KubeObject {
  kind: 'Configuration'
  spec?: { template?: RevisionTemplate }
}

/** A Knative Service (`serving.knative.dev/v1`, kind Service): stored as kind `KService`. */
export interface KService extends KubeObject {
  kind: 'Service'
  spec?: { template?: RevisionTemplate; traffic?: TrafficTarget[] }
}

// ---- serving.knative.dev/v1beta1 DomainMapping ----

export interface DomainMapping extends KubeObject {
  kind: 'DomainMapping'
  spec: {
    ref: { apiVersion?: string; kind: string; name: string; namespace?: string }
    tls?: { secretName: string }
  }
}

// ---- serving.knative.dev/v1 Revision ----

export interface ContainerPort {
  name?: string
  containerPort?: number
}

/** The parts of a container the gateway reads: probes for the early probe, the rest to run it locally. */
export interface Container {
  name?: string
  image?: string
  command?: string[]
  args?: string[]
  workingDir?: string
  env?: Array<{ name: string; value?: string; valueFrom?: unknown }>
  envFrom?: unknown[]
  ports?: ContainerPort[]
  readinessProbe?: {
    exec?: unknown
    httpGet?: { path?: string; port?: number | string; httpHeaders?: Array<{ name?: string; value?: string }> }
    tcpSocket?: { port?: number | string }
  }
  startupProbe?: unknown
}

export interface Revision extends KubeObject {
  kind: 'Revision'
  spec?: {
    containerConcurrency?: number
    timeoutSeconds?: number
    responseStartTimeoutSeconds?: number
    idleTimeoutSeconds?: number
    containers?: Container[]
  }
  status?: { conditions?: Condition[] }
}

// ---- v1 Service ----

export interface ServicePort {
  name?: string
  port: number
  targetPort?: number | string
  protocol?: string
  appProtocol?: string
}

export interface Service extends KubeObject {
  kind: 'Service'
  spec: {
    type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName'
    externalName?: string
    ports?: ServicePort[]
    clusterIP?: string
  }
}

// ---- discovery.k8s.io/v1 EndpointSlice ----

export interface EndpointSlice extends KubeObject {
  kind: 'EndpointSlice'
  addressType?: 'IPv4' | 'IPv6' | 'FQDN'
  endpoints?: Array<{
    addresses: string[]
    conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean }
    targetRef?: { kind?: string; name?: string; namespace?: string }
  }>
  ports?: Array<{ name?: string; port?: number; protocol?: string; appProtocol?: string }>
}

// ---- v1 Secret ----

export interface Secret extends KubeObject {
  kind: 'Secret'
  type?: string
  data?: Record<string, string>
  stringData?: Record<string, string>
}

// ---- v1 ConfigMap (the settings ones, src/settings/, and Knative's trust bundles) ----

export interface ConfigMap extends KubeObject {
  kind: 'ConfigMap'
  data?: Record<string, string>
}

// The kinds the store holds, by the name the rest of the program uses.
export interface ObjectsByKind {
  Ingress: KIngress
  Route: Route
  DomainMapping: DomainMapping
  Revision: Revision
  Service: Service
  EndpointSlice: EndpointSlice
  Secret: Secret
  /** Knative's Service (the object's own kind is `Service`, in serving.knative.dev). */
  KService: KService
  Configuration: Configuration
  ConfigMap: ConfigMap
}
export type Kind = keyof ObjectsByKind
export const KINDS: readonly Kind[] = ['Ingress', 'Route', 'DomainMapping', 'Revision', 'Service', 'EndpointSlice', 'Secret', 'KService', 'Configuration', 'ConfigMap']

/** The store kind of an object: its `kind`, except that Knative's Service is `KService`, apart from Kubernetes' Service. */
export function kindOf(obj: { apiVersion?: string; kind: string }): Kind {
  if (obj.kind === 'Service' && obj.apiVersion?.startsWith('serving.knative.dev/')) return 'KService'
  return obj.kind as Kind
}

// Well-known names.
export const ANN_INGRESS_CLASS = 'networking.knative.dev/ingress.class'
export const ANN_INGRESS_CLASS_ALT = 'networking.knative.dev/ingress-class'
/** Serving 1.22+: JSON map from each traffic tag to its hosts (compile/tag-to-host.ts). */
export const ANN_TAG_TO_HOST = 'networking.internal.knative.dev/tag-to-host'
export const LABEL_VISIBILITY = 'networking.knative.dev/visibility'
export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name'
export const LABEL_REVISION = 'serving.knative.dev/revision'
export const ANN_LOCAL_COMMAND = 'edge.knative.dev/local-command'
/** Knative's trust bundles: ConfigMaps in the system namespace with this label (any value) hold CA certificates. */
export const LABEL_TRUST_BUNDLE = 'networking.knative.dev/trust-bundle'
/** Where Knative keeps its trust bundles (Kourier's SYSTEM_NAMESPACE). */
export const KNATIVE_SYSTEM_NAMESPACE = 'knative-serving'
/** Serving's routing certificates in the system namespace: its `ca.crt` is trusted for system-internal-tls too. */
export const ROUTING_CERTS_SECRET = 'routing-serving-certs'
/** queue-proxy's TLS port (Serving pkg/networking), which the activator dials with system-internal-tls. */
export const QUEUE_PROXY_TLS_PORT = 8112
export const HEADER_REVISION = 'Knative-Serving-Revision'
export const HEADER_NAMESPACE = 'Knative-Serving-Namespace'
export const HEADER_TAG = 'Knative-Serving-Tag'
export const HEADER_DEFAULT_ROUTE = 'Knative-Serving-Default-Route'
export const HEADER_ORIGINAL_HOST = 'K-Original-Host'
export const HEADER_NETWORK_HASH = 'K-Network-Hash'
export const HEADER_NETWORK_PROBE = 'K-Network-Probe'
export const HEADER_PROXY_REQUEST = 'K-Proxy-Request'

export function keyOf(meta: ObjectMeta): string {
  return `${meta.namespace ?? 'default'}/${meta.name}`
}

/** keyOf for objects not yet validated: a malformed one still gets a key (its problems name it). */
export function objectKey(obj: { metadata?: unknown } | null | undefined): string {
  const m = (obj && typeof obj === 'object' ? obj.metadata : undefined) as ObjectMeta | null | undefined
  if (!m || typeof m !== 'object') return 'invalid/<no metadata>'
  return `${typeof m.namespace === 'string' ? m.namespace : 'default'}/${typeof m.name === 'string' ? m.name : '<no name>'}`
}
