// Hostile and broken input at the listeners (issue 7, request side): the limits an operator sets,
// the framing Node's parser (llhttp, strict: insecureHTTPParser stays off) lets through but a proxy
// must not forward, and which clients may speak for others in X-Forwarded-*.
//
// What llhttp already refuses, before any request reaches us (clientError → 400, connection closed):
// Content-Length with Transfer-Encoding, duplicate or malformed Content-Length, obs-fold lines, bad
// chunk sizes or chunk framing, invalid header-name or header-value characters, bare LF or CR, and
// more header lines than maxHeadersCount (431). What is added here: more than one Host, Transfer-
// Encoding on HTTP/1.0 or other than `chunked`, a non-1.x version over HTTP/1 framing, an
// absolute-form target whose authority differs from Host, and the body and connection limits.
import net from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { GatewayConfig } from '../config.ts'
import { parseCidr } from '../config.ts'
import { rawReply, reply } from './reply.ts'
import type { Reason } from './reply.ts'
import { markTrustedHop } from './upstream-headers.ts'
import { normaliseHostHeader } from './host.ts'

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
  if (max <= 0) return
  const open = new Map<string, number>()
  server.prependListener('connection', (socket: net.Socket) => {
    const ip = socket.remoteAddress
    if (ip === undefined) return
    const n = (open.get(ip) ?? 0) + 1
    if (n > max) {
      socket.destroy()
      onRefused()
      return
    }
    open.set(ip, n)
    socket.once('close', () => {
      const left = (open.get(ip) ?? 1) - 1
      if (left > 0) open.set(ip, left)
      else open.delete(ip)
    })
  })
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

/** Answers for the gateway itself, ending the connection when HTTP/1.1 (unread bytes may follow). */
function refuse(req: IncomingMessage, res: ServerResponse, status: number, reason: Reason, detail: string): Refusal {
  reply(res, status, reason, detail, req.httpVersionMajor === 1 ? { connection: 'close' } : undefined)
  return { status, reason }
}

/**
 * Runs before routing on every request of a listener. Returns what it answered when it answered
 * the request itself, else undefined. `h1`: the request came over HTTP/1.x framing (not HTTP/2).
 */
export function screenRequest(req: IncomingMessage, res: ServerResponse, limits: ClientLimits, h1: boolean): Refusal | undefined {
  const tooLong = urlTooLong(req, limits)
  if (tooLong) return refuse(req, res, 414, 'uri-too-long', tooLong)
  if (h1) {
    const bad = framingProblem(req)
    if (bad) return refuse(req, res, bad[0], 'bad-request', bad[1])
  }
  const max = limits.maxBodyBytes
  if (max > 0) {
    const cl = req.headers['content-length']
    if (cl !== undefined && Number(cl) > max) return refuse(req, res, 413, 'body-too-large', `the request body (${cl} bytes) is larger than the limit of ${max} bytes`)
    if (cl !== '0' && (cl !== undefined || !h1 || req.headers['transfer-encoding'] !== undefined)) countBody(req, res, max)
  }
  if (limits.trustedProxies !== undefined && isTrustedAddress(limits.trustedProxies, req.socket?.remoteAddress)) markTrustedHop(req.rawHeaders)
  return undefined
}

/** The same for an HTTP/1.1 Upgrade (WebSocket) request: a raw answer on the socket. */
export function screenUpgrade(req: IncomingMessage, socket: Duplex, limits: ClientLimits): Refusal | undefined {
  const tooLong = urlTooLong(req, limits)
  if (tooLong) return refuseRaw(socket, 414, 'uri-too-long', tooLong)
  const bad = framingProblem(req)
  if (bad) return refuseRaw(socket, bad[0], 'bad-request', bad[1])
  if (limits.trustedProxies !== undefined && isTrustedAddress(limits.trustedProxies, req.socket?.remoteAddress)) markTrustedHop(req.rawHeaders)
  return undefined
}

/** The same answer on an upgrade's raw socket. */
function refuseRaw(socket: Duplex, status: number, reason: Reason, detail: string): Refusal {
  rawReply(socket, status, reason, detail)
  return { status, reason }
}

/** Over --max-url-length: the 414 detail. Checked before anything else, routing included. */
function urlTooLong(req: IncomingMessage, limits: ClientLimits): string | undefined {
  return (req.url?.length ?? 0) > limits.maxUrlLength ? `the request target is longer than ${limits.maxUrlLength} characters` : undefined
}

/**
 * HTTP/1 framing that llhttp accepts but that is ambiguous or unsupported for a proxy: [status,
 * detail], or undefined when the request is fine. Rewrites an absolute-form target to origin form.
 */
function framingProblem(req: IncomingMessage): [number, string] | undefined {
  // llhttp takes `GET / HTTP/2.0` as version 2.0 over HTTP/1 framing; nothing real sends that.
  if (req.httpVersionMajor !== 1) return [505, `HTTP/${req.httpVersion} is not supported over HTTP/1 framing`]
  const raw = req.rawHeaders
  let hosts = 0
  let te: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!
    if (n.length === 4) {
      if (n.toLowerCase() === 'host') hosts++
    } else if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') te = raw[i + 1]
  }
  // RFC 9112 §3.2: more than one Host is a 400; the routing and the pod could disagree on which.
  if (hosts > 1) return [400, 'the request has more than one Host header']
  if (te !== undefined) {
    // RFC 9112 §6.1: HTTP/1.0 has no Transfer-Encoding; its framing is faulty.
    if (req.httpVersionMinor === 0) return [400, 'Transfer-Encoding is not allowed in an HTTP/1.0 request']
    // `gzip, chunked` parses, but the body is forwarded re-chunked and the gzip would be lost.
    if (te.trim().toLowerCase() !== 'chunked') return [501, `only the chunked transfer coding is supported, not ${JSON.stringify(te)}`]
  }
  const url = req.url ?? '/'
  if (url.charCodeAt(0) !== 47 /* / */ && hasHttpScheme(url)) {
    // Absolute form (`GET http://host/path`): route and forward by one authority only. The path is
    // kept byte for byte (no URL parsing: `..` and `%2F` stay as sent) and sent in origin form.
    const start = url.indexOf('//') + 2
    let end = start
    while (end < url.length && url.charCodeAt(end) !== 47 && url.charCodeAt(end) !== 63 /* ? */) end++
    const authority = normaliseHostHeader(url.slice(start, end))
    const host = req.headers.host === undefined ? undefined : normaliseHostHeader(req.headers.host)
    if (authority === undefined || authority !== host) return [400, 'the request target names a different host than the Host header']
    const rest = url.slice(end)
    req.url = rest.length === 0 ? '/' : rest.charCodeAt(0) === 63 ? `/${rest}` : rest
  }
  return undefined
}

function hasHttpScheme(url: string): boolean {
  const lower = url.slice(0, 8).toLowerCase()
  return lower.startsWith('http://') || lower.startsWith('https://')
}

interface FailingExchange {
  finished: boolean
  fail(status: number, reason: Reason, detail: string, headers?: Record<string, string>): void
}

/**
 * Counts body bytes as the parser hands them over, without buffering or switching the stream to
 * flowing mode (the proxy reads it when a pod is ready). Past the limit nothing more is passed on,
 * not even the end, so a pod never sees a cut body as a complete one; the exchange answers 413 and
 * aborts its upstream request.
 */
function countBody(req: IncomingMessage, res: ServerResponse, max: number): void {
  let seen = 0
  const push = req.push
  req.push = function (this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (seen > max) return false
    if (chunk !== null && chunk !== undefined) {
      seen += (chunk as Buffer).length
      if (seen > max) {
        tooLarge(req, res, max)
        return false
      }
    }
    return push.call(this, chunk, encoding)
  }
}

function tooLarge(req: IncomingMessage, res: ServerResponse, max: number): void {
  const detail = `the request body is larger than the limit of ${max} bytes`
  const headers = req.httpVersionMajor === 1 ? { connection: 'close' } : undefined
  // The Exchange (exchange.ts) hangs itself on the response; failing it also releases the pod.
  const x = (res as unknown as { exchange?: FailingExchange }).exchange
  if (x && !x.finished) x.fail(413, 'body-too-large', detail, headers)
  else if (!res.headersSent) reply(res, 413, 'body-too-large', detail, headers)
  else res.destroy()
}
