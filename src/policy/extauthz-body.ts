// The start of a request's body for the authorizer (Envoy's with_request_body, partial messages
// allowed as Kourier sets it): up to --extauthz-max-request-body-bytes of a body whose Content-Length
// is known, read from the request stream and put back at its front, so the pod still gets every
// byte. Bodies of unknown length (chunked, HTTP/2 without Content-Length) and those the client sends
// only after 100 Continue are not waited for: their check carries the headers alone.
import { Readable } from 'node:stream'
import type { ClientRequest } from '../dataplane/client.ts'

export interface ReadBody {
  readonly body: Buffer
  /** Less than the whole body (it is longer than the limit, or did not all come in time). */
  readonly partial: boolean
}

/** undefined at once when the body is not read for the authorizer (see above). */
export function readBodyStart(req: ClientRequest, max: number, waitMs: number): Promise<ReadBody> | undefined {
  if (max <= 0 || !(req instanceof Readable)) return undefined
  const cl = req.headers['content-length']
  if (cl === undefined || !/^\d+$/.test(cl) || cl === '0') return undefined
  if (req.headers.expect !== undefined) return undefined
  const length = Number(cl)
  const want = Math.min(length, max)
  const stream = req
  return new Promise<ReadBody>((resolve) => {
    const chunks: Buffer[] = []
    let got = 0
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      stream.off('readable', onReadable)
      stream.off('close', finish)
      stream.off('error', finish)
      const body = Buffer.concat(chunks, got)
      // Back at the front of the stream for the forward stage (unshift goes around the body watch
      // in guard.ts, so --max-body-size counts these bytes once).
      if (got > 0 && !stream.destroyed) stream.unshift(body)
      resolve({ body, partial: got < length })
    }
    const onReadable = (): void => {
      // Exactly as many bytes as are buffered (and no more than wanted): read(n) with n at most the
      // buffered length never ends the stream, so the bytes can be put back before anyone reads on.
      while (got < want) {
        const n = Math.min(want - got, stream.readableLength)
        if (n <= 0) break
        const chunk = stream.read(n) as Buffer | null
        if (chunk === null) break
        chunks.push(chunk)
        got += chunk.length
      }
      if (got >= want) finish()
    }
    // A client slow to send its body gets its check with what came within the authorizer's timeout.
    const timer = setTimeout(finish, waitMs)
    stream.on('readable', onReadable)
    stream.once('close', finish)
    stream.once('error', finish)
  })
}
