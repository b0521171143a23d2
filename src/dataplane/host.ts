// Host header → routing key: case-insensitive, any :port dropped, a trailing dot ignored.
// The common case (already lower-case, no port) costs one Map lookup and no allocation.
// Anything that cannot be a host (raw UTF-8, spaces, an unclosed `[`, a non-numeric port, more than
// 255 characters) is refused by the caller with 400, never guessed at: a char loop, no regex.
import type { HostEntry } from '../model/snapshot.ts'

/** Longest host (without port) taken: DNS names stop at 253, plus a trailing dot and some slack. */
export const MAX_HOST_LENGTH = 255

// RFC 3986 reg-name characters: unreserved, sub-delims and `%` (pct-encoded is left as sent).
const REG_NAME = new Uint8Array(128)
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%") REG_NAME[c.charCodeAt(0)] = 1
// Inside `[...]`: IPv6 (and IPv4-in-IPv6) literals.
const IP_LITERAL = new Uint8Array(128)
for (const c of '0123456789abcdefABCDEF:.') IP_LITERAL[c.charCodeAt(0)] = 1

/** Index where the host part ends (`:` of the port, or the end), or -1 when the value is no host. */
function hostEnd(raw: string): number {
  const n = raw.length
  let i = 0
  if (raw.charCodeAt(0) === 91 /* [ */) {
    i = 1
    while (i < n && raw.charCodeAt(i) !== 93 /* ] */) {
      const c = raw.charCodeAt(i)
      if (c >= 128 || IP_LITERAL[c] === 0) return -1
      i++
    }
    if (i === n || i === 1) return -1
    i++ // past `]`
  } else {
    while (i < n) {
      const c = raw.charCodeAt(i)
      if (c === 58 /* : */) break
      if (c >= 128 || REG_NAME[c] === 0) return -1
      i++
    }
  }
  const end = i
  if (end > MAX_HOST_LENGTH) return -1
  if (i < n) {
    if (raw.charCodeAt(i) !== 58) return -1
    // The port: digits only (possibly none, as RFC 3986 allows).
    if (n - i - 1 > 5) return -1
    for (i++; i < n; i++) {
      const c = raw.charCodeAt(i)
      if (c < 48 || c > 57) return -1
    }
  }
  return end
}

/** Whether the value can be a host (and port): the screen's check, with no string made. */
export function isValidHost(raw: string): boolean {
  if (raw.length === 0) return false
  const end = hostEnd(raw)
  // A lone `.` is the trailing dot of nothing.
  return end > 1 || (end === 1 && raw.charCodeAt(0) !== 46)
}

/** Returns the lower-case host without port, or undefined when the value cannot be a host. */
export function normaliseHostHeader(raw: string): string | undefined {
  if (raw.length === 0) return undefined
  const end = hostEnd(raw)
  if (end <= 0) return undefined
  let host = end === raw.length ? raw : raw.slice(0, end)
  host = host.toLowerCase()
  if (host.charCodeAt(host.length - 1) === 46 /* . */) host = host.slice(0, -1)
  return host.length > 0 ? host : undefined
}

export function lookupHost(hosts: ReadonlyMap<string, HostEntry>, raw: string): HostEntry | undefined {
  const direct = hosts.get(raw)
  if (direct) return direct
  const host = normaliseHostHeader(raw)
  if (host === undefined) return undefined
  return hosts.get(host) ?? hosts.get('*')
}
