// An HTTP/1.1 response parser for the upstream side of the proxy (RFC 9112). Pure: bytes in,
// head/body/end out through a sink; the connection that feeds it does the I/O.
//
// Strict on purpose. A pod's response that is ambiguous about where it ends (two different
// Content-Lengths, Content-Length with Transfer-Encoding, obs-fold, control bytes in a header) is
// refused as a whole: relaying it could let one response bleed into the next one on the connection.

export type ResponseHeaders = Record<string, string | string[]>

export interface ResponseSink {
  onHead(status: number, statusText: string, headers: ResponseHeaders): void
  onBody(chunk: Buffer): void
  onEnd(trailers: ResponseHeaders | null): void
}

export class ResponseParseError extends Error {
  readonly code = 'UND_ERR_PROTOCOL'
}

/** Upper bound on a response head (status line and headers), and on chunked trailers. */
export const MAX_HEAD_BYTES = 64 * 1024
/** A chunk-size line with extensions longer than this is refused. */
const MAX_CHUNK_LINE = 4096

// Parser states (small integers: the switch below stays a jump table).
const State = {
  Head: 0,
  FixedBody: 1,
  ChunkSize: 2,
  ChunkData: 3,
  ChunkDataEnd: 4,
  Trailers: 5,
  UntilClose: 6,
  Done: 7,
} as const

const CRLFCRLF = '\r\n\r\n'

export class ResponseParser {
  private state: number = State.Done
  private head = ''
  private remaining = 0
  private line = ''
  private trailers: ResponseHeaders | null = null
  private headRequest = false
  /** The connection may carry another request after this response. */
  keepAlive = false
  /** Some byte of this response has arrived. */
  started = false

  /** Ready for the response to a new request; `headRequest`: a HEAD request (no body follows). */
  reset(headRequest: boolean): void {
    this.state = State.Head
    this.head = ''
    this.remaining = 0
    this.line = ''
    this.trailers = null
    this.headRequest = headRequest
    this.keepAlive = false
    this.started = false
  }

  get done(): boolean {
    return this.state === State.Done
  }

  /** The body runs until the connection closes. */
  get untilClose(): boolean {
    return this.state === State.UntilClose
  }

  /**
   * Feeds bytes. Returns the offset just past the end of the response when it completed within
   * `buf` (bytes after it were not asked for), or -1 when it needs more. Throws ResponseParseError.
   */
  execute(buf: Buffer, sink: ResponseSink): number {
    let pos = 0
    const len = buf.length
    if (len > 0) this.started = true
    while (pos < len) {
      switch (this.state) {
        case State.Head: {
          pos = this.readHead(buf, pos, sink)
          break
        }
        case State.FixedBody: {
          const n = Math.min(this.remaining, len - pos)
          sink.onBody(pos === 0 && n === len ? buf : buf.subarray(pos, pos + n))
          pos += n
          this.remaining -= n
          if (this.remaining === 0) this.finish(sink, null)
          break
        }
        case State.ChunkSize: {
          pos = this.readChunkSize(buf, pos)
          break
        }
        case State.ChunkData: {
          const n = Math.min(this.remaining, len - pos)
          sink.onBody(buf.subarray(pos, pos + n))
          pos += n
          this.remaining -= n
          if (this.remaining === 0) {
            this.state = State.ChunkDataEnd
            this.remaining = 2
          }
          break
        }
        case State.ChunkDataEnd: {
          // The CRLF after a chunk's data may arrive split across reads.
          const want = this.remaining === 2 ? 13 : 10
          if (buf[pos] !== want) throw new ResponseParseError('chunked body: missing CRLF after chunk data')
          pos++
          if (--this.remaining === 0) this.state = State.ChunkSize
          break
        }
        case State.Trailers: {
          pos = this.readTrailers(buf, pos, sink)
          break
        }
        case State.UntilClose: {
          sink.onBody(pos === 0 ? buf : buf.subarray(pos))
          pos = len
          break
        }
        case State.Done:
          return pos
      }
      if (this.state === State.Done) return pos
    }
    return this.state === State.Done ? pos : -1
  }

  /** The connection ended: completes a close-delimited body; anything else was cut short. */
  eof(sink: ResponseSink): void {
    if (this.state === State.UntilClose) return this.finish(sink, null)
    if (this.state !== State.Done) throw new ResponseParseError('upstream closed the connection in the middle of a response')
  }

  private finish(sink: ResponseSink, trailers: ResponseHeaders | null): void {
    this.state = State.Done
    sink.onEnd(trailers)
  }

  private readHead(buf: Buffer, pos: number, sink: ResponseSink): number {
    let end: number
    let text: string
    if (this.head === '') {
      end = buf.indexOf(CRLFCRLF, pos, 'latin1')
      if (end >= 0) {
        if (end - pos > MAX_HEAD_BYTES) throw headTooLarge()
        text = buf.toString('latin1', pos, end)
        pos = end + 4
      } else {
        this.head = buf.toString('latin1', pos, buf.length)
        if (this.head.length > MAX_HEAD_BYTES) throw headTooLarge()
        return buf.length
      }
    } else {
      const before = this.head.length
      this.head += buf.toString('latin1', pos, buf.length)
      end = this.head.indexOf(CRLFCRLF, Math.max(0, before - 3))
      if (end < 0) {
        if (this.head.length > MAX_HEAD_BYTES) throw headTooLarge()
        return buf.length
      }
      if (end > MAX_HEAD_BYTES) throw headTooLarge()
      text = this.head.slice(0, end)
      pos = pos + (end + 4 - before)
      this.head = ''
    }
    this.onHeadText(text, sink)
    return pos
  }

  private onHeadText(text: string, sink: ResponseSink): void {
    const lineEnd = text.indexOf('\r\n')
    const statusLine = lineEnd < 0 ? text : text.slice(0, lineEnd)
    // "HTTP/1.x NNN[ reason]"
    if (statusLine.length < 12 || !statusLine.startsWith('HTTP/1.') || statusLine.charCodeAt(8) !== 32) throw new ResponseParseError(`malformed status line: ${JSON.stringify(statusLine.slice(0, 64))}`)
    const minor = statusLine.charCodeAt(7) - 48
    const status = digit(statusLine, 9) * 100 + digit(statusLine, 10) * 10 + digit(statusLine, 11)
    if ((minor !== 0 && minor !== 1) || Number.isNaN(status) || status < 100 || (statusLine.length > 12 && statusLine.charCodeAt(12) !== 32)) {
      throw new ResponseParseError(`malformed status line: ${JSON.stringify(statusLine.slice(0, 64))}`)
    }
    const statusText = statusLine.length > 13 ? statusLine.slice(13) : ''
    if (hasControlChar(statusText, 0, statusText.length)) throw new ResponseParseError('control character in status line')
    const headers: ResponseHeaders = {}
    if (lineEnd >= 0) parseFields(text, lineEnd + 2, headers)

    if (status < 200) {
      // 101 answers an upgrade, which never goes through here; other 1xx precede the real response.
      if (status === 101) throw new ResponseParseError('101 Switching Protocols for a request that did not ask to upgrade')
      this.state = State.Head
      return
    }
    const connection = headers['connection']
    const close = connection !== undefined && hasToken(connection, 'close')
    this.keepAlive = minor === 1 && !close
    const te = headers['transfer-encoding']
    const cl = headers['content-length']
    if (this.headRequest || status === 204 || status === 304) {
      sink.onHead(status, statusText, headers)
      this.finish(sink, null)
      return
    }
    if (te !== undefined) {
      if (cl !== undefined) throw new ResponseParseError('response has both Content-Length and Transfer-Encoding')
      const codings = (typeof te === 'string' ? te : te.join(',')).toLowerCase().split(',')
      const last = codings[codings.length - 1]!.trim()
      let chunkedCount = 0
      for (const c of codings) if (c.trim() === 'chunked') chunkedCount++
      if (last === 'chunked' && chunkedCount === 1) {
        this.state = State.ChunkSize
        this.line = ''
      } else if (chunkedCount === 0) {
        this.state = State.UntilClose
        this.keepAlive = false
      } else throw new ResponseParseError(`invalid Transfer-Encoding: ${JSON.stringify(typeof te === 'string' ? te : te.join(', '))}`)
      sink.onHead(status, statusText, headers)
      return
    }
    if (cl !== undefined) {
      const length = contentLength(cl)
      sink.onHead(status, statusText, headers)
      if (length === 0) this.finish(sink, null)
      else {
        this.state = State.FixedBody
        this.remaining = length
      }
      return
    }
    this.state = State.UntilClose
    this.keepAlive = false
    sink.onHead(status, statusText, headers)
  }

  private readChunkSize(buf: Buffer, pos: number): number {
    const nl = buf.indexOf(10, pos)
    if (nl < 0) {
      this.line += buf.toString('latin1', pos, buf.length)
      if (this.line.length > MAX_CHUNK_LINE) throw new ResponseParseError('chunked body: chunk-size line too long')
      return buf.length
    }
    const line = this.line + buf.toString('latin1', pos, nl)
    this.line = ''
    if (line.length > MAX_CHUNK_LINE) throw new ResponseParseError('chunked body: chunk-size line too long')
    if (line.charCodeAt(line.length - 1) !== 13) throw new ResponseParseError('chunked body: chunk-size line does not end in CRLF')
    let size = 0
    let i = 0
    for (; i < line.length - 1; i++) {
      const h = hexValue(line.charCodeAt(i))
      if (h < 0) break
      if (i >= 12) throw new ResponseParseError('chunked body: chunk size too large')
      size = size * 16 + h
    }
    if (i === 0) throw new ResponseParseError('chunked body: missing chunk size')
    const c = line.charCodeAt(i)
    // After the digits: CR, or a chunk extension (which we ignore), possibly after whitespace.
    if (i !== line.length - 1 && c !== 59 /* ; */ && c !== 32 && c !== 9) throw new ResponseParseError('chunked body: malformed chunk size')
    if (hasControlChar(line, i, line.length - 1)) throw new ResponseParseError('control character in chunk extension')
    if (size === 0) {
      this.state = State.Trailers
      this.line = ''
    } else {
      this.state = State.ChunkData
      this.remaining = size
    }
    return nl + 1
  }

  private readTrailers(buf: Buffer, pos: number, sink: ResponseSink): number {
    // Usually just the final CRLF; trailers (gRPC-web, Server-Timing) are rare.
    const before = this.line.length
    this.line += buf.toString('latin1', pos, buf.length)
    const text = this.line
    if (text.startsWith('\r\n')) {
      this.line = ''
      this.finish(sink, null)
      return pos + 2 - before
    }
    const end = text.indexOf(CRLFCRLF)
    if (end < 0) {
      if (text.length > MAX_HEAD_BYTES) throw new ResponseParseError(`response trailers are larger than ${MAX_HEAD_BYTES} bytes`)
      return buf.length
    }
    const trailers: ResponseHeaders = {}
    parseFields(text.slice(0, end + 2), 0, trailers)
    this.line = ''
    this.finish(sink, trailers)
    return pos + end + 4 - before
  }
}

function headTooLarge(): ResponseParseError {
  return new ResponseParseError(`response head is larger than ${MAX_HEAD_BYTES} bytes`)
}

function digit(s: string, i: number): number {
  const c = s.charCodeAt(i) - 48
  return c >= 0 && c <= 9 ? c : NaN
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  if (c >= 97 && c <= 102) return c - 87
  if (c >= 65 && c <= 70) return c - 55
  return -1
}

/** `text` from `from` holds field lines separated by CRLF (the last may end without one). */
function parseFields(text: string, from: number, into: ResponseHeaders): void {
  // One pass per line over indices of `text`, with no per-line substring: this runs for every header
  // of every response.
  const len = text.length
  let start = from
  while (start < len) {
    let end = text.indexOf('\r\n', start)
    if (end < 0) end = len
    if (end === start) {
      start += 2
      continue
    }
    const c0 = text.charCodeAt(start)
    if (c0 === 32 || c0 === 9) throw new ResponseParseError('obsolete line folding in a response header')
    let colon = start
    let upper = false
    for (; colon < end; colon++) {
      const c = text.charCodeAt(colon)
      if (c === 58 /* : */) break
      if (c >= 65 && c <= 90) upper = true
      else if (!isTokenChar(c)) throw new ResponseParseError(`invalid character in response header name ${JSON.stringify(text.slice(start, Math.min(end, start + 64)))}`)
    }
    if (colon === start || colon === end) throw new ResponseParseError(`malformed response header line: ${JSON.stringify(text.slice(start, Math.min(end, start + 64)))}`)
    let a = colon + 1
    let b = end
    while (a < b && (text.charCodeAt(a) === 32 || text.charCodeAt(a) === 9)) a++
    while (b > a && (text.charCodeAt(b - 1) === 32 || text.charCodeAt(b - 1) === 9)) b--
    if (hasControlChar(text, a, b)) throw new ResponseParseError(`control character in response header ${text.slice(start, colon).toLowerCase()}`)
    const name = knownName(text, start, colon) ?? (upper ? text.slice(start, colon).toLowerCase() : text.slice(start, colon))
    const value = text.slice(a, b)
    const prev = into[name]
    if (prev === undefined) into[name] = value
    else if (typeof prev === 'string') into[name] = [prev, value]
    else prev.push(value)
    start = end + 2
  }
}

// Names most responses carry, lower-case. A name found here is used as this constant: no slice, no
// toLowerCase, and the headers object's keyed load and store then skip the string-table lookup a
// freshly made key needs (~10% of this parser's time at a fixed rate, by perf).
const KNOWN_NAMES = [
  'age', 'date', 'etag', 'vary', 'server', 'expires', 'trailer', 'location', 'connection', 'keep-alive', 'set-cookie',
  'content-type', 'grpc-status', 'x-request-id', 'grpc-message', 'cache-control', 'last-modified', 'accept-ranges',
  'content-length', 'content-encoding', 'transfer-encoding', 'x-content-type-options', 'access-control-allow-origin',
]
const KNOWN_BY_LENGTH: string[][] = []
for (const name of KNOWN_NAMES) (KNOWN_BY_LENGTH[name.length] ??= []).push(name)

/** The constant for text[start, end) when it is a known name in any case (the caller checked it is a token). */
function knownName(text: string, start: number, end: number): string | undefined {
  const candidates = KNOWN_BY_LENGTH[end - start]
  if (candidates === undefined) return undefined
  next: for (const name of candidates) {
    for (let i = 0; i < name.length; i++) {
      // Token characters: OR-ing 0x20 lower-cases a letter and leaves '-' and digits as they are.
      if ((text.charCodeAt(start + i) | 0x20) !== name.charCodeAt(i)) continue next
    }
    return name
  }
  return undefined
}

/** Field values may hold visible characters, SP, HTAB and obs-text; never CR, LF, NUL or other controls. */
function hasControlChar(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if ((c < 32 && c !== 9) || c === 127) return true
  }
  return false
}

// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
const TOKEN = new Uint8Array(128)
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1
for (let c = 48; c <= 57; c++) TOKEN[c] = 1
for (let c = 65; c <= 90; c++) TOKEN[c] = 1
for (let c = 97; c <= 122; c++) TOKEN[c] = 1

function isTokenChar(c: number): boolean {
  return c < 128 && TOKEN[c] === 1
}

function hasToken(v: string | string[], token: string): boolean {
  // The usual value is the one token itself ("keep-alive" or "close").
  if (typeof v === 'string' && v.indexOf(',') < 0) return v.length === token.length ? v.toLowerCase() === token : v.trim().toLowerCase() === token
  const all = typeof v === 'string' ? v : v.join(',')
  for (const t of all.split(',')) if (t.trim().toLowerCase() === token) return true
  return false
}

/** Every Content-Length value (repeated, or a list) must be the same decimal number. */
function contentLength(v: string | string[]): number {
  if (typeof v === 'string' && v.length > 0 && v.length <= 15) {
    // The usual case: one plain number.
    let n = 0
    let i = 0
    for (; i < v.length; i++) {
      const c = v.charCodeAt(i) - 48
      if (c < 0 || c > 9) break
      n = n * 10 + c
    }
    if (i === v.length) return n
  }
  let out = -1
  for (const field of typeof v === 'string' ? [v] : v) {
    for (const part of field.split(',')) {
      const s = part.trim()
      if (s.length === 0 || s.length > 15) throw new ResponseParseError(`invalid Content-Length: ${JSON.stringify(field)}`)
      let n = 0
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i) - 48
        if (c < 0 || c > 9) throw new ResponseParseError(`invalid Content-Length: ${JSON.stringify(field)}`)
        n = n * 10 + c
      }
      if (out >= 0 && n !== out) throw new ResponseParseError('response has Content-Length values that differ')
      out = n
    }
  }
  return out
}
