// Recognises the plain HTTP/1.1 requests the gateway's own server side (h1/server/server.ts) answers: a
// request line and headers in a strict subset of RFC 9112, with no body. Pure: bytes in, a parsed
// head or a verdict out.
//
// It is a recogniser, not a judge. Anything outside the subset (a body of any framing, an Upgrade,
// Expect, obs-fold, bare LF, bytes above 0x7E, a repeated header, an absolute-form target, a version
// other than 1.0/1.1, a head over the size or count limit) is 'handoff': the connection goes to
// node:http, whose parser (llhttp) and the guard refuse or serve it exactly as they always did. So the
// subset decides only which server answers, never whether a request is valid, and a request this
// file accepts carries no framing for a later reader to disagree with: no Content-Length and no
// Transfer-Encoding means no body (RFC 9112 §6.3), so the next byte starts the next request.

export interface RequestHead {
  readonly method: string
  /** The request target, origin form (starts with `/`). */
  readonly url: string
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly versionMinor: number
  /** Names and values as sent (values without surrounding whitespace), like IncomingMessage.rawHeaders. */
  readonly rawHeaders: string[]
  /** Lower-cased names; each name appears once (a repeated one is handed off). */
  readonly headers: Record<string, string>
  /** The client allows another request on this connection after the response. */
  readonly keepAlive: boolean
  /** Offset just past the blank line that ends the head. */
  readonly end: number
}

export const INCOMPLETE = 0
export const HANDOFF = 1
export type HeadVerdict = RequestHead | typeof INCOMPLETE | typeof HANDOFF

export interface HeadLimits {
  /** Request line plus headers, bytes: a longer head is handed off (node:http answers 431). */
  readonly maxHeaderSize: number
  /** Header lines: more are handed off (431 too). */
  readonly maxHeadersCount: number
}

/** Methods that carry no body by convention; others (POST, PUT, PATCH, ...) are node:http's. */
const BODYLESS_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE'])

/**
 * Headers that make a request something other than "a head and nothing after it": a body, a
 * protocol switch, an interim response, or HTTP/2's upgrade settings.
 */
const HANDOFF_HEADERS = new Set(['content-length', 'transfer-encoding', 'upgrade', 'expect', 'http2-settings'])

/** token characters (RFC 9110 §5.6.2), by byte. */
const TCHAR = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1

const CR = 13
const LF = 10
const SP = 32
const HTAB = 9
const COLON = 58

/**
 * Looks at the bytes buf[start, end) for one request head. INCOMPLETE: its end has not arrived (and
 * the bytes so far fit the subset and the limits). HANDOFF: outside the subset.
 */
export function parseRequestHead(buf: Buffer, start: number, end: number, limits: HeadLimits): HeadVerdict {
  const stop = Math.min(end, start + limits.maxHeaderSize)
  // Where the scan runs out of bytes: wait for more, unless it ran into the size limit.
  const more = end - start >= limits.maxHeaderSize ? HANDOFF : INCOMPLETE
  // Request line: METHOD SP origin-form SP HTTP/1.x CRLF
  let i = start
  while (i < stop && buf[i]! >= 0x41 && buf[i]! <= 0x5a) i++
  if (i === stop) return more
  if (buf[i] !== SP || i === start) return HANDOFF
  const method = buf.toString('latin1', start, i)
  const targetStart = ++i
  if (i < stop && buf[i] !== 0x2f /* / */) return HANDOFF
  while (i < stop && buf[i]! > SP && buf[i]! < 0x7f) i++
  if (i === stop) return more
  if (buf[i] !== SP) return HANDOFF
  const url = buf.toString('latin1', targetStart, i)
  i++
  // "HTTP/1.x\r\n": 10 bytes.
  if (stop - i < 10) return isVersionPrefix(buf, i, stop) ? more : HANDOFF
  if (!isVersionPrefix(buf, i, i + 10)) return HANDOFF
  const versionMinor = buf[i + 7]! - 0x30
  i += 10
  if (!BODYLESS_METHODS.has(method)) return HANDOFF

  const rawHeaders: string[] = []
  // A plain object, as IncomingMessage.headers is. Not Object.create(null): V8 (Node 24.21) re-records
  // the keyed store below into a null-prototype object on every call, so this function never left
  // baseline code; measured 3.3 vs 0.5 µs per head, and ~6% of the gateway's CPU at a fixed rate.
  // So a repeat is an own property, and `__proto__` (whose assignment would set the prototype) is
  // defined instead of assigned.
  const headers: Record<string, string> = {}
  let connection: string | undefined
  for (;;) {
    if (i + 2 > stop) return more
    if (buf[i] === CR) {
      if (buf[i + 1] !== LF) return HANDOFF
      return {
        method,
        url,
        versionMinor,
        rawHeaders,
        headers,
        keepAlive: keepsAlive(versionMinor, connection),
        end: i + 2,
      }
    }
    // field-name ":" OWS field-value OWS CRLF
    const nameStart = i
    while (i < stop && buf[i]! < 128 && TCHAR[buf[i]!] === 1) i++
    if (i === stop) return more
    if (buf[i] !== COLON || i === nameStart) return HANDOFF
    const name = buf.toString('latin1', nameStart, i)
    i++
    while (i < stop && (buf[i] === SP || buf[i] === HTAB)) i++
    const valueStart = i
    let valueEnd = i
    while (i < stop) {
      const c = buf[i]!
      if (c === CR) break
      if ((c < SP && c !== HTAB) || c > 0x7e) return HANDOFF
      i++
      if (c !== SP && c !== HTAB) valueEnd = i
    }
    if (i + 2 > stop) return more
    if (buf[i + 1] !== LF) return HANDOFF
    i += 2
    if (rawHeaders.length >= limits.maxHeadersCount * 2) return HANDOFF
    const value = buf.toString('latin1', valueStart, valueEnd)
    const lower = name.toLowerCase()
    if (Object.hasOwn(headers, lower) || HANDOFF_HEADERS.has(lower)) return HANDOFF
    if (lower === 'connection') {
      // `Connection: upgrade` without an Upgrade header is still a protocol switch request.
      if (/(?:^|,)\s*upgrade\s*(?:,|$)/i.test(value)) return HANDOFF
      connection = value
    }
    if (lower === '__proto__') Object.defineProperty(headers, lower, { value, enumerable: true, writable: true, configurable: true })
    else headers[lower] = value
    rawHeaders.push(name, value)
  }
}

/** `HTTP/1.0\r\n` or `HTTP/1.1\r\n` (or as much of one as there is, when `to` is short). */
function isVersionPrefix(buf: Buffer, from: number, to: number): boolean {
  const expect = 'HTTP/1.'
  for (let k = 0; k < to - from; k++) {
    const c = buf[from + k]!
    if (k < 7) {
      if (c !== expect.charCodeAt(k)) return false
    } else if (k === 7) {
      if (c !== 0x30 && c !== 0x31) return false
    } else if (k === 8) {
      if (c !== CR) return false
    } else if (c !== LF) return false
  }
  return true
}

/** RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`. */
function keepsAlive(versionMinor: number, connection: string | undefined): boolean {
  if (connection === undefined) return versionMinor === 1
  const tokens = connection.toLowerCase()
  if (/(?:^|,)\s*close\s*(?:,|$)/.test(tokens)) return false
  return versionMinor === 1 || /(?:^|,)\s*keep-alive\s*(?:,|$)/.test(tokens)
}
