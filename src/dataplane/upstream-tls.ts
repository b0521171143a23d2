// TLS to revision pods (Knative's system-internal-tls), verified as Kourier verifies it
// (net-kourier pkg/generator/ingress_translator.go, createUpstreamTLSContext): TLS 1.3 only, the
// chain checked against the trust bundles alone (never the system's roots), and the certificate
// must name, as a DNS SAN, `kn-routing` (the activator's) or `kn-user-<namespace>` (queue-proxy's in
// the revision's namespace; knative/networking pkg/certificates). h2 is asked for by ALPN only for
// revisions that speak HTTP/2.
//
// The setting can change at run time (config-network), so it is read through `enabled()` at every
// dispatch. The bundle is read at every new connection: a changed bundle applies to the next
// connection, and connections already verified stay in their pools.
import type net from 'node:net'
import tls from 'node:tls'
import type { Logger } from 'pino'
import { coded } from '../errors.ts'
import type { TrustBundle } from './trust-bundle.ts'
import { NO_TRUST_BUNDLE } from './trust-bundle.ts'

/** Knative's SAN constants (knative.dev/networking pkg/certificates/constants.go). */
export const ROUTING_SAN = 'kn-routing'
export function userSan(namespace: string): string {
  return `kn-user-${namespace.toLowerCase()}`
}

/**
 * What tls.connect passes on to its TCP socket beyond its declared options: `onread`, so our
 * HTTP/1.1 client reads TLS plaintext into its one shared buffer as it does plain bytes.
 */
export interface SocketOptions {
  onread?: net.OnReadOpts
}

export interface UpstreamTlsOptions {
  /** system-internal-tls now (the flag, or config-network when it is followed live). */
  enabled: () => boolean
  log: Logger
}

/** The last TLS failure towards one backend, for /debug/routes. */
export interface TlsFailure {
  readonly pod: string
  readonly reason: string
  readonly at: string
  readonly count: number
}

/**
 * Codes of a failed verification (OpenSSL's, as node's `err.code`) or a broken TLS exchange
 * (EPROTO), besides Node's ERR_SSL_* and ERR_TLS_*.
 */
const TLS_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_CHAIN_TOO_LONG',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'HOSTNAME_MISMATCH',
  'EPROTO',
])

/** A failure of the TLS layer (verification, SAN, handshake), as opposed to the connection under it. */
export function isTlsFailure(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code
  if (code === undefined) return false
  return TLS_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')
}

/** The SAN rule: a DNS SAN equal to kn-routing or kn-user-<namespace>; anything else is refused. */
export function knativeSanCheck(namespace: string): (host: string, cert: tls.PeerCertificate) => Error | undefined {
  const want = [ROUTING_SAN, userSan(namespace)]
  return (_host, cert) => {
    const names = (cert.subjectaltname ?? '').split(', ').filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4))
    if (names.some((n) => want.includes(n))) return undefined
    const named = names.length > 0 ? `names ${names.join(', ')}` : 'has no DNS subject alternative name'
    const err = new Error(`the pod's certificate ${named}; system-internal-tls expects ${want[0]} or ${want[1]} (Knative's data-plane certificates)`)
    return Object.assign(err, { code: 'ERR_TLS_CERT_ALTNAME_INVALID' })
  }
}

/** Backends whose last failure is kept; past it the record starts over (it only feeds /debug/routes). */
const MAX_FAILURES = 1000

export class UpstreamTls {
  readonly enabled: () => boolean
  private readonly log: Logger
  private bundle: TrustBundle = NO_TRUST_BUNDLE
  /** The bundle's certificates as `ca` takes them; [] trusts nothing (never the system roots). */
  private ca: string[] = []
  private readonly sanChecks = new Map<string, ReturnType<typeof knativeSanCheck>>()
  private readonly failures = new Map<string, TlsFailure>()

  constructor(opts: UpstreamTlsOptions) {
    this.enabled = opts.enabled
    this.log = opts.log
  }

  /** New trust bundles: the next connections use them. Values left out are logged once per change. */
  setBundle(bundle: TrustBundle): void {
    const before = this.bundle
    this.bundle = bundle
    this.ca = [...bundle.certificates]
    // Failures seen under the old bundle may not hold under the new one.
    if (bundle.certificates.join() !== before.certificates.join()) this.failures.clear()
    for (const p of bundle.problems) {
      if (before.problems.some((q) => q.source === p.source && q.reason === p.reason)) continue
      this.log.warn({ source: p.source }, coded('EDGE_ERR_TRUST_BUNDLE', `${p.source} is left out of the upstream trust bundle: ${p.reason}`))
    }
    if (bundle.certificates.length !== before.certificates.length || bundle.sources.join() !== before.sources.join()) {
      this.log.info({ certificates: bundle.certificates.length, sources: bundle.sources }, 'upstream trust bundle loaded')
    }
  }

  /** A TLS connection to a pod of a revision in `namespace`; `alpn` is what to offer (h2 or http/1.1). */
  connect(host: string, port: number, namespace: string, alpn: readonly string[], extra: SocketOptions = {}): tls.TLSSocket {
    let check = this.sanChecks.get(namespace)
    if (check === undefined) {
      check = knativeSanCheck(namespace)
      this.sanChecks.set(namespace, check)
    }
    const options: tls.ConnectionOptions & SocketOptions = {
      ...extra,
      host,
      port,
      ca: this.ca,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ALPNProtocols: [...alpn],
      checkServerIdentity: check,
    }
    const socket = tls.connect(options)
    socket.setNoDelay(true)
    return socket
  }

  /**
   * What a client is told (the returned text), and the log and /debug/routes keep per backend,
   * about a failed TLS connection: the OpenSSL or Node code and its message, and whether any bundle
   * is loaded at all.
   */
  failed(backendKey: string, pod: string, err: Error): string {
    if (this.failures.size >= MAX_FAILURES && !this.failures.has(backendKey)) this.failures.clear()
    const code = (err as NodeJS.ErrnoException).code ?? 'TLS'
    let reason = `${code}: ${err.message}`
    if (this.ca.length === 0) reason += `; no trust bundle is loaded: add the CA that signs the pods' certificates to a ConfigMap in knative-serving labelled networking.knative.dev/trust-bundle (or as ca.crt of the Secret routing-serving-certs there)`
    const prev = this.failures.get(backendKey)
    this.failures.set(backendKey, { pod, reason, at: new Date().toISOString(), count: (prev?.count ?? 0) + 1 })
    // Once per backend and reason: a broken backend under load must not flood the log.
    if (prev?.reason !== reason) this.log.warn({ backend: backendKey, pod }, coded('EDGE_ERR_UPSTREAM_TLS', `TLS to ${pod} of ${backendKey} failed: ${reason}`))
    return `TLS to upstream ${pod} failed: ${reason}`
  }

  describe(): Record<string, unknown> {
    return {
      enabled: this.enabled(),
      certificates: this.bundle.certificates.length,
      bundles: this.bundle.sources,
      problems: this.bundle.problems,
      failures: Object.fromEntries(this.failures),
    }
  }
}
