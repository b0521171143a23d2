// The data plane: the current snapshot, the live per-backend throttlers and connection pools, and
// the entry point every listener calls for each request. Swapping the snapshot is one assignment;
// requests in flight keep the snapshot (and backend) they started with.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { BackendSpec, Endpoint, RevisionRef, Snapshot } from '../model/snapshot.ts'
import { QueueBudget, RevisionThrottler } from '../activator/throttler.ts'
import type { Throttler, Waiter } from '../activator/throttler.ts'
import { ProbedEndpoints } from '../activator/pod-prober.ts'
import type { GatewayMetrics } from '../metrics.ts'
import { lookupHost, normaliseHostHeader } from './host.ts'
import { resolve } from './resolve.ts'
import { rawReply, reply } from './reply.ts'
import type { Reason } from './reply.ts'
import type { Refusal } from './guard.ts'
import { Exchange } from './exchange.ts'
import { PoolRegistry, UPSTREAM_CONNECT_TIMEOUT_MS } from './pools.ts'
import { proxyUpgrade, Upgrade } from './websocket.ts'

export type ListenerKind = 'public' | 'local'

/** What a client is told when a bug in the gateway cost its request (plain or upgrade). */
const INTERNAL_ERROR_DETAIL = 'the gateway failed while handling this request (the error is in its log)'

/** Told of every request to a revision, from arrival (held ones too) to its end; it reads its own clock. */
export interface DemandSink {
  requestIn(rev: RevisionRef): void
  requestOut(rev: RevisionRef): void
}

export interface DataPlaneOptions {
  log: Logger
  metrics: GatewayMetrics
  coldStartBudgetMs: number
  maxQueuedPerRevision: number
  maxQueuedTotal: number
  accessLog: boolean
  /** Idle limit for streams (gRPC, server-sent events) to revisions without idleTimeoutSeconds; 0: none. */
  streamIdleTimeoutMs?: number
  /** Backoff before a pod that refused a connection is tried again. */
  retryBackoffMs?: number
  demand?: DemandSink
  /** A request is waiting for a revision that has no pod at all. */
  onColdStart?: (rev: RevisionRef) => void
  /**
   * Worker processes: a throttler shared through the primary, for backends whose per-pod limit must
   * hold across workers (revisions with containerConcurrency > 0). Undefined: a local throttler.
   */
  remoteThrottler?: (backend: BackendSpec) => Throttler | undefined
}

export class DataPlane {
  snapshot: Snapshot
  readonly pools = new PoolRegistry({ connectTimeoutMs: UPSTREAM_CONNECT_TIMEOUT_MS, keepAliveTimeoutMs: 4000 })
  readonly metrics: GatewayMetrics
  readonly log: Logger
  readonly coldStartBudgetMs: number
  readonly retryBackoffMs: number
  readonly streamIdleTimeoutMs: number
  private readonly opts: DataPlaneOptions
  private readonly throttlers = new Map<string, Throttler>()
  private readonly probed = new ProbedEndpoints({ onChange: (key) => this.probePassed(key) })
  /** Backends whose pods the primary's broker grants (--workers): it probes them, not this process. */
  private readonly brokered = new Set<string>()
  private readonly budget: QueueBudget
  private replicaIndex = -1
  private replicaCount = 1
  /** Shutting down: responses close their HTTP/1.1 connection, so clients reconnect elsewhere. */
  draining = false
  /** Requests (and WebSocket connections) being handled right now. */
  active = 0
  private idleWaiters: Array<() => void> = []

  constructor(initial: Snapshot, opts: DataPlaneOptions) {
    this.opts = opts
    this.log = opts.log
    this.metrics = opts.metrics
    this.coldStartBudgetMs = opts.coldStartBudgetMs
    this.streamIdleTimeoutMs = opts.streamIdleTimeoutMs ?? 0
    this.retryBackoffMs = opts.retryBackoffMs ?? 50
    this.budget = new QueueBudget(opts.maxQueuedTotal)
    this.snapshot = initial
    this.setSnapshot(initial)
  }

  /**
   * Installs a new snapshot: one reference swap, then the live throttlers learn the new pods.
   * `changed` (the backend keys that differ from the current snapshot) limits the work to those
   * backends; without it every backend is looked at.
   */
  setSnapshot(next: Snapshot, changed?: ReadonlySet<string>): void {
    const prev = this.snapshot
    this.snapshot = next
    if (!changed || prev === next) return this.syncAllBackends(next)
    let dropped = false
    for (const key of changed) {
      const before = prev.backends.get(key)
      const after = next.backends.get(key)
      if (before === after) continue
      if (after) this.countOrigins(after, 1)
      if (before) dropped = this.countOrigins(before, -1) || dropped
      const t = this.throttlers.get(key)
      if (!t) continue
      if (after && after.kind !== 'external') {
        t.setContainerConcurrency(after.revision?.containerConcurrency ?? 0)
        t.updateEndpoints(this.endpointsFor(after))
      } else this.dropThrottler(key, t)
    }
    if (dropped) this.closeUnusedPools()
  }

  /** How many backends name each upstream origin: a pool is closed only when no backend does. */
  private readonly originRefs = new Map<string, number>()

  /** Adds (+1) or removes (-1) a backend's origins; true when some origin is no longer named. */
  private countOrigins(b: BackendSpec, delta: 1 | -1): boolean {
    let dropped = false
    const count = (origin: string): void => {
      const n = (this.originRefs.get(origin) ?? 0) + delta
      if (n > 0) this.originRefs.set(origin, n)
      else {
        this.originRefs.delete(origin)
        dropped = true
      }
    }
    if (b.kind === 'external') count(`http://${b.externalHost}:${b.externalPort}`)
    else for (const ep of b.endpoints) count(originOf(ep.host, ep.port))
    return dropped
  }

  private dropThrottler(key: string, t: Throttler): void {
    this.throttlers.delete(key)
    this.brokered.delete(key)
    this.probed.forget(key)
    t.rejectAll((w) => failWaiter(w, 'the backend was removed from the configuration while this request waited', 'no-backend'))
  }

  private syncAllBackends(next: Snapshot): void {
    this.originRefs.clear()
    for (const b of next.backends.values()) {
      this.countOrigins(b, 1)
      if (b.kind === 'external') continue
      const t = this.throttlers.get(b.key)
      if (t) {
        t.setContainerConcurrency(b.revision?.containerConcurrency ?? 0)
        t.updateEndpoints(this.endpointsFor(b))
      }
    }
    for (const [key, t] of this.throttlers) if (!next.backends.has(key)) this.dropThrottler(key, t)
    this.closeUnusedPools()
  }

  /** Pods still carrying requests keep their pools until those finish; close the rest. */
  private closeUnusedPools(): void {
    const busy = new Set<string>()
    for (const t of this.throttlers.values()) for (const p of t.pods()) if (p.inFlight > 0) busy.add(originOf(p.endpoint.host, p.endpoint.port))
    const refs = this.originRefs
    this.pools.retain({ has: (origin: string) => refs.has(origin) || busy.has(origin) } as ReadonlySet<string>)
  }

  /** The pods a backend's throttler may use (Ready, or passed the activator's probe). */
  private endpointsFor(b: BackendSpec): readonly Endpoint[] {
    return this.brokered.has(b.key) ? b.endpoints : this.probed.of(b)
  }

  /** A probe passed (or a probed pod went away): the backend's throttler learns at once. */
  private probePassed(key: string): void {
    const b = this.snapshot.backends.get(key)
    const t = this.throttlers.get(key)
    if (b && t) t.updateEndpoints(this.endpointsFor(b))
  }

  /** This replica's index among the gateway's replicas, for sharing pod capacity (see throttler). */
  setReplicaShare(index: number, count: number): void {
    this.replicaIndex = index
    this.replicaCount = count
    for (const t of this.throttlers.values()) t.setReplicaShare(index, count)
  }

  throttlerFor(b: BackendSpec): Throttler {
    let t = this.throttlers.get(b.key)
    if (!t) {
      const rev = b.revision
      const remote = this.opts.remoteThrottler?.(b)
      if (remote) this.brokered.add(b.key)
      t = remote ?? new RevisionThrottler({
        containerConcurrency: rev?.containerConcurrency ?? 0,
        maxQueued: this.opts.maxQueuedPerRevision,
        budget: this.budget,
        onColdStart: rev && this.opts.onColdStart ? () => this.opts.onColdStart!(rev) : undefined,
      })
      t.setReplicaShare(this.replicaIndex, this.replicaCount)
      t.updateEndpoints(this.endpointsFor(b))
      this.throttlers.set(b.key, t)
    }
    return t
  }

  /** Live per-backend state for metrics, /debug/routes and the local runner. */
  backendState(): Array<{ backend: string; throttler: Throttler }> {
    return [...this.throttlers].map(([backend, throttler]) => ({ backend, throttler }))
  }

  throttlerByKey(key: string): Throttler | undefined {
    return this.throttlers.get(key)
  }

  demandIn(rev: RevisionRef): void {
    this.opts.demand?.requestIn(rev)
  }

  demandOut(rev: RevisionRef): void {
    this.opts.demand?.requestOut(rev)
  }

  handle(req: IncomingMessage, res: ServerResponse, listener: ListenerKind, secure: boolean): void {
    try {
      this.route(req, res, listener, secure)
    } catch (err) {
      this.internalError(req, res, err)
    }
  }

  /** A bug costs the request it happened in, never the process and the requests beside it. */
  private internalError(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    this.log.error({ err, method: req.method, url: req.url, host: req.headers.host }, 'internal error while handling a request')
    const x = (res as ServerResponse & { exchange?: Exchange }).exchange
    try {
      if (x) x.fail(500, 'internal-error', INTERNAL_ERROR_DETAIL)
      else this.answer(req, res, 500, 'internal-error', INTERNAL_ERROR_DETAIL)
    } catch {
      res.destroy()
    }
  }

  private route(req: IncomingMessage, res: ServerResponse, listener: ListenerKind, secure: boolean): void {
    this.active++
    const snap = this.snapshot
    const hosts = listener === 'public' ? snap.publicHosts : snap.localHosts
    const rawHost = req.headers.host ?? (req.headers[':authority'] as string | undefined)
    if (rawHost === undefined || rawHost === '') return this.answer(req, res, 400, 'bad-request', 'the request has no Host header')
    const entry = lookupHost(hosts, rawHost)
    if (!entry) {
      if (normaliseHostHeader(rawHost) === undefined) return this.answer(req, res, 400, 'bad-request', 'the Host header is not a valid host name')
      return this.answer(req, res, 404, 'host-not-found', `no route for host ${normaliseHostHeader(rawHost)} on the ${listener} listener`)
    }
    if (!secure && listener === 'public' && entry.ingress.httpOption === 'Redirected') {
      const host = normaliseHostHeader(rawHost) ?? entry.host
      return this.answer(req, res, 301, 'https-redirect', `use https://${host}${req.url ?? '/'}`, { location: `https://${host}${req.url ?? '/'}` })
    }
    let url = req.url ?? '/'
    if (url.charCodeAt(0) !== 47 /* / */) {
      const path = originFormOf(url)
      if (path === undefined) return this.answer(req, res, 400, 'bad-request', 'the request target is not a path')
      url = path
    }
    const r = resolve(snap, entry, url, req.headers)
    if ('failure' in r) return this.answer(req, res, 404, 'path-not-found', `no path of host ${r.entry.host} matches ${url.split('?')[0]}`)
    const probe = req.headers['k-network-probe']
    if (probe !== undefined) return this.answerProbe(req, res, r.entry.ingress.hash, probe)
    new Exchange(this, snap, req, res, r, secure).start()
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, listener: ListenerKind, secure: boolean): void {
    this.active++
    let released = false
    const release = (): void => {
      if (released) return
      released = true
      this.release()
    }
    try {
      proxyUpgrade(this, req, socket, head, listener, secure, release)
    } catch (err) {
      // As for plain requests: a bug costs this upgrade, never the process (an exception here would
      // escape Node's 'upgrade' event).
      this.log.error({ err, url: req.url, host: req.headers.host }, 'internal error while handling an upgrade')
      try {
        rawReply(socket, 500, 'internal-error', INTERNAL_ERROR_DETAIL)
      } catch {
        socket.destroy()
      }
      this.refused(req, { status: 500, reason: 'internal-error' })
      release()
    }
  }

  /**
   * Knative's network probe, answered here as the activator answers it: the status prober learns
   * that this replica serves the ingress's current spec without waking a scaled-to-zero revision.
   */
  private answerProbe(req: IncomingMessage, res: ServerResponse, hash: string, probe: string | string[]): void {
    if (probe !== 'probe') return this.answer(req, res, 400, 'bad-request', `unexpected K-Network-Probe value ${JSON.stringify(probe)}`)
    const sent = req.headers['k-network-hash']
    if (typeof sent !== 'string' || sent === '') return this.answer(req, res, 400, 'bad-request', 'a K-Network-Probe request needs a K-Network-Hash header')
    res.setHeader('k-network-hash', sent === 'override' ? hash : sent)
    this.answer(req, res, 200, 'probe', 'probe ok')
  }

  private answer(req: IncomingMessage, res: ServerResponse, status: number, reason: Reason, detail: string, headers?: Record<string, string>): void {
    reply(res, status, reason, detail, headers)
    this.refused(req, { status, reason })
    this.release()
  }

  /**
   * Counts an answer the gateway gave before routing (the guard's, the parser's, or handle()'s
   * own): in edge_requests_total with no host, and in the access log. `req` is undefined when the
   * request could not be parsed at all.
   */
  refused(req: IncomingMessage | undefined, r: Refusal): void {
    this.metrics.request('', undefined, r.status, 0)
    if (this.opts.accessLog) this.log.info({ method: req?.method, url: req?.url, host: req?.headers.host, status: r.status, reason: r.reason }, 'access')
  }

  /** An upgrade's handshake answer (the pod's status, or the gateway's own), counted once. */
  upgradeAnswered(req: IncomingMessage, host: string, backend: BackendSpec | undefined, status: number, seconds: number, reason: Reason | undefined): void {
    this.metrics.request(host, backend, status, seconds)
    if (this.opts.accessLog) this.log.info({ method: req.method, url: req.url, host, status, reason, revision: backend?.revision?.key, upgrade: true, ms: Math.round(seconds * 1000) }, 'access')
  }

  /** Called by an Exchange exactly once when it ends. */
  finished(x: Exchange): void {
    const seconds = (performance.now() - x.startedAt) / 1000
    const host = x.resolution.entry.host
    this.metrics.request(host, x.backend, x.status, seconds)
    if (this.opts.accessLog) {
      this.log.info(
        { method: x.req.method, url: x.req.url, host, status: x.status, revision: x.backend.revision?.key, pod: x.pod?.endpoint.address, ms: Math.round(seconds * 1000), coldStartMs: x.coldStartMs >= 0 ? Math.round(x.coldStartMs) : undefined },
        'access',
      )
    }
    this.release()
  }

  release(): void {
    this.active--
    if (this.active === 0 && this.idleWaiters.length > 0) {
      const ws = this.idleWaiters
      this.idleWaiters = []
      for (const w of ws) w()
    }
  }

  /** End of a drain: requests still waiting for a pod get a clear 503 instead of a reset. */
  rejectHeld(): void {
    for (const t of this.throttlers.values()) t.rejectAll((w) => failWaiter(w, 'the gateway is shutting down; retry (another replica will take it)'))
  }

  /** Resolves when no request is in flight or held. */
  whenIdle(): Promise<void> {
    if (this.active === 0) return Promise.resolve()
    return new Promise((r) => this.idleWaiters.push(r))
  }

  async close(): Promise<void> {
    this.probed.close()
    await this.pools.close()
  }
}

export function originOf(host: string, port: number): string {
  return host.includes(':') ? `http://[${host}]:${port}` : `http://${host}:${port}`
}

/** Absolute-form request target (`GET http://h/p`) → origin-form path; undefined for anything else. */
function originFormOf(target: string): string | undefined {
  if (!/^https?:\/\//i.test(target)) return undefined
  try {
    const u = new URL(target)
    return u.pathname + u.search
  } catch {
    return undefined
  }
}

/**
 * A held request or upgrade that can no longer be served here: a 503 that says why (one whose backend
 * left the configuration follows the configuration instead, see HeldForPod.rerouteInstead). Requests
 * and upgrades are the only waiters a data plane holds; anything else is refused.
 */
function failWaiter(w: Waiter, detail: string, reason: 'draining' | 'no-backend' = 'draining'): void {
  if (w instanceof Exchange || w instanceof Upgrade) w.fail(503, reason, detail, { 'retry-after': '1' })
  else w.refuse?.('revision-queue-full')
}
