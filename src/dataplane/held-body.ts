// How many bytes of a request's body the gateway may hold in memory while the request waits for a
// pod: what the held-body byte budgets (--max-held-body-bytes, -per-namespace) count. The gateway
// never buffers a held body itself; it stops reading, and what it read before it stopped is the
// cost. Pure: one rule for requests and HTTP/2 streams, asked only when a request has to wait.
import { bodyStream } from './client.ts'
import type { ClientRequest, HasH2Stream } from './client.ts'

/**
 * node:http, when nobody reads a request, stops the socket once the request's buffer passes its
 * high-water mark; by then it has taken up to two 64 KiB socket reads (measured: 128,000 bytes of a
 * 10 MiB body were in the request's buffer, and no more came).
 */
export const H1_READ_AHEAD = 128 * 1024

/** An HTTP/2 stream's receive window: the client may send no more until the gateway reads. */
export const H2_READ_AHEAD = 65_535

/**
 * The body's Content-Length, at most the read-ahead of its protocol; the whole read-ahead when the
 * length is unknown (chunked, or an HTTP/2 stream without content-length); 0 without a body.
 */
export function heldBodyBytes(req: ClientRequest): number {
  if (req.httpVersionMajor === 2) {
    if ((req as unknown as HasH2Stream).stream.endAfterHeaders) return 0
    return declaredUpTo(req, H2_READ_AHEAD, H2_READ_AHEAD)
  }
  // Our own HTTP/1.1 server takes only bodyless requests (sniff.ts hands the rest to node:http).
  if (bodyStream(req) === undefined) return 0
  if (req.headers['transfer-encoding'] !== undefined) return H1_READ_AHEAD
  return declaredUpTo(req, H1_READ_AHEAD, 0)
}

/** Content-Length up to `max`; `unknown` when the request declares none. */
function declaredUpTo(req: ClientRequest, max: number, unknown: number): number {
  const cl = req.headers['content-length']
  if (cl === undefined) return unknown
  // The screen stage has refused a Content-Length that is not one whole number.
  const n = Number(cl)
  return n < max ? n : max
}
