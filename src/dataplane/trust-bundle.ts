// Knative's trust bundles, as Kourier reads them for system-internal-tls (net-kourier
// pkg/generator/ingress_translator.go, buildTrustChain): `ca.crt` of the Secret routing-serving-certs
// in the system namespace, then every ConfigMap there that carries the label
// networking.knative.dev/trust-bundle (its value does not matter), every value of its data, whatever
// the key is called. A value that is not a clean list of PEM certificates is left out and reported,
// and the others still count, as Kourier does. Pure.
import { X509Certificate } from 'node:crypto'
import type { ConfigMap, Secret } from '../model/k8s.ts'
import { KNATIVE_SYSTEM_NAMESPACE, LABEL_TRUST_BUNDLE, ROUTING_CERTS_SECRET } from '../model/k8s.ts'
import { secretField } from './tls.ts'

export interface TrustBundleProblem {
  /** `ConfigMap namespace/name[key]`. */
  readonly source: string
  readonly reason: string
}

export interface TrustBundle {
  /** One PEM certificate per entry: tls.connect's `ca`. */
  readonly certificates: readonly string[]
  /** Where they came from (`ConfigMap namespace/name[key]`), in the order used. */
  readonly sources: readonly string[]
  /** Values left out, and why. */
  readonly problems: readonly TrustBundleProblem[]
}

export const NO_TRUST_BUNDLE: TrustBundle = { certificates: [], sources: [], problems: [] }

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g

/** The certificates of one bundle value, or why the value cannot be used. */
export function certificatesIn(text: string): string[] | { reason: string } {
  const out: string[] = []
  let last = 0
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (text.slice(last, m.index).trim() !== '') return { reason: `text outside a PEM block at offset ${last}: a bundle holds only "-----BEGIN CERTIFICATE-----" blocks` }
    last = m.index + m[0].length
    if (m[1] !== 'CERTIFICATE') return { reason: `holds a ${m[1]} block; a trust bundle holds CA certificates only (never a key)` }
    try {
      new X509Certificate(m[0])
    } catch (err) {
      return { reason: `certificate ${out.length + 1} does not parse: ${(err as Error).message}` }
    }
    out.push(m[0])
  }
  if (text.slice(last).trim() !== '') return { reason: out.length === 0 ? 'holds no PEM certificate' : `text after the last PEM block at offset ${last}` }
  return out
}

/** Whether a ConfigMap is one of Knative's trust bundles. */
export function isTrustBundle(cm: ConfigMap): boolean {
  return cm.metadata.namespace === KNATIVE_SYSTEM_NAMESPACE && cm.metadata.labels?.[LABEL_TRUST_BUNDLE] !== undefined
}

/** `namespace/name` of the Secret whose `ca.crt` is trusted beside the bundles. */
export const ROUTING_CERTS_KEY = `${KNATIVE_SYSTEM_NAMESPACE}/${ROUTING_CERTS_SECRET}`

/**
 * The certificates Kourier would trust: routing-serving-certs' `ca.crt` (when the Secret is given),
 * then every trust bundle among `configMaps`, in name and key order.
 */
export function trustBundleOf(configMaps: readonly ConfigMap[], routingCerts?: Secret): TrustBundle {
  const out = { certificates: [] as string[], sources: [] as string[], problems: [] as TrustBundleProblem[] }
  const routingCa = routingCerts === undefined ? undefined : secretField(routingCerts, 'ca.crt')
  if (routingCa !== undefined) add(out, `Secret ${ROUTING_CERTS_KEY}[ca.crt]`, routingCa)
  const bundles = configMaps.filter(isTrustBundle).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0))
  for (const cm of bundles) {
    const data = cm.data ?? {}
    for (const key of Object.keys(data).sort()) add(out, `ConfigMap ${cm.metadata.namespace}/${cm.metadata.name}[${key}]`, data[key]!)
  }
  return out
}

function add(out: { certificates: string[]; sources: string[]; problems: TrustBundleProblem[] }, source: string, text: string): void {
  const found = certificatesIn(text)
  if (!Array.isArray(found)) {
    out.problems.push({ source, reason: found.reason })
    return
  }
  if (found.length === 0) return
  out.certificates.push(...found)
  out.sources.push(source)
}
