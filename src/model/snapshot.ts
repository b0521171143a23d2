// The compiled routing table. One Snapshot is immutable once built: a config change builds a new one
// and the data plane swaps a single reference, so a request never sees half a config.
import type { ConfigProblem } from './problems.ts'
import type { HTTPOption, Visibility } from './k8s.ts'
import type { RateLimitSpec } from '../policy/rate-limit-spec.ts'

/** A header to set on the upstream request: lower-case name for matching, original name for writing. */
export interface HeaderSet {
  readonly lower: string
  readonly name: string
  readonly value: string
}

export type UpstreamProtocol = 'http1' | 'h2c'

export interface Endpoint {
  /** `ip:port` (IPv6 in brackets): the identity of a pod's serving port. */
  readonly address: string
  readonly host: string
  readonly port: number
  /**
   * `http://` + address: the key of the pod's connection pools, computed once in compile so that
   * every place that opens, counts or closes a pool names it the same way.
   */
  readonly origin: string
  /**
   * A revision pod's TLS side (queue-proxy's `https` port, for system-internal-tls): its port and
   * `https://` origin, the key of its TLS pools. Absent for other backends' pods.
   */
  readonly tls?: { readonly port: number; readonly origin: string }
}

export interface RevisionRef {
  readonly namespace: string
  readonly name: string
  /** `namespace/name`, precomputed so the hot path does not concatenate. */
  readonly key: string
  readonly containerConcurrency: number
  readonly timeoutSeconds: number | undefined
  readonly responseStartTimeoutSeconds: number | undefined
  readonly idleTimeoutSeconds: number | undefined
  /** The Revision object was seen (not only named by a route). */
  readonly known: boolean
}

export type BackendKind = 'pods' | 'external'

export interface BackendSpec {
  /** Stable identity across snapshots: the live pools and throttlers are keyed by it. */
  readonly key: string
  readonly kind: BackendKind
  readonly namespace: string
  /** The Service named by the split. */
  readonly serviceName: string
  readonly protocol: UpstreamProtocol
  /** Ready endpoints (kind `pods`), sorted by address. */
  readonly endpoints: readonly Endpoint[]
  /** Kind `external`: the DNS name and port of an ExternalName Service. */
  readonly externalHost?: string
  readonly externalPort?: number
  /** Kind `external`: `http://host:port`, the pool key (see Endpoint.origin). */
  readonly externalOrigin?: string
  /** Set when the backend is a Knative revision (its pods are those of `<revision>-private`). */
  readonly revision?: RevisionRef
  /**
   * Revision pods Kubernetes lists but has not marked Ready: the activator's probe may find them up
   * early. Absent when the revision's own probes forbid that (exec readiness or a startup probe).
   */
  readonly notReady?: readonly Endpoint[]
  /** Why the backend cannot serve, when it cannot (no such Service, no matching port...). */
  readonly problem?: string
}

export interface SplitEntry {
  readonly percent: number
  readonly backend: BackendSpec
  readonly setHeaders: readonly HeaderSet[]
}

export interface PathEntry {
  /** Literal prefix; '' matches everything. */
  readonly prefix: string
  /** All must match: lower-case header name and exact value. */
  readonly headerMatches: ReadonlyArray<readonly [string, string]>
  readonly rewriteHost: string | undefined
  /** Path-level appendHeaders (set semantics). */
  readonly setHeaders: readonly HeaderSet[]
  readonly splits: readonly SplitEntry[]
  /** Running sum of split percents, for one random draw per request. */
  readonly cumulative: readonly number[]
  readonly totalPercent: number
}

export interface IngressRef {
  readonly namespace: string
  readonly name: string
  readonly key: string
  readonly generation: number
  /** K-Network-Hash of the (defaulted) spec: what a probe with `override` gets back. */
  readonly hash: string
  /** Where the rule came from: `Ingress`, or `Route`/`DomainMapping` translated by the gateway. */
  readonly origin: 'Ingress' | 'Route' | 'DomainMapping'
  readonly httpOption: HTTPOption
  /** edge.knative.dev/rate-limit: the limit for each of its hosts (per gateway process), when set and valid. */
  readonly rateLimit?: RateLimitSpec
  /** edge.knative.dev/extauthz: "disabled": its hosts are not checked by the external authorizer. */
  readonly extAuthzDisabled?: true
  /** Its labels: an external authorizer gets them in its check's context, as Kourier sends them. */
  readonly labels?: Readonly<Record<string, string>>
}

export interface HostEntry {
  readonly host: string
  readonly visibility: Visibility
  readonly ingress: IngressRef
  readonly paths: readonly PathEntry[]
  /** The Route traffic tag this host serves, as Serving's tag-to-host annotation says. */
  readonly tag?: string | undefined
}

export interface TLSCertificate {
  /** `namespace/name` of the Secret. */
  readonly secret: string
  readonly cert: string
  readonly key: string
}

export interface IngressSummary {
  readonly ref: IngressRef
  readonly hosts: readonly string[]
  /** Hosts this ingress claimed but an older object holds. */
  readonly conflicts: ReadonlyArray<{ host: string; heldBy: string }>
  readonly problems: readonly ConfigProblem[]
}

export interface Snapshot {
  readonly version: number
  /** ExternalIP hosts: what the public listener serves. */
  readonly publicHosts: ReadonlyMap<string, HostEntry>
  /** Every host: what the cluster-local listener serves. */
  readonly localHosts: ReadonlyMap<string, HostEntry>
  readonly backends: ReadonlyMap<string, BackendSpec>
  /** SNI host (lower-case) → certificate, from KIngress `tls` or TLS Secrets. */
  readonly certificates: ReadonlyMap<string, TLSCertificate>
  readonly ingresses: readonly IngressSummary[]
  readonly problems: readonly ConfigProblem[]
  /** Revisions the gateway knows, by `namespace/name`. */
  readonly revisions: ReadonlyMap<string, RevisionRef>
}
