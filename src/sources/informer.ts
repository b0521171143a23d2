// One informer (list + watch of one collection) that never silently stops.
//
// client-node 2.0.1's ListWatch gives up for good on any error that is not a 410 or its own inactivity
// timeout (a dropped socket, a refused connection, a failing list), and `stop()` itself reports an
// AbortError. So this wrapper:
// - restarts the same ListWatch after an error, with jittered exponential backoff. start() resumes from
//   the last resourceVersion, so nothing is relisted and nothing is lost (the watch replays history);
// - runs a watchdog: if neither an event nor a (re)connect was seen for `watchdogMs`, the ListWatch is
//   replaced by a new one. Replaced, not stop()+start(): a ListWatch whose watch request is still
//   connecting cannot be aborted (its `request` is only set once the response arrives), so restarting
//   it in place could leave two watch loops feeding one cache. A replaced instance is dead: everything
//   it reports is ignored, and its late watch is aborted on its first sign of life;
// - reconciles every list against the keys it has reported, so a fresh instance (which relists) still
//   reports the deletions that happened while it was not watching;
// - never removes anything because the API server is unreachable: only a successful list or a DELETED
//   event removes an object;
// - relists when the server cannot serve the resourceVersion it watches from: a watch ERROR
//   "Too large resource version", or a watch silent (no bookmark either) for the inactivity timeout,
//   which is how a server restored from an older backup answers a watch from a resourceVersion it has
//   not reached (bookmark-watch.ts).
import type { Logger } from 'pino'
import { ListWatch } from '@kubernetes/client-node'
import type { KubeConfig, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node'
import type { KubeObject } from '../model/k8s.ts'
import { listCollection } from './kube-list.ts'
import { BookmarkWatch } from './bookmark-watch.ts'
import { isTooLargeResourceVersion, retryAfterMs } from './watch-status.ts'
import { coded } from '../errors.ts'

export interface InformerHandlers {
  upsert(obj: KubeObject): void
  /** `obj` may carry only `metadata.name`/`namespace` (a deletion found by a relist). */
  remove(obj: KubeObject): void
}

export interface BackoffOptions {
  initialMs: number
  maxMs: number
}

export interface ResilientInformerOptions {
  /** Shown in logs and /debug/routes, e.g. `ingresses` or `ingresses@ns1`. */
  name: string
  kubeConfig: KubeConfig
  /** Collection path for list and watch, e.g. `/api/v1/services`. */
  path: string
  labelSelector?: string
  /** Tried first; dropped (client-side filtering only) if the server answers 400 to it. */
  fieldSelector?: string
  handlers: InformerHandlers
  log: Logger
  /** Restart delay after an error: doubles from initialMs up to maxMs, with jitter. */
  backoff?: BackoffOptions
  /** Replace the watch when nothing (event or connect) was seen for this long. */
  watchdogMs?: number
  /** A watch that carries nothing, not even a bookmark, for this long is abandoned and the collection relisted (default 150 s). */
  watchInactivityMs?: number
  /** 401/403 for this long in a row is an RBAC misconfiguration; shorter, it may be a server starting up. */
  forbiddenGraceMs?: number
  /** Called when synced/healthy change. */
  onStateChange?: () => void
  /** Called after each failure, once the retry is scheduled; `unreachable`: no HTTP answer at all. */
  onRetrying?: (unreachable: boolean) => void
  /** Called when a list/watch works again after failing. */
  onRecovered?: () => void
}

export interface InformerDescription {
  path: string
  fieldSelector: string | undefined
  synced: boolean
  healthy: boolean
  objects: number
  lastEventAt: string | undefined
  lastConnectAt: string | undefined
  lastListAt: string | undefined
  restarts: number
  watchdogRestarts: number
  /** Relists after a watch stayed silent, without even a bookmark, for the inactivity timeout. */
  silentRelists: number
  bookmarks: number
  errors: number
  lastError: { message: string; at: string } | undefined
  retryInMs: number | undefined
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 30_000 }
export const DEFAULT_WATCHDOG_MS = 5 * 60_000
/**
 * A kube-apiserver that has just started answers 403 until its RBAC informers have synced (seconds);
 * only refusals that outlast this are reported as the gateway's RBAC being wrong.
 */
export const DEFAULT_FORBIDDEN_GRACE_MS = 30_000
/** A healthy stretch this long resets the backoff; shorter ones keep growing it (a flapping watch). */
const BACKOFF_RESET_MS = 10_000
/** Longer than client-node's watch request timeout (30 s), after which a dead instance has no request left. */
const DEAD_INSTANCE_SWEEP_MS = 45_000

type Instance = ListWatch<KubernetesObject>

const iso = (t: number | undefined): string | undefined => (t === undefined ? undefined : new Date(t).toISOString())

function keyOfObj(o: KubernetesObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause
    const code = (err as Error & { statusCode?: number }).statusCode
    const parts = [err.message || err.name]
    if (code !== undefined && !parts[0]!.includes(String(code))) parts.push(`(HTTP ${code})`)
    if (cause instanceof Error && cause.message) parts.push(`(${cause.message})`)
    return parts.join(' ')
  }
  return String(err)
}

/** No HTTP answer at all (refused, reset, timed out): the API server itself is away, not this collection. */
export function isUnreachable(err: unknown): boolean {
  return (err as { statusCode?: number } | undefined)?.statusCode === undefined
}

function isUnsupportedSelector(err: unknown): boolean {
  const e = err as { statusCode?: number; message?: string } | undefined
  return e?.statusCode === 400 && /field ?(label|selector)/i.test(e.message ?? '')
}

export class ResilientInformer {
  readonly name: string
  private readonly opts: ResilientInformerOptions
  private readonly backoff: BackoffOptions
  private readonly watchdogMs: number
  private fieldSelector: string | undefined
  /** The live instance; any other instance is dead and ignored. */
  private current: Instance | undefined
  /** Replaced instances, by time of replacement, until any watch request they had in flight is over. */
  private readonly dead = new Map<Instance, number>()
  private stopped = false
  private started = false
  private restartTimer: NodeJS.Timeout | undefined
  private restartAt: number | undefined
  private restartMode: 'resume' | 'replace' = 'resume'
  /** The last failure had no HTTP answer (see isUnreachable). */
  private lastUnreachable = false
  /** When the current run of 401/403 answers began, and whether it was reported as RBAC. */
  private forbiddenSince: number | undefined
  private forbiddenReported = false
  private watchdogTimer: NodeJS.Timeout | undefined
  private attempts = 0
  private okSince = 0
  private lastActivity = 0
  private errorCount = 0
  /** Keys (`ns/name`) reported through upsert and not yet removed. */
  private readonly known = new Set<string>()
  private syncWaiters: Array<() => void> = []
  private lastEventAt: number | undefined
  private lastConnectAt: number | undefined
  private lastListAt: number | undefined
  private lastError: { message: string; at: number } | undefined
  private restarts = 0
  private watchdogRestarts = 0
  private silentRelists = 0
  private bookmarks = 0
  synced = false
  healthy = false

  constructor(opts: ResilientInformerOptions) {
    this.opts = opts
    this.name = opts.name
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF
    this.watchdogMs = opts.watchdogMs ?? DEFAULT_WATCHDOG_MS
    this.fieldSelector = opts.fieldSelector
  }

  /** Starts listing and watching; resolves once the first list is in (or when stopped before that). */
  start(): Promise<void> {
    if (!this.started) {
      this.started = true
      const every = Math.max(50, Math.min(this.watchdogMs / 4, 10_000))
      this.watchdogTimer = setInterval(() => this.checkWatchdog(), every)
      this.watchdogTimer.unref()
      this.replace()
    }
    return this.whenSynced()
  }

  whenSynced(): Promise<void> {
    if (this.synced || this.stopped) return Promise.resolve()
    return new Promise((resolve) => this.syncWaiters.push(resolve))
  }

  stop(): void {
    if (this.stopped) return
    this.stopped = true
    if (this.restartTimer) clearTimeout(this.restartTimer)
    if (this.watchdogTimer) clearInterval(this.watchdogTimer)
    this.restartTimer = undefined
    if (this.current) this.bury(this.current)
    this.current = undefined
    for (const inst of this.dead.keys()) void inst.stop()
    this.dead.clear()
    this.release()
  }

  describe(): InformerDescription {
    return {
      path: this.opts.path,
      fieldSelector: this.fieldSelector,
      synced: this.synced,
      healthy: this.healthy,
      objects: this.known.size,
      lastEventAt: iso(this.lastEventAt),
      lastConnectAt: iso(this.lastConnectAt),
      lastListAt: iso(this.lastListAt),
      restarts: this.restarts,
      watchdogRestarts: this.watchdogRestarts,
      silentRelists: this.silentRelists,
      bookmarks: this.bookmarks,
      errors: this.errorCount,
      lastError: this.lastError ? { message: this.lastError.message, at: new Date(this.lastError.at).toISOString() } : undefined,
      retryInMs: this.restartAt === undefined ? undefined : Math.max(0, this.restartAt - Date.now()),
    }
  }

  /** Waiting out a backoff because the API server could not be reached. */
  get waitingForServer(): boolean {
    return this.restartTimer !== undefined && this.lastUnreachable
  }

  /**
   * The API server is back (another informer reached it, or a probe did): retry now instead of at
   * the end of a backoff that grew while it was away, and start the next backoff from the beginning.
   */
  retryNow(): void {
    if (this.stopped || !this.restartTimer || !this.lastUnreachable) return
    clearTimeout(this.restartTimer)
    this.restartTimer = undefined
    this.restartAt = undefined
    this.attempts = 0
    this.restart(this.restartMode)
  }

  // ---------------------------------------------------------------- instances

  /** Builds a fresh ListWatch (which will list first) and makes it the live one. */
  private replace(): void {
    if (this.stopped) return
    const old = this.current
    const inst = this.create()
    this.current = inst
    if (old) this.bury(old)
    this.run(inst)
  }

  private create(): Instance {
    const { kubeConfig, path, labelSelector } = this.opts
    const fieldSelector = this.fieldSelector
    const live = (): boolean => inst === this.current && !this.stopped
    const listFn = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const list = await listCollection(kubeConfig, path, { labelSelector, fieldSelector })
      // A replaced instance must not go on to open a watch: failing its list ends it quietly.
      if (!live()) throw new Error(`informer ${this.name} was replaced`)
      this.reconcile(list.items)
      this.lastListAt = Date.now()
      this.touch()
      // ListWatch turns the items into add/update events right after this promise resolves (same
      // macrotask), and the store schedules its coalesced recompile with setImmediate. Two turns of
      // setImmediate put "synced" after both: a ready gateway already serves what was listed.
      setImmediate(() => setImmediate(() => {
        if (live()) this.listed()
      }))
      return list
    }
    // A bookmark is a sign of life for the watchdog; ListWatch itself keeps its resourceVersion.
    const watch = new BookmarkWatch(kubeConfig, {
      bookmark: () => {
        if (live()) {
          this.bookmarks++
          this.touch()
        }
      },
      silent: () => {
        if (live()) this.relistSilent()
      },
    }, this.opts.watchInactivityMs)
    const inst: Instance = new ListWatch<KubernetesObject>(path, watch, listFn, false, labelSelector, fieldSelector)
    const upsert = (obj: KubernetesObject): void => {
      if (!live()) return this.kill(inst)
      this.known.add(keyOfObj(obj))
      this.lastEventAt = Date.now()
      this.touch()
      this.markHealthy()
      this.opts.handlers.upsert(obj as KubeObject)
    }
    inst.on('add', upsert)
    inst.on('update', upsert)
    inst.on('delete', (obj) => {
      if (!live()) return this.kill(inst)
      this.known.delete(keyOfObj(obj))
      this.lastEventAt = Date.now()
      this.touch()
      this.opts.handlers.remove(obj as KubeObject)
    })
    inst.on('connect', () => {
      if (!live()) return this.kill(inst)
      this.lastConnectAt = Date.now()
      this.touch()
    })
    inst.on('error', (err) => {
      if (!live()) return this.kill(inst)
      this.failed(err)
    })
    return inst
  }

  /**
   * The watch carried nothing, not even a bookmark, for the inactivity timeout. A server that sends
   * bookmarks does that only to a watch from a resourceVersion it has not reached (it was restored from
   * an older backup) and then sends nothing until it passes it: resuming would stay blind, a relist
   * starts again from the server's own resourceVersion.
   */
  private relistSilent(): void {
    this.silentRelists++
    this.restarts++
    const log = this.silentRelists === 1 ? this.opts.log.warn.bind(this.opts.log) : this.opts.log.debug.bind(this.opts.log)
    log(
      { informer: this.name, relists: this.silentRelists, hint: 'the API server may have been restored from an older backup, or it sends no watch bookmarks' },
      coded('EDGE_ERR_KUBE_WATCH_STALLED', 'the watch carried nothing, not even a bookmark, for too long; relisting'),
    )
    this.replace()
  }

  /** A dead instance showed signs of life (a late watch response): abort it. stop() is idempotent. */
  private kill(inst: Instance): void {
    void inst.stop()
  }

  /**
   * Stops a replaced instance. Its AbortError reaches a dead handler and is ignored. A watch request
   * still connecting cannot be aborted yet, so the instance is stopped again on every watchdog tick
   * until client-node's own request timeout (30 s) has certainly ended it: no quiet zombie watch stays.
   */
  private bury(inst: Instance): void {
    this.dead.set(inst, Date.now())
    void inst.stop()
  }

  private sweepDead(): void {
    const now = Date.now()
    for (const [inst, since] of this.dead) {
      void inst.stop()
      if (now - since > DEAD_INSTANCE_SWEEP_MS) this.dead.delete(inst)
    }
  }

  private run(inst: Instance): void {
    const errorsBefore = this.errorCount
    this.touch()
    inst.start().then(
      () => {
        // Replaced while its watch was connecting: the watch is open now, and can be aborted.
        if (inst !== this.current) return this.kill(inst)
        // start() resolves once the watch request has an answer; no error since means it is open.
        if (inst === this.current && !this.stopped && this.errorCount === errorsBefore) this.markHealthy()
      },
      (err: unknown) => {
        if (inst === this.current && !this.stopped) this.failed(err)
      },
    )
  }

  // ---------------------------------------------------------------- state

  private failed(err: unknown): void {
    const now = Date.now()
    this.errorCount++
    this.lastError = { message: errorMessage(err), at: now }
    if (this.healthy && now - this.okSince >= BACKOFF_RESET_MS) this.attempts = 0
    const wasHealthy = this.healthy
    this.healthy = false
    this.lastUnreachable = isUnreachable(err)
    if (this.fieldSelector !== undefined && isUnsupportedSelector(err)) {
      this.opts.log.info({ informer: this.name, fieldSelector: this.fieldSelector }, 'the API server does not support this field selector; filtering client-side')
      this.fieldSelector = undefined
      this.schedule(0, 'replace')
    } else {
      // Never sooner than the server asked (a Status's retryAfterSeconds).
      const delay = Math.max(this.nextDelay(), retryAfterMs(err) ?? 0)
      const tooLarge = isTooLargeResourceVersion(err)
      const status = (err as { statusCode?: number } | undefined)?.statusCode
      if (status === 401 || status === 403) this.logForbidden(now, delay, wasHealthy)
      else {
        this.forbiddenSince = undefined
        const log = wasHealthy || this.errorCount === 1 ? this.opts.log.warn.bind(this.opts.log) : this.opts.log.debug.bind(this.opts.log)
        const what = tooLarge
          ? 'the API server has not reached the resourceVersion watched from; relisting (the last known objects stay in service)'
          : 'list/watch failed; retrying (the last known objects stay in service)'
        log({ informer: this.name, err: this.lastError.message, retryInMs: delay }, coded('EDGE_ERR_KUBE_WATCH', what))
      }
      // Resuming from a resourceVersion the server has not reached would fail again: relist.
      this.schedule(delay, tooLarge ? 'replace' : 'resume')
    }
    if (wasHealthy) this.opts.onStateChange?.()
    this.opts.onRetrying?.(this.lastUnreachable)
  }

  /**
   * A refusal is first reported as possibly transient (a server starting up refuses until its RBAC
   * caches are filled); once refusals have lasted the grace period, once, as RBAC misconfiguration.
   */
  private logForbidden(now: number, retryInMs: number, wasHealthy: boolean): void {
    const graceMs = this.opts.forbiddenGraceMs ?? DEFAULT_FORBIDDEN_GRACE_MS
    const first = this.forbiddenSince === undefined
    if (first) {
      this.forbiddenSince = now
      this.forbiddenReported = false
    }
    const lastedMs = now - this.forbiddenSince!
    const fields = { informer: this.name, err: this.lastError?.message, retryInMs }
    if (lastedMs >= graceMs) {
      if (this.forbiddenReported) return this.opts.log.debug(fields, 'list/watch still refused')
      this.forbiddenReported = true
      this.opts.log.error(
        { ...fields, refusedForMs: lastedMs, hint: `the gateway's credentials need list and watch on ${this.opts.path}: check the chart's ClusterRole/Role and their bindings (RBAC)` },
        coded('EDGE_ERR_KUBE_RBAC', 'list/watch refused for too long: RBAC misconfiguration; retrying'),
      )
      return
    }
    const log = first || wasHealthy ? this.opts.log.warn.bind(this.opts.log) : this.opts.log.debug.bind(this.opts.log)
    log(
      { ...fields, hint: `may be transient: an API server that has just started refuses requests until its RBAC caches are loaded; reported as RBAC misconfiguration if it lasts ${Math.round(graceMs / 1000)} s` },
      coded('EDGE_ERR_KUBE_WATCH', 'list/watch refused (HTTP 401/403); retrying'),
    )
  }

  private nextDelay(): number {
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(this.attempts, 30))
    this.attempts++
    // Jitter in [base/2, base]: replicas that lost the API server together do not return together.
    return Math.round(base / 2 + Math.random() * (base / 2))
  }

  private schedule(delayMs: number, mode: 'resume' | 'replace'): void {
    if (this.stopped || this.restartTimer) return
    this.restartAt = Date.now() + delayMs
    this.restartMode = mode
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined
      this.restartAt = undefined
      this.restart(mode)
    }, delayMs)
    this.restartTimer.unref()
  }

  private restart(mode: 'resume' | 'replace'): void {
    if (this.stopped) return
    this.restarts++
    // Resume: the same ListWatch continues from its last resourceVersion (or relists after a 410).
    if (mode === 'resume' && this.current) this.run(this.current)
    else this.replace()
  }

  private checkWatchdog(): void {
    this.sweepDead()
    if (this.stopped || this.restartTimer) return
    const idle = Date.now() - this.lastActivity
    if (idle < this.watchdogMs) return
    this.watchdogRestarts++
    this.restarts++
    this.opts.log.warn({ informer: this.name, idleMs: idle }, coded('EDGE_ERR_KUBE_WATCH_STALLED', 'no event and no reconnect for too long; restarting the watch'))
    this.replace()
  }

  private touch(): void {
    this.lastActivity = Date.now()
  }

  private markHealthy(): void {
    this.forbiddenSince = undefined
    if (this.healthy) return
    this.healthy = true
    this.okSince = Date.now()
    if (this.errorCount > 0) this.opts.log.info({ informer: this.name }, 'list/watch recovered')
    this.opts.onStateChange?.()
    if (this.errorCount > 0) this.opts.onRecovered?.()
  }

  private listed(): void {
    this.markHealthy()
    if (this.synced) return
    this.synced = true
    this.release()
    this.opts.onStateChange?.()
  }

  private release(): void {
    const waiters = this.syncWaiters
    this.syncWaiters = []
    for (const w of waiters) w()
  }

  /** After a list: anything reported before and absent now was deleted while nobody watched. */
  private reconcile(items: readonly KubernetesObject[]): void {
    const listed = new Set(items.map(keyOfObj))
    for (const key of [...this.known]) {
      if (listed.has(key)) continue
      this.known.delete(key)
      const slash = key.indexOf('/')
      const namespace = key.slice(0, slash)
      this.opts.handlers.remove({ apiVersion: '', kind: '', metadata: { name: key.slice(slash + 1), ...(namespace ? { namespace } : {}) } })
    }
  }
}
