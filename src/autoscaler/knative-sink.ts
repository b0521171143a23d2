// Websocket client to the Knative autoscaler's stat server (reference: activator-autoscaler.md §2.1).
// Behaves like Knative's durable sending connection: one binary frame per batch, reconnect forever
// with backoff, ping keep-alive. Like the activator, a batch that cannot be sent right now is dropped,
// not buffered: stale concurrency is worse than none, and the next tick carries fresh numbers.

import WebSocket from 'ws'
import { encodeWireStatMessages } from './stat-encoding.ts'
import type { StatEntry } from './stat-encoding.ts'

export interface SinkLog {
  info(o: object, msg?: string): void
  warn(o: object, msg?: string): void
}

export interface Backoff {
  initialMs: number
  factor: number
  maxMs: number
}

export interface KnativeStatSinkOptions {
  /** e.g. ws://autoscaler.knative-serving.svc.cluster.local:8080 */
  url: string
  log: SinkLog
  /** Knative uses 3 s. */
  handshakeTimeoutMs?: number
  /** Knative starts at 100 ms and multiplies by 1.3. */
  backoff?: Backoff
  /** A connection with no pong for this long is dead; pings go out every third of it. Knative: 10 s. */
  pongTimeoutMs?: number
  /** Drop batches while this much is already queued on the socket (a stalled autoscaler). */
  maxBufferedBytes?: number
  /**
   * While the autoscaler stays unreachable, one summary line after this long, then at doubling
   * intervals up to 10 minutes, instead of a line per attempt. Default 60 s.
   */
  summaryAfterMs?: number
}

/** The longest gap between two summaries of an outage. */
const MAX_SUMMARY_MS = 600_000

export interface SinkStats {
  sent: number
  dropped: number
  connects: number
  errors: number
}

const DEFAULT_BACKOFF: Backoff = { initialMs: 100, factor: 1.3, maxMs: 5000 }

export class KnativeStatSink {
  private readonly url: string
  private readonly log: SinkLog
  private readonly handshakeTimeoutMs: number
  private readonly backoff: Backoff
  private readonly pongTimeoutMs: number
  private readonly summaryAfterMs: number
  /** The current outage: when its first failure was, failures since the last line, the next summary. */
  private outage: { since: number; attempts: number; unlogged: number; lastError: string; nextAt: number; gapMs: number } | undefined
  private readonly maxBufferedBytes: number
  private readonly counters: SinkStats = { sent: 0, dropped: 0, connects: 0, errors: 0 }

  private ws: WebSocket | undefined
  private isOpen = false
  private started = false
  private closing = false
  private failedAttempts = 0
  private reconnectTimer: NodeJS.Timeout | undefined
  private pingTimer: NodeJS.Timeout | undefined
  private lastPongAt = 0

  constructor(opts: KnativeStatSinkOptions) {
    this.url = opts.url
    this.log = opts.log
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 3000
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF
    this.pongTimeoutMs = opts.pongTimeoutMs ?? 10_000
    this.summaryAfterMs = opts.summaryAfterMs ?? 60_000
    this.maxBufferedBytes = opts.maxBufferedBytes ?? 1 << 20
  }

  /** True while the websocket is open. Exported as edge_autoscaler_connected; unlike Knative's activator, readiness does not follow it (warm traffic must not suffer an autoscaler outage). */
  get connected(): boolean {
    return this.isOpen
  }

  get stats(): Readonly<SinkStats> {
    return { ...this.counters }
  }

  start(): void {
    if (this.started || this.closing) return
    this.started = true
    this.connect()
  }

  /** Sends one binary frame. Returns false, dropping the batch, when it cannot be sent now. */
  send(entries: StatEntry[]): boolean {
    const ws = this.ws
    if (!this.isOpen || ws === undefined || ws.readyState !== WebSocket.OPEN) {
      this.counters.dropped++
      return false
    }
    if (ws.bufferedAmount > this.maxBufferedBytes) {
      this.counters.dropped++
      return false
    }
    if (entries.length === 0) return true // an empty WireStatMessages says nothing
    let frame: Buffer
    try {
      frame = encodeWireStatMessages(entries)
    } catch (err) {
      this.counters.dropped++
      this.log.warn({ err: errorMessage(err) }, 'autoscaler stats: cannot encode batch, dropped')
      return false
    }
    ws.send(frame, { binary: true }, (err) => {
      if (err) this.counters.errors++
    })
    this.counters.sent++
    return true
  }

  async close(): Promise<void> {
    this.closing = true
    clearTimeout(this.reconnectTimer)
    this.reconnectTimer = undefined
    this.stopPinging()
    const ws = this.ws
    if (ws === undefined || ws.readyState === WebSocket.CLOSED) return
    await new Promise<void>((resolve) => {
      // A peer that never answers the close frame must not hang shutdown.
      const force = setTimeout(() => ws.terminate(), 1000)
      ws.once('close', () => {
        clearTimeout(force)
        resolve()
      })
      ws.close(1000, 'gateway shutting down')
    })
  }

  private connect(): void {
    const ws = new WebSocket(this.url, {
      perMessageDeflate: false,
      handshakeTimeout: this.handshakeTimeoutMs,
    })
    this.ws = ws

    ws.on('open', () => {
      this.isOpen = true
      this.failedAttempts = 0
      this.counters.connects++
      this.startPinging(ws)
      const o = this.outage
      this.outage = undefined
      if (o) this.log.info({ url: this.url, connects: this.counters.connects, downForMs: Date.now() - o.since, failedAttempts: o.attempts }, 'autoscaler stats: connected again')
      else this.log.info({ url: this.url, connects: this.counters.connects }, 'autoscaler stats: connected')
    })
    ws.on('pong', () => {
      this.lastPongAt = Date.now()
    })
    ws.on('error', (err) => {
      if (this.closing) return // our own close() aborting a handshake is not a failure
      this.counters.errors++
      this.failed(errorMessage(err))
    })
    // ws always emits 'close' after a failed handshake or a lost connection, so this is the one
    // place that schedules the next attempt.
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return
      const wasOpen = this.isOpen
      this.isOpen = false
      this.ws = undefined
      this.stopPinging()
      if (this.closing) return
      const delayMs = this.nextDelayMs()
      if (wasOpen) {
        this.log.warn(
          { url: this.url, code, reason: reason.toString(), retryInMs: Math.round(delayMs) },
          'autoscaler stats: connection closed',
        )
      }
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined
        if (!this.closing) this.connect()
      }, delayMs)
      this.reconnectTimer.unref()
    })
  }

  /**
   * One line for the first failure of an outage, then a summary now and then (after summaryAfterMs,
   * doubling up to 10 minutes), not a line per reconnect attempt: an autoscaler that is down for
   * an hour must not fill the log.
   */
  private failed(err: string): void {
    const now = Date.now()
    const o = this.outage
    if (o === undefined) {
      this.outage = { since: now, attempts: 1, unlogged: 0, lastError: err, nextAt: now + this.summaryAfterMs, gapMs: this.summaryAfterMs }
      this.log.warn({ url: this.url, err }, 'autoscaler stats: cannot reach the autoscaler; retrying with backoff (summaries follow while it lasts)')
      return
    }
    o.attempts++
    o.unlogged++
    o.lastError = err
    if (now < o.nextAt) return
    this.log.warn({ url: this.url, err, downForMs: now - o.since, failedAttempts: o.attempts, sinceLastLine: o.unlogged }, 'autoscaler stats: still unreachable')
    o.unlogged = 0
    o.gapMs = Math.min(o.gapMs * 2, MAX_SUMMARY_MS)
    o.nextAt = now + o.gapMs
  }

  /** Exponential backoff capped at maxMs, with jitter in [50%, 100%] so replicas do not reconnect in step. */
  private nextDelayMs(): number {
    const { initialMs, factor, maxMs } = this.backoff
    const base = Math.min(maxMs, initialMs * factor ** this.failedAttempts)
    this.failedAttempts++
    return base * (0.5 + Math.random() * 0.5)
  }

  private startPinging(ws: WebSocket): void {
    this.stopPinging()
    this.lastPongAt = Date.now()
    this.pingTimer = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return
      if (Date.now() - this.lastPongAt > this.pongTimeoutMs) {
        this.log.warn({ url: this.url, pongTimeoutMs: this.pongTimeoutMs }, 'autoscaler stats: no pong, reconnecting')
        ws.terminate() // emits 'close', which schedules the reconnect
        return
      }
      ws.ping()
    }, this.pongTimeoutMs / 3)
    this.pingTimer.unref()
  }

  private stopPinging(): void {
    clearInterval(this.pingTimer)
    this.pingTimer = undefined
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
