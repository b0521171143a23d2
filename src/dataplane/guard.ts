// Client limits at the connection level (issue 7): the limits an operator sets, connections per
// client IP, the parser's refusals (malformed, too large, too slow), a body that grows past its limit
// while it streams, and which clients may speak for others in X-Forwarded-*. The per-request checks
// are the front door's screen stage (screen.ts).
import net from 'node:net'
import type { Duplex, Readable } from 'node:stream'
import type { GatewayConfig } from '../config.ts'
import { parseCidr } from '../config.ts'
import { rawReply } from './reply.ts'
import type { Reason } from './reply.ts'
import { markTrustedHop } from './upstream-headers.ts'
import type { ClientRequest } from './client.ts'
import { unmappedIp } from './forwarded.ts'

export interface ClientLimits {
  /** Time a client has to send its request headers (408). */
  headersTimeoutMs: number
  /** Request line plus headers, bytes (431). */
  maxHeaderSize: number
  /** Header lines (431). */
  maxHeadersCount: number
  /** Request body bytes; 0 = no limit (413). */
  maxBodyBytes: number
  /** Open connections per client IP; 0 = no limit. */
  maxConnectionsPerIp: number
  /** Characters of the request target (414). */
  maxUrlLength: number
  /** Hops whose forwarding headers are kept; undefined = none. */
  trustedProxies: net.BlockList | undefined
}

export const DEFAULT_LIMITS: ClientLimits = {
  headersTimeoutMs: 15_000,
  maxHeaderSize: 32 * 1024,
  maxHeadersCount: 100,
  maxBodyBytes: 0,
  maxConnectionsPerIp: 0,
  maxUrlLength: 8192,
  trustedProxies: undefined,
}

export function withDefaults(given: Partial<ClientLimits>): ClientLimits {
  const out = { ...DEFAULT_LIMITS }
  for (const k of Object.keys(out) as Array<keyof ClientLimits>) if (given[k] !== undefined) (out as Record<string, unknown>)[k] = given[k]
  return out
}

export function clientLimits(config: GatewayConfig): ClientLimits {
  return {
    headersTimeoutMs: config.headerTimeoutSeconds * 1000,
    maxHeaderSize: config.maxHeaderBytes,
    maxHeadersCount: config.maxHeaders,
    maxBodyBytes: config.maxBodyBytes,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    maxUrlLength: config.maxUrlLength,
    trustedProxies: trustedProxyList(config.trustedProxies),
  }
}

export function trustedProxyList(cidrs: readonly string[]): net.BlockList | undefined {
  if (cidrs.length === 0) return undefined
  const list = new net.BlockList()
  for (const c of cidrs) {
    const p = parseCidr(c)
    if (!p) throw new Error(`not a CIDR: ${c}`)
    list.addSubnet(p.address, p.prefix, p.family)
  }
  return list
}

/** BlockList also matches IPv4-mapped IPv6 (`::ffff:10.1.2.3`), which a `::` listener reports. */
export function isTrustedAddress(list: net.BlockList, address: string | undefined): boolean {
  if (address === undefined) return false
  return list.check(address, net.isIPv4(address) ? 'ipv4' : 'ipv6')
}

/**
 * Connections beyond the per-IP limit are closed as they are accepted, before a byte is read: the
 * same for HTTP/1.1, h2c and TLS, and it costs the client nothing to retry later.
 */
export function limitConnectionsPerIp(server: net.Server, max: number, onRefused: () => void): void {
  server.prependListener('connection', perIpAdmission(() => max, onRefused))
}

/**
 * The per-IP connection limit as a check of one connection: false (and the connection closed) when
 * its client already holds `max()` (read per connection: the limit follows the settings; 0 = none).
 * Connections are counted even without a limit, so one set at run time counts those already open.
 * With --proxy-protocol it runs once the PROXY header has said who the client is.
 */
export function perIpAdmission(max: () => number, onRefused: () => void): (socket: net.Socket) => boolean {
  const open = new Map<string, number>()
  return (socket) => {
    const ip = unmappedIp(socket.remoteAddress)
    if (ip === undefined) return true
    const n = (open.get(ip) ?? 0) + 1
    const limit = max()
    if (limit > 0 && n > limit) {
      socket.destroy()
      onRefused()
      return false
    }
    open.set(ip, n)
    socket.once('close', () => {
      const left = (open.get(ip) ?? 1) - 1
      if (left > 0) open.set(ip, left)
      else open.delete(ip)
    })
    return true
  }
}

type PendingResponse = { headersSent?: boolean } | null | undefined

/** What the guard answered itself, for the request count and the access log. */
export interface Refusal {
  readonly status: number
  readonly reason: Reason
}

/**
 * The parser refused the bytes: say so in plain HTTP/1.1 if nothing was said yet, and close.
 * Returns what was answered; undefined when the connection could only be dropped.
 */
export function onClientError(err: NodeJS.ErrnoException, socket: net.Socket | Duplex): Refusal | undefined {
  // A response already on the wire for this connection cannot be followed by another one.
  const pending = (socket as { _httpMessage?: PendingResponse })._httpMessage
  if (!(socket as net.Socket).writable || pending?.headersSent) {
    socket.destroy()
    return undefined
  }
  const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
  const reason: Reason = status === 431 ? 'headers-too-large' : status === 408 ? 'header-timeout' : 'bad-request'
  const detail = status === 431 ? 'the request headers are too large or too many' : status === 408 ? 'the request headers did not arrive in time' : 'the request is malformed'
  rawReply(socket, status, reason, `${detail} (${err.code ?? 'bad request'})`)
  return { status, reason }
}

/** A client in --trusted-proxies may speak for others: its X-Forwarded-* and Forwarded are kept. */
export function markIfTrusted(req: ClientRequest, list: net.BlockList | undefined): void {
  if (list !== undefined && isTrustedAddress(list, req.socket?.remoteAddress)) markTrustedHop(req.rawHeaders)
}

/**
 * Counts body bytes as the parser hands them over, without buffering or switching the stream to
 * flowing mode (the proxy reads it when a pod is ready), into `counted.bytesIn` (the access log's).
 * With `max` > 0, past the limit nothing more is passed on, not even the end, so a pod never sees a
 * cut body as a complete one; `onOver` answers 413 (and aborts the upstream request, if there is one).
 */
export function watchBody(req: Readable, max: number, onOver: () => void, counted: { bytesIn: number }): void {
  let seen = 0
  const push = req.push
  req.push = function (this: Readable, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (max > 0 && seen > max) return false
    if (chunk !== null && chunk !== undefined) {
      seen += (chunk as Buffer).length
      counted.bytesIn = seen
      if (max > 0 && seen > max) {
        onOver()
        return false
      }
    }
    return push.call(this, chunk, encoding)
  }
}
