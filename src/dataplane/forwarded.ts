// The client's address as a pod sees it: in X-Forwarded-For as Envoy writes it, and in Forwarded
// (RFC 7239) as Knative's queue-proxy writes it from X-Forwarded-* (pkg/queue/forwarded_shim.go).
// The gateway writes Forwarded itself so a pod without a queue-proxy in front (the local runner, a
// plain Service) sees the same header; queue-proxy leaves a Forwarded header it finds alone.
import net from 'node:net'

const MAPPED_IPV4 = '::ffff:'

/**
 * A dual-stack (`::`) listener reports an IPv4 client as `::ffff:a.b.c.d`. The client is that IPv4
 * address: X-Forwarded-For, logs, per-IP limits and rate limits name it so, whichever listener it
 * came to (`0.0.0.0` reports it plain).
 */
export function unmappedIp(remote: string | undefined): string | undefined {
  if (remote === undefined || remote.length < 14 || !remote.startsWith(MAPPED_IPV4)) return remote
  const v4 = remote.slice(MAPPED_IPV4.length)
  return net.isIPv4(v4) ? v4 : remote
}

// RFC 7230 token characters: a value of these needs no quotes.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** A `for=`/`host=` value: an IPv6 address as `"[::1]"` (RFC 7239 §6), anything not a token quoted. */
export function forwardedValue(value: string): string {
  // Every request comes here: net.isIPv6 is a long regular expression, asked only of a value that
  // has a colon (an IPv4 client's address and most hosts have none).
  if (value.includes(':') && net.isIPv6(value)) return `"[${value}]"`
  if (TOKEN.test(value)) return value
  return `"${value.replace(/["\\]/g, '\\$&')}"`
}

/**
 * Forwarded from the X-Forwarded-* the pod gets: one `for=` element per X-Forwarded-For hop, the
 * first carrying host and proto, as queue-proxy's shim builds it.
 */
export function forwardedFrom(xff: string | undefined, host: string | undefined, proto: string): string {
  const tail = `${host === undefined ? '' : `;host=${forwardedValue(host)}`};proto=${proto}`
  if (xff === undefined) return tail.slice(1)
  // Every request builds this: the usual single hop (the client itself) splits nothing.
  if (!xff.includes(',')) {
    const hop = xff.trim()
    return hop === '' ? tail.slice(1) : `for=${forwardedValue(hop)}${tail}`
  }
  const hops = xff.split(',').map((h) => h.trim()).filter((h) => h !== '')
  if (hops.length === 0) return tail.slice(1)
  let out = `for=${forwardedValue(hops[0]!)}${tail}`
  for (let i = 1; i < hops.length; i++) out += `, for=${forwardedValue(hops[i]!)}`
  return out
}
