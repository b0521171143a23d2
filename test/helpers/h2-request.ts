// HTTP/2 requests over h2c prior knowledge, as a client sends them: through node:http2's client, or
// with a header block holding exactly the fields given, for requests that client will not send (it
// adds :authority itself to any request that has neither :authority nor Host).
//
// The exact form still lets node:http2's client run the connection (preface, SETTINGS, flow control,
// decoding the answer); only the request's HEADERS frame is replaced on its way to the socket, by a
// block encoded here as HPACK literals without indexing (RFC 7541 §6.2.2). Those leave the server's
// dynamic table untouched, but the client's encoder believes it added entries: one request per session.
import http2 from 'node:http2'
import net from 'node:net'
import { Duplex } from 'node:stream'

export interface H2Answer {
  /** 0 when the stream ended without a response. */
  status: number
  headers: http2.IncomingHttpHeaders
  body: string
  /** The stream's RST_STREAM code (0 when it ended normally). */
  resetCode: number
}

/** One request on a new h2c session; `exact`: send precisely `fields`, nothing added. */
export function h2Request(port: number, fields: ReadonlyArray<readonly [string, string]>, exact = false): Promise<H2Answer> {
  const url = `http://127.0.0.1:${port}`
  const session = exact
    ? http2.connect(url, { createConnection: () => new ReplaceHeaders(net.connect(port, '127.0.0.1'), headerBlock(fields)) })
    : http2.connect(url)
  session.on('error', () => {}) // a failed stream shows as its reset code; the session just closes
  return new Promise((resolve) => {
    const req = session.request(Object.fromEntries(fields), { endStream: true })
    let headers: http2.IncomingHttpHeaders = {}
    let body = ''
    req.setEncoding('utf8')
    req.on('response', (h) => (headers = h))
    req.on('data', (d: string) => (body += d))
    req.on('error', () => {})
    req.on('close', () => {
      resolve({ status: Number(headers[':status'] ?? 0), headers, body, resetCode: req.rstCode ?? 0 })
      session.close()
    })
  })
}

const PREFACE_BYTES = 24 // `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`
const FRAME_HEADER_BYTES = 9
const HEADERS = 0x1
const END_STREAM = 0x1
const END_HEADERS = 0x4

/**
 * A socket wrapper that passes everything through except the first HEADERS frame the client writes,
 * which it replaces by one carrying `block` (END_STREAM kept, no padding or priority).
 */
class ReplaceHeaders extends Duplex {
  private pending = Buffer.alloc(0)
  private prefaceLeft = PREFACE_BYTES
  private replaced = false
  private readonly socket: net.Socket
  private readonly block: Buffer

  constructor(socket: net.Socket, block: Buffer) {
    super()
    this.socket = socket
    this.block = block
    socket.on('data', (d: Buffer) => {
      if (!this.push(d)) socket.pause()
    })
    socket.on('end', () => this.push(null))
    socket.on('error', (err) => this.destroy(err))
    socket.on('close', () => this.destroy())
  }

  override _read(): void {
    this.socket.resume()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.socket.write(this.rewrite(chunk), done)
  }

  override _final(done: () => void): void {
    this.socket.end(done)
  }

  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    this.socket.destroy()
    done(err)
  }

  /** Whole frames pass (or are replaced) as soon as they are complete; a partial one waits. */
  private rewrite(chunk: Buffer): Buffer {
    if (this.replaced) return chunk
    let buf = Buffer.concat([this.pending, chunk])
    const out: Buffer[] = []
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, buf.length)
      out.push(buf.subarray(0, n))
      buf = buf.subarray(n)
      this.prefaceLeft -= n
    }
    while (!this.replaced && buf.length >= FRAME_HEADER_BYTES) {
      const length = buf.readUIntBE(0, 3)
      if (buf.length < FRAME_HEADER_BYTES + length) break
      const type = buf[3]!
      const flags = buf[4]!
      if (type === HEADERS) {
        // The fields the client encoded would continue in CONTINUATION frames, which would then follow ours.
        if ((flags & END_HEADERS) === 0) throw new Error('the client split its HEADERS frame; keep the request small')
        const head = Buffer.alloc(FRAME_HEADER_BYTES)
        head.writeUIntBE(this.block.length, 0, 3)
        head[3] = HEADERS
        head[4] = (flags & END_STREAM) | END_HEADERS
        buf.copy(head, 5, 5, 9) // stream id
        out.push(head, this.block)
        this.replaced = true
      } else out.push(buf.subarray(0, FRAME_HEADER_BYTES + length))
      buf = buf.subarray(FRAME_HEADER_BYTES + length)
    }
    if (this.replaced) out.push(buf)
    this.pending = this.replaced ? Buffer.alloc(0) : Buffer.from(buf)
    return Buffer.concat(out)
  }
}

/** Each field as a literal without indexing, new name, no Huffman coding (RFC 7541 §6.2.2). */
function headerBlock(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0x00]), hpackString(name), hpackString(value)]))
}

/** A string literal: H bit clear, the length as a 7-bit-prefix integer (RFC 7541 §5.1, §5.2). */
function hpackString(s: string): Buffer {
  const bytes = Buffer.from(s, 'latin1')
  const length: number[] = []
  let n = bytes.length
  if (n < 0x7f) length.push(n)
  else {
    length.push(0x7f)
    for (n -= 0x7f; n >= 0x80; n >>= 7) length.push((n & 0x7f) | 0x80)
    length.push(n)
  }
  return Buffer.concat([Buffer.from(length), bytes])
}
