// The front door's first stage: is this a request the gateway may route at all? Pure: it reads the
// request and the limits, and returns the answer that refuses it, or undefined. The same checks in
// the same order for a request, an HTTP/2 stream and an upgrade, so the three cannot drift apart.
//
// llhttp (node:http's parser, strict: insecureHTTPParser stays off) and our own head parser have
// already refused what no HTTP/1 request may be: Content-Length with Transfer-Encoding, duplicate
// or malformed Content-Length, obs-fold lines, bad chunk framing, invalid header characters, bare
// LF or CR, too many header lines. What is added here: a target over --max-url-length, more than one
// Host, Transfer-Encoding on HTTP/1.0 or other than `chunked`, a non-1.x version over HTTP/1
// framing, a missing or malformed Host, a target that is not a path, an absolute-form target whose
// authority differs from Host, and a declared body over --max-body-size.
import type { ClientRequest } from './client.ts'
import { isValidHost, normaliseHostHeader } from './host.ts'
import type { Answer } from './reply.ts'

/** How the request was framed on the wire: HTTP/1.x bytes, or an HTTP/2 stream. */
export type Framing = 'h1' | 'h2'

export interface ScreenLimits {
  /** Characters of the request target (414). */
  readonly maxUrlLength: number
  /** Request body bytes; 0 = no limit (413). */
  readonly maxBodyBytes: number
}

/** The Host a request names: Host, or HTTP/2's :authority. */
export function hostOf(req: ClientRequest): string | undefined {
  const h = req.headers.host ?? req.headers[':authority']
  return typeof h === 'string' ? h : undefined
}

/**
 * The screen's refusal of `req`, or undefined when it may go on. Rewrites an absolute-form target
 * (`GET http://host/path`) to origin form once its authority is checked against Host.
 */
export function screen(req: ClientRequest, limits: ScreenLimits, framing: Framing): Answer | undefined {
  const url = req.url ?? '/'
  if (url.length > limits.maxUrlLength) return refusal(414, 'uri-too-long', `the request target is longer than ${limits.maxUrlLength} characters`)
  if (framing === 'h1') {
    const bad = framingProblem(req)
    if (bad) return bad
  }
  const rawHost = hostOf(req)
  if (rawHost === undefined || rawHost === '') return refusal(400, 'bad-request', 'the request has no Host header')
  // Checked in place: the usual request makes no string here (identify looks the raw Host up first).
  if (!isValidHost(rawHost)) return refusal(400, 'bad-request', 'the Host header is not a valid host name')
  if (framing === 'h2') {
    // RFC 9113 §8.3.1: a Host header that disagrees with :authority makes the request malformed;
    // the route and the pod could otherwise see different hosts.
    const authority = req.headers[':authority']
    const h = req.headers.host
    if (typeof authority === 'string' && typeof h === 'string' && authority !== h && normaliseHostHeader(authority) !== normaliseHostHeader(h)) {
      return refusal(400, 'bad-request', 'the Host header names a different host than :authority')
    }
  }
  if (url.charCodeAt(0) !== 47 /* / */) {
    const path = originForm(url, normaliseHostHeader(rawHost)!)
    if (typeof path !== 'string') return path
    req.url = path
  }
  const max = limits.maxBodyBytes
  if (max > 0) {
    const cl = req.headers['content-length']
    if (cl !== undefined && Number(cl) > max) return refusal(413, 'body-too-large', `the request body (${cl} bytes) is larger than the limit of ${max} bytes`)
  }
  return undefined
}

/** The screen's answers close an HTTP/1 connection: bytes the gateway did not read may follow. */
function refusal(status: number, reason: Answer['reason'], detail: string): Answer {
  return { status, reason, detail, close: true }
}

/** HTTP/1 framing that llhttp accepts but that is ambiguous or unsupported for a proxy. */
function framingProblem(req: ClientRequest): Answer | undefined {
  // llhttp takes `GET / HTTP/2.0` as version 2.0 over HTTP/1 framing; nothing real sends that.
  if (req.httpVersionMajor !== 1) return refusal(505, 'bad-request', `HTTP/${req.httpVersion} is not supported over HTTP/1 framing`)
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
  if (hosts > 1) return refusal(400, 'bad-request', 'the request has more than one Host header')
  if (te !== undefined) {
    // RFC 9112 §6.1: HTTP/1.0 has no Transfer-Encoding; its framing is faulty.
    if (req.httpVersionMinor === 0) return refusal(400, 'bad-request', 'Transfer-Encoding is not allowed in an HTTP/1.0 request')
    // `gzip, chunked` parses, but the body is forwarded re-chunked and the gzip would be lost.
    if (te.trim().toLowerCase() !== 'chunked') return refusal(501, 'bad-request', `only the chunked transfer coding is supported, not ${JSON.stringify(te)}`)
  }
  return undefined
}

/**
 * Absolute form (`http://host/path?q`) → origin form (`/path?q`), routed and forwarded by one
 * authority only: it must name the Host's host. The path is kept byte for byte (no URL parsing:
 * `..` and `%2F` stay as sent). Anything else that is not a path (`*`, garbage) is refused.
 */
function originForm(url: string, host: string): string | Answer {
  const lower = url.slice(0, 8).toLowerCase()
  if (!lower.startsWith('http://') && !lower.startsWith('https://')) return refusal(400, 'bad-request', 'the request target is not a path')
  const start = url.indexOf('//') + 2
  let end = start
  while (end < url.length && url.charCodeAt(end) !== 47 && url.charCodeAt(end) !== 63 /* ? */) end++
  if (normaliseHostHeader(url.slice(start, end)) !== host) return refusal(400, 'bad-request', 'the request target names a different host than the Host header')
  const rest = url.slice(end)
  return rest.length === 0 ? '/' : rest.charCodeAt(0) === 63 ? `/${rest}` : rest
}
