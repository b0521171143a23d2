// The part of a client's request and response the front door uses, named once. Three servers hand
// requests in: node:http (IncomingMessage/ServerResponse: bodies, upgrades, HTTP/1.1 over TLS),
// node:http2's core stream API (h2/server.ts: H2StreamRequest/H2StreamResponse) and the gateway's
// own HTTP/1.1 server side (h1/server/: EdgeRequest/EdgeResponse). Each is assignable to these types
// as it is, so the listeners pass them on without casts, and the data plane cannot come to depend
// on a member one of them lacks.
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'

/** What the client's socket tells about the client. */
export interface ClientSocket {
  readonly remoteAddress?: string | undefined
  /** The rest of the connection's ends, for an external authorizer's check (source and destination). */
  readonly remotePort?: number | undefined
  readonly localAddress?: string | undefined
  readonly localPort?: number | undefined
}

export interface ClientRequest {
  readonly method?: string | undefined
  /** The request target; the screen stage rewrites an absolute-form target to origin form. */
  url?: string | undefined
  readonly headers: IncomingHttpHeaders
  /** Alternating names and values as they arrived; trusted-hop marking appends to it. */
  readonly rawHeaders: string[]
  readonly httpVersion: string
  readonly httpVersionMajor: number
  readonly httpVersionMinor: number
  /** node:http lets go of it once the response is done: read it while the request is under way. */
  readonly socket: ClientSocket | null
  /** Some of the body was read: the request can no longer be sent to another pod. */
  readonly readableDidRead: boolean
}

/** Only an HTTP/2 request has one: its stream, which carries the body (none when its HEADERS frame ended it). */
export interface HasH2Stream {
  readonly stream: Readable & { readonly endAfterHeaders: boolean }
}

/** The stream a request's body arrives on: node:http's request is one; an HTTP/2 request's stream is. Our own server's requests have none. */
export function bodyStream(req: ClientRequest): Readable | undefined {
  if (req instanceof Readable) return req
  const stream = (req as Partial<HasH2Stream>).stream
  return stream instanceof Readable ? stream : undefined
}

/** The socket under an HTTP/1.1 response, corked while a response's parts are written together. */
export interface CorkableSocket {
  cork(): void
  uncork(): void
}

export interface ClientResponse {
  statusCode: number
  readonly headersSent: boolean
  readonly destroyed: boolean
  readonly writableFinished: boolean
  /** node:http's and ours: the body is being sent chunked (trailers can follow it). */
  readonly chunkedEncoding?: boolean
  /** node:http's HTTP/1.1 responses only. */
  readonly socket?: CorkableSocket | null
  /** HTTP/2 responses only: set when the answer cannot carry trailers, so its stream ends with its data. */
  noTrailers?: boolean
  setHeader(name: string, value: number | string | readonly string[]): unknown
  writeHead(statusCode: number, statusMessage?: string, headers?: OutgoingHttpHeaders | string[]): unknown
  write(chunk: Buffer, cb?: () => void): boolean
  addTrailers(headers: Record<string, string>): void
  end(): unknown
  end(chunk: string): unknown
  destroy(error?: Error): unknown
  on(event: 'close', listener: () => void): unknown
  once(event: 'drain', listener: () => void): unknown
}
