// Upstream connection pools, one per origin (pod ip:port or ExternalName host:port), kept alive
// across requests. A pool whose origin left the configuration is closed gracefully: requests
// already on it finish first.
//
// HTTP/1.1 requests without a body or with a Content-Length one go through our own H1Pool (the hot
// path, see h1/client/pool.ts); chunked bodies go through undici's Pool, which streams them; h2c
// through our H2Client, one node:http2 session per pod (h2/client.ts).
//
// An `https://` origin is a revision pod reached over TLS (system-internal-tls, upstream-tls.ts): the
// HTTP/1.1 clients connect through UpstreamTls, and HTTP/2 is negotiated by ALPN (an undici Client
// with allowH2) instead of h2c. Every new connection reads the trust bundle of the moment.
import { Client, Pool } from 'undici'
import type { Dispatcher, buildConnector } from 'undici'
import type { UpstreamProtocol } from '../model/snapshot.ts'
import { H1Pool } from './h1/client/pool.ts'
import { H2Client } from './h2/client.ts'
import type { UpstreamTls } from './upstream-tls.ts'

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
  /** How `https://` origins connect; without it they cannot be dialled. */
  tls?: UpstreamTls
}

/** A connect timeout as undici reports its own, so the Exchange answers it the same way. */
function connectTimeout(ms: number): Error {
  return Object.assign(new Error(`connect timeout after ${ms} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' })
}

/** undici's connector for a TLS origin: the socket is handed over once the handshake is verified. */
function tlsConnector(upstream: UpstreamTls, namespace: string, alpn: readonly string[], timeoutMs: number): buildConnector.connector {
  return (o, callback) => {
    const host = o.hostname.startsWith('[') ? o.hostname.slice(1, -1) : o.hostname
    const socket = upstream.connect(host, Number(o.port), namespace, alpn)
    let settled = false
    socket.setTimeout(timeoutMs, () => {
      if (!settled) socket.destroy(connectTimeout(timeoutMs))
    })
    socket.once('secureConnect', () => {
      settled = true
      socket.setTimeout(0)
      callback(null, socket)
    })
    socket.once('error', (err) => {
      if (settled) return
      settled = true
      callback(err, null)
    })
  }
}

export class PoolRegistry {
  private readonly pools = new Map<string, Pool>()
  /** h2c origins: one multiplexed session each (gRPC streams stay on the session they start on). */
  private readonly h2c = new Map<string, H2Client>()
  /** HTTP/1.1 requests without a body, or with a Content-Length one. */
  private readonly h1 = new Map<string, H1Pool>()
  /** HTTP/2 over TLS (revisions speaking h2c, reached with system-internal-tls). */
  private readonly h2 = new Map<string, Client>()
  private readonly opts: PoolOptions

  constructor(opts: PoolOptions) {
    this.opts = opts
  }

  /**
   * The client for `origin`. `body`: none, one whose length the headers state, or a stream of
   * unknown length (chunked). `namespace` (the backend's) matters only for an `https://` origin: its
   * pods' certificates must name kn-user-<namespace> (or kn-routing). A pod IP is in one namespace.
   */
  get(origin: string, protocol: UpstreamProtocol = 'http1', body: RequestBody = 'stream', namespace = ''): UpstreamDispatcher {
    if (protocol === 'h2c') return origin.startsWith('https:') ? this.getH2(origin, namespace) : this.getH2c(origin)
    return body === 'stream' ? this.getHttp1(origin, namespace) : this.getH1(origin, namespace)
  }

  private upstreamTls(origin: string): UpstreamTls | undefined {
    if (!origin.startsWith('https:')) return undefined
    if (this.opts.tls === undefined) throw new Error(`no TLS settings to dial ${origin}`)
    return this.opts.tls
  }

  private getH1(origin: string, namespace: string): H1Pool {
    let p = this.h1.get(origin)
    if (!p) {
      const upstream = this.upstreamTls(origin)
      p = new H1Pool(origin, {
        connectTimeoutMs: this.opts.connectTimeoutMs,
        keepAliveTimeoutMs: this.opts.keepAliveTimeoutMs,
        secure: upstream === undefined ? undefined : { connect: (host, port, onread) => upstream.connect(host, port, namespace, ['http/1.1'], { onread }) },
      })
      this.h1.set(origin, p)
    }
    return p
  }

  private getH2(origin: string, namespace: string): Client {
    let c = this.h2.get(origin)
    if (!c) {
      c = new Client(origin, {
        allowH2: true,
        maxConcurrentStreams: 1000,
        pipelining: 1000,
        connect: tlsConnector(this.upstreamTls(origin)!, namespace, ['h2'], this.opts.connectTimeoutMs),
        headersTimeout: 0,
        bodyTimeout: 0,
      })
      this.h2.set(origin, c)
    }
    return c
  }

  private getH2c(origin: string): H2Client {
    let c = this.h2c.get(origin)
    if (!c) {
      c = new H2Client(origin, { connectTimeoutMs: this.opts.connectTimeoutMs })
      this.h2c.set(origin, c)
    }
    return c
  }

  private getHttp1(origin: string, namespace: string): Pool {
    let p = this.pools.get(origin)
    if (!p) {
      const upstream = this.upstreamTls(origin)
      p = new Pool(origin, {
        // One request per connection at a time, as the activator does: queue-proxy counts
        // concurrency per connection, and pipelining would hide a slow response behind another.
        pipelining: 1,
        connections: null,
        connect: upstream === undefined ? { timeout: this.opts.connectTimeoutMs } : tlsConnector(upstream, namespace, ['http/1.1'], this.opts.connectTimeoutMs),
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
    for (const map of [this.pools, this.h2c, this.h1, this.h2] as Array<Map<string, Closable>>) {
      for (const [origin, pool] of map) {
        if (live.has(origin)) continue
        map.delete(origin)
        pool.close().catch(() => {})
      }
    }
  }

  get size(): number {
    return this.pools.size + this.h2c.size + this.h1.size + this.h2.size
  }

  private takeAll(): Closable[] {
    const all: Closable[] = [...this.pools.values(), ...this.h2c.values(), ...this.h1.values(), ...this.h2.values()]
    this.pools.clear()
    this.h2c.clear()
    this.h1.clear()
    this.h2.clear()
    return all
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.takeAll().map((p) => p.close()))
  }

  destroy(): void {
    for (const p of this.takeAll()) p.destroy().catch(() => {})
  }
}
