// The PROXY protocol header a load balancer (AWS NLB, HAProxy's send-proxy) puts in front of a
// connection to say who the client is: version 1 (a text line) or version 2 (binary). Pure: bytes in,
// the header (or how many more bytes it needs, or why it is not one) out.
// Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
import net from 'node:net'

export interface ProxyHeader {
  readonly version: 1 | 2
  /** The client as the load balancer saw it; undefined for a LOCAL command (a health check) or UNKNOWN. */
  readonly source: { readonly address: string; readonly port: number } | undefined
  /** Bytes the header took: what follows is the client's own stream. */
  readonly length: number
}

/** The header needs more bytes than have come. */
export const INCOMPLETE = 'incomplete'
/** Why the bytes are not a PROXY header (for the rejection count and the log). */
export type ProxyRejection = 'not-proxy-protocol' | 'malformed-v1' | 'malformed-v2' | 'unsupported-v2'

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_PREFIX = Buffer.from('PROXY ')
/** The longest v1 line, CRLF included (the spec's 107 bytes). */
const V1_MAX = 107
/** v2: 16 bytes of fixed header, then the address block and TLVs. */
const V2_FIXED = 16

export function parseProxyHeader(buf: Buffer): ProxyHeader | typeof INCOMPLETE | ProxyRejection {
  const n = Math.min(buf.length, V2_SIGNATURE.length)
  if (buf.compare(V2_SIGNATURE, 0, n, 0, n) === 0) return buf.length < V2_SIGNATURE.length ? INCOMPLETE : parseV2(buf)
  const m = Math.min(buf.length, V1_PREFIX.length)
  if (buf.compare(V1_PREFIX, 0, m, 0, m) === 0) return buf.length < V1_PREFIX.length ? INCOMPLETE : parseV1(buf)
  return 'not-proxy-protocol'
}

function parseV1(buf: Buffer): ProxyHeader | typeof INCOMPLETE | ProxyRejection {
  const end = buf.indexOf('\r\n', 0, 'latin1')
  if (end < 0) return buf.length >= V1_MAX ? 'malformed-v1' : INCOMPLETE
  if (end + 2 > V1_MAX) return 'malformed-v1'
  const parts = buf.toString('latin1', V1_PREFIX.length, end).split(' ')
  const length = end + 2
  if (parts[0] === 'UNKNOWN') return { version: 1, source: undefined, length }
  if (parts.length !== 5 || (parts[0] !== 'TCP4' && parts[0] !== 'TCP6')) return 'malformed-v1'
  const [family, src, , sport, dport] = parts as [string, string, string, string, string]
  const want = family === 'TCP4' ? 4 : 6
  if (net.isIP(src) !== want || net.isIP(parts[2]!) !== want || !isPort(sport) || !isPort(dport)) return 'malformed-v1'
  return { version: 1, source: { address: src, port: Number(sport) }, length }
}

function isPort(s: string): boolean {
  return /^(0|[1-9]\d{0,4})$/.test(s) && Number(s) <= 65535
}

function parseV2(buf: Buffer): ProxyHeader | typeof INCOMPLETE | ProxyRejection {
  if (buf.length < V2_FIXED) return INCOMPLETE
  const verCmd = buf[12]!
  if (verCmd >> 4 !== 2) return 'malformed-v2'
  const command = verCmd & 0x0f
  if (command > 1) return 'malformed-v2'
  const family = buf[13]!
  const len = buf.readUInt16BE(14)
  const length = V2_FIXED + len
  if (buf.length < length) return INCOMPLETE
  // LOCAL: the load balancer's own connection (a health check); the real peer is the client.
  if (command === 0) return { version: 2, source: undefined, length }
  switch (family) {
    case 0x11: // TCP over IPv4: src addr, dst addr, src port, dst port
      if (len < 12) return 'malformed-v2'
      return { version: 2, source: { address: ipv4(buf, V2_FIXED), port: buf.readUInt16BE(V2_FIXED + 8) }, length }
    case 0x21: // TCP over IPv6
      if (len < 36) return 'malformed-v2'
      return { version: 2, source: { address: ipv6(buf, V2_FIXED), port: buf.readUInt16BE(V2_FIXED + 32) }, length }
    case 0x00: // UNSPEC: nothing said about the client; TLVs (if any) are skipped with the rest
      return { version: 2, source: undefined, length }
    default: // UDP, UNIX sockets: not what an HTTP listener receives
      return 'unsupported-v2'
  }
}

function ipv4(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`
}

function ipv6(buf: Buffer, at: number): string {
  const groups: string[] = []
  for (let i = 0; i < 16; i += 2) groups.push(buf.readUInt16BE(at + i).toString(16))
  // The canonical short form (as net.SocketAddress would give it), through the URL parser.
  return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1)
}
