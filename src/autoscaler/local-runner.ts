// The local runner: a laptop's stand-in for Knative's autoscaler and kubelet. A Revision runs as
// local instances, scaled by the very stats the gateway sends the Knative autoscaler: a poke starts
// the first instance at once, per-second averages scale out by the revision's target concurrency,
// and an idle window scales to zero. Each instance is published into the store as an EndpointSlice
// of `<revision>-private`, exactly as a pod would be.
//
// What an instance is depends on the revision (instance.ts): a local process when it is annotated
// `edge.knative.dev/local-command` (process-launcher.ts), else a container of its image when a
// container engine works here (container-launcher.ts). A revision with an image but neither is
// unrunnable: a configuration problem, and `onUnrunnable` tells the data plane to answer its
// requests 503 `no-runtime` rather than hold them. A revision whose `<revision>-private` pods some
// other source publishes (hand-written EndpointSlices) is left to them.
import { createHash } from 'node:crypto'
import path from 'node:path'
import type { Logger } from 'pino'
import type { EndpointSlice, Revision } from '../model/k8s.ts'
import { ANN_LOCAL_COMMAND, LABEL_SERVICE_NAME, keyOf } from '../model/k8s.ts'
import type { ConfigProblem } from '../model/problems.ts'
import { formatProblem } from '../model/problems.ts'
import type { ObjectStore } from '../sources/store.ts'
import { ANN_SOURCE_FILE } from '../serving/derive.ts'
import type { StatEntry } from './stat-encoding.ts'
import type { StatSink } from './reporter.ts'
import type { InstanceLauncher, RunningInstance } from './instance.ts'
import { ProcessLauncher } from './process-launcher.ts'
import { ContainerLauncher } from './container-launcher.ts'
import { detectEngine } from './container-engine.ts'
import type { EngineChoice } from './container-engine.ts'
import { LOCAL_RUNNER_SOURCE, runtimeProblems } from './runtime-problems.ts'
import { servingContainer } from './revision-template.ts'

export { LOCAL_RUNNER_SOURCE }
export { splitCommand } from './process-launcher.ts'

export interface LocalRunnerOptions {
  store: ObjectStore
  log: Logger
  /** Seconds without demand before a revision is scaled to zero (above its min-scale). */
  scaleToZeroAfterSeconds: number
  /** Requests in flight on a local endpoint: an instance with any is never stopped. */
  inFlightAt(address: string): number
  /** How long a new instance may take to become ready before it is given up on. */
  startTimeoutMs?: number
  /**
   * Wait at least this long after taking an instance out of the endpoints before stopping it, even
   * at zero in flight: with --workers the counts arrive once a second, so a fresh 0 proves nothing yet.
   */
  stopGraceMs?: number
  /** What runs revisions that have an image and no local command (default `auto`: podman, then docker). */
  containerEngine?: EngineChoice
  /**
   * Whose containers these are: gateways with the same scope (serving the same manifests) remove
   * each other's leftovers once their gateway process is gone. Default: the working directory.
   */
  scope?: string
  /**
   * The runner cannot run this revision (`no-runtime`), or its instances keep exiting before they
   * are ready (`revision-failed`); `detail` says why and how to fix it, undefined when that is over.
   * Never called from inside coldStart().
   */
  onUnrunnable?(namespace: string, name: string, detail: string | undefined, reason: RevisionFaultReason): void
}

export type RevisionFaultReason = 'no-runtime' | 'revision-failed'

/** A scope from a manifests directory: the same directory gives the same scope. */
export function scopeOf(dir: string): string {
  return createHash('sha256').update(path.resolve(dir)).digest('hex').slice(0, 12)
}

interface Instance {
  id: number
  launcher: InstanceLauncher
  /** The Revision it was started from (its image, to say why it exited). */
  revision: Revision
  /** Set once the launcher has started it. */
  run: RunningInstance | undefined
  /** Resolves once the launcher's start() has (so close() can wait for instances still starting). */
  started: Promise<void>
  stopped: Promise<void> | undefined
  /** Ready and published as an endpoint. */
  ready: boolean
  /** Taken out of the endpoints; stopped once its in-flight requests finish. */
  stopping: boolean
  /** When it was taken out of the endpoints. */
  retiredAt: number
  exited: boolean
}

interface RevisionState {
  key: string
  namespace: string
  name: string
  instances: Instance[]
  /** Last reported average concurrency (including held requests). */
  demand: number
  lastDemandAt: number
  /** Consecutive exits before becoming ready, and no new instance before this time (crash backoff). */
  crashes: number
  holdUntil: number
  /** Told to the data plane as `revision-failed` (its requests answered 503 at once) until an instance is ready. */
  failing: string | undefined
  /** The Revision object last reconciled: a new one (edited) starts afresh. */
  seen: Revision | undefined
}

type EngineState = { state: 'unknown' | 'detecting' } | { state: 'ready'; launcher: ContainerLauncher } | { state: 'none'; why: string }

/** How one revision runs here: which launcher, or why not yet or not at all. */
type Plan = { launcher: InstanceLauncher } | { waiting: 'engine' } | { unrunnable: string }

const DEFAULT_TARGET = 100

export class LocalRunner implements StatSink {
  private readonly opts: LocalRunnerOptions
  private readonly revisions = new Map<string, RevisionState>()
  private readonly processes = new ProcessLauncher()
  private engine: EngineState
  private nextId = 1
  private timer: NodeJS.Timeout | undefined
  private unsubscribe: (() => void) | undefined
  private closed = false
  /** Revisions reported unrunnable (key → detail), and the problems last given to the store. */
  private unrunnable = new Map<string, string>()
  private problemsText = '[]'
  /** `ns/name` of revisions whose `-private` EndpointSlices another source publishes, per store version. */
  private elsewhere = { version: -1, keys: new Set<string>() }
  /**
   * Our instances must not outlive us. close() stops them politely; a gateway that exits without it
   * (a second Ctrl-C, a fatal error) kills the ones still running as it goes, since nothing else
   * would: they would keep their ports and run on with no parent.
   */
  private readonly killOnExit = (): void => {
    this.processes.killNow()
    if (this.engine.state === 'ready') this.engine.launcher.killNow()
  }

  constructor(opts: LocalRunnerOptions) {
    this.opts = opts
    this.engine = opts.containerEngine === 'none' ? { state: 'none', why: '--container-engine is none' } : { state: 'unknown' }
  }

  start(): void {
    process.on('exit', this.killOnExit)
    this.timer = setInterval(() => this.reconcileAll(), 1000)
    this.timer.unref()
    // A new or changed Revision is looked at at once: an unrunnable one is answered 503 from its first request.
    this.unsubscribe = this.opts.store.onChange((changes) => {
      for (const c of changes.objects.values()) if (c.kind === 'Revision') return this.reconcileAll()
    })
    this.reconcileAll()
  }

  /** StatSink: pokes and per-second reports from the StatReporter. */
  send(entries: StatEntry[]): boolean {
    const now = Date.now()
    for (const e of entries) {
      const key = `${e.namespace}/${e.name}`
      if (!this.revisionObject(key)) continue
      const st = this.state(key, e.namespace, e.name)
      st.demand = e.averageConcurrentRequests
      if (e.averageConcurrentRequests > 0) st.lastDemandAt = now
      this.reconcile(st)
    }
    return true
  }

  /** A request is waiting for a revision with no endpoint at all: start an instance now. */
  coldStart(namespace: string, name: string): void {
    const key = `${namespace}/${name}`
    if (!this.revisionObject(key)) return
    const st = this.state(key, namespace, name)
    st.lastDemandAt = Date.now()
    st.demand = Math.max(st.demand, 1)
    this.reconcile(st)
  }

  /** Live instances per revision, for /debug/routes. */
  describe(): Record<string, Array<{ port: number; ready: boolean; stopping: boolean; pid: number | undefined; container?: string }>> {
    const out: ReturnType<LocalRunner['describe']> = {}
    for (const st of this.revisions.values()) {
      out[st.key] = st.instances.map((i) => {
        const one = { port: i.run?.port ?? 0, ready: i.ready, stopping: i.stopping, pid: i.run?.pid }
        return i.run?.container ? { ...one, container: i.run.container } : one
      })
    }
    return out
  }

  /** Revisions that cannot run here, with why: for a process that joins later (a --workers worker). */
  /** Every revision that cannot serve now (for a worker that joins), with why. */
  faults(): Map<string, { reason: RevisionFaultReason; detail: string }> {
    const out = new Map<string, { reason: RevisionFaultReason; detail: string }>()
    for (const [key, detail] of this.unrunnable) out.set(key, { reason: 'no-runtime', detail })
    for (const st of this.revisions.values()) if (st.failing !== undefined && !out.has(st.key)) out.set(st.key, { reason: 'revision-failed', detail: st.failing })
    return out
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    this.unsubscribe?.()
    const all = [...this.revisions.values()].flatMap((s) => s.instances)
    await Promise.all(
      all.map(async (i) => {
        await i.started
        await this.stop(i)
      }),
    )
    process.off('exit', this.killOnExit)
    this.opts.store.replaceSource(LOCAL_RUNNER_SOURCE, [])
    this.opts.store.setProblems(LOCAL_RUNNER_SOURCE, [])
  }

  /** The Revision when this runner runs it (by process or by container), else undefined. */
  private revisionObject(key: string): Revision | undefined {
    const rev = this.opts.store.get('Revision', key)
    return rev && this.runsHere(rev) ? rev : undefined
  }

  private runsHere(rev: Revision): boolean {
    if (rev.metadata.annotations?.[ANN_LOCAL_COMMAND]) return true
    return !!servingContainer(rev)?.image && !this.podsElsewhere().has(keyOf(rev.metadata))
  }

  private plan(rev: Revision): Plan {
    if (rev.metadata.annotations?.[ANN_LOCAL_COMMAND]) return { launcher: this.processes }
    const engine = this.engine
    if (engine.state === 'ready') return { launcher: engine.launcher }
    if (engine.state === 'none') return { unrunnable: engine.why }
    this.detectEngine()
    return { waiting: 'engine' }
  }

  private podsElsewhere(): Set<string> {
    const store = this.opts.store
    if (this.elsewhere.version === store.version) return this.elsewhere.keys
    const keys = new Set<string>()
    for (const es of store.list('EndpointSlice')) {
      const svc = es.metadata.labels?.[LABEL_SERVICE_NAME]
      if (!svc?.endsWith('-private') || store.ownerOf('EndpointSlice', keyOf(es.metadata)) === LOCAL_RUNNER_SOURCE) continue
      keys.add(`${es.metadata.namespace ?? 'default'}/${svc.slice(0, -'-private'.length)}`)
    }
    this.elsewhere = { version: store.version, keys }
    return keys
  }

  /** Finds a container engine once, the first time a revision needs one; then looks at every revision again. */
  private detectEngine(): void {
    if (this.engine.state !== 'unknown') return
    this.engine = { state: 'detecting' }
    const log = this.opts.log
    void detectEngine(this.opts.containerEngine ?? 'auto').then(async (found) => {
      if (!found.engine) {
        log.warn({ why: found.why }, `no container engine: revisions with an image and no ${ANN_LOCAL_COMMAND} cannot run`)
        this.engine = { state: 'none', why: found.why }
      } else {
        const launcher = new ContainerLauncher(found.engine, this.opts.scope ?? scopeOf(process.cwd()))
        log.info({ engine: found.engine.command, scope: launcher.scope }, `container engine: ${found.engine.command}`)
        await launcher.sweep(log).catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not look for containers left behind'))
        this.engine = { state: 'ready', launcher }
      }
      this.reconcileAll()
    })
  }

  private state(key: string, namespace: string, name: string): RevisionState {
    let st = this.revisions.get(key)
    if (!st) {
      st = { key, namespace, name, instances: [], demand: 0, lastDemandAt: 0, crashes: 0, holdUntil: 0, failing: undefined, seen: undefined }
      this.revisions.set(key, st)
    }
    return st
  }

  private reconcileAll(): void {
    if (this.closed) return
    // Revisions with min-scale get their instances even before any request.
    for (const rev of this.opts.store.list('Revision')) {
      if (!this.runsHere(rev)) continue
      const key = keyOf(rev.metadata)
      this.state(key, rev.metadata.namespace ?? 'default', rev.metadata.name)
    }
    this.review()
    for (const st of this.revisions.values()) this.reconcile(st)
  }

  /** Reports what cannot run (problems, and onUnrunnable for each change). */
  private review(): void {
    const problems: ConfigProblem[] = []
    const unrunnable = new Map<string, string>()
    for (const rev of this.opts.store.list('Revision')) {
      if (!this.runsHere(rev) || rev.metadata.annotations?.[ANN_LOCAL_COMMAND]) continue
      const plan = this.plan(rev)
      const verdict = runtimeProblems(rev, 'unrunnable' in plan ? plan.unrunnable : undefined)
      problems.push(...verdict.problems)
      if (verdict.unrunnable) unrunnable.set(keyOf(rev.metadata), verdict.unrunnable)
    }
    const text = JSON.stringify(problems)
    if (text !== this.problemsText) {
      this.problemsText = text
      for (const p of problems) this.opts.log.error({ problem: p }, formatProblem(p))
      this.opts.store.setProblems(LOCAL_RUNNER_SOURCE, problems)
    }
    const before = this.unrunnable
    this.unrunnable = unrunnable
    const tell = this.opts.onUnrunnable
    if (!tell) return
    for (const [key, detail] of unrunnable) if (before.get(key) !== detail) tell(...split(key), detail, 'no-runtime')
    for (const key of before.keys()) if (!unrunnable.has(key)) tell(...split(key), undefined, 'no-runtime')
  }

  private reconcile(st: RevisionState): void {
    if (this.closed) return
    const rev = this.revisionObject(st.key)
    const live = st.instances.filter((i) => !i.stopping && !i.exited)
    if (!rev) {
      // The Revision is gone from the manifests (or no longer ours to run): stop everything it ran.
      for (const i of live) this.retire(st, i)
      this.setFailing(st, undefined)
      return
    }
    if (st.seen !== rev) {
      // A changed Revision (a fixed command, a new image) gets a fresh start: no backoff, not failing.
      if (st.seen !== undefined) {
        st.crashes = 0
        st.holdUntil = 0
        this.setFailing(st, undefined)
      }
      st.seen = rev
    }
    const ann = rev.metadata.annotations ?? {}
    const minScale = intAnnotation(ann['autoscaling.knative.dev/min-scale'] ?? ann['autoscaling.knative.dev/minScale'], 0)
    const maxScale = intAnnotation(ann['autoscaling.knative.dev/max-scale'] ?? ann['autoscaling.knative.dev/maxScale'], 0)
    const cc = rev.spec?.containerConcurrency ?? 0
    let target = Number(ann['autoscaling.knative.dev/target'] ?? DEFAULT_TARGET)
    if (!(target > 0)) target = DEFAULT_TARGET
    if (cc > 0) target = Math.min(target, cc)
    const idleFor = (Date.now() - st.lastDemandAt) / 1000
    let want = st.demand > 0 ? Math.ceil(st.demand / target) : 0
    // Keep serving through the idle window: scale to zero only after it passes with no demand.
    if (want === 0 && st.lastDemandAt > 0 && idleFor < this.opts.scaleToZeroAfterSeconds) want = Math.max(1, live.length > 0 ? Math.min(live.length, 1) : 0)
    want = Math.max(want, minScale)
    if (maxScale > 0) want = Math.min(want, maxScale)
    if (live.length < want) {
      const plan = this.plan(rev)
      if ('launcher' in plan && Date.now() >= st.holdUntil) for (let n = live.length; n < want; n++) this.launch(st, rev, plan.launcher)
    } else if (live.length > want) {
      // Scale down the newest first; an instance with requests in flight is only taken out of the
      // endpoints, and stopped when they finish.
      for (const i of live.slice(want).reverse()) this.retire(st, i)
    }
    for (const i of st.instances) if (i.stopping && !i.exited && this.idle(i)) void this.stop(i)
  }

  private launch(st: RevisionState, rev: Revision, launcher: InstanceLauncher): void {
    const id = this.nextId++
    const inst: Instance = { id, launcher, revision: rev, run: undefined, started: Promise.resolve(), stopped: undefined, ready: false, stopping: false, retiredAt: 0, exited: false }
    st.instances.push(inst)
    const log = this.opts.log.child({ revision: st.key })
    // Beside the manifest that defines it (a Revision derived from a Service: the Service's file).
    const source = rev.metadata.annotations?.[ANN_SOURCE_FILE] ?? this.opts.store.ownerOf('Revision', st.key)
    const cwd = source && path.isAbsolute(source) ? path.dirname(source) : process.cwd()
    const spec = { revision: rev, namespace: st.namespace, name: st.name, id, cwd, log }
    inst.started = launcher.start(spec, (code, signal, lastOutput) => this.exited(st, inst, code, signal, log, lastOutput)).then(
      (run) => {
        inst.run = run
        if (this.closed || inst.stopping) return void this.stop(inst)
        void run.ready(this.opts.startTimeoutMs ?? 60_000, () => inst.stopping || this.closed).then((ok) => {
          if (!ok || inst.exited || inst.stopping) {
            if (!inst.exited && !inst.stopping) log.warn({ port: run.port }, 'instance did not become ready (listening on $PORT, passing its readinessProbe); stopping it')
            void this.stop(inst)
            return
          }
          inst.ready = true
          log.info({ port: run.port, pid: run.pid, container: run.container }, 'revision instance ready')
          this.publish(st)
          this.setFailing(st, undefined)
        })
      },
      (err: unknown) => {
        log.error({ err: err instanceof Error ? err.message : String(err) }, 'could not start a revision instance')
        this.exited(st, inst, null, null, log)
      },
    )
  }

  /** Tells the data plane (once per change) that the revision is failing, with why, or no longer is. */
  private setFailing(st: RevisionState, detail: string | undefined): void {
    if (st.failing === detail) return
    st.failing = detail
    this.opts.onUnrunnable?.(st.namespace, st.name, detail, 'revision-failed')
  }

  private exited(st: RevisionState, inst: Instance, code: number | null, signal: NodeJS.Signals | null, log: Logger, lastOutput: readonly string[] = []): void {
    inst.exited = true
    log.info({ code, signal, port: inst.run?.port }, inst.stopping ? 'revision instance stopped' : 'revision instance exited')
    this.forget(st, inst)
    this.publish(st)
    if (inst.stopping || this.closed) return
    // Replace it while there is demand, backing off while it keeps dying before it is ready, so a
    // broken command line or image does not become a fork loop.
    st.crashes = inst.ready ? 0 : st.crashes + 1
    const delay = st.crashes === 0 ? 0 : Math.min(100 * 2 ** (st.crashes - 1), 10_000)
    st.holdUntil = Date.now() + delay
    if (st.crashes > 0) {
      log.warn({ restartInMs: delay, crashes: st.crashes }, `instance exited before it was ready; ${inst.launcher.hint}`)
      // Held requests would only wait for their cold-start timeout: they are answered now, with why.
      const explained = signal ? undefined : inst.launcher.explainExit?.(inst.revision, code, lastOutput)
      if (explained !== undefined) this.setFailing(st, `revision ${st.key} ${explained} (it is retried while requests come)`)
      else {
        const how = signal ? `was killed by ${signal}` : `exited with code ${code ?? 'unknown'}${code === 127 ? ' (command not found)' : ''}`
        const said = lastOutput.length > 0 ? `; its last output: ${lastOutput.join(' | ')}` : ''
        this.setFailing(st, `revision ${st.key} ${how} before it was ready${said}; ${inst.launcher.hint} (it is retried while requests come)`)
      }
    }
    setTimeout(() => this.reconcile(st), delay).unref()
  }

  private retire(st: RevisionState, inst: Instance): void {
    inst.stopping = true
    inst.retiredAt = Date.now()
    this.publish(st)
    if (inst.run && this.idle(inst)) void this.stop(inst)
  }

  /** Stops an instance once, however many times it is asked. */
  private stop(inst: Instance): Promise<void> {
    if (!inst.run || inst.exited) return Promise.resolve()
    inst.stopped ??= inst.run.stop()
    return inst.stopped
  }

  /** Out of the endpoints long enough for every count to include it, and nothing in flight. */
  private idle(inst: Instance): boolean {
    return Date.now() - inst.retiredAt >= (this.opts.stopGraceMs ?? 0) && this.opts.inFlightAt(`127.0.0.1:${inst.run?.port ?? 0}`) === 0
  }

  private forget(st: RevisionState, inst: Instance): void {
    st.instances = st.instances.filter((i) => i !== inst)
  }

  /** Publishes the ready, non-stopping instances as `<revision>-private` endpoints. */
  private publish(st: RevisionState): void {
    const store = this.opts.store
    const others = store.ownedBy(LOCAL_RUNNER_SOURCE).filter((id) => !id.startsWith(`EndpointSlice/${st.namespace}/${st.name}-private-local-`))
    const mine: EndpointSlice[] = st.instances
      .filter((i) => i.ready && !i.stopping && !i.exited && i.run)
      .map((i) => ({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `${st.name}-private-local-${i.id}`, namespace: st.namespace, labels: { [LABEL_SERVICE_NAME]: `${st.name}-private` } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
        ports: [{ name: 'http', port: i.run!.port, protocol: 'TCP' }],
      }))
    const keep = others.map((id) => {
      const rest = id.slice('EndpointSlice/'.length)
      return store.get('EndpointSlice', rest)!
    })
    store.replaceSource(LOCAL_RUNNER_SOURCE, [...keep.filter(Boolean), ...mine])
  }
}

function split(key: string): [string, string] {
  const slash = key.indexOf('/')
  return [key.slice(0, slash), key.slice(slash + 1)]
}

function intAnnotation(v: string | undefined, def: number): number {
  const n = Number(v)
  return v !== undefined && Number.isInteger(n) && n >= 0 ? n : def
}
