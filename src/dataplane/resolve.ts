// Resolve: (listener hosts, Host, path, headers) → the path and split a request takes. Pure, and on
// the hot path: no regex, no closures, one small result object per request.
import type { IncomingHttpHeaders } from 'node:http'
import type { BackendSpec, HeaderSet, HostEntry, PathEntry, Snapshot, SplitEntry } from '../model/snapshot.ts'
import { lookupHost } from './host.ts'

export interface Resolution {
  /** The host entry the client asked for (its ingress answers the K-Network-Hash probe). */
  readonly entry: HostEntry
  readonly path: PathEntry
  readonly split: SplitEntry
  /** When a rewriteHost pointed at a host this gateway serves, the hop resolved in-process. */
  readonly inner: { entry: HostEntry; path: PathEntry; split: SplitEntry } | undefined
  /** Host to send upstream when rewriteHost leaves the gateway; undefined keeps the client's Host. */
  readonly upstreamHost: string | undefined
}

export function matchesPrefix(url: string, prefix: string): boolean {
  if (prefix.length === 0) return true
  if (!url.startsWith(prefix)) return false
  // The prefix must lie inside the path, not run into the query string.
  const q = url.indexOf('?')
  return q === -1 || q >= prefix.length
}

function headerValue(headers: IncomingHttpHeaders, sets: readonly HeaderSet[] | undefined, name: string): string | undefined {
  if (sets) {
    for (let i = sets.length - 1; i >= 0; i--) if (sets[i]!.lower === name) return sets[i]!.value
  }
  const v = headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

/** First path (in rule order) whose prefix and every header match apply. */
export function pickPath(entry: HostEntry, url: string, headers: IncomingHttpHeaders, sets?: readonly HeaderSet[]): PathEntry | undefined {
  const paths = entry.paths
  outer: for (let i = 0; i < paths.length; i++) {
    const p = paths[i]!
    if (!matchesPrefix(url, p.prefix)) continue
    const hm = p.headerMatches
    for (let j = 0; j < hm.length; j++) {
      const m = hm[j]!
      // An absent or empty header never matches a non-empty expected value.
      if (headerValue(headers, sets, m[0]) !== m[1]) continue outer
    }
    return p
  }
  return undefined
}

/** Weighted draw; a 0% split can never win because its running sum equals its predecessor's. */
export function pickSplit(path: PathEntry, random: number = Math.random()): SplitEntry {
  const splits = path.splits
  if (splits.length === 1 || path.totalPercent <= 0) return splits[0]!
  const r = random * path.totalPercent
  const cum = path.cumulative
  for (let i = 0; i < cum.length; i++) if (cum[i]! > r) return splits[i]!
  return splits[splits.length - 1]!
}

export type ResolveFailure = { readonly failure: 'path' ; readonly entry: HostEntry }

export function resolve(
  snapshot: Snapshot,
  entry: HostEntry,
  url: string,
  headers: IncomingHttpHeaders,
): Resolution | ResolveFailure {
  const path = pickPath(entry, url, headers)
  if (!path) return { failure: 'path', entry }
  const split = pickSplit(path)
  if (path.rewriteHost === undefined) return { entry, path, split, inner: undefined, upstreamHost: undefined }
  const target = snapshot.localHosts.get(path.rewriteHost)
  if (!target || target === entry) return { entry, path, split, inner: undefined, upstreamHost: path.rewriteHost }
  // rewriteHost names a host we serve (DomainMapping → the route's cluster-local name): take the hop
  // in-process, matching as the inner listener would see the request after this hop's headers.
  const sets = [...path.setHeaders, ...split.setHeaders, { lower: 'host', name: 'Host', value: path.rewriteHost }]
  const innerPath = pickPath(target, url, headers, sets)
  if (!innerPath) return { failure: 'path', entry: target }
  return { entry, path, split, inner: { entry: target, path: innerPath, split: pickSplit(innerPath) }, upstreamHost: path.rewriteHost }
}

/**
 * A held request whose backend left the configuration (e.g. the Route's traffic moved to a new
 * revision), resolved again against `snap`: the same Host on the same side (a public host stays
 * public), the same URL and headers. Undefined when nothing in `snap` can take it; a held request
 * is never moved to an external service or to a Service with no endpoints.
 */
export function resolveAgain(snap: Snapshot, previous: Resolution, rawHost: string, url: string, headers: IncomingHttpHeaders): { resolution: Resolution; backend: BackendSpec } | undefined {
  const entry = lookupHost(previous.entry.visibility === 'ExternalIP' ? snap.publicHosts : snap.localHosts, rawHost)
  if (!entry || url.charCodeAt(0) !== 47) return undefined
  const r = resolve(snap, entry, url, headers)
  if ('failure' in r) return undefined
  const backend = r.inner?.split.backend ?? r.split.backend
  if (backend.kind === 'external' || backend.problem || !snap.backends.has(backend.key) || (!backend.revision && backend.endpoints.length === 0)) return undefined
  return { resolution: r, backend }
}
