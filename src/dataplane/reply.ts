// Responses the gateway makes itself. Each says why, in the body and in X-Edge-Reason, so an operator
// can tell a gateway 503 from an application's 503 at a glance.
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { ClientResponse } from './client.ts'

export const REASON_HEADER = 'x-edge-reason'

/** Short machine-readable reasons; the body carries the human detail. */
export type Reason =
  | 'host-not-found'
  | 'path-not-found'
  | 'bad-request'
  | 'no-backend'
  | 'no-runtime'
  | 'revision-failed'
  | 'upstream-connect-failed'
  | 'upstream-reset'
  | 'upstream-bad-response'
  | 'upstream-tls-failed'
  | 'upstream-timeout'
  | 'request-timeout'
  | 'response-start-timeout'
  | 'idle-timeout'
  | 'cold-start-timeout'
  | 'queue-full'
  | 'https-redirect'
  | 'probe'
  | 'draining'
  | 'internal-error'
  // The policy stage (policy/).
  | 'rate-limited'
  | 'extauthz-denied'
  | 'extauthz-unavailable'
  // Hostile or oversized input (guard.ts, data-plane.ts handle()).
  | 'uri-too-long'
  | 'headers-too-large'
  | 'header-timeout'
  | 'body-too-large'

/**
 * An answer the gateway gives itself, decided by a stage of the front door and written by the one
 * function that writes answers for the arrival's kind (reply for requests and streams, rawReply
 * for upgrades).
 */
export interface Answer {
  readonly status: number
  readonly reason: Reason
  /** What the client reads in the body: what happened and, where it can, what to do. */
  readonly detail: string
  readonly headers?: Readonly<Record<string, string | string[]>>
  /** The request's framing cannot be trusted (the screen's answers): an HTTP/1 connection closes after it. */
  readonly close?: boolean
  /**
   * The body exactly as someone else wrote it (an authorizer's denial), instead of `detail`; its
   * headers (content type among them) come in `headers`. `detail` still goes to the logs.
   */
  readonly body?: Buffer
}

export function answerOf(status: number, reason: Reason, detail: string, headers?: Record<string, string>): Answer {
  return headers ? { status, reason, detail, headers } : { status, reason, detail }
}

export function reply(
  res: ClientResponse,
  status: number,
  reason: Reason,
  detail: string,
  extraHeaders?: Readonly<Record<string, string | string[]>>,
  given?: Buffer,
): void {
  if (res.headersSent) {
    // Too late to say anything clean: cut the stream so the client sees a failure, not a short body.
    res.destroy()
    return
  }
  const body = given ?? `${detail}\n`
  const headers: Record<string, string | number | string[]> = {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    ...extraHeaders,
    // Ours whatever the extra headers say: the length of what is sent, and why.
    'content-length': typeof body === 'string' ? Buffer.byteLength(body) : body.length,
    [REASON_HEADER]: reason,
  }
  res.writeHead(status, undefined, headers)
  if (typeof body === 'string') res.end(body)
  else {
    if (body.length > 0) res.write(body)
    res.end()
  }
}

/**
 * The same answer written as raw HTTP/1.1 on a socket that has no response object (a WebSocket
 * upgrade, a request the parser refused), then the connection closed once it is flushed: a
 * half-open socket would linger.
 */
export function rawReply(socket: Duplex, status: number, reason: Reason, detail: string, extraHeaders?: Readonly<Record<string, string | string[]>>, given?: Buffer): void {
  if (socket.destroyed) return
  const body = given ?? Buffer.from(`${detail}\n`)
  let extra = ''
  let typed = false
  if (extraHeaders) {
    for (const name in extraHeaders) {
      const v = extraHeaders[name]!
      if (name === 'content-type') typed = true
      if (typeof v === 'string') extra += `${name}: ${v}\r\n`
      else for (const one of v) extra += `${name}: ${one}\r\n`
    }
  }
  const type = typed ? '' : 'content-type: text/plain; charset=utf-8\r\n'
  socket.write(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${type}content-length: ${body.length}\r\n` +
      `cache-control: no-store\r\n${REASON_HEADER}: ${reason}\r\n${extra}connection: close\r\n\r\n`,
  )
  socket.end(body, () => socket.destroy())
}
