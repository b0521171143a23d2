// The response object of the gateway's own HTTP/1.1 server side (server.ts). It is a ClientResponse
// (../../client.ts): the part of node:http's ServerResponse that the front door uses, with the same
// meaning, so a request is answered the same whichever server parsed it.
import { EventEmitter } from 'node:events'
import { STATUS_CODES } from 'node:http'
import type net from 'node:net'
import type { EdgeRequest } from './request.ts'
import { putHeaderLine, putLatin1 } from '../head-bytes.ts'

/** What a response needs of its connection. */
export interface ResponseConnection {
  readonly socket: net.Socket
  readonly keepAliveHeader: string
  /** The listener is closing (a drain): this response is the connection's last. */
  readonly closing: boolean
  /** The response's last bytes are handed to the socket: the connection may read the next request. */
  responseDone(res: EdgeResponse, reusable: boolean): void
}

/** Header values with CR, LF or other control bytes would split the head: refused as node:http does. */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/
const INVALID_NAME = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/

/** The Date header line, built at most once a second. */
let dateSecond = 0
let dateLine = ''
function dateHeaderLine(): string {
  const now = Date.now()
  const second = Math.floor(now / 1000)
  if (second !== dateSecond) {
    dateSecond = second
    dateLine = `date: ${new Date(now).toUTCString()}\r\n`
  }
  return dateLine
}

/** Status lines with the standard reason phrase, built once each. */
const STATUS_LINES = new Map<number, string>()
function statusLine(status: number, message: string | undefined): string {
  const standard = STATUS_CODES[status]
  if (message !== undefined && message !== standard) return `HTTP/1.1 ${status} ${message}\r\n`
  let line = STATUS_LINES.get(status)
  if (line === undefined) STATUS_LINES.set(status, (line = `HTTP/1.1 ${status} ${standard ?? 'unknown'}\r\n`))
  return line
}

const CHUNKED_LINE = 'transfer-encoding: chunked\r\n'
const CLOSE_LINE = 'connection: close\r\n'
/** Below this, a body chunk is copied into the same buffer as the head (one write, no writev). */
const COPY_WITH_HEAD = 16 * 1024

type HeaderInput = Record<string, string | number | readonly string[] | undefined> | readonly string[]

function invalidChar(what: string): Error {
  return Object.assign(new TypeError(`Invalid character in ${what}`), { code: 'ERR_INVALID_CHAR' })
}

/** Which of the headers given to writeHead the connection's framing replaces: none is sent as given. */
function framingHeader(name: string): boolean {
  const n = name.length
  return (n === 10 && name.toLowerCase() === 'connection') || (n === 17 && name.toLowerCase() === 'transfer-encoding')
}

export class EdgeResponse extends EventEmitter {
  statusCode = 200
  headersSent = false
  destroyed = false
  writableFinished = false
  writableEnded = false
  chunkedEncoding = false
  private readonly conn: ResponseConnection
  private readonly noBody: boolean
  private readonly http10: boolean
  private readonly keepAliveAsked: boolean
  /** setHeader()'s headers, until writeHead sends them. */
  private preset: string[] | undefined
  /**
   * The head, kept by writeHead as its parts and written into the same buffer as the first body
   * bytes: no intermediate strings, one write. `fields` is a flat [name, value, ...] list.
   */
  private headPending = false
  private headLength = 0
  private firstLine = ''
  private fields: readonly string[] = []
  private extraFields: string[] | undefined
  /** date, framing and connection lines, in one string. */
  private tailLines = ''
  private trailers: Record<string, string> | undefined
  /** The body ends when the connection closes (HTTP/1.0 without a length): no reuse after it. */
  private closeDelimited = false
  private lastResponse = false
  private waitingForDrain = false
  /** The socket is corked until the end of this tick (see write()). */
  private corked = false
  private closeEmitted = false

  constructor(conn: ResponseConnection, req: EdgeRequest, keepAlive: boolean) {
    super()
    this.conn = conn
    this.noBody = req.method === 'HEAD'
    this.http10 = req.httpVersionMinor === 0
    this.keepAliveAsked = keepAlive
  }

  setHeader(name: string, value: string | number | readonly string[]): this {
    if (this.headersSent) throw Object.assign(new Error('Cannot set headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' })
    const list = (this.preset ??= [])
    if (typeof value === 'object') for (const one of value) list.push(name, one)
    else list.push(name, String(value))
    return this
  }

  /** writeHead(status, headers) or writeHead(status, statusMessage, headers), headers an object or a flat [name, value, ...] list. */
  writeHead(status: number, messageOrHeaders?: string | HeaderInput, maybeHeaders?: HeaderInput): this {
    if (this.headersSent) throw Object.assign(new Error('Cannot write headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' })
    const message = typeof messageOrHeaders === 'string' ? messageOrHeaders : undefined
    const given = typeof messageOrHeaders === 'string' || messageOrHeaders === undefined ? maybeHeaders : messageOrHeaders
    if (message !== undefined && INVALID_VALUE.test(message)) throw invalidChar('statusMessage')
    // A flat list (the Exchange's) is sent as it is; an object (reply()'s) is flattened once.
    let fields: readonly string[]
    if (given === undefined) fields = []
    else if (Array.isArray(given)) fields = given as readonly string[]
    else {
      const flat: string[] = []
      const obj = given as Record<string, string | number | readonly string[] | undefined>
      for (const name in obj) {
        const v = obj[name]
        if (v === undefined) continue
        if (typeof v === 'object') for (const one of v) flat.push(name, one)
        else flat.push(name, String(v))
      }
      fields = flat
    }
    let length = 0
    let hasLength = false
    let hasDate = false
    let connectionClose = false
    for (let pass = 0; pass < 2; pass++) {
      const list = pass === 0 ? this.preset : fields
      if (list === undefined) continue
      for (let i = 0; i + 1 < list.length; i += 2) {
        const name = list[i]!
        const value = list[i + 1]!
        if (INVALID_NAME.test(name) || INVALID_VALUE.test(value)) throw invalidChar(`header content [${JSON.stringify(name)}]`)
        const n = name.length
        if (n === 14 && name.toLowerCase() === 'content-length') hasLength = true
        else if (n === 4 && name.toLowerCase() === 'date') hasDate = true
        else if (framingHeader(name)) {
          if (n === 10 && value.toLowerCase().includes('close')) connectionClose = true
          continue
        }
        length += n + value.length + 4
      }
    }
    // RFC 9112 §6.3: these never have a body, whatever their headers say.
    const bodiless = this.noBody || status === 204 || status === 304 || (status >= 100 && status < 200)
    let framing = ''
    if (!hasLength && !bodiless) {
      if (!this.http10) {
        this.chunkedEncoding = true
        framing = CHUNKED_LINE
      } else this.closeDelimited = true
    }
    this.lastResponse = connectionClose || this.closeDelimited || !this.keepAliveAsked || this.conn.closing
    this.tailLines = (hasDate ? '' : dateHeaderLine()) + framing + (this.lastResponse ? CLOSE_LINE : this.conn.keepAliveHeader)
    this.firstLine = statusLine(status, message)
    this.fields = fields
    this.extraFields = this.preset
    this.headLength = this.firstLine.length + length + this.tailLines.length + 2
    this.statusCode = status
    this.headPending = true
    this.headersSent = true
    return this
  }

  write(chunk: Buffer | string, cb?: () => void): boolean {
    // A chunked answer ends with a terminator of its own: corked for the rest of the tick, a pod's
    // head, body and end (which our client delivers together) leave in one write, not two. A
    // streamed chunk is never held past the tick.
    if (this.chunkedEncoding && !this.corked && !this.destroyed) {
      this.corked = true
      this.conn.socket.cork()
      process.nextTick(uncork, this)
    }
    const ok = this.send(chunk, false, cb)
    // The socket's 'drain' is the response's, as for node:http (the exchange pauses the pod on false).
    if (!ok && !this.waitingForDrain && !this.destroyed) {
      this.waitingForDrain = true
      this.conn.socket.once('drain', () => {
        this.waitingForDrain = false
        this.emit('drain')
      })
    }
    return ok
  }

  addTrailers(trailers: Record<string, string>): void {
    this.trailers = { ...this.trailers, ...trailers }
  }

  end(chunk?: Buffer | string | (() => void), cb?: () => void): this {
    if (typeof chunk === 'function') {
      cb = chunk
      chunk = undefined
    }
    if (this.writableEnded || this.destroyed) return this
    if (!this.headersSent) this.writeHead(this.statusCode)
    this.writableEnded = true
    const finished = (err?: Error | null): void => {
      // A socket that failed before the last byte left: the client has not had the response.
      if (!err) {
        this.writableFinished = true
        this.emit('finish')
        if (cb) cb()
      }
      this.closed()
    }
    // The last bytes (head, body, chunked terminator and trailers, whichever are left) in one write.
    this.send(chunk ?? '', true, finished)
    this.conn.responseDone(this, !this.lastResponse)
    return this
  }

  destroy(_err?: Error): this {
    if (this.destroyed) return this
    this.destroyed = true
    this.conn.socket.destroy()
    return this
  }

  /** End of the tick write() corked the socket for. */
  uncork(): void {
    this.corked = false
    this.conn.socket.uncork()
  }

  /** The response was written out, or its connection closed first: 'close', once (as node:http). */
  closed(): void {
    if (this.closeEmitted) return
    this.closeEmitted = true
    if (!this.writableFinished) this.destroyed = true
    this.emit('close')
  }

  /**
   * Writes `chunk` framed for this response, with the head first if it is still pending, and (when
   * `last`) the chunked terminator. Returns the socket's answer. With nothing at all to write, `cb`
   * runs on the next tick.
   */
  private send(chunk: Buffer | string, last: boolean, cb?: (err?: Error | null) => void): boolean {
    if (this.destroyed || (this.writableEnded && !last)) return false
    if (!this.headersSent) this.writeHead(this.statusCode)
    const socket = this.conn.socket
    const body = this.noBody ? 0 : typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length
    const chunked = this.chunkedEncoding
    let terminator = ''
    if (last && chunked) {
      terminator = '0\r\n'
      if (this.trailers) for (const name in this.trailers) terminator += `${name}: ${this.trailers[name]}\r\n`
      terminator += '\r\n'
    }
    const sizeLine = chunked && body > 0 ? `${body.toString(16)}\r\n` : ''
    const framing = sizeLine.length + (sizeLine ? 2 : 0) + terminator.length
    const head = this.headPending ? this.headLength : 0
    if (head + body + framing === 0) {
      if (cb) process.nextTick(cb)
      return true
    }
    // A body chunk with nothing before or after it (a streamed, length-framed body): as it is.
    if (head + framing === 0) return typeof chunk === 'string' ? socket.write(chunk, 'utf8', cb) : socket.write(chunk, cb)
    if (body > COPY_WITH_HEAD) {
      // A large chunk is written as it is, beside a small buffer for what goes before and after.
      socket.cork()
      if (head + sizeLine.length > 0) socket.write(this.frame(sizeLine, 0))
      const after = sizeLine ? '\r\n' + terminator : terminator
      let ok = after ? socket.write(chunk) : socket.write(chunk, cb)
      if (after) ok = socket.write(after, 'latin1', cb)
      socket.uncork()
      return ok
    }
    const buf = this.frame(sizeLine, body + framing - sizeLine.length)
    let off = buf.length - (body + framing - sizeLine.length)
    if (body > 0) {
      off += typeof chunk === 'string' ? buf.write(chunk, off, 'utf8') : chunk.copy(buf, off)
      if (sizeLine) off = putLatin1(buf, off, '\r\n')
    }
    if (terminator) putLatin1(buf, off, terminator)
    return socket.write(buf, cb)
  }

  /** A buffer holding the pending head (if any) and `sizeLine`, with `room` bytes left at its end. */
  private frame(sizeLine: string, room: number): Buffer {
    const head = this.headPending ? this.headLength : 0
    const buf = Buffer.allocUnsafe(head + sizeLine.length + room)
    let off = 0
    if (this.headPending) {
      this.headPending = false
      off = putLatin1(buf, off, this.firstLine)
      if (this.extraFields) off = putFields(buf, off, this.extraFields)
      off = putFields(buf, off, this.fields)
      off = putLatin1(buf, off, this.tailLines)
      buf[off++] = 13
      buf[off++] = 10
      this.fields = []
      this.extraFields = undefined
    }
    if (sizeLine) putLatin1(buf, off, sizeLine)
    return buf
  }

}

function uncork(res: EdgeResponse): void {
  res.uncork()
}

/** Writes each pair of `list` (framing headers left out) at `off`; returns the new offset. */
function putFields(buf: Buffer, off: number, list: readonly string[]): number {
  for (let i = 0; i + 1 < list.length; i += 2) if (!framingHeader(list[i]!)) off = putHeaderLine(buf, off, list[i]!, list[i + 1]!)
  return off
}
