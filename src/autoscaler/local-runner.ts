// The local runner: a laptop's stand-in for Knative's autoscaler and kubelet. A Revision annotated
// `edge.knative.dev/local-command` runs as local processes, scaled by the very stats the gateway
// sends the Knative autoscaler: a poke starts the first process at once, per-second averages scale
// out by the revision's target concurrency, and an idle window scales to zero. Each process is
// published into the store as an EndpointSlice of `<revision>-private`, exactly as a pod would be.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import net from 'node:net'
import path from 'node:path'
import type { Logger } from 'pino'
import type { EndpointSlice, Revision } from '../model/k8s.ts'
import { ANN_LOCAL_COMMAND, LABEL_SERVICE_NAME, keyOf } from '../model/k8s.ts'
import type { ObjectStore } from '../sources/store.ts'
import { ANN_SOURCE_FILE } from '../serving/derive.ts'
import type { StatEntry } from './stat-encoding.ts'
import type { StatSink } from './reporter.ts'

export const LOCAL_RUNNER_SOURCE = 'local-runner'

export interface LocalRunnerOptions {
  store: ObjectStore
  log: Logger
  /** Seconds without demand before a revision is scaled to zero (above its min-scale). */
  scaleToZeroAfterSeconds: number
  /** Requests in flight on a local endpoint: a process with any is never stopped. */
  inFlightAt(address: string): number
  /** How long a new process may take to listen before it is given up on. */
  startTimeoutMs?: number
  /**
   * Wait at least this long after taking a process out of the endpoints before stopping it, even at
   * zero in flight: with --workers the counts arrive once a second, so a fresh 0 proves nothing yet.
   */
  stopGraceMs?: number
}

interface Instance {
  id: number
  port: number
  child: ChildProcess
  /** Listening and published as an endpoint. */
  ready: boolean
  /** Taken out of the endpoints; killed once its in-flight requests finish. */
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
  /** Consecutive exits before becoming ready, and no new process before this time (crash backoff). */
  crashes: number
  holdUntil: number
}

const DEFAULT_TARGET = 100

export class LocalRunner implements StatSink {
  private readonly opts: LocalRunnerOptions
  private readonly revisions = new Map<string, RevisionState>()
  private nextId = 1
  private timer: NodeJS.Timeout | undefined
  private closed = false
  /**
   * Our processes must not outlive us. close() stops them politely; a gateway that exits without it
   * (a second Ctrl-C, a fatal error) kills the ones still running as it goes, since nothing else
   * would: they would keep their ports and run on with no parent.
   */
  private readonly killOnExit = (): void => {
    for (const st of this.revisions.values()) for (const i of st.instances) if (!i.exited) i.child?.kill('SIGKILL')
  }

  constructor(opts: LocalRunnerOptions) {
    this.opts = opts
  }

  start(): void {
    process.on('exit', this.killOnExit)
    this.timer = setInterval(() => this.reconcileAll(), 1000)
    this.timer.unref()
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

  /** A request is waiting for a revision with no endpoint at all: start a process now. */
  coldStart(namespace: string, name: string): void {
    const key = `${namespace}/${name}`
    if (!this.revisionObject(key)) return
    const st = this.state(key, namespace, name)
    st.lastDemandAt = Date.now()
    st.demand = Math.max(st.demand, 1)
    this.reconcile(st)
  }

  /** Live instances per revision, for /debug/routes. */
  describe(): Record<string, Array<{ port: number; ready: boolean; stopping: boolean; pid: number | undefined }>> {
    const out: Record<string, Array<{ port: number; ready: boolean; stopping: boolean; pid: number | undefined }>> = {}
    for (const st of this.revisions.values()) out[st.key] = st.instances.map((i) => ({ port: i.port, ready: i.ready, stopping: i.stopping, pid: i.child.pid }))
    return out
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    const all = [...this.revisions.values()].flatMap((s) => s.instances)
    await Promise.all(all.map((i) => kill(i)))
    process.off('exit', this.killOnExit)
    this.opts.store.replaceSource(LOCAL_RUNNER_SOURCE, [])
  }

  private revisionObject(key: string): Revision | undefined {
    const rev = this.opts.store.get('Revision', key)
    return rev?.metadata.annotations?.[ANN_LOCAL_COMMAND] ? rev : undefined
  }

  private state(key: string, namespace: string, name: string): RevisionState {
    let st = this.revisions.get(key)
    if (!st) {
      st = { key, namespace, name, instances: [], demand: 0, lastDemandAt: 0, crashes: 0, holdUntil: 0 }
      this.revisions.set(key, st)
    }
    return st
  }

  private reconcileAll(): void {
    if (this.closed) return
    // Revisions with min-scale get their processes even before any request.
    for (const rev of this.opts.store.list('Revision')) {
      if (!rev.metadata.annotations?.[ANN_LOCAL_COMMAND]) continue
      const key = keyOf(rev.metadata)
      this.state(key, rev.metadata.namespace ?? 'default', rev.metadata.name)
    }
    for (const st of this.revisions.values()) this.reconcile(st)
  }

  private reconcile(st: RevisionState): void {
    if (this.closed) return
    const rev = this.revisionObject(st.key)
    const live = st.instances.filter((i) => !i.stopping && !i.exited)
    if (!rev) {
      // The Revision is gone from the manifests: stop everything it ran.
      for (const i of live) this.retire(st, i)
      return
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
      if (Date.now() < st.holdUntil) return
      for (let n = live.length; n < want; n++) this.launch(st, rev, ann[ANN_LOCAL_COMMAND]!)
    } else if (live.length > want) {
      // Scale down the newest first; a process with requests in flight is only taken out of the
      // endpoints, and killed when they finish.
      for (const i of live.slice(want).reverse()) this.retire(st, i)
    }
    for (const i of st.instances) if (i.stopping && !i.exited && this.idle(i)) void kill(i)
  }

  private launch(st: RevisionState, rev: Revision, command: string): void {
    const id = this.nextId++
    const inst: Instance = { id, port: 0, child: undefined as unknown as ChildProcess, ready: false, stopping: false, retiredAt: 0, exited: false }
    st.instances.push(inst)
    void freePort().then((port) => {
      if (this.closed || inst.stopping) {
        inst.exited = true
        this.forget(st, inst)
        return
      }
      inst.port = port
      // Beside the manifest that defines it (a Revision derived from a Service: the Service's file).
      const source = rev.metadata.annotations?.[ANN_SOURCE_FILE] ?? this.opts.store.ownerOf('Revision', st.key)
      const cwd = source && path.isAbsolute(source) ? path.dirname(source) : process.cwd()
      const { env, cmd } = splitCommand(command)
      // exec: the shell becomes the app, so our signals reach the app itself.
      const child = spawn('/bin/sh', ['-c', `exec ${cmd}`], {
        cwd,
        // The container's env (a Knative template's), then the command's own assignments, then what
        // Knative itself sets.
        env: { ...process.env, ...containerEnv(rev), ...env, PORT: String(port), K_REVISION: rev.metadata.name, K_SERVICE: rev.metadata.labels?.['serving.knative.dev/service'] ?? '', K_CONFIGURATION: rev.metadata.labels?.['serving.knative.dev/configuration'] ?? '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      inst.child = child
      const log = this.opts.log.child({ revision: st.key, pid: child.pid, port })
      log.info({ command }, 'local revision process starting')
      for (const stream of [child.stdout, child.stderr]) {
        stream?.setEncoding('utf8')
        stream?.on('data', (chunk: string) => {
          for (const line of chunk.split('\n')) if (line.trim()) log.info({ app: line.trimEnd() }, 'app output')
        })
      }
      child.once('exit', (code, signal) => {
        inst.exited = true
        log.info({ code, signal }, inst.stopping ? 'local revision process stopped' : 'local revision process exited')
        this.forget(st, inst)
        this.publish(st)
        if (inst.stopping) return
        // Replace it while there is demand, backing off while it keeps dying before it is ready,
        // so a broken command line does not become a fork loop.
        st.crashes = inst.ready ? 0 : st.crashes + 1
        const delay = st.crashes === 0 ? 0 : Math.min(100 * 2 ** (st.crashes - 1), 10_000)
        st.holdUntil = Date.now() + delay
        if (st.crashes > 0) log.warn({ restartInMs: delay, crashes: st.crashes }, 'process exited before it was ready; check edge.knative.dev/local-command')
        setTimeout(() => this.reconcile(st), delay).unref()
      })
      child.once('error', (err) => log.error({ err: err.message }, 'local revision process failed to start'))
      void waitListening(port, this.opts.startTimeoutMs ?? 60_000, () => inst.exited || this.closed).then((ok) => {
        if (!ok || inst.exited || inst.stopping) {
          if (!inst.exited) log.warn('process did not start listening on $PORT; stopping it')
          void kill(inst)
          return
        }
        inst.ready = true
        log.info('local revision process ready')
        this.publish(st)
      })
    })
  }

  private retire(st: RevisionState, inst: Instance): void {
    inst.stopping = true
    inst.retiredAt = Date.now()
    this.publish(st)
    if (!inst.child) return
    if (this.idle(inst)) void kill(inst)
  }

  /** Out of the endpoints long enough for every count to include it, and nothing in flight. */
  private idle(inst: Instance): boolean {
    return Date.now() - inst.retiredAt >= (this.opts.stopGraceMs ?? 0) && this.opts.inFlightAt(`127.0.0.1:${inst.port}`) === 0
  }

  private forget(st: RevisionState, inst: Instance): void {
    st.instances = st.instances.filter((i) => i !== inst)
  }

  /** Publishes the ready, non-stopping processes as `<revision>-private` endpoints. */
  private publish(st: RevisionState): void {
    const store = this.opts.store
    const others = store.ownedBy(LOCAL_RUNNER_SOURCE).filter((id) => !id.startsWith(`EndpointSlice/${st.namespace}/${st.name}-private-local-`))
    const mine: EndpointSlice[] = st.instances
      .filter((i) => i.ready && !i.stopping && !i.exited)
      .map((i) => ({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `${st.name}-private-local-${i.id}`, namespace: st.namespace, labels: { [LABEL_SERVICE_NAME]: `${st.name}-private` } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
        ports: [{ name: 'http', port: i.port, protocol: 'TCP' }],
      }))
    const keep = others.map((id) => {
      const rest = id.slice('EndpointSlice/'.length)
      return store.get('EndpointSlice', rest)!
    })
    store.replaceSource(LOCAL_RUNNER_SOURCE, [...keep.filter(Boolean), ...mine])
  }
}

/**
 * Splits `A=1 B=2 node app.js` into its leading environment assignments and the command. A leading
 * `node` becomes the gateway's own Node binary, whatever PATH holds.
 */
export function splitCommand(command: string): { env: Record<string, string>; cmd: string } {
  const env: Record<string, string> = {}
  let rest = command.trim()
  for (;;) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s+/.exec(rest)
    if (!m) break
    env[m[1]!] = m[2]!
    rest = rest.slice(m[0].length)
  }
  const cmd = rest.replace(/^node(?=\s|$)/, `"${process.execPath}"`)
  return { env, cmd }
}

/** The first container's plain `env` values (valueFrom needs a cluster: it is left out). */
function containerEnv(rev: Revision): Record<string, string> {
  const out: Record<string, string> = {}
  for (const e of rev.spec?.containers?.[0]?.env ?? []) if (typeof e.value === 'string') out[e.name] = e.value
  return out
}

function intAnnotation(v: string | undefined, def: number): number {
  const n = Number(v)
  return v !== undefined && Number.isInteger(n) && n >= 0 ? n : def
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

/** Connects until the process accepts; backs off from 5 ms, so a fast app is used within milliseconds. */
async function waitListening(port: number, timeoutMs: number, gone: () => boolean): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  let delay = 5
  while (Date.now() < deadline && !gone()) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port })
      sock.once('connect', () => {
        sock.destroy()
        resolve(true)
      })
      sock.once('error', () => resolve(false))
    })
    if (ok) return true
    await new Promise((r) => setTimeout(r, delay))
    delay = Math.min(delay * 1.5, 200)
  }
  return false
}

function kill(inst: Instance): Promise<void> {
  if (inst.exited || !inst.child) return Promise.resolve()
  return new Promise((resolve) => {
    const t = setTimeout(() => inst.child.kill('SIGKILL'), 5000)
    t.unref()
    inst.child.once('exit', () => {
      clearTimeout(t)
      resolve()
    })
    inst.child.kill('SIGTERM')
  })
}
