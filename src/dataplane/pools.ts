// Upstream connection pools, one per origin (pod ip:port or ExternalName host:port), kept alive
// across requests. A pool whose origin left the configuration is closed gracefully: requests
// already on it finish first.
import { H2CClient, Pool } from 'undici'
import type { Dispatcher } from 'undici'
import type { UpstreamProtocol } from '../model/snapshot.ts'

export interface PoolOptions {
  /** Upper bound on a request's connect time; cold-start retries happen above this layer. */
  connectTimeoutMs: number
  keepAliveTimeoutMs: number
}

export class PoolRegistry {
  private readonly pools = new Map<string, Pool>()
  /** h2c origins: one multiplexed session each (gRPC streams stay on the session they start on). */
  private readonly h2c = new Map<string, H2CClient>()
  private readonly opts: PoolOptions

  constructor(opts: PoolOptions) {
    this.opts = opts
  }

  get(origin: string, protocol: UpstreamProtocol = 'http1'): Dispatcher {
    return protocol === 'h2c' ? this.getH2c(origin) : this.getHttp1(origin)
  }

  private getH2c(origin: string): H2CClient {
    let c = this.h2c.get(origin)
    if (!c) {
      c = new H2CClient(origin, {
        maxConcurrentStreams: 1000,
        pipelining: 1000,
        connect: { timeout: this.opts.connectTimeoutMs },
        headersTimeout: 0,
        bodyTimeout: 0,
      })
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
    for (const map of [this.pools, this.h2c] as Array<Map<string, Dispatcher>>) {
      for (const [origin, pool] of map) {
        if (live.has(origin)) continue
        map.delete(origin)
        pool.close().catch(() => {})
      }
    }
  }

  get size(): number {
    return this.pools.size + this.h2c.size
  }

  async close(): Promise<void> {
    const all: Dispatcher[] = [...this.pools.values(), ...this.h2c.values()]
    this.pools.clear()
    this.h2c.clear()
    await Promise.allSettled(all.map((p) => p.close()))
  }

  destroy(): void {
    for (const p of [...this.pools.values(), ...this.h2c.values()]) p.destroy().catch(() => {})
    this.pools.clear()
    this.h2c.clear()
  }
}
