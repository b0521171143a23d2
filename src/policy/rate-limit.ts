// Rate limits in the front door's policy stage, before admission: a limited request is answered 429
// at once and never held, never counted as demand, never wakes a revision. Two limits, each a token
// bucket: per host (edge.knative.dev/rate-limit on its KIngress, Route or DomainMapping), and per
// client address (--rate-limit-per-client; the address a PROXY header gave, where one did). Each
// gateway process holds its share: with --workers N every bucket has 1/N of the rate and burst.
import type { Policy, PolicyInput, Verdict } from '../dataplane/policy.ts'
import type { Answer } from '../dataplane/reply.ts'
import type { RateLimitSpec } from './rate-limit-spec.ts'
import { TokenBucket } from './token-bucket.ts'
import { unmappedIp } from '../dataplane/forwarded.ts'

export interface RateLimitOptions {
  /** --rate-limit-per-client, already divided among the workers; undefined: none. */
  perClient: RateLimitSpec | undefined
  /** Gateway processes sharing the limits (--workers): each holds this share of a host's limit. */
  processes: number
  /** Counted in edge_rate_limited_total. */
  onLimited(host: string, limit: 'host' | 'client'): void
  now?: () => number
}

/** Client buckets kept at most (one per address seen recently); full ones are swept first. */
const MAX_CLIENTS = 100_000
/** How often buckets that have refilled (and so say nothing) are forgotten. */
const SWEEP_MS = 10_000

export class RateLimitPolicy implements Policy {
  readonly name = 'rate-limit'
  private opts: RateLimitOptions
  private readonly now: () => number
  /** Per host, with the spec it was made for (a changed annotation starts a new bucket). */
  private readonly hosts = new Map<string, { spec: RateLimitSpec; bucket: TokenBucket }>()
  private readonly clients = new Map<string, TokenBucket>()
  private lastSweep = 0

  constructor(opts: RateLimitOptions) {
    this.opts = opts
    this.now = opts.now ?? (() => performance.now())
  }

  /** --rate-limit-per-client changed (config-edge-gateway): every client starts a new, full bucket. */
  setPerClient(perClient: RateLimitSpec | undefined): void {
    this.opts = { ...this.opts, perClient }
    this.clients.clear()
  }

  check(input: PolicyInput): Verdict {
    const entry = input.resolution.entry
    const hostSpec = entry.ingress.rateLimit
    const per = this.opts.perClient
    if (hostSpec === undefined && per === undefined) return undefined
    const now = this.now()
    if (now - this.lastSweep > SWEEP_MS) this.sweep(now)
    if (per !== undefined) {
      const client = unmappedIp(input.req.socket?.remoteAddress) ?? ''
      let b = this.clients.get(client)
      if (b === undefined) {
        if (this.clients.size >= MAX_CLIENTS) this.sweep(now, true)
        this.clients.set(client, (b = new TokenBucket(per.rate, per.burst, now)))
      }
      const wait = b.take(now)
      if (wait > 0) return this.limited(entry.host, 'client', wait, `too many requests from ${client}: the limit per client is ${per.text}`)
    }
    if (hostSpec !== undefined) {
      let h = this.hosts.get(entry.host)
      if (h === undefined || h.spec !== hostSpec) {
        const n = this.opts.processes
        h = { spec: hostSpec, bucket: new TokenBucket(hostSpec.rate / n, Math.max(1, hostSpec.burst / n), now) }
        this.hosts.set(entry.host, h)
      }
      const wait = h.bucket.take(now)
      if (wait > 0) return this.limited(entry.host, 'host', wait, `too many requests to ${entry.host}: its limit is ${hostSpec.text}`)
    }
    return undefined
  }

  private limited(host: string, limit: 'host' | 'client', waitSeconds: number, why: string): Answer {
    this.opts.onLimited(host, limit)
    const retry = String(Math.max(1, Math.ceil(waitSeconds)))
    return { status: 429, reason: 'rate-limited', detail: `${why}; retry after ${retry}s`, headers: { 'retry-after': retry } }
  }

  /** Forgets buckets that have refilled; under pressure (too many clients), also the oldest. */
  private sweep(now: number, pressed = false): void {
    this.lastSweep = now
    for (const [k, b] of this.clients) if (b.full(now)) this.clients.delete(k)
    for (const [k, h] of this.hosts) if (h.bucket.full(now)) this.hosts.delete(k)
    if (pressed && this.clients.size >= MAX_CLIENTS) {
      let drop = this.clients.size - MAX_CLIENTS + 1
      for (const k of this.clients.keys()) {
        if (drop-- <= 0) break
        this.clients.delete(k)
      }
    }
  }
}
