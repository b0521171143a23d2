// The KIngress status the gateway wants to see, computed the way Knative's generated reconciler and
// Kourier would compute it (kingress-contract.md §1.3, §2.3). Pure: the caller passes the existing
// status, what the gateway made of the ingress, and the clock.
//
// The condition algebra is knative.dev/pkg/apis ConditionSet for a "living" set: Ready is the happy
// condition, NetworkConfigured and LoadBalancerReady are its dependents. A False dependent makes Ready
// False with the dependent's reason; an Unknown one makes it Unknown; Ready is True only when both are.
import type { Condition, IngressStatus, LoadBalancerStatus } from '../model/k8s.ts'

export const COND_READY = 'Ready'
export const COND_NETWORK_CONFIGURED = 'NetworkConfigured'
export const COND_LOAD_BALANCER_READY = 'LoadBalancerReady'
const DEPENDENTS = [COND_NETWORK_CONFIGURED, COND_LOAD_BALANCER_READY] as const

export const REASON_NEW_GENERATION = 'NewObservedGenFailure'
export const MESSAGE_NEW_GENERATION = 'unsuccessfully observed a new generation'
export const REASON_UNINITIALIZED = 'Uninitialized'
export const MESSAGE_WAITING = 'Waiting for load balancer to be ready'
export const REASON_DOMAIN_CONFLICT = 'DomainConflict'
export const MESSAGE_DOMAIN_CONFLICT = 'Ingress rejected: ingress has a conflicting domain with another ingress'
export const REASON_RECONCILE_FAILED = 'ReconcileIngressFailed'

/** What the gateway made of one ingress. */
export type IngressOutcome =
  /** Compiled and served by this replica; `lb` says whether every replica serves it yet. */
  | { kind: 'configured'; lb: LoadBalancerState }
  /** Rejected whole: another (older) ingress holds one of its hosts. */
  | { kind: 'conflict' }
  /** Could not be compiled (or only partly): `message` is the problem text. */
  | { kind: 'failed'; message: string }

export type LoadBalancerState =
  | { kind: 'ready' }
  | { kind: 'probing' }
  /** Nothing to probe: no gateway replica is ready. `message` says where we looked. */
  | { kind: 'no-replicas'; message: string }

/** `domainInternal` of the public and cluster-local load balancers. */
export interface LoadBalancerDomains {
  public: string
  private: string
}

export function loadBalancerDomains(cfg: { publicService: string; localService: string; podNamespace: string; clusterDomain: string }): LoadBalancerDomains {
  return {
    public: `${cfg.publicService}.${cfg.podNamespace}.svc.${cfg.clusterDomain}`,
    private: `${cfg.localService}.${cfg.podNamespace}.svc.${cfg.clusterDomain}`,
  }
}

export interface DesiredStatusInput {
  /** metadata.generation of the object. */
  generation: number
  /** status as stored now (undefined when the object has none). */
  existing: IngressStatus | undefined
  outcome: IngressOutcome
  domains: LoadBalancerDomains
  now: Date
}

type Status = Condition['status']

/** metav1.Time wire format: RFC 3339 with whole seconds. */
export function rfc3339Seconds(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/** Conditions by type, mutated by the mark* helpers below (the ConditionManager of knative.dev/pkg). */
class Conditions {
  readonly byType = new Map<string, Condition>()

  constructor(existing: readonly Condition[] | undefined) {
    for (const c of existing ?? []) if (c && typeof c.type === 'string') this.byType.set(c.type, { ...c })
  }

  get(t: string): Condition | undefined {
    return this.byType.get(t)
  }

  set(t: string, status: Status, reason?: string, message?: string): void {
    const c: Condition = { type: t, status }
    if (reason) c.reason = reason
    if (message) c.message = message
    this.byType.set(t, c)
  }

  /** InitializeConditions: a missing Ready is Unknown; missing dependents follow a True Ready, else Unknown. */
  initialize(): void {
    if (!this.byType.has(COND_READY)) this.set(COND_READY, 'Unknown')
    const fill: Status = this.get(COND_READY)!.status === 'True' ? 'True' : 'Unknown'
    for (const t of DEPENDENTS) if (!this.byType.has(t)) this.set(t, fill)
  }

  markTrue(t: string): void {
    this.set(t, 'True')
    for (const d of DEPENDENTS) if (this.get(d)?.status !== 'True') return
    this.set(COND_READY, 'True')
  }

  markUnknown(t: string, reason: string, message: string): void {
    this.set(t, 'Unknown', reason, message)
    let isDependent = false
    for (const d of DEPENDENTS) {
      // A failed dependent trumps an unknown one: Ready stays (or becomes) False.
      if (this.get(d)?.status === 'False') {
        if (this.get(COND_READY)?.status !== 'False') this.markFalse(COND_READY, reason, message)
        return
      }
      if (d === t) isDependent = true
    }
    if (isDependent) this.set(COND_READY, 'Unknown', reason, message)
  }

  markFalse(t: string, reason: string, message: string): void {
    this.set(t, 'False', reason, message)
    if ((DEPENDENTS as readonly string[]).includes(t)) this.set(COND_READY, 'False', reason, message)
  }
}

function sameIgnoringTime(a: Condition, b: Condition | undefined): boolean {
  return (
    b !== undefined &&
    a.type === b.type &&
    a.status === b.status &&
    (a.reason ?? '') === (b.reason ?? '') &&
    (a.message ?? '') === (b.message ?? '') &&
    (a.severity ?? '') === (b.severity ?? '')
  )
}

/**
 * The status the reconciler would leave: existing status, PreProcessReconcile (initialise conditions,
 * Ready=Unknown on a new generation), Kourier's ReconcileKind for `outcome`, then PostProcessReconcile
 * (observedGeneration, and lastTransitionTime kept for every condition that ended up unchanged).
 */
export function desiredIngressStatus(input: DesiredStatusInput): IngressStatus {
  const existing = input.existing ?? {}
  const conds = new Conditions(existing.conditions)
  conds.initialize()
  if (existing.observedGeneration !== input.generation) conds.markUnknown(COND_READY, REASON_NEW_GENERATION, MESSAGE_NEW_GENERATION)

  const out: IngressStatus = { ...structuredClone(existing) }
  const o = input.outcome
  if (o.kind === 'conflict') {
    conds.markFalse(COND_LOAD_BALANCER_READY, REASON_DOMAIN_CONFLICT, MESSAGE_DOMAIN_CONFLICT)
  } else if (o.kind === 'failed') {
    conds.markUnknown(COND_READY, REASON_RECONCILE_FAILED, o.message)
  } else {
    conds.markTrue(COND_NETWORK_CONFIGURED)
    if (o.lb.kind === 'ready') {
      out.publicLoadBalancer = lbStatus(input.domains.public)
      out.privateLoadBalancer = lbStatus(input.domains.private)
      conds.markTrue(COND_LOAD_BALANCER_READY)
    } else if (o.lb.kind === 'probing') {
      conds.markUnknown(COND_LOAD_BALANCER_READY, REASON_UNINITIALIZED, MESSAGE_WAITING)
    } else {
      conds.markUnknown(COND_LOAD_BALANCER_READY, REASON_UNINITIALIZED, `${MESSAGE_WAITING}: ${o.lb.message}`)
    }
  }

  // Bump lastTransitionTime only where something about the condition changed (PostProcessReconcile).
  const before = new Map((existing.conditions ?? []).map((c) => [c.type, c]))
  const now = rfc3339Seconds(input.now)
  out.conditions = [...conds.byType.values()]
    .map((c) => {
      const prev = before.get(c.type)
      const keep = sameIgnoringTime(c, prev) && prev!.lastTransitionTime !== undefined
      return { ...c, lastTransitionTime: keep ? prev!.lastTransitionTime : now }
    })
    .sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0))
  out.observedGeneration = input.generation
  return out
}

function lbStatus(domainInternal: string): LoadBalancerStatus {
  return { ingress: [{ domainInternal }] }
}

/**
 * Kourier skips the probe when the ingress is already Ready for this generation with the expected
 * load balancers: a new leader after a fail-over must not flip settled ingresses back to Unknown.
 */
export function alreadyReady(existing: IngressStatus | undefined, generation: number, domains: LoadBalancerDomains): boolean {
  if (!existing || existing.observedGeneration !== generation) return false
  const ready = existing.conditions?.find((c) => c.type === COND_READY)
  if (ready?.status !== 'True') return false
  return statusEquals(existing.publicLoadBalancer, lbStatus(domains.public)) && statusEquals(existing.privateLoadBalancer, lbStatus(domains.private))
}

/** Structural equality of JSON values, ignoring key order and properties whose value is undefined. */
export function statusEquals(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a)) {
    const bb = b as unknown[]
    return a.length === bb.length && a.every((x, i) => statusEquals(x, bb[i]))
  }
  const ra = a as Record<string, unknown>
  const rb = b as Record<string, unknown>
  const ka = Object.keys(ra).filter((k) => ra[k] !== undefined)
  const kb = Object.keys(rb).filter((k) => rb[k] !== undefined)
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(rb, k) && statusEquals(ra[k], rb[k]))
}

/** Top-level status fields whose value differs (for logs and /debug): `[]` when nothing would be written. */
export function statusDiff(current: IngressStatus | undefined, desired: IngressStatus): string[] {
  const cur = (current ?? {}) as Record<string, unknown>
  const des = desired as Record<string, unknown>
  const keys = new Set([...Object.keys(cur), ...Object.keys(des)])
  return [...keys].filter((k) => !statusEquals(cur[k], des[k])).sort()
}
