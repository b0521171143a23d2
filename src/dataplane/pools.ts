// Upstream connection pools, one per origin (pod ip:port or ExternalName host:port), kept alive
// across requests. A pool whose origin left the configuration is closed gracefully: requests
// already on it finish first.
import { Pool } from 'undici'

export interface PoolOptions {
  /** Upper bound on a request's connect time; cold-start retries happen above this layer. */
  connectTimeoutMs: number
  keepAliveTimeoutMs: number
}

export class PoolRegistry {
  private readonly pools = new Map<string, Pool>()
  private readonly opts: PoolOptions

  constructor(opts: PoolOptions) {
    this.opts = opts
  }

  get(origin: string): Pool {
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
    for (const [origin, pool] of this.pools) {
      if (live.has(origin)) continue
      this.pools.delete(origin)
      pool.close().catch(() => {})
    }
  }

  get size(): number {
    return this.pools.size
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()]
    this.pools.clear()
    await Promise.allSettled(all.map((p) => p.close()))
  }

  destroy(): void {
    for (const p of this.pools.values()) p.destroy().catch(() => {})
    this.pools.clear()
  }
}
