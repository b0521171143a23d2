// The data plane, composed of parts with one job each: the current snapshot (one reference, swapped
// whole), the backend table (throttlers, probes, pool lifetimes: backend-table.ts), the upstream
// pools (pools.ts), the in-flight and drain count (in-flight.ts), the request log (request-log.ts),
// and the front door every listener hands its requests to (front-door.ts). It owns no request
// logic itself. Requests in flight keep the snapshot (and backend) they started with.
import type { Logger } from 'pino'
import type { Snapshot } from '../model/snapshot.ts'
import type { Throttler } from '../activator/throttler.ts'
import type { GatewayMetrics } from '../metrics.ts'
import type { DemandSink } from './admit.ts'
import { BackendTable } from './backend-table.ts'
import type { BackendTableOptions } from './backend-table.ts'
import type { ForwardContext } from './forward-http.ts'
import type { UpgradeContext } from './forward-upgrade.ts'
import { FrontDoor } from './front-door.ts'
import type { RequestTracer } from './front-door.ts'
import { InFlight } from './in-flight.ts'
import type { Policy } from './policy.ts'
import { PoolRegistry, UPSTREAM_CONNECT_TIMEOUT_MS } from './pools.ts'
import type { UpstreamTls } from './upstream-tls.ts'
import { RequestLog } from './request-log.ts'
import type { AccessLog } from '../observe/access-log.ts'

export type { ListenerKind } from './identify.ts'
export type { DemandSink } from './admit.ts'

export interface DataPlaneOptions extends BackendTableOptions {
  log: Logger
  metrics: GatewayMetrics
  coldStartBudgetMs: number
  /** Where access-log lines go; undefined: none. */
  accessLog?: AccessLog
  /** Idle limit for streams (gRPC, server-sent events) to revisions without idleTimeoutSeconds; 0: none. */
  streamIdleTimeoutMs?: number
  /** Backoff before a pod that refused a connection is tried again. */
  retryBackoffMs?: number
  demand?: DemandSink
  /** The front door's policy stage, in order (none by default). */
  policies?: readonly Policy[]
  /** Starts each request's trace (--tracing-endpoint); undefined: tracing is off. */
  tracing?: RequestTracer
  /** system-internal-tls: TLS to revision pods when enabled; undefined: always plain HTTP. */
  upstreamTls?: UpstreamTls
}

export class DataPlane {
  snapshot: Snapshot
  readonly pools: PoolRegistry
  readonly backends: BackendTable
  readonly inFlight = new InFlight()
  readonly requests: RequestLog
  readonly door: FrontDoor
  readonly metrics: GatewayMetrics
  readonly log: Logger
  /** The limits every Exchange and Upgrade reads (through the shared context); swapped whole. */
  private readonly ctx: ForwardContext & UpgradeContext
  private readonly policies: readonly Policy[]

  constructor(initial: Snapshot, opts: DataPlaneOptions) {
    this.snapshot = initial
    this.log = opts.log
    this.metrics = opts.metrics
    this.pools = new PoolRegistry({ connectTimeoutMs: UPSTREAM_CONNECT_TIMEOUT_MS, keepAliveTimeoutMs: 4000, tls: opts.upstreamTls })
    this.backends = new BackendTable(initial, this.pools, opts)
    this.requests = new RequestLog(opts.metrics, opts.accessLog)
    const plane = this
    const inFlight = this.inFlight
    const requests = this.requests
    // The one context every Exchange and Upgrade gets: the parts they use, not the plane.
    const ctx: ForwardContext & UpgradeContext = {
      backends: this.backends,
      pools: this.pools,
      limits: { coldStartBudgetMs: opts.coldStartBudgetMs, streamIdleTimeoutMs: opts.streamIdleTimeoutMs ?? 0, retryBackoffMs: opts.retryBackoffMs ?? 50 },
      demand: opts.demand,
      metrics: opts.metrics,
      log: opts.log,
      get draining() {
        return inFlight.draining
      },
      current: () => plane.snapshot,
      upstreamTls: opts.upstreamTls,
      answered: (r) => requests.answered(r),
      left: (r) => {
        inFlight.leave()
        requests.ended(r)
      },
    }
    this.ctx = ctx
    this.policies = opts.policies ?? []
    this.door = new FrontDoor(ctx, this.policies, () => inFlight.enter(), requests.logging, opts.tracing)
  }

  /**
   * New cold-start budget and stream idle limit (config-edge-gateway): requests that arrive from now
   * on are held and timed by them; a request's deadline already set keeps its old value.
   */
  setTimeouts(coldStartBudgetMs: number, streamIdleTimeoutMs: number): void {
    this.ctx.limits = { ...this.ctx.limits, coldStartBudgetMs, streamIdleTimeoutMs }
  }

  /** Access-log lines on, off, or in another form, from the next request's end on. */
  setAccessLog(access: AccessLog | undefined): void {
    this.requests.setAccessLog(access)
    this.door.logging = access !== undefined
  }

  /**
   * Installs a new snapshot: one reference swap, then the backend table brings its throttlers and
   * pools up to date. `changed` (the backend keys that differ) limits the work to those backends.
   */
  setSnapshot(next: Snapshot, changed?: ReadonlySet<string>): void {
    this.snapshot = next
    this.backends.update(next, changed)
  }

  /** Requests (and WebSocket connections) being handled right now, held ones included. */
  get active(): number {
    return this.inFlight.count
  }

  get draining(): boolean {
    return this.inFlight.draining
  }

  set draining(on: boolean) {
    this.inFlight.draining = on
  }

  throttlerByKey(key: string): Throttler | undefined {
    return this.backends.byKey(key)
  }

  /** End of a drain: requests still waiting for a pod get a clear 503 instead of a reset. */
  rejectHeld(): void {
    this.backends.dropAllHeld('draining')
  }

  /** Resolves when no request is in flight or held. */
  whenIdle(): Promise<void> {
    return this.inFlight.whenIdle()
  }

  async close(): Promise<void> {
    this.backends.close()
    await this.pools.close()
    // Last: a policy's connection (the external authorizer's) outlives the requests it checked.
    for (const p of this.policies) await p.close?.()
  }
}
