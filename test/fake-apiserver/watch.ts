// One open watch: a chunked HTTP response of newline-delimited JSON events.
import type { ServerResponse } from 'node:http'
import type { K8sStatus } from './errors.ts'
import type { FieldSelector, LabelSelector } from './selectors.ts'
import { apiVersionOf } from './types.ts'
import type { KObject, ResourceDef, StoredEvent, WatchEventType } from './types.ts'

export interface WatcherOptions {
  /** The request path (no query). */
  path: string
  def: ResourceDef
  resKey: string
  namespace: string | undefined
  label: LabelSelector
  field: FieldSelector
  bookmarkIntervalMs: number | undefined
  timeoutMs: number | undefined
  /** Returns the current global resourceVersion, for BOOKMARK events. */
  currentRv: () => number
  stalled: boolean
  /**
   * The resourceVersion the watch started from: as the real watch cache does, no event at or below it
   * and no bookmark below it is sent. A watch from a resourceVersion the server has not reached yet
   * (a client that saw a server since restored from an older backup) therefore stays silent.
   */
  fromRv?: number
  onClose: (w: Watcher) => void
}

export class Watcher {
  readonly res: ServerResponse
  readonly opts: WatcherOptions
  private pending: string[] = []
  private headersSent = false
  private stalled: boolean
  private closed = false
  private bookmarkTimer: NodeJS.Timeout | undefined
  private timeoutTimer: NodeJS.Timeout | undefined
  /** Events written to the socket (not counting queued ones). */
  sent = 0

  constructor(res: ServerResponse, opts: WatcherOptions) {
    this.res = res
    this.opts = opts
    this.stalled = opts.stalled
    res.on('close', () => this.cleanup())
    if (opts.bookmarkIntervalMs !== undefined) {
      this.bookmarkTimer = setInterval(() => this.bookmark(), opts.bookmarkIntervalMs)
      this.bookmarkTimer.unref()
    }
    if (opts.timeoutMs !== undefined) {
      this.timeoutTimer = setTimeout(() => this.end(), opts.timeoutMs)
      this.timeoutTimer.unref()
    }
    if (!this.stalled) this.sendHeaders()
  }

  get isClosed(): boolean {
    return this.closed
  }

  private sendHeaders(): void {
    if (this.headersSent || this.closed) return
    this.headersSent = true
    this.res.writeHead(200, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
    })
    this.res.flushHeaders()
  }

  private matches(o: KObject): boolean {
    const { def, namespace, label, field } = this.opts
    if (def.namespaced && namespace !== undefined && o.metadata.namespace !== namespace) return false
    return label(o.metadata.labels ?? {}) && field(o)
  }

  /** Offer a stored event; it is translated for this watch's selectors (as the watch cache does). */
  offer(ev: StoredEvent): void {
    if (this.closed || ev.resKey !== this.opts.resKey) return
    if (this.opts.fromRv !== undefined && ev.rv <= this.opts.fromRv) return
    const now = this.matches(ev.object)
    if (ev.type === 'MODIFIED' && ev.old !== undefined) {
      const was = this.matches(ev.old)
      if (now && was) this.send('MODIFIED', ev.object)
      else if (now) this.send('ADDED', ev.object)
      else if (was) this.send('DELETED', ev.object)
      return
    }
    if (ev.type === 'DELETED' && ev.old !== undefined) {
      // Deleted by an update (last finalizer removed): it matched if either state matched.
      if (now || this.matches(ev.old)) this.send('DELETED', ev.object)
      return
    }
    if (now) this.send(ev.type, ev.object)
  }

  /** Synthetic ADDED events for a watch without resourceVersion. */
  sendInitial(objs: KObject[]): void {
    for (const o of objs) if (this.matches(o)) this.send('ADDED', o)
  }

  send(type: WatchEventType, object: KObject | K8sStatus): void {
    if (this.closed) return
    const line = JSON.stringify({ type, object }) + '\n'
    if (this.stalled) {
      this.pending.push(line)
      return
    }
    this.write(line)
  }

  private write(line: string): void {
    this.sendHeaders()
    this.res.write(line)
    this.sent++
  }

  bookmark(annotations?: Record<string, string>): void {
    if (this.closed || this.stalled) return
    const rv = this.opts.currentRv()
    // Events need rv > fromRv; a bookmark may carry fromRv itself (the cache_watcher rule).
    if (annotations === undefined && this.opts.fromRv !== undefined && rv < this.opts.fromRv) return
    const { def } = this.opts
    const metadata = annotations === undefined ? { resourceVersion: String(rv) } : { resourceVersion: String(rv), annotations }
    this.write(JSON.stringify({ type: 'BOOKMARK', object: { kind: def.kind, apiVersion: apiVersionOf(def), metadata } }) + '\n')
  }

  /** While stalled nothing at all is written (no headers, events, bookmarks); events queue in order. */
  setStalled(on: boolean): void {
    this.stalled = on
    if (on || this.closed) return
    this.sendHeaders()
    const q = this.pending
    this.pending = []
    for (const line of q) this.write(line)
  }

  /** End the stream cleanly (terminating chunk). */
  end(): void {
    if (this.closed) return
    this.sendHeaders()
    this.res.end()
    this.cleanup()
  }

  /** Send an ERROR event and end the stream. */
  fail(status: K8sStatus): void {
    if (this.closed) return
    this.sendHeaders()
    this.res.write(JSON.stringify({ type: 'ERROR', object: status }) + '\n')
    this.end()
  }

  /** Kill the TCP connection without a terminating chunk. */
  destroy(): void {
    this.res.socket?.destroy()
    this.cleanup()
  }

  private cleanup(): void {
    if (this.closed) return
    this.closed = true
    if (this.bookmarkTimer !== undefined) clearInterval(this.bookmarkTimer)
    if (this.timeoutTimer !== undefined) clearTimeout(this.timeoutTimer)
    this.pending = []
    this.opts.onClose(this)
  }
}
