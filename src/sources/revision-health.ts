// Cluster mode: tells the data plane when a revision cannot become ready, and why, so the requests
// held for it are answered at once (503 revision-failed) instead of waiting out the cold-start
// timeout. Two things say why:
// - the Revision's conditions, which the cluster source already watches for every revision;
// - the revision's Pods (image pull, crash loop, unschedulable), which are watched only where it
//   matters: from the first request held for the revision with no pod, while requests for it come
//   or its pods are failing, one namespaced watch with a label selector per revision. The gateway
//   never lists every Pod of the cluster.
// A failure counts only while the revision has no ready endpoint: a pod that serves outranks an old
// condition. The verdict goes to `onChange` once per change, as the local runner's does.
import type { Logger } from 'pino'
import type { KubeConfig } from '@kubernetes/client-node'
import type { Revision } from '../model/k8s.ts'
import type { ObjectStore } from './store.ts'
import type { StatEntry } from '../autoscaler/stat-encoding.ts'
import type { StatSink } from '../autoscaler/reporter.ts'
import { ResilientInformer } from './informer.ts'
import type { BackoffOptions } from './informer.ts'
import { PODS, collectionPath } from './kube-resources.ts'
import { causeLabel, failureDetail, podsFailure, revisionConditionFailure } from './revision-failure.ts'
import type { PodState, RevisionFailure } from './revision-failure.ts'

/** Knative labels every pod of a revision with its name. */
const REVISION_LABEL = 'serving.knative.dev/revision'

/** What the data plane is told about a revision that cannot serve: its 503 body and the metric's label. */
export interface FailureVerdict {
  readonly detail: string
  readonly cause: string
}

export interface RevisionHealthOptions {
  kubeConfig: KubeConfig
  store: ObjectStore
  log: Logger
  /** The namespaces the gateway reads (empty: all): no pod watch is opened outside them. */
  namespaces: readonly string[]
  /** The revision's (`ns/name`) ready endpoints in the current snapshot. */
  readyEndpoints(revisionKey: string): number
  /** The revision cannot become ready (why), or can again (undefined). Called once per change, never from inside coldStart(). */
  onChange(namespace: string, name: string, verdict: FailureVerdict | undefined): void
  /** Pod watches stay open this long after the revision's last demand (default 5 s). */
  idleMs?: number
  backoff?: BackoffOptions
  watchdogMs?: number
  forbiddenGraceMs?: number
}

interface PodWatch {
  readonly informer: ResilientInformer
  readonly pods: Map<string, PodState>
  lastDemandAt: number
}

const DEFAULT_IDLE_MS = 5000

export class RevisionHealth implements StatSink {
  private readonly opts: RevisionHealthOptions
  private readonly watches = new Map<string, PodWatch>()
  /** Revisions whose conditions say they failed (from the store's Revisions, all of them: a map lookup at cold start). */
  private readonly conditions = new Map<string, RevisionFailure>()
  /** What onChange was last told, per revision. */
  private readonly told = new Map<string, FailureVerdict & { reason: string }>()
  private timer: NodeJS.Timeout | undefined
  private unsubscribe: (() => void) | undefined
  private stopped = false

  constructor(opts: RevisionHealthOptions) {
    this.opts = opts
  }

  start(): void {
    // On a microtask, not with the recompile: a Revision turning failed answers its held requests at once.
    this.unsubscribe = this.opts.store.onChangeSoon(['Revision'], (changes) => {
      for (const c of changes.objects.values()) this.revisionChanged(c.key)
    })
    for (const rev of this.opts.store.list('Revision')) this.revisionChanged(`${rev.metadata.namespace ?? 'default'}/${rev.metadata.name}`)
    this.timer = setInterval(() => this.sweep(), 1000)
    this.timer.unref()
  }

  stop(): void {
    this.stopped = true
    this.unsubscribe?.()
    if (this.timer) clearInterval(this.timer)
    for (const w of this.watches.values()) w.informer.stop()
    this.watches.clear()
  }

  /** A request is held for the revision with no pod at all: watch its pods from now on. */
  coldStart(namespace: string, name: string): void {
    if (this.stopped) return
    const key = `${namespace}/${name}`
    if (!this.opts.store.get('Revision', key)) return
    if (this.opts.namespaces.length > 0 && !this.opts.namespaces.includes(namespace)) return
    const w = this.watches.get(key)
    if (w) {
      w.lastDemandAt = Date.now()
      return
    }
    this.watch(key, namespace, name)
    // Its conditions may say already that it failed: the request just held is answered at once. On
    // a microtask: this runs inside the throttler's enqueue, which must return before it is let go.
    queueMicrotask(() => this.evaluate(key))
  }

  /** StatSink: requests for a watched revision (held or in flight) keep its pods watched. */
  send(entries: StatEntry[]): boolean {
    const now = Date.now()
    for (const e of entries) {
      if (e.averageConcurrentRequests <= 0 && e.requestCount <= 0) continue
      const w = this.watches.get(`${e.namespace}/${e.name}`)
      if (w) w.lastDemandAt = now
    }
    return true
  }

  /** A new snapshot: endpoints that appeared or left change verdicts. */
  snapshotChanged(): void {
    for (const key of this.interesting()) this.evaluate(key)
  }

  /** Every revision that cannot serve now, with why (for a --workers worker that joins later). */
  faults(): ReadonlyMap<string, FailureVerdict> {
    return this.told
  }

  /** For /debug/routes: the revisions whose pods are watched, and the ones failing. */
  describe(): { podWatches: Record<string, { synced: boolean; pods: number }>; failing: Record<string, { reason: string; detail: string }> } {
    const podWatches: Record<string, { synced: boolean; pods: number }> = {}
    for (const [key, w] of this.watches) podWatches[key] = { synced: w.informer.synced, pods: w.pods.size }
    const failing: Record<string, { reason: string; detail: string }> = {}
    for (const [key, v] of this.told) failing[key] = { reason: v.reason, detail: v.detail }
    return { podWatches, failing }
  }

  // ---------------------------------------------------------------- pods

  private watch(key: string, namespace: string, name: string): PodWatch {
    const pods = new Map<string, PodState>()
    const changed = (): void => this.evaluate(key)
    const informer = new ResilientInformer({
      name: `pods@${key}`,
      kubeConfig: this.opts.kubeConfig,
      path: collectionPath(PODS, namespace),
      labelSelector: `${REVISION_LABEL}=${name}`,
      handlers: {
        upsert: (o) => {
          pods.set(o.metadata.name, o as unknown as PodState)
          changed()
        },
        remove: (o) => {
          pods.delete(o.metadata.name)
          changed()
        },
      },
      log: this.opts.log,
      backoff: this.opts.backoff,
      watchdogMs: this.opts.watchdogMs,
      forbiddenGraceMs: this.opts.forbiddenGraceMs,
    })
    const w: PodWatch = { informer, pods, lastDemandAt: Date.now() }
    this.watches.set(key, w)
    void informer.start()
    return w
  }

  /**
   * Closes the pod watches no longer needed: the revision has a ready endpoint, or no request has
   * come for it lately. A revision whose pods are failing stays watched, so the change that ends the
   * failure (a pod recovering, or going away) is seen.
   */
  private sweep(): void {
    const now = Date.now()
    const idleMs = this.opts.idleMs ?? DEFAULT_IDLE_MS
    for (const [key, w] of this.watches) {
      if (podsFailure(w.pods.values()) !== undefined) continue
      if (this.opts.readyEndpoints(key) === 0 && now - w.lastDemandAt < idleMs) continue
      w.informer.stop()
      this.watches.delete(key)
      this.evaluate(key)
    }
  }

  // ---------------------------------------------------------------- verdicts

  private revisionChanged(key: string): void {
    const rev = this.opts.store.get('Revision', key) as Revision | undefined
    const f = rev ? revisionConditionFailure(rev) : undefined
    if (f) this.conditions.set(key, f)
    else this.conditions.delete(key)
    if (!rev) {
      this.watches.get(key)?.informer.stop()
      this.watches.delete(key)
    }
    if (this.interesting().has(key)) this.evaluate(key)
  }

  /**
   * The revisions a verdict is kept for: those with requests held lately (watched) and those failing
   * now. A revision nobody asks for is not judged, so old failed revisions of a large cluster are
   * neither logged nor tracked until a request comes for them (it is then answered at once).
   */
  private interesting(): Set<string> {
    return new Set([...this.watches.keys(), ...this.told.keys()])
  }

  /**
   * The pods, when some are there, are the freshest word (one still pulling its image means wait);
   * without pods, the Revision's conditions. Neither counts once the revision has a ready endpoint.
   */
  private failure(key: string): RevisionFailure | undefined {
    if (this.opts.readyEndpoints(key) > 0) return undefined
    const w = this.watches.get(key)
    const live = w ? [...w.pods.values()].filter((p) => p.metadata.deletionTimestamp === undefined) : []
    if (live.length > 0) return podsFailure(live)
    return this.conditions.get(key)
  }

  private evaluate(key: string): void {
    if (this.stopped) return
    const f = this.failure(key)
    const before = this.told.get(key)
    const slash = key.indexOf('/')
    const [namespace, name] = [key.slice(0, slash), key.slice(slash + 1)]
    if (!f) {
      if (!before) return
      this.told.delete(key)
      this.opts.log.info({ revision: key }, 'revision no longer failing: its requests are held again')
      this.opts.onChange(namespace, name, undefined)
      return
    }
    const detail = failureDetail(key, f)
    if (before?.detail === detail) return
    const verdict = { detail, cause: causeLabel(f.reason), reason: f.reason }
    this.told.set(key, verdict)
    this.opts.log.warn({ revision: key, reason: f.reason, where: f.where, message: f.message }, 'revision cannot become ready: its requests are answered 503 revision-failed at once')
    this.opts.onChange(namespace, name, { detail, cause: verdict.cause })
  }
}
