// A stand-in for the Knative autoscaler's stat server: a real websocket server that counts
// connections and decodes every binary frame with our decoder (which is itself checked against
// protobufjs in stat-encoding.test.ts).
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import type { WebSocket } from 'ws'
import { decodeWireStatMessages } from '../../src/autoscaler/stat-encoding.ts'
import type { StatEntry } from '../../src/autoscaler/stat-encoding.ts'

export interface Frame {
  /** When it arrived (Date.now()). */
  at: number
  binary: boolean
  /** Decoded stats; empty for a text frame. */
  entries: StatEntry[]
}

export class FakeAutoscaler {
  readonly frames: Frame[] = []
  connections = 0
  private wss: WebSocketServer | undefined

  /** `autoPong: false` leaves pings unanswered (a server that hangs). */
  async listen(port = 0, opts: { autoPong?: boolean } = {}): Promise<number> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port, autoPong: opts.autoPong ?? true })
    await once(wss, 'listening')
    wss.on('connection', (sock) => {
      this.connections++
      sock.on('message', (data, isBinary) => {
        const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
        this.frames.push({ at: Date.now(), binary: isBinary, entries: isBinary ? decodeWireStatMessages(buf) : [] })
      })
    })
    this.wss = wss
    return (wss.address() as AddressInfo).port
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.wss!.address() as AddressInfo).port}`
  }

  /** Frames so far that report revision `name` in `namespace`. */
  framesFor(namespace: string, name: string): number {
    return this.frames.filter((f) => f.entries.some((e) => e.namespace === namespace && e.name === name)).length
  }

  /** What the real server does on shutdown: close every client with 1012 "Restarting". */
  restartClients(): void {
    for (const c of this.wss?.clients ?? []) c.close(1012, 'Restarting')
  }

  clients(): Iterable<WebSocket> {
    return this.wss?.clients ?? []
  }

  async stop(): Promise<void> {
    const wss = this.wss
    if (wss === undefined) return
    this.wss = undefined
    for (const c of wss.clients) c.terminate()
    await new Promise<void>((resolve) => wss.close(() => resolve()))
  }
}
