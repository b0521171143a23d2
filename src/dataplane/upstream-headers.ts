// The request headers sent to a pod: the client's, minus hop-by-hop headers (RFC 9110 §7.6.1) and
// anything the route sets, plus the route's headers (set, not appended: Knative semantics), Host,
// X-Forwarded-* and the activator's K-Proxy-Request. Built as one flat array in a single pass.
//
// Spoofing (issue 7): headers the gateway or Knative own are never taken from a client, and the
// forwarding headers (X-Forwarded-*, Forwarded, X-Real-IP) are only believed from a trusted hop
// (--trusted-proxies). From anyone else they are replaced by what the gateway itself saw; Forwarded
// is always written (forwarded.ts), an IPv6 client as `for="[::1]"`.
import type { ClientRequest } from './client.ts'
import type { HeaderSet } from '../model/snapshot.ts'
import type { Resolution } from './resolve.ts'
import type { TraceHeaders } from '../observe/request-trace.ts'
import { forwardedFrom, forwardedValue, unmappedIp } from './forwarded.ts'

export interface UpstreamHeaderPlan {
  /** Header lists to set, in order; a later list overrides an earlier one for the same name. */
  readonly sets: ReadonlyArray<readonly HeaderSet[]>
  /** The Host to send; undefined keeps the client's. */
  readonly host: string | undefined
  /** Replaces `K-Network-Hash: override` (the KIngress readiness probe). */
  readonly probeHash: string
  readonly clientIp: string | undefined
  readonly proto: 'http' | 'https'
  /** Mark the request as counted by the activator, so queue-proxy does not count it twice. */
  readonly activator: boolean
  /** Keep Upgrade/Connection: upgrade (WebSocket handshake). */
  readonly upgrade: boolean
  /**
   * Tracing is on: the gateway's trace context replaces the client's (the pod's parent is the
   * gateway's span). Off: the client's traceparent and tracestate pass as they came.
   */
  readonly trace: TraceHeaders | undefined
  /** A policy's changes (an authorizer's headers); undefined: none, and no per-header cost. */
  readonly edits?: HeaderEdits | undefined
}

/**
 * What a policy that lets a request through may change on its way to the pod (an external
 * authorizer's allowed response: Envoy's OkHttpResponse). Names are lower-case and already checked
 * to be neither hop-by-hop nor owned by the gateway (policy/header-edits.ts).
 */
export interface HeaderEdits {
  /** Replace the client's headers of the same name, or add. */
  readonly set: readonly HeaderSet[]
  /** Added beside the client's headers of the same name. */
  readonly append: readonly HeaderSet[]
  /** The client's headers of these names are not sent. */
  readonly remove: readonly string[]
  /** Added to the response to the client (HTTP/1.1 and HTTP/2; not to a 101 Switching Protocols). */
  readonly respond: readonly HeaderSet[]
}

// Headers a client may not pass through: hop-by-hop ones, and those the gateway owns.
const DROP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
  'host',
  'k-proxy-request',
  'knative-serving-revision',
  'knative-serving-namespace',
  // Set by a DomainMapping's route (appendHeaders); a client must not fake having come through one.
  'k-original-host',
])

// With tracing on, the client's trace context is replaced by the gateway's own (see the plan's trace).
const DROP_TRACED = new Set([...DROP, 'traceparent', 'tracestate'])

// Forwarding headers: about the client, so only a trusted hop may state them.
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-server', 'forwarded', 'x-real-ip'])

// The listener marks the header list of each request that came from a trusted hop. The decision
// travels with the request's own rawHeaders array, so every caller of buildUpstreamHeaders (HTTP/1,
// HTTP/2, WebSocket) gets it without a new parameter, and anything unmarked is untrusted.
const trustedHops = new WeakSet<readonly string[]>()

export function markTrustedHop(rawHeaders: readonly string[]): void {
  trustedHops.add(rawHeaders)
}

export function isTrustedHop(rawHeaders: readonly string[]): boolean {
  return trustedHops.has(rawHeaders)
}

/** `K-Network-*` other than the probe pair (Probe is answered by the gateway, Hash is rewritten). */
function isInternalNetworkHeader(lower: string): boolean {
  return lower.length > 10 && lower.charCodeAt(0) === 107 /* k */ && lower.startsWith('k-network-') && lower !== 'k-network-hash' && lower !== 'k-network-probe'
}

function isSet(sets: UpstreamHeaderPlan['sets'], lower: string): boolean {
  for (let i = 0; i < sets.length; i++) {
    const list = sets[i]!
    for (let j = 0; j < list.length; j++) if (list[j]!.lower === lower) return true
  }
  return false
}

/** Names listed in the Connection header are hop-by-hop too. */
function connectionTokens(rawHeaders: readonly string[]): Set<string> | undefined {
  let tokens: Set<string> | undefined
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length !== 10 || rawHeaders[i]!.toLowerCase() !== 'connection') continue
    for (const t of rawHeaders[i + 1]!.split(',')) {
      const v = t.trim().toLowerCase()
      if (v && v !== 'close' && v !== 'keep-alive' && v !== 'upgrade') (tokens ??= new Set()).add(v)
    }
  }
  return tokens
}

export function buildUpstreamHeaders(rawHeaders: readonly string[], plan: UpstreamHeaderPlan): string[] {
  const out: string[] = []
  const hop = connectionTokens(rawHeaders)
  const trusted = trustedHops.has(rawHeaders)
  const trace = plan.trace
  const edits = plan.edits
  const drop = trace === undefined ? DROP : DROP_TRACED
  let clientHost: string | undefined
  let xff: string | undefined
  // From a trusted hop: its Forwarded (appended to), X-Forwarded-Proto and -Host (kept).
  let forwarded: string | undefined
  let trustedProto: string | undefined
  let trustedHost: string | undefined
  let upgradeValue: string | undefined
  let teTrailers = false
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!
    const value = rawHeaders[i + 1]!
    if (name.charCodeAt(0) === 58 /* : */) {
      if (name === ':authority') clientHost ??= value
      continue // HTTP/2 pseudo-headers
    }
    const lower = name.toLowerCase()
    if (drop.has(lower)) {
      if (lower === 'host') clientHost ??= value
      else if (lower === 'upgrade') upgradeValue = value
      else if (lower === 'te' && value.toLowerCase().includes('trailers')) teTrailers = true
      continue
    }
    if (hop?.has(lower)) continue
    if (isSet(plan.sets, lower)) continue
    if (edits !== undefined && (edits.remove.includes(lower) || edits.set.some((h) => h.lower === lower))) continue
    if (FORWARDING.has(lower)) {
      // Untrusted: dropped here, replaced below with what the gateway saw. Trusted: kept, XFF appended to.
      if (!trusted) continue
      if (lower === 'x-forwarded-for') {
        xff = xff === undefined ? value : `${xff}, ${value}`
        continue
      }
      if (lower === 'forwarded') {
        forwarded = forwarded === undefined ? value : `${forwarded}, ${value}`
        continue
      }
      if (lower === 'x-forwarded-proto') trustedProto ??= value
      else if (lower === 'x-forwarded-host') trustedHost ??= value
    } else if (lower === 'k-network-hash' && value === 'override') {
      out.push(name, plan.probeHash)
      continue
    } else if (isInternalNetworkHeader(lower)) continue
    out.push(name, value)
  }
  const host = plan.host ?? clientHost
  if (host !== undefined) out.push('host', host)
  // The authorizer's headers before the route's: a header the route sets (Knative's) is the route's.
  if (edits !== undefined) for (const h of edits.set) if (!isSet(plan.sets, h.lower)) out.push(h.name, h.value)
  if (edits !== undefined) for (const h of edits.append) out.push(h.name, h.value)
  for (const list of plan.sets) for (const h of list) out.push(h.name, h.value)
  const forwardedFor = plan.clientIp === undefined ? xff : xff === undefined ? plan.clientIp : `${xff}, ${plan.clientIp}`
  if (forwardedFor !== undefined) out.push('x-forwarded-for', forwardedFor)
  if (trustedProto === undefined) out.push('x-forwarded-proto', plan.proto)
  if (trustedHost === undefined && clientHost !== undefined) out.push('x-forwarded-host', clientHost)
  // RFC 7239 §4: a proxy appends its element to a Forwarded it keeps; otherwise it is built from the above.
  if (forwarded !== undefined) out.push('forwarded', plan.clientIp === undefined ? forwarded : `${forwarded}, for=${forwardedValue(plan.clientIp)}`)
  else out.push('forwarded', forwardedFrom(forwardedFor, trustedHost ?? clientHost, trustedProto ?? plan.proto))
  if (plan.activator) out.push('k-proxy-request', 'activator')
  if (teTrailers) out.push('te', 'trailers')
  if (plan.upgrade && upgradeValue !== undefined) out.push('connection', 'upgrade', 'upgrade', upgradeValue)
  if (trace !== undefined) {
    if (trace.traceparent !== undefined) out.push('traceparent', trace.traceparent)
    if (trace.tracestate !== undefined) out.push('tracestate', trace.tracestate)
  }
  return out
}

/** Response headers that must not be relayed to the client (hop-by-hop). */
export const RESPONSE_DROP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'])

/** The upstream headers for a resolved request: the route's header sets, in hop order, a policy's edits, and the rest. */
export function upstreamHeadersFor(req: ClientRequest, r: Resolution, secure: boolean, activator: boolean, upgrade: boolean, trace: TraceHeaders | undefined, edits: HeaderEdits | undefined): string[] {
  const inner = r.inner
  return buildUpstreamHeaders(req.rawHeaders, {
    sets: inner ? [r.path.setHeaders, r.split.setHeaders, inner.path.setHeaders, inner.split.setHeaders] : [r.path.setHeaders, r.split.setHeaders],
    host: r.upstreamHost,
    probeHash: r.entry.ingress.hash,
    clientIp: unmappedIp(req.socket?.remoteAddress),
    proto: secure ? 'https' : 'http',
    activator,
    upgrade,
    trace,
    edits,
  })
}
