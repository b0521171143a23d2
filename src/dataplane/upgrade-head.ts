// The response headers an external authorizer adds for the client (Envoy's response_headers_to_add)
// on an upgraded connection: the pod's handshake answer (its 101) passes through the splice as
// bytes, so they are written into its head on the way, and everything after it passes as it came.
import { Transform } from 'node:stream'
import type { TransformCallback } from 'node:stream'
import type { HeaderSet } from '../model/snapshot.ts'

/** A head longer than this is not one the gateway edits: it passes as it came. */
const MAX_HEAD_BYTES = 64 * 1024

/** `head` (status line and header lines, without the blank line) with `set`, each replacing lines of its name. */
export function withResponseHeaders(head: string, set: readonly HeaderSet[]): string {
  const names = new Set(set.map((h) => h.lower))
  const lines = head.split('\r\n')
  const out = [lines[0]!]
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!
    const colon = line.indexOf(':')
    if (colon > 0 && names.has(line.slice(0, colon).trim().toLowerCase())) continue
    out.push(line)
  }
  for (const h of set) out.push(`${h.name}: ${h.value}`)
  return out.join('\r\n')
}

/** Passes bytes through, with `set` written into the first response head. */
export class ResponseHeadEditor extends Transform {
  private readonly set: readonly HeaderSet[]
  private pending: Buffer | undefined
  private done = false

  constructor(set: readonly HeaderSet[]) {
    super()
    this.set = set
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, cb: TransformCallback): void {
    if (this.done) return cb(null, chunk)
    const buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk])
    const end = buf.indexOf('\r\n\r\n')
    if (end < 0) {
      if (buf.length <= MAX_HEAD_BYTES) {
        this.pending = buf
        return cb()
      }
      this.done = true
      this.pending = undefined
      return cb(null, buf)
    }
    this.done = true
    this.pending = undefined
    cb(null, Buffer.concat([Buffer.from(withResponseHeaders(buf.toString('latin1', 0, end), this.set), 'latin1'), buf.subarray(end)]))
  }

  override _flush(cb: TransformCallback): void {
    cb(null, this.pending)
  }
}
