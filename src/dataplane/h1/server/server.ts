// The gateway's own HTTP/1.1 server side, for the plain listeners' bodyless requests. node:http's
// server costs the tail here: in the bench's fixed-rate run a bare node:http proxy added 1.3 ms of
// p99 where a bare `net` one added 0.38 ms, HAProxy's 0.45 (bench/RESULTS.md, docs/hot-path.md); and
// it keeps ~10 KB of parser per connection, which is most of what 10,000 held requests cost.
//
// A connection starts here. Each request head is read by request-head.ts; one outside its strict,
// bodyless subset hands the connection (with the bytes not yet used) to node:http for the rest of its
// life, so bodies, Expect, upgrades and every malformed request are answered by llhttp and the guard
// exactly as before. Requests are answered one at a time, in order (pipelined ones wait unread).
import type net from 'node:net'
import { EdgeRequest } from './request.ts'
import { EdgeResponse } from './response.ts'
import type { ResponseConnection } from './response.ts'
import { HANDOFF, INCOMPLETE, parseRequestHead } from './request-head.ts'
import type { HeadLimits } from './request-head.ts'
import { adoptWithSharedBuffer, pauseAsStream } from './user-buffer-socket.ts'
import { READ_BUFFER, keepable } from '../read-buffer.ts'

export interface EdgeH1Options extends HeadLimits {
  /** Time a client has to send a request head, from its first byte (or the connection's start). */
  readonly headersTimeoutMs: number
  /** An idle keep-alive connection is closed after this long. */
  readonly keepAliveTimeoutMs: number
  /** Called for each request, as node:http's 'request' event. */
  readonly onRequest: (req: EdgeRequest, res: EdgeResponse) => void
  /** The connection leaves us: node:http serves it from `rest` (bytes read, not yet used) on. */
  readonly handOff: (socket: net.Socket, rest: Buffer | undefined) => void
  /** A request head did not arrive within headersTimeoutMs: answer it (node:http answers 408 too). */
  readonly onHeadersTimeout: (socket: net.Socket) => void
}

/** Pipelined bytes read ahead while a response is in progress, before reading pauses. */
const MAX_READ_AHEAD = 64 * 1024
/** How often idle and slow connections are looked at (no timer re-armed per request). */
const SWEEP_MS = 1_000

export class EdgeH1Server {
  /** Read at each request head and sweep, so new limits (setLimits) apply from the next one. */
  opts: EdgeH1Options
  readonly connections = new Set<ClientConnection>()
  /** `connection: keep-alive` and the idle time a client may count on, as node:http sends them. */
  readonly keepAliveHeader: string
  /** No new request is read once set: each connection closes after its current response. */
  closing = false
  private sweeper: NodeJS.Timeout | undefined

  constructor(opts: EdgeH1Options) {
    this.opts = opts
    this.keepAliveHeader = `connection: keep-alive\r\nkeep-alive: timeout=${Math.floor(opts.keepAliveTimeoutMs / 1000)}\r\n`
  }

  /** Serves a new connection whose first bytes (`first`, possibly none yet) were read already. */
  accept(socket: net.Socket, first: Buffer | undefined): void {
    if (this.closing) {
      socket.destroy()
      return
    }
    let c: ClientConnection | undefined
    // A TLS socket's reads are decrypted in JS-visible chunks by its TLSWrap: it stays on stream reads.
    const encrypted = (socket as net.Socket & { encrypted?: boolean }).encrypted === true
    const adopted = encrypted ? undefined : adoptWithSharedBuffer(socket, READ_BUFFER, (n, shared) => c!.received(n, shared))
    if (adopted) {
      if (adopted.buffered) first = first ? Buffer.concat([first, adopted.buffered]) : adopted.buffered
      c = new ClientConnection(this, adopted.socket, true)
    } else c = new ClientConnection(this, socket, false)
    this.connections.add(c)
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), SWEEP_MS)
      this.sweeper.unref()
    }
    c.start(first)
  }

  /** New header limits and timeout (config-edge-gateway): from each connection's next request head. */
  setLimits(limits: HeadLimits & { readonly headersTimeoutMs: number }): void {
    this.opts = { ...this.opts, maxHeaderSize: limits.maxHeaderSize, maxHeadersCount: limits.maxHeadersCount, headersTimeoutMs: limits.headersTimeoutMs }
  }

  forget(c: ClientConnection): void {
    this.connections.delete(c)
  }

  /** Stops reading requests: idle connections close now, busy ones after their response. */
  close(): void {
    this.closing = true
    for (const c of this.connections) if (c.idle) c.socket.destroy()
    if (this.sweeper) clearInterval(this.sweeper)
    this.sweeper = undefined
  }

  closeAll(): void {
    this.close()
    for (const c of this.connections) c.socket.destroy()
  }

  private sweep(): void {
    const now = performance.now()
    const { headersTimeoutMs, keepAliveTimeoutMs } = this.opts
    for (const c of this.connections) {
      if (c.headSince > 0 && now - c.headSince > headersTimeoutMs) c.headersTimedOut()
      else if (c.idleSince > 0 && now - c.idleSince > keepAliveTimeoutMs) c.socket.destroy()
    }
    if (this.connections.size === 0 && this.sweeper) {
      clearInterval(this.sweeper)
      this.sweeper = undefined
    }
  }
}

class ClientConnection implements ResponseConnection {
  readonly socket: net.Socket
  private readonly server: EdgeH1Server
  /** Bytes read and not yet used: a partial head, or pipelined requests. */
  private pending: Buffer | undefined
  private current: EdgeResponse | undefined
  /** A head has started arriving (ms, performance.now), 0 if none is under way. */
  headSince = 0
  /** Idle between requests since (ms), 0 while a request is under way. */
  idleSince = 0
  private parsing = false
  private gone = false
  /** Reads come through received() (a shared buffer), not 'data' events. */
  private readonly sharedReads: boolean
  /** node:http has the connection: reads that still reach received() go to it as stream data. */
  private handedOff = false
  private readonly onData = (chunk: Buffer): void => this.read(chunk)
  private readonly onEnd = (): void => {
    this.socket.destroy()
  }
  private readonly onClose = (): void => this.lost()
  private readonly onError = (): void => {
    this.socket.destroy()
  }

  constructor(server: EdgeH1Server, socket: net.Socket, sharedReads: boolean) {
    this.server = server
    this.socket = socket
    this.sharedReads = sharedReads
  }

  get keepAliveHeader(): string {
    return this.server.keepAliveHeader
  }

  get closing(): boolean {
    return this.server.closing
  }

  /** No request in progress and no byte of one read. */
  get idle(): boolean {
    return this.current === undefined && this.pending === undefined
  }

  start(first: Buffer | undefined): void {
    const s = this.socket
    if (!this.sharedReads) s.on('data', this.onData)
    // A client that half-closes has gone: node:http (allowHalfOpen off) treats it the same way.
    s.on('end', this.onEnd)
    s.on('close', this.onClose)
    s.on('error', this.onError)
    this.headSince = performance.now()
    if (first) this.read(first)
    s.resume()
  }

  /** A read into the shared buffer: bytes [0, n), valid only during this call. */
  received(n: number, shared: Buffer): boolean {
    // node:http consumes the socket's native handle itself; what it leaves to stream reads (an
    // upgraded connection's bytes) arrives here and goes on as stream data.
    if (this.handedOff) return this.socket.push(Buffer.from(shared.subarray(0, n)))
    if (this.gone) return true
    if (this.pending !== undefined || this.current !== undefined || this.parsing) {
      this.read(Buffer.from(shared.subarray(0, n)))
      return true
    }
    // The usual case: a read holding whole request heads, parsed where it lies (user-buffer-socket.ts
    // for why reads land in READ_BUFFER). Bytes that must wait are copied out, here or in handOff().
    this.pending = shared.subarray(0, n)
    this.parse()
    // A partial head or pipelined requests behind one in progress must outlive this read.
    if (this.pending !== undefined) this.pending = keepable(this.pending)
    return true
  }

  private read(chunk: Buffer): void {
    // After the last response (or a 408) nothing more is read: a client that keeps sending must not grow memory.
    if (this.gone) return
    this.pending = this.pending ? Buffer.concat([this.pending, chunk]) : chunk
    if (this.current) {
      if (this.pending.length > MAX_READ_AHEAD) this.socket.pause()
      return
    }
    this.parse()
  }

  /** Reads and starts requests while none is in progress. */
  private parse(): void {
    // A response that ends within onRequest calls back into parse(): the loop below goes on instead.
    if (this.parsing) return
    this.parsing = true
    try {
      while (this.current === undefined && !this.gone) {
        const buf = this.pending
        if (!buf) {
          this.idleSince = performance.now()
          this.headSince = 0
          return
        }
        const v = parseRequestHead(buf, 0, buf.length, this.server.opts)
        if (v === INCOMPLETE) {
          if (this.headSince === 0) this.headSince = performance.now()
          this.idleSince = 0
          return
        }
        if (v === HANDOFF) {
          this.handOff()
          return
        }
        this.pending = v.end < buf.length ? buf.subarray(v.end) : undefined
        this.headSince = 0
        this.idleSince = 0
        const req = new EdgeRequest(v, this.socket)
        const res = new EdgeResponse(this, req, v.keepAlive)
        this.current = res
        try {
          this.server.opts.onRequest(req, res)
        } catch {
          // The data plane answers its own errors (500 internal-error); should anything still
          // escape, it costs this connection, never the process.
          this.socket.destroy()
          return
        }
      }
    } finally {
      this.parsing = false
    }
  }

  responseDone(res: EdgeResponse, reusable: boolean): void {
    if (this.current !== res) return
    this.current = undefined
    if (!reusable || this.server.closing) {
      // The response's bytes are queued on the socket: end() sends them, then the FIN.
      this.gone = true
      const socket = this.socket
      socket.end(() => socket.destroy())
      return
    }
    if (this.socket.isPaused()) this.socket.resume()
    this.parse()
  }

  headersTimedOut(): void {
    this.headSince = 0
    this.gone = true
    this.server.opts.onHeadersTimeout(this.socket)
  }

  private handOff(): void {
    const s = this.socket
    this.gone = true
    this.server.forget(this)
    s.off('data', this.onData)
    s.off('end', this.onEnd)
    s.off('close', this.onClose)
    s.off('error', this.onError)
    s.pause()
    this.handedOff = true
    if (this.sharedReads) pauseAsStream(s)
    // Bytes still in the shared buffer are copied: node:http reads them from the stream later (on the
    // next tick today), and no view of the shared buffer may outlive the read it came from.
    const rest = this.pending !== undefined ? keepable(this.pending) : undefined
    this.pending = undefined
    this.server.opts.handOff(s, rest)
  }

  private lost(): void {
    this.gone = true
    this.server.forget(this)
    const res = this.current
    this.current = undefined
    res?.closed()
  }
}
