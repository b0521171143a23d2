// Every error code the gateway prints, in one union, so the compiler rejects a misspelt or made-up
// code and docs/errors.md can promise to cover them all (test/errors-catalogue.test.ts holds the two
// together). A code is what an operator searches for: it leads a ConfigProblem (log, /debug/routes,
// KIngress status), a thrown error's message, or a log line.

export type ErrorCode =
  // ---- Configuration problems: the shape of a manifest or cluster object (compile/validate.ts) ----
  | 'EDGE_ERR_PARSE'
  | 'EDGE_ERR_NOT_AN_OBJECT'
  | 'EDGE_ERR_API_VERSION'
  | 'EDGE_ERR_KIND'
  | 'EDGE_ERR_METADATA'
  | 'EDGE_ERR_METADATA_NAME'
  | 'EDGE_ERR_METADATA_NAMESPACE'
  | 'EDGE_ERR_INGRESS_SPEC'
  | 'EDGE_ERR_INGRESS_RULES'
  | 'EDGE_ERR_INGRESS_HOST'
  | 'EDGE_ERR_INGRESS_VISIBILITY'
  | 'EDGE_ERR_INGRESS_HTTP'
  | 'EDGE_ERR_INGRESS_HTTP_OPTION'
  | 'EDGE_ERR_INGRESS_PATHS'
  | 'EDGE_ERR_INGRESS_PATH'
  | 'EDGE_ERR_INGRESS_REWRITE_HOST'
  | 'EDGE_ERR_INGRESS_HEADER_MATCH'
  | 'EDGE_ERR_INGRESS_APPEND_HEADERS'
  | 'EDGE_ERR_INGRESS_SPLITS'
  | 'EDGE_ERR_INGRESS_BACKEND'
  | 'EDGE_ERR_INGRESS_SPLIT_NAMESPACE'
  | 'EDGE_ERR_INGRESS_PERCENT'
  | 'EDGE_ERR_INGRESS_TLS'
  | 'EDGE_ERR_ROUTE_SHAPE'
  | 'EDGE_ERR_DOMAIN_MAPPING_SHAPE'
  | 'EDGE_ERR_REVISION_SPEC'
  | 'EDGE_ERR_REVISION_CONCURRENCY'
  | 'EDGE_ERR_REVISION_TIMEOUT'
  | 'EDGE_ERR_REVISION_PORT'
  | 'EDGE_ERR_SERVICE_SPEC'
  | 'EDGE_ERR_SERVICE_TYPE'
  | 'EDGE_ERR_SERVICE_EXTERNAL_NAME'
  | 'EDGE_ERR_SERVICE_PORT'
  | 'EDGE_ERR_ENDPOINTSLICE_SERVICE'
  | 'EDGE_ERR_ENDPOINTSLICE_ADDRESS_TYPE'
  | 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES'
  | 'EDGE_ERR_ENDPOINTSLICE_CONDITIONS'
  | 'EDGE_ERR_ENDPOINTSLICE_PORT'
  | 'EDGE_ERR_SECRET_DATA'
  | 'EDGE_ERR_SECRET_TLS'
  | 'EDGE_ERR_CONFIGMAP_DATA'
  // ---- Configuration problems: a Route or DomainMapping that cannot become a KIngress (translate/) ----
  | 'EDGE_ERR_HTTP_PROTOCOL'
  | 'EDGE_ERR_ROUTE_NO_TRAFFIC'
  | 'EDGE_ERR_ROUTE_TRAFFIC'
  | 'EDGE_ERR_ROUTE_REVISION'
  | 'EDGE_ERR_ROUTE_TAG'
  | 'EDGE_ERR_ROUTE_URL'
  | 'EDGE_ERR_DOMAIN_MAPPING_REF'
  | 'EDGE_ERR_DOMAIN_MAPPING_TLS'
  // ---- Configuration problems: Knative Services and Configurations (validate-serving.ts, serving/) ----
  | 'EDGE_ERR_KSERVICE_SPEC'
  | 'EDGE_ERR_KSERVICE_TRAFFIC'
  | 'EDGE_ERR_KSERVICE_REVISION_NAME'
  | 'EDGE_ERR_REVISION_NOT_OWNED'
  | 'EDGE_ERR_REVISION_TEMPLATE_CHANGED'
  | 'EDGE_ERR_DERIVED_CONFLICT'
  // ---- Configuration problems: settings from ConfigMaps (settings/) ----
  | 'EDGE_ERR_CONFIGMAP_VALUE'
  | 'EDGE_ERR_CONFIGMAP_KEY'
  | 'EDGE_ERR_CONFIGMAP_RESTART'
  | 'EDGE_ERR_CONFIGMAP_NAMESPACE'
  // ---- Configuration problems: policy annotations (policy/) ----
  | 'EDGE_ERR_RATE_LIMIT'
  // ---- Configuration problems: Knative's informational annotations (compile/tag-to-host.ts) ----
  | 'EDGE_ERR_TAG_TO_HOST'
  | 'EDGE_ERR_EXTAUTHZ_ANNOTATION'
  // ---- Configuration problems found while compiling (compile/) ----
  | 'EDGE_ERR_INVALID_OBJECT'
  | 'EDGE_ERR_INVALID_FIELD'
  | 'EDGE_ERR_INGRESS'
  | 'EDGE_ERR_TRANSLATE'
  // Knative's own condition reason (Kourier's too), kept as the code so it reads the same everywhere.
  | 'DomainConflict'
  // ---- Sources: the manifest directory and the Kubernetes API ----
  | 'EDGE_ERR_MANIFESTS'
  | 'EDGE_ERR_KUBECONFIG'
  | 'EDGE_ERR_KUBE_WATCH'
  | 'EDGE_ERR_KUBE_WATCH_STALLED'
  | 'EDGE_ERR_KUBE_RBAC'
  | 'EDGE_ERR_KUBE_UNHEALTHY'
  // ---- The local runner (files mode): revisions it cannot run, or not as written ----
  | 'EDGE_ERR_NO_RUNTIME'
  | 'EDGE_ERR_CONTAINER_ENV'
  // ---- TLS: certificates and handshakes ----
  | 'EDGE_ERR_TLS_SECRET'
  | 'EDGE_ERR_TLS_SNI'
  | 'EDGE_ERR_TRUST_BUNDLE'
  | 'EDGE_ERR_UPSTREAM_TLS'
  // ---- External authorization: the authorizer cannot be reached (policy/extauthz.ts) ----
  | 'EDGE_ERR_EXTAUTHZ_UNAVAILABLE'
  // ---- KIngress status ----
  | 'EDGE_ERR_STATUS'
  | 'EDGE_ERR_STATUS_WRITE'
  // ---- Runtime: the gateway's own failures (bugs); the last good state stays in service ----
  | 'EDGE_ERR_COMPILE'

/** `CODE: text`, the form every coded log line and message takes; typed so the code is checked. */
export function coded(code: ErrorCode, text: string): string {
  return `${code}: ${text}`
}

/**
 * An error the gateway raises itself, with its code as a property for code that handles it and at the
 * head of the message for whoever reads the log.
 */
export class EdgeError extends Error {
  readonly code: ErrorCode
  constructor(code: ErrorCode, text: string, options?: ErrorOptions) {
    super(coded(code, text), options)
    this.name = 'EdgeError'
    this.code = code
  }
}
