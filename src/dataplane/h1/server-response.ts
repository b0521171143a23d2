// The request and response objects of the gateway's own HTTP/1.1 server side (server.ts). They carry
// the part of node:http's IncomingMessage and ServerResponse that the data plane uses (guard.ts,
// data-plane.ts, exchange.ts, reply.ts), with the same meaning, so a request is handled the same
// whichever server parsed it. Bodyless requests only: a request with a body is node:http's.
import { EventEmitter } from 'node:events'
import { STATUS_CODES } from 'node:http'
import type net from 'node:net'
import type { RequestHead } from './request-head.ts'

/** What a response needs of its connection. */
export interface ResponseConnection {
  readonly socket: net.Socket
  readonly keepAliveHeader: string
  /** The gateway is shutting down, or the client asked: this response is the connection's last. */
  readonly closing: boolean
  /** The response's last byte is written (or it was cut): the connection may read the next request. */
  responseDone(res: EdgeResponse, reusable: boolean): void
}

export class EdgeRequest {
  readonly method: string
  url: string
  readonly headers: Record<string, string>
  readonly rawHeaders: string[]
  readonly httpVersion: string
  readonly httpVersionMajor = 1
  readonly httpVersionMinor: number
  readonly socket: net.Socket
  /** No body: nothing is ever read from it (exchange.ts checks before retrying on another pod). */
  readonly readableDidRead = false
  readonly complete = true

  constructor(head: RequestHead, socket: net.Socket) {
    this.method = head.method
    this.url = head.url
    this.headers = head.headers
    this.rawHeaders = head.rawHeaders
    this.httpVersionMinor = head.versionMinor
    this.httpVersion = head.versionMinor === 1 ? '1.1' : '1.0'
    this.socket = socket
  }
}

/** Header values with CR, LF or other control bytes would split the head: refused as node:http does. */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/
const INVALID_NAME = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]/

/** The Date header, built at most once a second. */
let dateSecond = 0
let dateValue = ''
function httpDate(): string {
  const now = Date.now()
  const second = Math.floor(now / 1000)
  if (second !== dateSecond) {
    dateSecond = second
    dateValue = new Date(now).toUTCString()
  }
  return dateValue
}

type HeaderInput = Record<string, string | number | readonly string[] | undefined> | readonly string[]

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
  private preset: Array<[string, string]> | undefined
  /** The head, built by writeHead and sent with the first body bytes (one write, not two). */
  private head: string | undefined
  private trailers: Record<string, string> | undefined
  /** The body ends when the connection closes (HTTP/1.0 without a length): no reuse after it. */
  private closeDelimited = false
  private lastResponse = false

  constructor(conn: ResponseConnection, req: EdgeRequest, keepAlive: boolean) {
    super()
    this.conn = conn
    this.noBody = req.method === 'HEAD'
    this.http10 = req.httpVersionMinor === 0
    this.keepAliveAsked = keepAlive
  }

  setHeader(name: string, value: string | number | readonly string[]): this {
    if (this.headersSent) throw Object.assign(new Error('Cannot set headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' })
    ;(this.preset ??= []).push([name, String(value)])
    return this
  }

  /** writeHead(status, headers) or writeHead(status, statusMessage, headers), headers an object or a flat [name, value, ...] list. */
  writeHead(status: number, messageOrHeaders?: string | HeaderInput, maybeHeaders?: HeaderInput): this {
    if (this.headersSent) throw Object.assign(new Error('Cannot write headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' })
    const message = typeof messageOrHeaders === 'string' ? messageOrHeaders : undefined
    const given = typeof messageOrHeaders === 'string' || messageOrHeaders === undefined ? maybeHeaders : messageOrHeaders
    if (message !== undefined && INVALID_VALUE.test(message)) throw Object.assign(new TypeError('Invalid character in statusMessage'), { code: 'ERR_INVALID_CHAR' })
    this.statusCode = status
    let lines = ''
    let hasLength = false
    let hasDate = false
    let connectionClose = false
    const add = (name: string, value: string): void => {
      if (INVALID_NAME.test(name) || INVALID_VALUE.test(value)) throw Object.assign(new TypeError(`Invalid character in header content [${JSON.stringify(name)}]`), { code: 'ERR_INVALID_CHAR' })
      const n = name.length
      if (n === 14 && name.toLowerCase() === 'content-length') hasLength = true
      else if (n === 4 && name.toLowerCase() === 'date') hasDate = true
      else if (n === 10 && name.toLowerCase() === 'connection') {
        if (value.toLowerCase().includes('close')) connectionClose = true
        return // the connection's own framing decides this header (below)
      } else if (n === 17 && name.toLowerCase() === 'transfer-encoding') return
      lines += `${name}: ${value}\r\n`
    }
    if (this.preset) for (const [n, v] of this.preset) add(n, v)
    if (Array.isArray(given)) for (let i = 0; i + 1 < given.length; i += 2) add(given[i]!, given[i + 1]!)
    else if (given) {
      const obj = given as Record<string, string | number | readonly string[] | undefined>
      for (const name in obj) {
        const v = obj[name]
        if (v === undefined) continue
        if (typeof v === 'object') for (const one of v) add(name, one)
        else add(name, String(v))
      }
    }
    if (!hasDate) lines += `date: ${httpDate()}\r\n`
    // RFC 9112 §6.3: these never have a body, whatever their headers say.
    const bodiless = this.noBody || status === 204 || status === 304 || (status >= 100 && status < 200)
    if (!hasLength && !bodiless) {
      if (!this.http10) {
        this.chunkedEncoding = true
        lines += 'transfer-encoding: chunked\r\n'
      } else this.closeDelimited = true
    }
    this.lastResponse = connectionClose || this.closeDelimited || !this.keepAliveAsked || this.conn.closing
    lines += this.lastResponse ? 'connection: close\r\n' : this.conn.keepAliveHeader
    this.head = `HTTP/1.1 ${status} ${message ?? STATUS_CODES[status] ?? 'unknown'}\r\n${lines}\r\n`
    this.headersSent = true
    return this
  }

  write(chunk: Buffer | string, cb?: () => void): boolean {
    const ok = this.send(chunk, cb)
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

  private waitingForDrain = false

  private send(chunk: Buffer | string, cb?: () => void): boolean {
    if (this.destroyed || this.writableEnded) return false
    if (!this.headersSent) this.writeHead(this.statusCode)
    const socket = this.conn.socket
    if (this.noBody) {
      if (this.head) this.flushHead()
      if (cb) process.nextTick(cb)
      return true
    }
    const length = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length
    if (length === 0) {
      if (this.head) this.flushHead()
      if (cb) process.nextTick(cb)
      return true
    }
    if (this.chunkedEncoding) {
      socket.cork()
      socket.write(this.takeHead() + length.toString(16) + '\r\n', 'latin1')
      socket.write(chunk)
      const ok = socket.write('\r\n', 'latin1', cb)
      process.nextTick(uncork, socket)
      return ok
    }
    if (this.head !== undefined) {
      socket.cork()
      socket.write(this.takeHead(), 'latin1')
      const ok = socket.write(chunk, cb)
      process.nextTick(uncork, socket)
      return ok
    }
    return socket.write(chunk, cb)
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
    const socket = this.conn.socket
    // Head, body and end leave in one write.
    socket.cork()
    if (chunk !== undefined && chunk.length > 0) this.send(chunk)
    this.writableEnded = true
    let tail = this.takeHead()
    if (this.chunkedEncoding) {
      tail += '0\r\n'
      if (this.trailers) for (const name in this.trailers) tail += `${name}: ${this.trailers[name]}\r\n`
      tail += '\r\n'
    }
    const finished = (err?: Error | null): void => {
      // A socket that failed before the last byte left: the client has not had the response.
      if (!err) {
        this.writableFinished = true
        this.emit('finish')
        if (cb) cb()
      }
      this.closed()
    }
    socket.write(tail, 'latin1', finished)
    socket.uncork()
    const reusable = !this.lastResponse
    this.conn.responseDone(this, reusable)
    return this
  }

  destroy(_err?: Error): this {
    if (this.destroyed) return this
    this.destroyed = true
    this.conn.socket.destroy()
    return this
  }

  get socket(): net.Socket {
    return this.conn.socket
  }

  private closeEmitted = false
  /** The response was written out, or its connection closed first: 'close', once (as node:http). */
  closed(): void {
    if (this.closeEmitted) return
    this.closeEmitted = true
    if (!this.writableFinished) this.destroyed = true
    this.emit('close')
  }

  private flushHead(): void {
    this.conn.socket.write(this.takeHead(), 'latin1')
  }

  private takeHead(): string {
    const h = this.head
    if (h === undefined) return ''
    this.head = undefined
    return h
  }
}

function uncork(socket: net.Socket): void {
  socket.uncork()
}
