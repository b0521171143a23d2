// Writes KIngress status: only while this replica leads, only for KIngresses of our class, only when
// the status would change. The desired status comes from the compiled snapshot (configured, conflict,
// problems) and the prober (does every gateway replica serve the ingress's hash yet).
//
// Writes are JSON merge patches of `status` on the /status subresource. Between our write and the
// informer delivering the result, the store still holds the old object; `written` remembers what we
// wrote on top of which resourceVersion so that window does not cause a second, identical write.
import { CustomObjectsApi } from '@kubernetes/client-node'
import type { KubeConfig } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import type { GatewayConfig } from '../config.ts'
import type { IngressStatus, KIngress } from '../model/k8s.ts'
import { ANN_INGRESS_CLASS, keyOf } from '../model/k8s.ts'
import type { IngressSummary, Snapshot } from '../model/snapshot.ts'
import type { ObjectStore } from '../sources/store.ts'
import { callOptions, errorText, httpCode } from './api.ts'
import { backoffDelay } from './backoff.ts'
import { alreadyReady, desiredIngressStatus, loadBalancerDomains, statusDiff, statusEquals } from './conditions.ts'
import type { IngressOutcome, LoadBalancerDomains } from './conditions.ts'
import { LeaderElector } from './leader.ts'
import type { LeaderElectionTimings } from './leader.ts'
import { IngressProber } from './prober.ts'
import type { ProberOptions } from './prober.ts'
import { gatewayReplicas } from './replicas.ts'
import { coded } from '../errors.ts'

const KINGRESS = { group: 'networking.internal.knative.dev', version: 'v1alpha1', plural: 'ingresses' } as const
export const DEFAULT_LEASE_NAME = 'edge-gateway-status'

export interface StatusWriterOptions {
  leaseName?: string
  leaderElection?: Partial<LeaderElectionTimings>
  probe?: Omit<ProberOptions, 'log' | 'onReady'>
  /** Timeout of one status write. */
  requestTimeoutMs?: number
  /** Backoff of a failing write, per ingress. */
  retryInitialMs?: number
  retryMaxMs?: number
  /** Re-evaluate everything this often even without events (events can be missed; writes happen only on change). */
  resyncMs?: number
  /** The clock for lastTransitionTime (tests). */
  now?: () => Date
}

export interface StatusWriterDeps {
  kubeConfig: KubeConfig
  store: ObjectStore
  snapshot: () => Snapshot
  /** Subscribe to new snapshots; may return an unsubscribe function. */
  onSnapshot: (cb: (snap: Snapshot) => void) => (() => void) | void
  config: GatewayConfig
  log: Logger
  options?: StatusWriterOptions
}

interface Written {
  /** resourceVersion of the object our patch was computed from. */
  basedOn: string | undefined
  status: IngressStatus
}

interface Retry {
  failures: number
  notBefore: number
}

export class KIngressStatusWriter {
  private readonly deps: StatusWriterDeps
  private readonly log: Logger
  private readonly api: CustomObjectsApi
  private readonly elector: LeaderElector
  private readonly domains: LoadBalancerDomains
  private readonly opts: Required<Omit<StatusWriterOptions, 'leaderElection' | 'probe' | 'leaseName'>>
  private prober: IngressProber | undefined
  /** Aborted when this term of leadership ends: a write still in flight must not land after it. */
  private term: AbortController | undefined
  private leading = false
  private started = false
  private unsubscribe: (() => void) | undefined
  private running: Promise<void> | undefined
  private again = false
  private retryTimer: NodeJS.Timeout | undefined
  private resyncTimer: NodeJS.Timeout | undefined
  private readonly written = new Map<string, Written>()
  private readonly retries = new Map<string, Retry>()
  private lastError: string | undefined
  /** What happened (for /debug and tests). */
  readonly counts = { passes: 0, writes: 0, errors: 0, conflicts: 0, skippedStale: 0 }

  constructor(deps: StatusWriterDeps) {
    this.deps = deps
    this.log = deps.log.child({ component: 'kingress-status' })
    const o = deps.options ?? {}
    this.opts = {
      requestTimeoutMs: o.requestTimeoutMs ?? 10_000,
      retryInitialMs: o.retryInitialMs ?? 100,
      retryMaxMs: o.retryMaxMs ?? 30_000,
      resyncMs: o.resyncMs ?? 5 * 60_000,
      now: o.now ?? (() => new Date()),
    }
    this.domains = loadBalancerDomains(deps.config)
    this.api = deps.kubeConfig.makeApiClient(CustomObjectsApi)
    this.elector = new LeaderElector({
      kubeConfig: deps.kubeConfig,
      namespace: deps.config.podNamespace,
      name: o.leaseName ?? DEFAULT_LEASE_NAME,
      identity: deps.config.podName,
      log: this.log,
      ...o.leaderElection,
      onStartedLeading: () => this.startLeading(),
      onStoppedLeading: () => this.stopLeading(),
    })
  }

  get isLeader(): boolean {
    return this.leading
  }

  start(): void {
    if (this.started) return
    this.started = true
    const off = this.deps.onSnapshot(() => this.kick())
    this.unsubscribe = typeof off === 'function' ? off : undefined
    this.elector.start()
  }

  /** Stops writing (waiting for a write in flight), then steps down and releases the Lease. */
  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.stopLeading()
    await this.running
    await this.elector.stop()
  }

  describe(): Record<string, unknown> {
    return {
      leader: this.leading,
      election: this.elector.describe(),
      ...this.counts,
      lastError: this.lastError,
      retrying: [...this.retries.keys()],
      probes: this.prober?.describe(),
    }
  }

  private startLeading(): void {
    if (!this.started) return
    this.leading = true
    this.term = new AbortController()
    this.prober = new IngressProber({ ...this.deps.options?.probe, log: this.log, onReady: () => this.kick() })
    this.resyncTimer = setInterval(() => this.kick(), this.opts.resyncMs)
    this.resyncTimer.unref()
    this.kick()
  }

  private stopLeading(): void {
    this.leading = false
    this.term?.abort()
    this.term = undefined
    this.prober?.stop()
    this.prober = undefined
    if (this.resyncTimer) clearInterval(this.resyncTimer)
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.resyncTimer = this.retryTimer = undefined
    // A later term starts from what the cluster says, not from what we wrote in this one.
    this.written.clear()
    this.retries.clear()
  }

  /** Run a pass now, or right after the one in progress. */
  private kick(): void {
    if (!this.leading) return
    if (this.running) {
      this.again = true
      return
    }
    this.running = this.loop().finally(() => {
      this.running = undefined
    })
  }

  private async loop(): Promise<void> {
    do {
      this.again = false
      try {
        await this.pass()
      } catch (err) {
        // A bug, not an API error (those are handled per ingress): log it and let the next event retry.
        this.log.error({ err }, coded('EDGE_ERR_STATUS', 'evaluating KIngress status failed'))
      }
    } while (this.again && this.leading)
  }

  private ours(ing: KIngress): boolean {
    // Exactly the class annotation, as the generated reconciler filters: anything else is never touched.
    return ing.metadata.annotations?.[ANN_INGRESS_CLASS] === this.deps.config.ingressClass
  }

  private async pass(): Promise<void> {
    const prober = this.prober
    if (!this.leading || !prober) return
    this.counts.passes++
    const { store, config } = this.deps
    prober.setReplicas(gatewayReplicas(store.list('EndpointSlice'), config.podNamespace, config.localService, config.localPort))
    const snap = this.deps.snapshot()
    const summaries = new Map<string, IngressSummary>()
    for (const s of snap.ingresses) if (s.ref.origin === 'Ingress') summaries.set(s.ref.key, s)

    const seen = new Set<string>()
    let nextRetry = Infinity
    for (const ing of store.list('Ingress')) {
      if (!this.ours(ing) || (ing.metadata as { deletionTimestamp?: string }).deletionTimestamp) continue
      const key = keyOf(ing.metadata)
      seen.add(key)
      const retry = this.retries.get(key)
      if (retry && retry.notBefore > Date.now()) {
        nextRetry = Math.min(nextRetry, retry.notBefore)
        continue
      }
      const outcome = this.outcome(ing, key, summaries.get(key), snap, prober)
      if (outcome === undefined) {
        this.counts.skippedStale++
        continue
      }
      const current = this.currentStatus(key, ing)
      const generation = ing.metadata.generation ?? 1
      const desired = desiredIngressStatus({ generation, existing: current, outcome, domains: this.domains, now: this.opts.now() })
      if (statusEquals(current, desired)) {
        this.retries.delete(key) // settled: a later failure starts its backoff afresh
        continue
      }
      if (!this.leading) return
      const failed = await this.write(ing, key, current, desired)
      if (failed !== undefined) nextRetry = Math.min(nextRetry, failed)
    }
    prober.retain(seen)
    for (const k of [...this.written.keys()]) if (!seen.has(k)) this.written.delete(k)
    for (const k of [...this.retries.keys()]) if (!seen.has(k)) this.retries.delete(k)
    if (nextRetry !== Infinity && this.leading) {
      if (this.retryTimer) clearTimeout(this.retryTimer)
      this.retryTimer = setTimeout(() => this.kick(), Math.max(0, nextRetry - Date.now()))
      this.retryTimer.unref()
    }
  }

  /** What the gateway made of the ingress; undefined when the snapshot has not caught up with the object yet. */
  private outcome(ing: KIngress, key: string, summary: IngressSummary | undefined, snap: Snapshot, prober: IngressProber): IngressOutcome | undefined {
    const generation = ing.metadata.generation ?? 1
    if (!summary) {
      // Not compiled at all: either the snapshot predates the object, or compiling it threw.
      const problems = snap.problems.filter((p) => p.object === `Ingress ${key}`)
      return problems.length > 0 ? { kind: 'failed', message: problemText(problems) } : undefined
    }
    if (summary.ref.generation !== generation) return undefined
    if (summary.conflicts.length > 0) return { kind: 'conflict' }
    // A bad rate-limit annotation does not stop the ingress serving (unlimited): it is not a failure;
    // nor does a bad extauthz opt-out (its hosts stay checked).
    const problems = summary.problems.filter((p) => p.code !== 'DomainConflict' && p.code !== 'EDGE_ERR_RATE_LIMIT' && p.code !== 'EDGE_ERR_EXTAUTHZ_ANNOTATION')
    if (problems.length > 0) return { kind: 'failed', message: problemText(problems) }
    if (alreadyReady(this.currentStatus(key, ing), generation, this.domains)) return { kind: 'configured', lb: { kind: 'ready' } }
    const state = prober.check(key, summary.ref.hash, summary.hosts)
    if (state.ready) return { kind: 'configured', lb: { kind: 'ready' } }
    if (state.reason === 'no-replicas') {
      const where = `EndpointSlices of Service ${this.deps.config.podNamespace}/${this.deps.config.localService}`
      return { kind: 'configured', lb: { kind: 'no-replicas', message: `no gateway replicas are ready (no ready addresses in the ${where})` } }
    }
    return { kind: 'configured', lb: { kind: 'probing' } }
  }

  /** The status as it stands, counting our own write the informer has not delivered yet. */
  private currentStatus(key: string, ing: KIngress): IngressStatus | undefined {
    const w = this.written.get(key)
    if (w && w.basedOn === ing.metadata.resourceVersion) return w.status
    return ing.status
  }

  /** Patches the status; returns when to retry if it failed. */
  private async write(ing: KIngress, key: string, current: IngressStatus | undefined, desired: IngressStatus): Promise<number | undefined> {
    const { namespace = 'default', name } = ing.metadata
    const term = this.term
    if (!term || term.signal.aborted) return undefined
    try {
      const out = (await this.api.patchNamespacedCustomObjectStatus(
        // resourceVersion makes the patch conditional: a status computed from an object that has
        // changed since (new generation, class switched away) is refused with 409, never applied.
        { ...KINGRESS, namespace, name, body: { metadata: { resourceVersion: ing.metadata.resourceVersion }, status: desired } },
        callOptions(this.opts.requestTimeoutMs, true, term.signal),
      )) as KIngress
      this.counts.writes++
      if (term.signal.aborted) return undefined
      this.retries.delete(key)
      this.written.set(key, { basedOn: ing.metadata.resourceVersion, status: out?.status ?? desired })
      const ready = desired.conditions?.find((c) => c.type === 'Ready')
      this.log.info({ ingress: key, generation: desired.observedGeneration, ready: ready?.status, reason: ready?.reason, changed: statusDiff(current, desired) }, 'KIngress status updated')
      return undefined
    } catch (err) {
      // Leadership ended mid-write: the next term starts clean, nothing to retry here.
      if (term.signal.aborted) return undefined
      if (httpCode(err) === 404) {
        // Deleted meanwhile: the informer will drop it from the store.
        this.retries.delete(key)
        return undefined
      }
      const failures = (this.retries.get(key)?.failures ?? 0) + 1
      const notBefore = Date.now() + backoffDelay(failures, this.opts.retryInitialMs, this.opts.retryMaxMs)
      this.retries.set(key, { failures, notBefore })
      if (httpCode(err) === 409) {
        // Our copy is stale; the informer brings the new one (and a new pass). The retry is a safety net.
        this.counts.conflicts++
        this.log.debug({ ingress: key }, 'KIngress changed before its status was written; re-evaluating')
        return notBefore
      }
      this.counts.errors++
      this.lastError = `${key}: ${errorText(err)}`
      this.log.warn({ ingress: key, err: errorText(err), failures }, coded('EDGE_ERR_STATUS_WRITE', 'writing KIngress status failed; retrying with backoff'))
      return notBefore
    }
  }
}

function problemText(problems: ReadonlyArray<{ code: string; field: string; reason: string }>): string {
  return problems.map((p) => `${p.code}: ${p.field ? `${p.field}: ` : ''}${p.reason}`).join('; ')
}
