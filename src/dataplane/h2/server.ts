// HTTP/2 requests from clients (h2 over TLS, h2c), served through node:http2's core stream API rather
// than its compatibility layer. The compatibility layer builds an Http2ServerRequest and an
// Http2ServerResponse per stream, each with its own listeners and a header map copied into the
// response; the front door needs a few fields of the one and a handful of calls on the other
// (client.ts). These two small objects are just that, over the stream itself (issue 19,
// docs/hot-path.md).
//
// The response follows the compatibility layer's framing, which gRPC depends on: the head leaves
// with the first data, or with the end; a response that ends before any data leaves as one HEADERS
// frame (a gRPC trailers-only answer); once data has gone out, trailers (grpc-status) can still
// follow, so the head is sent waiting for them.
import http2 from 'node:http2'
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2'
import type { ClientRequest, ClientResponse, ClientSocket } from '../client.ts'

const { NGHTTP2_INTERNAL_ERROR } = http2.constants

/** A client's HTTP/2 request: its HEADERS frame; the stream itself carries the body. */
export class H2StreamRequest implements ClientRequest {
  readonly method: string | undefined
  url: string | undefined
  readonly headers: IncomingHttpHeaders
  readonly rawHeaders: string[]
  readonly stream: ServerHttp2Stream

  constructor(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]) {
    this.stream = stream
    this.headers = headers
    this.rawHeaders = rawHeaders
    this.method = headers[':method'] as string | undefined
    this.url = headers[':path'] as string | undefined
  }

  get httpVersion(): string {
    return '2.0'
  }

  get httpVersionMajor(): number {
    return 2
  }

  get httpVersionMinor(): number {
    return 0
  }

  /** The session's socket (for the client's address); null once the session is gone. */
  get socket(): ClientSocket | null {
    const session = this.stream.session
    return session === undefined ? null : (session.socket as ClientSocket)
  }

  get readableDidRead(): boolean {
    return this.stream.readableDidRead
  }
}

type StreamWithResponse = ServerHttp2Stream & { response: H2StreamResponse }

/** The answer to one stream. */
export class H2StreamResponse implements ClientResponse {
  statusCode = 200
  /**
   * The answer will carry no trailers (an HTTP/1.1 pod's body with a Content-Length): its stream
   * ends with its last DATA frame, without waiting for trailers (a 'wantTrailers' turn and an empty
   * frame per stream).
   */
  noTrailers = false
  readonly stream: ServerHttp2Stream
  private readonly headers: OutgoingHttpHeaders = {}
  private trailers: Record<string, string> | undefined
  private closeListener: (() => void) | undefined

  constructor(stream: ServerHttp2Stream) {
    this.stream = stream
    ;(stream as StreamWithResponse).response = this
    // A stream the client resets reports it as an error: the 'close' that follows is what counts.
    stream.on('error', ignore)
  }

  get headersSent(): boolean {
    return this.stream.headersSent
  }

  get destroyed(): boolean {
    return this.stream.destroyed
  }

  get writableFinished(): boolean {
    return this.stream.writableFinished
  }

  setHeader(name: string, value: number | string | readonly string[]): void {
    this.headers[name.toLowerCase()] = value as string | string[]
  }

  /** A name given twice in a flat list (two Set-Cookie lines) keeps both values. */
  private appendHeader(name: string, value: string): void {
    const lower = name.toLowerCase()
    const prev = this.headers[lower]
    if (prev === undefined) this.headers[lower] = value
    else if (Array.isArray(prev)) prev.push(value)
    else this.headers[lower] = [String(prev), value]
  }

  /** The head with these headers added, sent now (as the compatibility layer's writeHead). */
  writeHead(statusCode: number, _statusMessage?: string, headers?: OutgoingHttpHeaders | string[]): this {
    this.statusCode = statusCode
    if (Array.isArray(headers)) for (let i = 0; i < headers.length; i += 2) this.appendHeader(headers[i]!, headers[i + 1]!)
    else if (headers !== undefined) for (const name in headers) this.setHeader(name, headers[name] as string)
    this.respond(false, !this.noTrailers)
    return this
  }

  write(chunk: Buffer, cb?: () => void): boolean {
    if (!this.stream.headersSent) this.respond(false, !this.noTrailers)
    if (this.stream.destroyed) return true
    return this.stream.write(chunk, cb)
  }

  addTrailers(headers: Record<string, string>): void {
    this.trailers = headers
  }

  end(chunk?: string): this {
    const stream = this.stream
    if (stream.destroyed) return this
    if (!stream.headersSent) {
      // Nothing sent yet: the head and the end leave together; with trailers, they follow the body.
      if (chunk === undefined && this.trailers === undefined) {
        this.respond(true, false)
        return this
      }
      // The whole body is here: trailers can only be the ones already added.
      this.respond(false, this.trailers !== undefined)
    }
    if (chunk === undefined) stream.end()
    else stream.end(chunk)
    return this
  }

  destroy(): void {
    // A cut stream: the client sees the response fail, not a short body.
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_INTERNAL_ERROR)
  }

  on(event: 'close', listener: () => void): this {
    if (event === 'close' && this.closeListener === undefined) {
      this.closeListener = listener
      this.stream.once('close', onStreamClose)
    }
    return this
  }

  once(event: 'drain', listener: () => void): this {
    this.stream.once(event, listener)
    return this
  }

  /** Expect: 100-continue, answered once the request may go on (the front door decides). */
  writeContinue(): void {
    if (!this.stream.headersSent && !this.stream.destroyed) this.stream.additionalHeaders({ ':status': 100 })
  }

  private respond(endStream: boolean, waitForTrailers: boolean): void {
    const stream = this.stream
    if (stream.headersSent || stream.destroyed) return
    const headers = this.headers
    headers[':status'] = this.statusCode
    try {
      // With data to follow, the stream waits for trailers when they may come: gRPC's follow the body.
      if (endStream) stream.respond(headers, END_STREAM)
      else if (waitForTrailers) {
        stream.on('wantTrailers', sendTrailers)
        stream.respond(headers, WAIT_FOR_TRAILERS)
      } else stream.respond(headers)
    } catch {
      // A header HTTP/2 refuses (a pod's connection-specific header the relay did not drop):
      // nothing valid can be sent, so the stream is reset rather than the process failing.
      stream.close(NGHTTP2_INTERNAL_ERROR)
    }
  }

  /** The stream is ready for trailers (its data has all been sent). */
  sendTrailers(): void {
    const stream = this.stream
    if (stream.destroyed) return
    stream.sendTrailers(this.trailers ?? {})
  }

  fireClose(): void {
    const l = this.closeListener
    if (l !== undefined) l.call(this)
  }
}

const END_STREAM = { endStream: true }
const WAIT_FOR_TRAILERS = { waitForTrailers: true }

function ignore(): void {}

function sendTrailers(this: StreamWithResponse): void {
  this.response.sendTrailers()
}

function onStreamClose(this: StreamWithResponse): void {
  this.response.fireClose()
}
