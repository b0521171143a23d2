// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does it
// (there is no helper in @kubernetes/client-node; node-deps.md §3.3). One replica holds the Lease and
// renews it every retryPeriod; the others retry and take it over once it has expired. Writes use the
// Lease's resourceVersion, so when two candidates race the apiserver answers 409 to the loser.
//
// Safety comes from renewDeadline < leaseDuration: a leader that cannot renew for renewDeadline stops
// leading before anyone else may consider the Lease expired (clocks assumed roughly in sync: expiry is
// judged from spec.renewTime, as the brief asks, rather than client-go's locally observed time).
import { CoordinationV1Api, V1MicroTime } from '@kubernetes/client-node'
import type { KubeConfig, V1Lease, V1LeaseSpec } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { callOptions, errorText, httpCode } from './api.ts'

export interface LeaderElectionTimings {
  /** How long a Lease is valid after its last renewal (client-go: 15 s). Whole seconds on the wire. */
  leaseDurationMs: number
  /** A leader that has not renewed for this long steps down (client-go: 10 s). */
  renewDeadlineMs: number
  /** Time between attempts to acquire or renew (client-go: 2 s). */
  retryPeriodMs: number
}

export const DEFAULT_LEADER_TIMINGS: LeaderElectionTimings = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 }

export interface LeaderElectorOptions extends Partial<LeaderElectionTimings> {
  kubeConfig: KubeConfig
  namespace: string
  /** Lease name, e.g. `edge-gateway-status`. */
  name: string
  /** holderIdentity: the pod name. */
  identity: string
  log: Logger
  onStartedLeading: () => void
  onStoppedLeading: () => void
  /** Called when the observed holder changes ('' when nobody holds the Lease). */
  onNewLeader?: (holder: string) => void
  /** Give the Lease up on stop() so another replica takes over at once (client-go ReleaseOnCancel). */
  releaseOnStop?: boolean
}

/** MicroTime from the wire (six fractional digits; Date.parse reads them, keeping milliseconds). */
function parseTime(v: unknown): number {
  if (v instanceof Date) return v.getTime()
  return typeof v === 'string' ? Date.parse(v) : Number.NaN
}

export class LeaderElector {
  private readonly opts: LeaderElectorOptions
  private readonly timings: LeaderElectionTimings
  private readonly api: CoordinationV1Api
  private readonly log: Logger
  private leading = false
  private running = false
  private timer: NodeJS.Timeout | undefined
  private deadline: NodeJS.Timeout | undefined
  private attempt: Promise<void> | undefined
  private observedHolder: string | undefined
  private lastRenew = 0
  private lastError: string | undefined
  /** Attempts made and how they went (for /debug and tests). */
  readonly counts = { attempts: 0, acquired: 0, renewed: 0, conflicts: 0, errors: 0, lost: 0 }

  constructor(opts: LeaderElectorOptions) {
    this.opts = opts
    this.log = opts.log
    this.timings = {
      leaseDurationMs: opts.leaseDurationMs ?? DEFAULT_LEADER_TIMINGS.leaseDurationMs,
      renewDeadlineMs: opts.renewDeadlineMs ?? DEFAULT_LEADER_TIMINGS.renewDeadlineMs,
      retryPeriodMs: opts.retryPeriodMs ?? DEFAULT_LEADER_TIMINGS.retryPeriodMs,
    }
    const t = this.timings
    if (!(t.leaseDurationMs > t.renewDeadlineMs)) throw new Error('leader election: leaseDuration must be greater than renewDeadline')
    if (!(t.renewDeadlineMs > t.retryPeriodMs)) throw new Error('leader election: renewDeadline must be greater than retryPeriod')
    if (t.leaseDurationMs < 1000) throw new Error('leader election: leaseDuration must be at least 1 s (the Lease counts whole seconds)')
    this.api = opts.kubeConfig.makeApiClient(CoordinationV1Api)
  }

  get isLeader(): boolean {
    return this.leading
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.schedule(0)
  }

  /** Stops campaigning; a leader steps down (onStoppedLeading) and, by default, releases the Lease. */
  async stop(): Promise<void> {
    if (!this.running) return
    this.running = false
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.attempt
    const wasLeader = this.leading
    this.stepDown('stopped')
    if (wasLeader && this.opts.releaseOnStop !== false) await this.release()
  }

  describe(): Record<string, unknown> {
    return {
      lease: `${this.opts.namespace}/${this.opts.name}`,
      identity: this.opts.identity,
      leader: this.leading,
      holder: this.observedHolder,
      lastRenew: this.lastRenew ? new Date(this.lastRenew).toISOString() : undefined,
      lastError: this.lastError,
      ...this.timings,
      ...this.counts,
    }
  }

  private schedule(ms: number): void {
    if (!this.running) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.attempt = this.tick().finally(() => {
        this.attempt = undefined
      })
    }, ms)
    this.timer.unref()
  }

  private async tick(): Promise<void> {
    let ok = false
    try {
      ok = await this.tryAcquireOrRenew()
      this.lastError = undefined
    } catch (err) {
      this.counts.errors++
      this.lastError = errorText(err)
      this.log.warn({ lease: this.opts.name, err: this.lastError }, 'leader election: acquiring or renewing the Lease failed')
    }
    if (!this.running) return
    if (ok) {
      this.lastRenew = Date.now()
      this.armDeadline()
      if (!this.leading) {
        this.leading = true
        this.counts.acquired++
        this.log.info({ lease: this.opts.name, identity: this.opts.identity }, 'leader election: became leader')
        this.opts.onStartedLeading()
      } else this.counts.renewed++
    } else if (this.leading && this.observedHolder !== undefined && this.observedHolder !== this.opts.identity) {
      // Someone else holds a valid Lease: we are not leader any more, whatever our deadline says.
      this.stepDown(`the Lease is held by ${this.observedHolder}`)
    }
    // Candidates spread their attempts (client-go JitterFactor 1.2); a leader renews on the beat.
    const base = this.timings.retryPeriodMs
    this.schedule(this.leading ? base : base + Math.random() * 1.2 * base)
  }

  private armDeadline(): void {
    if (this.deadline) clearTimeout(this.deadline)
    this.deadline = setTimeout(() => this.stepDown(`no successful renewal for ${this.timings.renewDeadlineMs} ms`), this.timings.renewDeadlineMs)
    this.deadline.unref()
  }

  private stepDown(why: string): void {
    if (this.deadline) clearTimeout(this.deadline)
    this.deadline = undefined
    if (!this.leading) return
    this.leading = false
    this.counts.lost++
    this.log.info({ lease: this.opts.name, identity: this.opts.identity, why }, 'leader election: stopped leading')
    this.opts.onStoppedLeading()
  }

  private setObservedHolder(holder: string): void {
    if (holder === this.observedHolder) return
    this.observedHolder = holder
    this.opts.onNewLeader?.(holder)
  }

  /** One round of client-go's tryAcquireOrRenew: true when we hold the Lease afterwards. */
  private async tryAcquireOrRenew(): Promise<boolean> {
    this.counts.attempts++
    const { namespace, name, identity } = this.opts
    // A hung request must not outlive the renew deadline, or a partitioned leader would never step down.
    const opts = callOptions(Math.min(this.timings.renewDeadlineMs, Math.max(this.timings.retryPeriodMs, 1000)))
    const now = Date.now()
    const durationSeconds = Math.max(1, Math.round(this.timings.leaseDurationMs / 1000))
    let lease: V1Lease
    try {
      lease = await this.api.readNamespacedLease({ namespace, name }, opts)
    } catch (err) {
      if (httpCode(err) !== 404) throw err
      const spec: V1LeaseSpec = { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: new V1MicroTime(now), renewTime: new V1MicroTime(now), leaseTransitions: 0 }
      try {
        await this.api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec } }, opts)
      } catch (e) {
        if (httpCode(e) === 409) return this.lostRace()
        throw e
      }
      this.setObservedHolder(identity)
      return true
    }
    const spec = lease.spec ?? {}
    const holder = spec.holderIdentity ?? ''
    this.setObservedHolder(holder)
    const renewedAt = parseTime(spec.renewTime)
    const validUntil = renewedAt + (spec.leaseDurationSeconds ?? 0) * 1000
    // A Lease with no holder (released) or an unreadable renewTime is free to take.
    if (holder !== '' && holder !== identity && Number.isFinite(renewedAt) && validUntil > now) return false

    const next: V1LeaseSpec =
      holder === identity
        ? { ...spec, leaseDurationSeconds: durationSeconds, renewTime: new V1MicroTime(now) }
        : { holderIdentity: identity, leaseDurationSeconds: durationSeconds, acquireTime: new V1MicroTime(now), renewTime: new V1MicroTime(now), leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === '' ? 0 : 1) }
    try {
      await this.api.replaceNamespacedLease({ namespace, name, body: { ...lease, spec: next } }, opts)
    } catch (err) {
      if (httpCode(err) === 409) return this.lostRace()
      throw err
    }
    this.setObservedHolder(identity)
    return true
  }

  private lostRace(): false {
    // Someone wrote the Lease between our read and write: they won this round.
    this.counts.conflicts++
    return false
  }

  /** client-go's release: keep the Lease object, clear the holder, shorten it to 1 s. Best effort. */
  private async release(): Promise<void> {
    const { namespace, name, identity } = this.opts
    const opts = callOptions(Math.max(this.timings.retryPeriodMs, 1000))
    try {
      const lease = await this.api.readNamespacedLease({ namespace, name }, opts)
      if (lease.spec?.holderIdentity !== identity) return
      const now = new V1MicroTime()
      await this.api.replaceNamespacedLease(
        { namespace, name, body: { ...lease, spec: { holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaseTransitions: lease.spec.leaseTransitions ?? 0 } } },
        opts,
      )
      this.setObservedHolder('')
      this.log.info({ lease: name }, 'leader election: released the Lease')
    } catch (err) {
      this.log.warn({ lease: name, err: errorText(err) }, 'leader election: releasing the Lease failed; it expires on its own')
    }
  }
}
