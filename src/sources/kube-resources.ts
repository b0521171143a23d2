// The Kubernetes resources the cluster source watches, and how to address them. One table, so the
// set of watched types (and the RBAC the chart must grant) is visible in one place.
import type { Kind } from '../model/k8s.ts'
import { KNATIVE_SYSTEM_NAMESPACE, LABEL_TRUST_BUNDLE, ROUTING_CERTS_SECRET } from '../model/k8s.ts'

export interface WatchedResource {
  /** The kind the store keys on. */
  kind: Kind
  /** The objects' own `kind`, where it differs from the store's (Knative's Service is stored as KService). */
  objectKind?: string
  /** The informer's name in logs and /debug/routes, where the plural alone is ambiguous. */
  name?: string
  /** API group; '' is the core group. */
  group: string
  version: string
  plural: string
  /**
   * A server-side field selector to try first. The real API server supports `type` for Secrets; a
   * server that rejects the selector (400) gets a plain watch and the source filters client-side.
   */
  fieldSelector?: string
  /** Only objects with these labels (a server-side label selector). */
  labelSelector?: string
  /** Watched in this namespace only, whatever --namespace says (Knative's own objects). */
  namespace?: string
}

/** What addresses a collection. */
export type ResourcePath = Pick<WatchedResource, 'group' | 'version' | 'plural'>

export const TLS_SECRET_TYPE = 'kubernetes.io/tls'

export const KINGRESS: WatchedResource = { kind: 'Ingress', group: 'networking.internal.knative.dev', version: 'v1alpha1', plural: 'ingresses' }
export const SERVICES: WatchedResource = { kind: 'Service', group: '', version: 'v1', plural: 'services' }
export const ENDPOINT_SLICES: WatchedResource = { kind: 'EndpointSlice', group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices' }
export const TLS_SECRETS: WatchedResource = { kind: 'Secret', group: '', version: 'v1', plural: 'secrets', fieldSelector: `type=${TLS_SECRET_TYPE}` }
export const REVISIONS: WatchedResource = { kind: 'Revision', group: 'serving.knative.dev', version: 'v1', plural: 'revisions' }
export const ROUTES: WatchedResource = { kind: 'Route', group: 'serving.knative.dev', version: 'v1', plural: 'routes' }
export const KSERVICES: WatchedResource = { kind: 'KService', objectKind: 'Service', name: 'kservices', group: 'serving.knative.dev', version: 'v1', plural: 'services' }
export const CONFIGURATIONS: WatchedResource = { kind: 'Configuration', group: 'serving.knative.dev', version: 'v1', plural: 'configurations' }
/**
 * Not watched as a collection: only the pods of revisions with requests held, one namespaced watch
 * per revision with a label selector (revision-health.ts).
 */
export const PODS: ResourcePath = { group: '', version: 'v1', plural: 'pods' }
/** Knative's trust bundles (system-internal-tls): labelled ConfigMaps in knative-serving, and no others. */
export const TRUST_BUNDLES: WatchedResource = { kind: 'ConfigMap', name: 'trust-bundles', group: '', version: 'v1', plural: 'configmaps', labelSelector: LABEL_TRUST_BUNDLE, namespace: KNATIVE_SYSTEM_NAMESPACE }
/** Serving's routing certificates (any type): their `ca.crt` is trusted for system-internal-tls, as Kourier does. */
export const ROUTING_CERTS: WatchedResource = { kind: 'Secret', name: 'routing-certs', group: '', version: 'v1', plural: 'secrets', fieldSelector: `metadata.name=${ROUTING_CERTS_SECRET}`, namespace: KNATIVE_SYSTEM_NAMESPACE }
export const DOMAIN_MAPPINGS: WatchedResource = { kind: 'DomainMapping', group: 'serving.knative.dev', version: 'v1beta1', plural: 'domainmappings' }

export const CONFIG_MAPS: WatchedResource = { kind: 'ConfigMap', group: '', version: 'v1', plural: 'configmaps' }

/** One named ConfigMap, watched in its namespace only (the chart's Roles grant just these names). */
export interface NamedConfigMap {
  namespace: string
  name: string
}

/** The informer for one named ConfigMap: a field selector on its name, so RBAC can name it too. */
/** The EndpointSlices of the gateway's own local Service: its replicas (the status writer's, the replica share's). */
export function ownReplicaSlices(service: string): WatchedResource {
  return { ...ENDPOINT_SLICES, name: 'own-replicas', labelSelector: `kubernetes.io/service-name=${service}` }
}

export function namedConfigMap(cm: NamedConfigMap): WatchedResource {
  return { ...CONFIG_MAPS, name: `configmaps/${cm.name}`, fieldSelector: `metadata.name=${cm.name}` }
}

/**
 * What Kourier watches (kingress-contract.md §2.2) plus Revisions for the throttler; with
 * --watch-serving (no Serving controller), the objects users write too: Knative Services and
 * Configurations (the serving controller derives their Revisions and Routes), Routes, DomainMappings.
 */
export function watchedResources(watchServing: boolean): WatchedResource[] {
  const base = [KINGRESS, SERVICES, ENDPOINT_SLICES, TLS_SECRETS, REVISIONS, TRUST_BUNDLES, ROUTING_CERTS]
  return watchServing ? [...base, ROUTES, DOMAIN_MAPPINGS, KSERVICES, CONFIGURATIONS] : base
}

export function apiVersionOf(r: WatchedResource): string {
  return r.group === '' ? r.version : `${r.group}/${r.version}`
}

/** The list/watch path: cluster-wide, or one namespace's. */
export function collectionPath(r: ResourcePath, namespace?: string): string {
  const base = r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`
  return namespace === undefined ? `${base}/${r.plural}` : `${base}/namespaces/${encodeURIComponent(namespace)}/${r.plural}`
}
