// Host header → routing key: case-insensitive, any :port dropped, a trailing dot ignored.
// The common case (already lower-case, no port) costs one Map lookup and no allocation.
import type { HostEntry } from '../model/snapshot.ts'

const VALID_HOST = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::\d*)?$/

/** Returns the lower-case host without port, or undefined when the value cannot be a host. */
export function normaliseHostHeader(raw: string): string | undefined {
  if (raw.length === 0 || raw.length > 1024 || !VALID_HOST.test(raw)) return undefined
  let host = raw
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']')
    host = host.slice(0, end + 1)
  } else {
    const colon = host.indexOf(':')
    if (colon !== -1) host = host.slice(0, colon)
  }
  host = host.toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  return host.length > 0 ? host : undefined
}

export function lookupHost(hosts: ReadonlyMap<string, HostEntry>, raw: string): HostEntry | undefined {
  const direct = hosts.get(raw)
  if (direct) return direct
  const host = normaliseHostHeader(raw)
  if (host === undefined) return undefined
  return hosts.get(host) ?? hosts.get('*')
}
