// The forward stage for HTTP/1.1 Upgrade (WebSocket) through any route: the two sockets are spliced
// byte for byte (no re-framing). The client gets its 101 from the pod itself, so a dead upstream
// yields an HTTP error, never a 101 followed by a close.
//
// Admission (admit.ts) holds, throttles, times and re-routes an upgrade as it does a request: it
// waits for a pod of a revision at zero within the cold-start budget; until the pod's first byte the
// revision's timeoutSeconds and responseStartTimeoutSeconds apply (a pod that accepts the connection
// and never answers gets a 504); once the pod has answered it is a stream, closed only after
// idleTimeoutSeconds (else --stream-idle-timeout) without a byte in either direction, as gRPC and
// event streams are.
import net from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { Admission } from './admit.ts'
import type { AdmitContext } from './admit.ts'
import type { ClientRequest } from './client.ts'
import type { Resolution } from './resolve.ts'
import { upstreamHeadersFor } from './upstream-headers.ts'
import { rawReply } from './reply.ts'
import type { Reason } from './reply.ts'
import { UPSTREAM_CONNECT_TIMEOUT_MS } from './pools.ts'
import { noteAnswer } from './request-record.ts'
import { isTlsFailure } from './upstream-tls.ts'
import { ResponseHeadEditor } from './upgrade-head.ts'
import type { RequestRecord } from './request-record.ts'

/** What forwarding an upgrade needs beyond admission. */
export interface UpgradeContext extends AdmitContext {
  readonly log: Logger
}

export class Upgrade extends Admission {
  declare readonly ctx: UpgradeContext
  private readonly socket: Duplex
  private readonly head: Buffer
  private readonly secure: boolean
  private upstream: net.Socket | undefined
  /** The handshake's answer is in the request count (see count()). */
  private counted = false
  /** The pod's first bytes while fewer than a status line's first 12 (`HTTP/1.1 101`) have come. */
  private statusBytes: Buffer | undefined

  constructor(ctx: UpgradeContext, req: ClientRequest, socket: Duplex, head: Buffer, resolution: Resolution, secure: boolean, record: RequestRecord) {
    super(ctx, req, resolution, record)
    this.socket = socket
    this.head = head
    this.secure = secure
  }

  /** TimedState: once the pod has answered, the connection is a stream (no total timeout, an idle one). */
  get streaming(): boolean {
    return this.responded
  }

  protected override get gone(): boolean {
    return this.finished || this.socket.destroyed
  }

  start(): void {
    const socket = this.socket
    socket.on('error', () => socket.destroy())
    socket.once('close', () => this.finish())
    this.admit()
  }

  // ---- the splice ----

  protected forward(host: string, port: number, origin: string): void {
    const req = this.req
    const t = this.record.trace
    const headers = upstreamHeadersFor(req, this.resolution, this.secure, this.backend.revision !== undefined, true, t === undefined ? undefined : t.dispatch(host, port), this.record.edits)
    let lines = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`
    for (let i = 0; i < headers.length; i += 2) lines += `${headers[i]}: ${headers[i + 1]}\r\n`
    lines += '\r\n'
    const socket = this.socket
    // system-internal-tls: admission chose the pod's TLS side (an https:// origin); the splice is the same.
    const secure = origin.startsWith('https:')
    const upstream = secure ? this.connectTls(host, port) : net.connect({ host, port, noDelay: true })
    this.upstream = upstream
    let connected = false
    /** Between the pod and the client when the client's answer gets headers (see below). */
    let editor: ResponseHeadEditor | undefined
    /** The pod ended (or closed): so does the client's side, after what the editor still holds. */
    const endClient = (): void => {
      if (editor === undefined || editor.readableEnded) return void socket.end()
      editor.once('end', () => socket.end())
      if (!editor.writableEnded) editor.end()
    }
    // Handlers of a connection given up for a retry must not touch the one that replaced it.
    const current = (): boolean => this.upstream === upstream
    upstream.setTimeout(UPSTREAM_CONNECT_TIMEOUT_MS)
    upstream.once('timeout', () => {
      if (!connected) upstream.destroy(Object.assign(new Error(`no connection within ${UPSTREAM_CONNECT_TIMEOUT_MS / 1000}s`), { code: 'ETIMEDOUT' }))
    })
    upstream.once(secure ? 'secureConnect' : 'connect', () => {
      connected = true
      t?.event('connected')
      upstream.setTimeout(0)
      upstream.write(lines)
      if (this.head.length > 0) upstream.write(this.head)
      // The pod's end is handled below: before its first byte the client gets a 502, not a close.
      // An authorizer's headers for the client go into the pod's 101 on the way.
      const respond = this.record.edits?.respond
      if (respond !== undefined && respond.length > 0) {
        editor = new ResponseHeadEditor(respond)
        upstream.pipe(editor).pipe(socket as NodeJS.WritableStream, { end: false })
      } else upstream.pipe(socket as NodeJS.WritableStream, { end: false })
      ;(socket as NodeJS.ReadableStream).pipe(upstream)
      // Activity listeners only once both pipes exist: a 'data' listener makes a stream flow, and
      // bytes it read before its pipe would be lost.
      upstream.on('data', (chunk: Buffer) => {
        this.lastActivity = performance.now()
        this.record.bytesOut += chunk.length
        if (!this.responded) {
          this.responded = true
          this.record.firstByteAt = this.lastActivity
          this.rearm()
        }
        if (!this.counted) this.countPodStatus(chunk)
      })
      socket.on('data', (chunk: Buffer) => {
        this.lastActivity = performance.now()
        this.record.bytesIn += chunk.length
      })
    })
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (!current()) return
      const why = err.code ?? err.message
      t?.failed(why)
      if (!connected) {
        // Nothing reached the pod: try again on a pod that is ready (a new connection replaces this one).
        this.upstream = undefined
        // A pod whose TLS cannot be trusted is a configuration fault: no retry.
        if (this.ctx.upstreamTls !== undefined && isTlsFailure(err)) return this.fail(502, 'upstream-tls-failed', this.ctx.upstreamTls.failed(this.backend.key, `${host}:${port}`, err))
        if (this.retryElsewhere()) return
        if (err.code === 'ETIMEDOUT') this.fail(504, 'upstream-timeout', `connecting to ${host}:${port} timed out`)
        else this.fail(502, 'upstream-connect-failed', `cannot connect to upstream ${host}:${port}: ${why}`)
      } else if (!this.responded) this.fail(502, 'upstream-reset', `upstream ${host}:${port} closed the connection before responding (${why})`)
      else socket.destroy()
    })
    upstream.once('end', () => {
      if (current() && this.responded) endClient()
    })
    upstream.once('close', () => {
      if (!current()) return
      this.releasePod()
      if (!this.responded) this.fail(502, 'upstream-reset', `upstream ${host}:${port} closed the connection before responding`)
      else {
        this.countPodStatus(undefined)
        endClient()
      }
    })
    this.ctx.log.debug({ host, port, url: req.url }, 'upgrade')
  }

  private connectTls(host: string, port: number): net.Socket {
    const upstream = this.ctx.upstreamTls
    if (upstream === undefined) throw new Error(`no TLS settings to dial ${host}:${port}`)
    return upstream.connect(host, port, this.backend.namespace, ['http/1.1'])
  }

  // ---- endings ----

  /**
   * Ends the upgrade with an HTTP answer if the pod has not started answering yet, else by closing
   * both sides (nothing HTTP can be said inside a spliced connection).
   */
  fail(status: number, reason: Reason, detail: string, headers?: Record<string, string>): void {
    if (this.finished) return
    if (this.inQueue) this.leaveQueue()
    if (this.responded) {
      this.ctx.log.debug({ url: this.req.url, revision: this.backend.revision?.key, reason }, `upgraded connection closed: ${detail}`)
      this.socket.destroy()
    } else {
      noteAnswer(this.record, detail)
      rawReply(this.socket, status, reason, detail, headers)
      this.count(status, reason)
    }
    this.upstream?.destroy()
    this.finish()
  }

  /**
   * Counts the handshake's answer once, in edge_requests_total and the access log: the pod's status,
   * the gateway's own answer, or 499 when the client left before either.
   */
  private count(status: number, reason: Reason | undefined): void {
    if (this.counted) return
    this.counted = true
    this.record.status = status
    this.record.reason = reason
    this.ctx.answered(this.record)
  }

  /**
   * Counts the pod's answer by its status line once its first 12 bytes are in: a status line may
   * arrive in pieces. `chunk` undefined: the pod is done, count what came (502 if not a status line).
   */
  private countPodStatus(chunk: Buffer | undefined): void {
    const bytes = chunk === undefined ? (this.statusBytes ?? Buffer.alloc(0)) : this.statusBytes ? Buffer.concat([this.statusBytes, chunk]) : chunk
    if (chunk !== undefined && bytes.length < STATUS_PREFIX_BYTES) {
      // Kept as a copy: the stream's chunk is not ours to keep (concat made one already).
      this.statusBytes = bytes === chunk ? Buffer.from(chunk) : bytes
      return
    }
    this.statusBytes = undefined
    this.count(statusOfHead(bytes), undefined)
  }

  private releasePod(): void {
    if (!this.pod) return
    this.throttler!.release(this.pod)
    this.pod = undefined
  }

  /** The client went away, or the upgrade failed: release everything exactly once. */
  private finish(): void {
    if (!this.settle()) return
    this.upstream?.destroy()
    this.count(499, undefined)
    this.ctx.left(this.record)
  }
}

/** `HTTP/1.1 101`: the part of a status line the count reads. */
const STATUS_PREFIX_BYTES = 12

/**
 * The status of the response head the pod's first bytes start (`HTTP/1.1 101 ...`), for the request
 * count; 502 when they are not one, or too few (the client still gets them as they came).
 */
function statusOfHead(chunk: Buffer): number {
  if (chunk.length < STATUS_PREFIX_BYTES) return 502
  const line = chunk.toString('latin1', 0, STATUS_PREFIX_BYTES)
  return /^HTTP\/1\.[01] [1-5]\d\d$/.test(line) ? Number(line.slice(9)) : 502
}
