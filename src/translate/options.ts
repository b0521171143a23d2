// What Route and DomainMapping translation share: the cluster settings Serving would read from
// config-network/config-domain, and the metadata rules Serving applies to every KIngress it creates.
import { ANN_INGRESS_CLASS, ANN_INGRESS_CLASS_ALT } from '../model/k8s.ts'
import type { HTTPOption } from '../model/k8s.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { DomainNames } from '../serving/domain.ts'

export interface TranslateOptions {
  /** Written to `networking.knative.dev/ingress.class` on every KIngress produced. */
  ingressClass: string
  /** Default domain (config-domain), e.g. `example.com`. */
  domain: string
  /** Cluster DNS suffix, e.g. `cluster.local`. */
  clusterDomain: string
  /** Serving's domain and tag templates for a Route without a URL; default `{name}.{ns}.{domain}`. */
  names?: DomainNames
  /** config-network's http-protocol: the httpOption of an object without the annotation; default Enabled. */
  httpProtocol?: HTTPOption
}

// Serving reads the http option from either key, the camel-case one first (networking register.go).
const HTTP_OPTION_KEYS = ['networking.knative.dev/httpOption', 'networking.knative.dev/http-protocol'] as const

// Annotations Serving never copies from a Route/DomainMapping onto its KIngress: the alternate class
// spelling (the canonical key is written instead) and kubectl's bookkeeping.
const NOT_COPIED = new Set([ANN_INGRESS_CLASS_ALT, 'kubectl.kubernetes.io/last-applied-configuration'])

/**
 * The KIngress `spec.httpOption` from a source object's annotations: `enabled` → Enabled,
 * `redirected` → Redirected, `disabled` → '' (case-insensitive); no annotation → `fallback`,
 * config-network's `http-protocol` (Enabled by default).
 */
export function httpOptionFrom(annotations: Record<string, string> | undefined, object: string, fallback: HTTPOption = 'Enabled'): HTTPOption | ConfigProblem {
  for (const key of HTTP_OPTION_KEYS) {
    const raw = annotations?.[key]
    if (raw === undefined || raw === '') continue
    const option = httpOptionOf(String(raw))
    if (option !== undefined) return option
    return {
      source: '',
      object,
      field: `metadata.annotations[${JSON.stringify(key)}]`,
      reason: `"${String(raw)}" is not an HTTP protocol; use "enabled", "redirected" or "disabled", or remove the annotation`,
      code: 'EDGE_ERR_HTTP_PROTOCOL',
    }
  }
  return fallback
}

/** config-network's http-protocol value as a KIngress httpOption; undefined when it is none of the three. */
export function httpOptionOf(value: string): HTTPOption | undefined {
  switch (value.trim().toLowerCase()) {
    case 'enabled': return 'Enabled'
    case 'redirected': return 'Redirected'
    case 'disabled': return ''
  }
  return undefined
}

/** Source annotations carried over, with the ingress class forced to ours. */
export function ingressAnnotations(source: Record<string, string> | undefined, ingressClass: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(source ?? {})) {
    if (!NOT_COPIED.has(key)) out[key] = value
  }
  out[ANN_INGRESS_CLASS] = ingressClass
  return out
}

export function isProblem(value: unknown): value is ConfigProblem {
  return typeof value === 'object' && value !== null && 'code' in value && 'field' in value
}
