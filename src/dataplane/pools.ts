// Upstream connection pools, one per origin (pod ip:port or ExternalName host:port), kept alive
// across requests. A pool whose origin left the configuration is closed gracefully: requests
// already on it finish first.
//
// HTTP/1.1 requests without a body or with a Content-Length one go through our own H1Pool (the hot
// path, see h1/client/pool.ts); chunked bodies go through undici's Pool, which streams them; h2c through our H2Client, one
// node:http2 session per pod (h2/client.ts).
import { Pool } from 'undici'
import type { Dispatcher } from 'undici'
import type { UpstreamProtocol } from '../model/snapshot.ts'
import { H1Pool } from './h1/client/pool.ts'
import { H2Client } from './h2/client.ts'

export type RequestBody = 'none' | 'length' | 'stream'

/** What the Exchange needs of a client: undici's dispatch. */
export interface UpstreamDispatcher {
  dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean
}

interface Closable {
  close(): Promise<void>
  destroy(): Promise<void>
}

/** How long connecting to a pod or external host may take (requests and WebSocket upgrades alike). */
export const UPSTREAM_CONNECT_TIMEOUT_MS = 5000

export interface PoolOptions {
  /** Upper bound on a request's connect time; cold-start retries happen above this layer. */
  connectTimeoutMs: number
  keepAliveTimeoutMs: number
}

export class PoolRegistry {
  private readonly pools = new Map<string, Pool>()
  /** h2c origins: one multiplexed session each (gRPC streams stay on the session they start on). */
  private readonly h2c = new Map<string, H2Client>()
  /** HTTP/1.1 requests without a body, or with a Content-Length one. */
  private readonly h1 = new Map<string, H1Pool>()
  private readonly opts: PoolOptions

  constructor(opts: PoolOptions) {
    this.opts = opts
  }

  /** `body`: none, one whose length the headers state, or a stream of unknown length (chunked). */
  get(origin: string, protocol: UpstreamProtocol = 'http1', body: RequestBody = 'stream'): UpstreamDispatcher {
    if (protocol === 'h2c') return this.getH2c(origin)
    return body === 'stream' ? this.getHttp1(origin) : this.getH1(origin)
  }

  private getH1(origin: string): H1Pool {
    let p = this.h1.get(origin)
    if (!p) {
      p = new H1Pool(origin, { connectTimeoutMs: this.opts.connectTimeoutMs, keepAliveTimeoutMs: this.opts.keepAliveTimeoutMs })
      this.h1.set(origin, p)
    }
    return p
  }

  private getH2c(origin: string): H2Client {
    let c = this.h2c.get(origin)
    if (!c) {
      c = new H2Client(origin, { connectTimeoutMs: this.opts.connectTimeoutMs })
      this.h2c.set(origin, c)
    }
    return c
  }

  private getHttp1(origin: string): Pool {
    let p = this.pools.get(origin)
    if (!p) {
      p = new Pool(origin, {
        // One request per connection at a time, as the activator does: queue-proxy counts
        // concurrency per connection, and pipelining would hide a slow response behind another.
        pipelining: 1,
        connections: null,
        connect: { timeout: this.opts.connectTimeoutMs },
        keepAliveTimeout: this.opts.keepAliveTimeoutMs,
        // No timeouts of undici's own: the data plane applies each revision's timeouts itself.
        headersTimeout: 0,
        bodyTimeout: 0,
      })
      this.pools.set(origin, p)
    }
    return p
  }

  /** Closes pools whose origin is not in `live`. */
  retain(live: ReadonlySet<string>): void {
    for (const map of [this.pools, this.h2c, this.h1] as Array<Map<string, Closable>>) {
      for (const [origin, pool] of map) {
        if (live.has(origin)) continue
        map.delete(origin)
        pool.close().catch(() => {})
      }
    }
  }

  get size(): number {
    return this.pools.size + this.h2c.size + this.h1.size
  }

  private takeAll(): Closable[] {
    const all: Closable[] = [...this.pools.values(), ...this.h2c.values(), ...this.h1.values()]
    this.pools.clear()
    this.h2c.clear()
    this.h1.clear()
    return all
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.takeAll().map((p) => p.close()))
  }

  destroy(): void {
    for (const p of this.takeAll()) p.destroy().catch(() => {})
  }
}
