// External authorization in the front door's policy stage, with Kourier's semantics (its
// extauthz-* settings on Envoy's ext_authz filter). Every request is checked by the authorizer
// before it is held, counted as demand or wakes a revision, so a request the authorizer refuses
// never scales anything up. Not checked, as in Kourier: Knative's network probes (answered before
// this stage), ACME HTTP-01 challenge paths, and hosts whose Route, DomainMapping or KIngress says
// `edge.knative.dev/extauthz: disabled`; cluster-local traffic is checked unless
// --extauthz-skip-cluster-local.
//
// Allowed: the request goes on, with the authorizer's header changes. Denied: the authorizer's own
// answer (status, headers, body) goes back, x-edge-reason `extauthz-denied`. No decision (the
// authorizer unreachable, slower than --extauthz-timeout, a 5xx): --extauthz-failure-mode-allow lets
// the request through; otherwise 403 `extauthz-unavailable`. Each outcome is counted; the authorizer
// going down and coming back is logged once per change.
import type { Logger } from 'pino'
import { coded } from '../errors.ts'
import type { Policy, PolicyInput, Verdict } from '../dataplane/policy.ts'
import type { Answer } from '../dataplane/reply.ts'
import type { Authorizer, AuthzQuery } from './authorizer.ts'
import { readBodyStart } from './extauthz-body.ts'
import type { ReadBody } from './extauthz-body.ts'

export type ExtAuthzOutcome = 'allowed' | 'denied' | 'unavailable-allowed' | 'unavailable-denied'

export interface ExtAuthzOptions {
  authorizer: Authorizer
  /** The authorizer's address, for messages. */
  target: string
  failureModeAllow: boolean
  maxBodyBytes: number
  timeoutMs: number
  skipClusterLocal: boolean
  log: Logger
  /** Counted in edge_extauthz_checks_total. */
  onChecked(outcome: ExtAuthzOutcome): void
}

/** Kourier leaves ACME HTTP-01 challenges unchecked, so certificates can be issued for checked hosts. */
const ACME_CHALLENGE = '/.well-known/acme-challenge/'

export class ExtAuthzPolicy implements Policy {
  readonly name = 'extauthz'
  private readonly opts: ExtAuthzOptions
  /** Whether the last check reached the authorizer: a change is logged once. */
  private reachable = true

  constructor(opts: ExtAuthzOptions) {
    this.opts = opts
  }

  check(input: PolicyInput): Verdict | Promise<Verdict> {
    if (!this.applies(input)) return undefined
    const body = readBodyStart(input.req, this.opts.maxBodyBytes, this.opts.timeoutMs)
    return body === undefined ? this.ask(input, undefined) : body.then((b) => this.ask(input, b))
  }

  close(): Promise<void> {
    return this.opts.authorizer.close()
  }

  private applies(input: PolicyInput): boolean {
    if (input.listener === 'local' && this.opts.skipClusterLocal) return false
    const r = input.resolution
    if (r.path.prefix.startsWith(ACME_CHALLENGE)) return false
    // A DomainMapping's hop to its Route is taken in-process, where Kourier makes two hops through
    // Envoy, each checked unless its own ingress opts out: skipped only when both opt out.
    if (!r.entry.ingress.extAuthzDisabled) return true
    return r.inner !== undefined && !r.inner.entry.ingress.extAuthzDisabled
  }

  private async ask(input: PolicyInput, body: ReadBody | undefined): Promise<Verdict> {
    const d = await this.opts.authorizer.check(queryOf(input, body, this.opts.maxBodyBytes > 0), this.opts.timeoutMs)
    if (d.kind === 'error') return this.unavailable(d.why)
    this.reached()
    if (d.kind === 'allow') {
      this.opts.onChecked('allowed')
      return d.edits === undefined ? undefined : { edits: d.edits }
    }
    this.opts.onChecked('denied')
    const answer: Answer = {
      status: d.status,
      reason: 'extauthz-denied',
      detail: `the external authorizer at ${this.opts.target} denied the request with ${d.status}`,
      headers: d.headers,
      body: d.body,
    }
    return answer
  }

  private unavailable(why: string): Verdict {
    const allow = this.opts.failureModeAllow
    this.opts.onChecked(allow ? 'unavailable-allowed' : 'unavailable-denied')
    if (this.reachable) {
      this.reachable = false
      const then = allow ? 'requests are let through while it is (--extauthz-failure-mode-allow)' : 'requests are refused with 403 extauthz-unavailable while it is (--extauthz-failure-mode-allow would let them through)'
      this.opts.log.warn({ authorizer: this.opts.target, why }, coded('EDGE_ERR_EXTAUTHZ_UNAVAILABLE', `the external authorizer cannot be asked: ${why}; ${then}`))
    }
    if (allow) return undefined
    return {
      status: 403,
      reason: 'extauthz-unavailable',
      detail: `the external authorizer at ${this.opts.target} could not decide on this request (${why}), so it is refused`,
    }
  }

  private reached(): void {
    if (this.reachable) return
    this.reachable = true
    this.opts.log.info({ authorizer: this.opts.target }, 'the external authorizer answers again')
  }
}

/** The request as the authorizer sees it (Envoy's AttributeContext for an HTTP request). */
export function queryOf(input: PolicyInput, read: ReadBody | undefined, bodyWanted: boolean): AuthzQuery {
  const req = input.req
  const h2 = req.httpVersionMajor === 2
  const scheme = input.secure ? 'https' : 'http'
  const method = req.method ?? 'GET'
  const path = req.url ?? '/'
  const raw = req.headers
  const host = (h2 ? raw[':authority'] ?? raw.host : raw.host) as string | undefined ?? ''
  const headers: Record<string, string> = { ':authority': host, ':method': method, ':path': path, ':scheme': scheme }
  for (const name in raw) {
    if (name.charCodeAt(0) === 58 /* : */ || name === 'host') continue
    const v = raw[name]
    if (v === undefined) continue
    headers[name] = typeof v === 'string' ? v : v.join(name === 'cookie' ? '; ' : ', ')
  }
  // Envoy says whether the body it sends is all of it (with_request_body on, as Kourier sets it).
  if (bodyWanted && read !== undefined) headers['x-envoy-auth-partial-body'] = read.partial ? 'true' : 'false'
  const cl = raw['content-length']
  const socket = req.socket
  const entry = input.resolution.entry
  return {
    method,
    scheme,
    host,
    path,
    protocol: h2 ? 'HTTP/2' : `HTTP/${req.httpVersion}`,
    headers,
    id: typeof raw['x-request-id'] === 'string' ? raw['x-request-id'] : '',
    size: typeof cl === 'string' && /^\d+$/.test(cl) ? Number(cl) : -1,
    body: read?.body,
    source: { address: socket?.remoteAddress ?? '', port: socket?.remotePort ?? 0 },
    destination: { address: socket?.localAddress ?? '', port: socket?.localPort ?? 0 },
    // Kourier's per-host context: who asks and the rule's visibility, with the ingress's labels over them.
    context: { client: 'edge-gateway', visibility: entry.visibility, ...entry.ingress.labels },
  }
}
