// The request object of the gateway's own HTTP/1.1 server side (server.ts). It is a ClientRequest
// (../../client.ts): the part of node:http's IncomingMessage that the front door uses, with the same
// meaning. Bodyless requests only: a request with a body is node:http's.
import type net from 'node:net'
import type { RequestHead } from './request-head.ts'

export class EdgeRequest {
  readonly method: string
  url: string
  readonly headers: Record<string, string>
  readonly rawHeaders: string[]
  readonly httpVersion: string
  readonly httpVersionMajor = 1
  readonly httpVersionMinor: number
  readonly socket: net.Socket
  /** No body: nothing is ever read from it (forward-http.ts checks before retrying on another pod). */
  readonly readableDidRead = false

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
