// Shared types of the fake Kubernetes API server.
import type { RequestAttributes } from './rbac.ts'

export interface KMetadata {
  name?: string
  generateName?: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  generation?: number
  creationTimestamp?: string
  deletionTimestamp?: string
  deletionGracePeriodSeconds?: number
  labels?: Record<string, string>
  annotations?: Record<string, string>
  finalizers?: string[]
  ownerReferences?: unknown[]
  [k: string]: unknown
}

export interface KObject {
  apiVersion?: string
  kind?: string
  metadata: KMetadata
  spec?: unknown
  status?: unknown
  [k: string]: unknown
}

export interface ResourceDef {
  /** '' for the core group. */
  group: string
  version: string
  plural: string
  kind: string
  namespaced: boolean
  /** Has a `/status` subresource: status is only written through it. */
  statusSubresource: boolean
  /**
   * How `metadata.generation` is maintained:
   * 'spec' → 1 on create, +1 when `spec` changes; 'nonmeta' → +1 when anything but metadata/status changes;
   * undefined → no generation.
   */
  generation?: 'spec' | 'nonmeta'
  /** Built-in type: list items carry no kind/apiVersion (as the real apiserver returns them). */
  builtin: boolean
  /** Dotted paths of MicroTime fields validated on every write (e.g. 'spec.renewTime'). */
  microTimeFields?: string[]
  /**
   * Top-level fields a field selector may name besides metadata.name/namespace (the real server's
   * field label conversion for this type), e.g. ['type'] for Secrets.
   */
  fieldLabels?: string[]
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'

export interface StoredEvent {
  rv: number
  resKey: string
  type: 'ADDED' | 'MODIFIED' | 'DELETED'
  object: KObject
  /** The previous state (for MODIFIED), used to turn selector transitions into ADDED/DELETED. */
  old?: KObject
}

export interface RequestLogEntry {
  method: string
  path: string
  query: Record<string, string>
  /** What RBAC sees of the request (verb, API group, resource, subresource, namespace, name). */
  attributes: RequestAttributes
  contentType: string | undefined
  watch: boolean
  /** HTTP status sent (0 while a watch is still streaming or if the socket died first). */
  status: number
  time: number
}

export function apiVersionOf(def: ResourceDef): string {
  return def.group === '' ? def.version : `${def.group}/${def.version}`
}

export function resKeyOf(group: string, version: string, plural: string): string {
  return `${group}/${version}/${plural}`
}

/** The name used in apiserver messages: `services` or `ingresses.networking.internal.knative.dev`. */
export function qualifiedResource(def: ResourceDef): string {
  return def.group === '' ? def.plural : `${def.plural}.${def.group}`
}

export function qualifiedKind(def: ResourceDef): string {
  return def.group === '' ? def.kind : `${def.kind}.${def.group}`
}

/** A Knative custom resource: namespaced, with a status subresource, generation bumped on spec changes. */
function knativeKind(group: string, version: string, plural: string, kind: string): ResourceDef {
  return { group, version, plural, kind, namespaced: true, statusSubresource: true, generation: 'spec', builtin: false }
}

export const DEFAULT_RESOURCES: ResourceDef[] = [
  { group: '', version: 'v1', plural: 'services', kind: 'Service', namespaced: true, statusSubresource: true, builtin: true },
  { group: '', version: 'v1', plural: 'secrets', kind: 'Secret', namespaced: true, statusSubresource: false, builtin: true, fieldLabels: ['type'] },
  { group: '', version: 'v1', plural: 'endpoints', kind: 'Endpoints', namespaced: true, statusSubresource: false, builtin: true },
  { group: '', version: 'v1', plural: 'configmaps', kind: 'ConfigMap', namespaced: true, statusSubresource: false, builtin: true },
  // Written by the kubelet through /status; the gateway watches a revision's pods by label.
  { group: '', version: 'v1', plural: 'pods', kind: 'Pod', namespaced: true, statusSubresource: true, builtin: true },
  {
    group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice',
    namespaced: true, statusSubresource: false, generation: 'nonmeta', builtin: true,
  },
  knativeKind('networking.internal.knative.dev', 'v1alpha1', 'ingresses', 'Ingress'),
  knativeKind('serving.knative.dev', 'v1', 'routes', 'Route'),
  knativeKind('serving.knative.dev', 'v1', 'revisions', 'Revision'),
  knativeKind('serving.knative.dev', 'v1', 'services', 'Service'),
  knativeKind('serving.knative.dev', 'v1', 'configurations', 'Configuration'),
  knativeKind('serving.knative.dev', 'v1beta1', 'domainmappings', 'DomainMapping'),
  {
    group: 'coordination.k8s.io', version: 'v1', plural: 'leases', kind: 'Lease',
    namespaced: true, statusSubresource: false, builtin: true,
    microTimeFields: ['spec.acquireTime', 'spec.renewTime'],
  },
]
