// Prometheus metrics. Counters and histograms are updated per request with bounded labels (hosts
// the configuration knows, revision names, status codes, the gateway's own reasons); gauges read
// live state at scrape time, so the hot path pays nothing for them. The dashboard that reads them is
// charts/edge-gateway/dashboards/edge-gateway.json (test/prometheus.test.ts runs its queries).
import type { ExtAuthzOutcome } from './policy/extauthz.ts'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { BackendSpec } from './model/snapshot.ts'
import type { Reason } from './dataplane/reply.ts'
import type { Holds } from './activator/throttler.ts'
import { RequestAccounting } from './request-accounting.ts'
import type { RevisionServed } from './request-accounting.ts'
import { GoneRevisionSeries } from './gone-revision-series.ts'
import { collectProcessMetrics } from './process-metrics.ts'

/** Why a request was held: its revision had no pod (a scale from zero), or every pod was at containerConcurrency. */
export type HoldCause = 'cold-start' | 'no-capacity'

export interface LiveState {
  inFlight(): number
  revisions(): Array<{ namespace: string; revision: string; inFlight: number; queued: number; pods: number }>
  configProblems(): number
  /** Requests held and the bytes of their bodies, per namespace holding any (QueueBudgets.describe). */
  holds?(): Holds | undefined
  /** Whether the configuration has the revision now; series of the others are dropped once scraped (default: all kept). */
  revisionServed?: RevisionServed
  /** The Knative autoscaler's stat websocket, when one is configured (issue 7: its outage is visible). */
  autoscaler?(): { url: string; connected: boolean } | undefined
}

export class GatewayMetrics {
  readonly registry = new Registry()
  private readonly requests: Counter<'host' | 'namespace' | 'revision' | 'code' | 'reason'>
  private readonly accounting = new RequestAccounting()
  private readonly holds: Histogram<'namespace' | 'revision' | 'cause'>
  private readonly holdSeries = new GoneRevisionSeries<{ namespace: string; revision: string; cause: HoldCause }>()
  private readonly retries: Counter<'namespace' | 'revision'>
  private readonly fastFailures: Counter<'reason'>
  private readonly retrySeries = new GoneRevisionSeries<{ namespace: string; revision: string }>()
  readonly reloads: Counter<'result'>
  private readonly connectionsRefused: Counter<'reason'>
  readonly sourceUp: Gauge<'source'>
  private readonly accessLogDrops: Counter
  private readonly rateLimits: Counter<'host' | 'limit'>
  private readonly extAuthzChecks: Counter<'outcome'>

  constructor(live: LiveState, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry]
    if (opts.defaultMetrics !== false) collectProcessMetrics(this.registry)
    const accounting = this.accounting
    const served: RevisionServed = live.revisionServed ?? (() => true)
    const { holdSeries, retrySeries } = this
    this.requests = new Counter({
      name: 'edge_requests_total',
      help: 'Requests answered, by host (empty before routing: an unknown Host is never a label), revision, status code and, where the gateway answered itself, its reason (x-edge-reason)',
      labelNames: ['host', 'namespace', 'revision', 'code', 'reason'],
      registers,
      // Counted per request in RequestAccounting; brought up to date here, at scrape time.
      collect() {
        accounting.flushRequests(
          (labels, n) => this.inc(labels, n),
          (labels) => this.remove(labels),
          served,
        )
      },
    })
    // Written by hand in prom-client's metric shape (the registry and the workers' aggregation only
    // call get()): prom-client's Histogram offers no way to add counts other than one observe() each.
    const duration = { name: 'edge_request_duration_seconds', help: 'Time from request arrival to the client having its answer, by namespace, revision and status class', type: 'histogram', aggregator: 'sum' } as const
    this.registry.registerMetric({
      ...duration,
      get: async () => ({ ...duration, values: accounting.durationValues(duration.name, served) }),
      reset: () => {},
    } as unknown as Parameters<Registry['registerMetric']>[0])
    // One histogram for every hold, as x-edge-cold-start-ms reports every hold; `cause` tells a
    // scale from zero from a wait behind busy pods (Server-Timing's 'cold start' / 'no capacity').
    this.holds = new Histogram({
      name: 'edge_cold_start_wait_seconds',
      help: 'Time a request was held for a pod, by cause: cold-start (the revision had no ready pod) or no-capacity (every pod at containerConcurrency)',
      labelNames: ['namespace', 'revision', 'cause'],
      buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers,
      collect() {
        holdSeries.sweep(served, (labels) => this.remove(labels))
      },
    })
    this.retries = new Counter({
      name: 'edge_upstream_retries_total',
      help: 'Requests re-sent to another pod after a connect failure that the pod never saw',
      labelNames: ['namespace', 'revision'],
      registers,
      collect() {
        retrySeries.sweep(served, (labels) => this.remove(labels))
      },
    })
    // With --workers the primary sums every process's metrics; values every process computes alike
    // (the config) take the max instead of being counted once per process.
    this.fastFailures = new Counter({ name: 'edge_revision_fast_failures_total', help: 'Requests answered 503 revision-failed at once (held ones let go, new ones not held) because their revision cannot become ready, by why: a Kubernetes reason (ImagePullBackOff, CrashLoopBackOff, Unschedulable...), process-exited for a local instance, other', labelNames: ['reason'], registers })
    this.connectionsRefused = new Counter({ name: 'edge_connections_refused_total', help: 'Client connections closed as they were accepted, by reason (per-ip-limit: over --max-connections-per-ip; proxy-protocol-*: no valid PROXY header with --proxy-protocol)', labelNames: ['reason'], registers })
    this.rateLimits = new Counter({ name: 'edge_rate_limited_total', help: 'Requests answered 429 rate-limited before admission, by host and by which limit (host: its edge.knative.dev/rate-limit; client: --rate-limit-per-client)', labelNames: ['host', 'limit'], registers })
    this.extAuthzChecks = new Counter({ name: 'edge_extauthz_checks_total', help: 'Requests checked by the external authorizer (--extauthz-host), by outcome: allowed, denied (its answer went back), unavailable-allowed or unavailable-denied (it could not be asked: --extauthz-failure-mode-allow decided)', labelNames: ['outcome'], registers })
    this.accessLogDrops = new Counter({ name: 'edge_access_log_dropped_total', help: 'Access-log lines dropped because stdout could not take them as fast as requests came (requests are never slowed by the log)', registers })
    this.reloads = new Counter({ name: 'edge_config_reloads_total', help: 'Snapshots compiled, by result', labelNames: ['result'], registers, aggregator: 'max' })
    this.sourceUp = new Gauge({ name: 'edge_source_up', help: '1 while a configuration source is healthy (e.g. the API server reachable)', labelNames: ['source'], registers, aggregator: 'max' })
    new Gauge({ name: 'edge_requests_in_flight', help: 'Requests being proxied or held right now', registers, collect() { this.set(live.inFlight()) } })
    new Gauge({
      name: 'edge_autoscaler_connected',
      help: '1 while the stat websocket to the Knative autoscaler is open, 0 while it is down (absent when none is configured)',
      labelNames: ['url'],
      registers,
      aggregator: 'max',
      collect() {
        this.reset()
        const a = live.autoscaler?.()
        if (a) this.set({ url: a.url }, a.connected ? 1 : 0)
      },
    })
    new Gauge({ name: 'edge_config_problems', help: 'Configuration problems in the current snapshot (see /debug/routes)', registers, aggregator: 'max', collect() { this.set(live.configProblems()) } })
    const perRevision = (name: string, help: string, pick: (r: ReturnType<LiveState['revisions']>[number]) => number, aggregator: 'sum' | 'max' = 'sum') =>
      new Gauge({
        name,
        help,
        labelNames: ['namespace', 'revision'],
        registers,
        aggregator,
        collect() {
          this.reset()
          for (const r of live.revisions()) this.set({ namespace: r.namespace, revision: r.revision }, pick(r))
        },
      })
    new Gauge({
      name: 'edge_held_body_bytes',
      help: 'Bytes of request bodies held in memory while their requests wait for a pod, per namespace (each counts its Content-Length up to what the gateway reads before it stops); bounded by --max-held-body-bytes-per-namespace and --max-held-body-bytes',
      labelNames: ['namespace'],
      registers,
      collect() {
        this.reset()
        for (const [namespace, h] of Object.entries(live.holds?.()?.namespaces ?? {})) this.set({ namespace }, h.bodyBytes)
      },
    })
    perRevision('edge_revision_requests_in_flight', 'Requests on a pod of the revision from this gateway', (r) => r.inFlight)
    perRevision('edge_revision_requests_queued', 'Requests held for the revision (no free capacity)', (r) => r.queued)
    perRevision('edge_revision_ready_pods', 'Ready pods the gateway balances across', (r) => r.pods, 'max')
  }

  /** `reason` only where the gateway answered itself (the pod's answers have none). */
  request(host: string, backend: BackendSpec | undefined, code: number, seconds: number, reason?: Reason): void {
    this.accounting.record(host, backend, code, seconds, reason)
  }

  /** A request held `ms` for a pod; `scaleFromZero` when its wait began with no ready pod. */
  coldStart(backend: BackendSpec, ms: number, scaleFromZero: boolean): void {
    const rev = backend.revision
    const cause: HoldCause = scaleFromZero ? 'cold-start' : 'no-capacity'
    if (!rev) return
    const labels = { namespace: rev.namespace, revision: rev.name, cause }
    this.holdSeries.noted(labels)
    this.holds.observe(labels, ms / 1000)
  }

  rateLimited(host: string, limit: 'host' | 'client'): void {
    this.rateLimits.inc({ host, limit })
  }

  extAuthzChecked(outcome: ExtAuthzOutcome): void {
    this.extAuthzChecks.inc({ outcome })
  }

  accessLogDropped(lines: number): void {
    this.accessLogDrops.inc(lines)
  }

  connectionRefused(reason: 'per-ip-limit' | `proxy-protocol-${string}`): void {
    this.connectionsRefused.inc({ reason })
  }

  /** `cause` is one of revision-failure.ts's FAST_FAILURE_CAUSES, so the label set stays fixed. */
  fastFailure(cause: string): void {
    this.fastFailures.inc({ reason: cause })
  }

  retried(backend: BackendSpec): void {
    const rev = backend.revision
    const labels = { namespace: rev?.namespace ?? backend.namespace, revision: rev?.name ?? '' }
    this.retrySeries.noted(labels)
    this.retries.inc(labels)
  }
}
