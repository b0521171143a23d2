// --workers N: the primary process. It runs the one set of sources (files or informers), the store,
// the compiler, the KIngress status writer, the local runner and the autoscaler link, serves the admin
// port, and forks N workers that serve traffic. node:cluster shares the listening sockets: the
// primary accepts and hands connections to the workers in turn.
import cluster from 'node:cluster'
import type { Worker } from 'node:cluster'
import type { Logger } from 'pino'
import type { MetricObjectWithValues, MetricValue } from 'prom-client'
import type { GatewayConfig } from '../config.ts'
import { holdBounds } from '../activator/throttler.ts'
import { GatewayMetrics } from '../metrics.ts'
import { StatReporter } from '../autoscaler/reporter.ts'
import { configPipeline, followReplicaShare, startAdminPart, startControl, withModeDefaults } from '../compose/parts.ts'
import type { ConfigPipeline, Control } from '../compose/parts.ts'
import { SlotBroker } from './slot-broker.ts'
import { StoreReplicator, send } from './replication.ts'
import { StatsFanIn } from './stats-fan-in.ts'
import { ColdStarts } from '../admin/cold-starts.ts'
import { isMessage } from './protocol.ts'
import { withNodeFlags } from '../runtime-flags.ts'
import { LiveSettings } from '../settings/live-settings.ts'
import type { ToPrimary } from './protocol.ts'
import { followLogLevel } from '../cli/logger.ts'

export interface Primary {
  readonly pipeline: ConfigPipeline
  readonly control: Control
  readonly admin: { readonly port: number }
  /** Readiness fails at once; workers keep serving. */
  startDraining(): void
  /** Workers stop accepting, finish in-flight work (up to finishMs) and exit; then the primary closes. */
  close(finishMs: number): Promise<void>
}

export async function runPrimary(rawConfig: GatewayConfig, log: Logger): Promise<Primary> {
  const config = withModeDefaults(rawConfig)
  // The primary reads the settings ConfigMaps (its sources feed the store) and sends the workers
  // what they set; each worker lays that over its own flags and environment, which are the same.
  const settings = new LiveSettings(config)
  followLogLevel(settings, log)
  let control: Control | undefined
  // cfg is set below, before any request can arrive.
  const coldStarts = new ColdStarts(() => cfg.publisher.snapshot)
  /** A revision without a pod was asked for, by the broker (CC > 0) or a worker (CC = 0). */
  const coldStart = (namespace: string, name: string): void => {
    coldStarts.began(`${namespace}/${name}`)
    control?.coldStart(namespace, name)
  }
  const broker = new SlotBroker({
    maxQueuedPerRevision: config.maxQueuedPerRevision,
    holds: holdBounds(config),
    onColdStart: (rev) => coldStart(rev.namespace, rev.name),
  })
  settings.onChange((next) => {
    broker.setQueueBounds(next.maxQueuedPerRevision, holdBounds(next))
    for (const w of Object.values(cluster.workers ?? {})) if (w) send(w, { t: 'settings', overrides: settings.overrides })
  })
  const metricWaits = new Map<number, { want: number; got: MetricObjectWithValues<MetricValue<string>>[][]; done: () => void }>()
  let metricId = 0
  const metricsFrom = async (): Promise<MetricObjectWithValues<MetricValue<string>>[][]> => {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected())
    if (workers.length === 0) return []
    const id = ++metricId
    const wait = { want: workers.length, got: [] as MetricObjectWithValues<MetricValue<string>>[][], done: () => {} }
    const finished = new Promise<void>((r) => (wait.done = r))
    metricWaits.set(id, wait)
    for (const w of workers) send(w, { t: 'metrics', id })
    // A worker that does not answer in time is left out of this scrape rather than stalling it.
    await Promise.race([finished, new Promise((r) => setTimeout(r, 2000).unref())])
    metricWaits.delete(id)
    return wait.got
  }

  // Ready only once every worker listens: before that, connections to the shared ports are refused.
  const listening = new Set<number>()
  const notReady = (): string | undefined => (listening.size < config.workers ? `${listening.size} of ${config.workers} workers listening` : undefined)
  // Per-pod in-flight counts of CC = 0 revisions live in the workers: their latest report, per worker.
  const workerInFlight = new Map<number, Record<string, number>>()
  /** What the workers last reported for a pod (they count the slots the broker lent them too). */
  const reportedInFlight = (address: string): number => {
    let n = 0
    for (const m of workerInFlight.values()) n += m[address] ?? 0
    return n
  }
  // For the local runner's safe stop: also the broker's lent slots, which are current where the
  // reports may be a second old.
  const inFlightAt = (address: string): number => broker.inFlightAt(address) + reportedInFlight(address)
  // The primary serves no traffic: its metrics' request counts and per-revision gauges are the
  // workers' (merged into /metrics); it adds its own process metrics and the configuration's.
  let pipeline: ConfigPipeline | undefined
  const metrics = new GatewayMetrics({
    inFlight: () => 0,
    revisions: () => [],
    configProblems: () => pipeline?.publisher.snapshot.problems.length ?? 0,
    holds: () => broker.holds(),
    autoscaler: () => (control?.sink && config.autoscalerUrl ? { url: config.autoscalerUrl, connected: control.sink.connected } : undefined),
  })
  const cfg = configPipeline(settings, log, (ok) => metrics.reloads.inc({ result: ok ? 'ok' : 'error' }))
  pipeline = cfg
  cfg.publisher.subscribe('cold-starts', (p) => coldStarts.published(p.snapshot, p.changedBackends))
  // Registered before the control side starts, so the broker has every snapshot the workers will.
  cfg.publisher.subscribe('slot-broker', (p) => broker.setSnapshot(p.snapshot))
  broker.setSnapshot(cfg.publisher.snapshot)
  const reporter = new StatReporter({ podName: config.podName, log })
  // The local runner never stops a process with a request in flight; in the primary the workers know.
  // What the local runner cannot run is answered 503 by the workers, which hold the requests.
  const noRuntime = (w: Worker, revision: string, reason: 'no-runtime' | 'revision-failed', detail: string | undefined, cause?: string): void =>
    send(w, detail === undefined ? { t: 'no-runtime', revision, reason } : { t: 'no-runtime', revision, reason, detail, ...(cause === undefined ? {} : { cause }) })
  const ctl = await startControl(settings, log, cfg, reporter, metrics, {
    inFlightAt,
    stopGraceMs: 2500,
    onUnrunnable: (namespace, name, detail, reason, cause) => {
      for (const w of Object.values(cluster.workers ?? {})) if (w) noRuntime(w, `${namespace}/${name}`, reason, detail, cause)
    },
  })
  control = ctl
  let draining = false
  const admin = await startAdminPart(config, metrics, {
    // No throttlers here: the workers' reports give each pod's requests in flight.
    routes: { get snapshot() { return cfg.publisher.snapshot }, throttlerByKey: () => undefined, lastColdStart: (key) => coldStarts.of(key), fault: (key) => ctl.faults().get(key), holds: () => broker.holds() },
    podInFlight: reportedInFlight,
    metricsFrom,
    notReadyReason: () => (draining ? 'draining (shutting down)' : (ctl.loadingReason() ?? notReady())),
    sources: () => ({ ...ctl.describe(), slotBroker: broker.describe(), workers: { listening: listening.size, configured: config.workers } }),
  }).catch(async (err: unknown) => {
    await ctl.stopSources()
    await ctl.close()
    throw err
  })
  log.info({ admin: admin.port, role: 'primary', manifests: ctl.files ? config.manifests : undefined }, 'edge-gateway listening')
  followReplicaShare(config, cfg, (i, n) => broker.setReplicaShare(i, n))
  const fanIn = new StatsFanIn((entries) => reporter.forward(entries))
  fanIn.start()
  const replicator = new StoreReplicator(cfg.store)

  let stopping = false
  let restarts = 0
  // Workers run with the gateway's V8 flags even when the primary was started without them.
  cluster.setupPrimary({ execArgv: withNodeFlags(process.execArgv) })
  const fork = (): void => {
    const started = Date.now()
    const w = cluster.fork({ EDGE_WORKER: '1' })
    // Before the store: a worker starts its listeners with the settings it has by then.
    send(w, { t: 'settings', overrides: settings.overrides })
    replicator.add(w)
    for (const [revision, f] of ctl.faults()) noRuntime(w, revision, f.reason, f.detail, f.cause)
    w.on('message', (m: unknown) => onMessage(w, m))
    w.on('exit', (code, signal) => {
      broker.workerGone(w)
      replicator.delete(w)
      listening.delete(w.id)
      workerInFlight.delete(w.id)
      if (stopping) return
      // Back off while workers keep dying young (a port taken, a bad option), so it is no fork loop.
      const young = Date.now() - started < 10_000
      restarts = young ? restarts + 1 : 0
      const delay = Math.min(200 * 2 ** restarts, 30_000)
      log.error({ worker: w.id, code, signal, restartInMs: delay }, 'worker exited; starting another')
      setTimeout(fork, delay).unref()
    })
  }
  const onMessage = (w: Worker, m: unknown): void => {
    if (!isMessage(m)) return
    const msg = m as ToPrimary
    switch (msg.t) {
      case 'acquire':
        return broker.acquire(w, msg.id, msg.key, msg.bytes)
      case 'cancel':
        return broker.cancel(w, msg.id)
      case 'release':
        return broker.release(w, msg.key, msg.address)
      case 'failed':
        return broker.failed(msg.key, msg.address, msg.backoffMs)
      case 'stats':
        if (msg.inFlight) workerInFlight.set(w.id, msg.inFlight)
        return fanIn.receive(w.id, msg.entries, msg.poke)
      case 'cold-start':
        return coldStart(msg.namespace, msg.name)
      case 'metrics': {
        const wait = metricWaits.get(msg.id)
        if (!wait) return
        wait.got.push(msg.json)
        if (wait.got.length >= wait.want) wait.done()
        return
      }
      case 'listening':
        listening.add(w.id)
        return
    }
  }
  for (let i = 0; i < config.workers; i++) fork()
  log.info({ workers: config.workers }, 'workers started')

  return {
    pipeline: cfg,
    control: ctl,
    admin,
    startDraining: () => {
      draining = true
      for (const w of Object.values(cluster.workers ?? {})) if (w) send(w, { t: 'draining' })
    },
    close: async (finishMs) => {
      stopping = true
      fanIn.stop()
      const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w)
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (!w.isConnected()) return resolve()
              w.once('exit', () => resolve())
              send(w, { t: 'drain', finishMs })
              // Never wait forever on a stuck worker.
              setTimeout(() => w.process.kill('SIGKILL'), finishMs + 5000).unref()
            }),
        ),
      )
      broker.close()
      draining = true
      await ctl.stopSources()
      await admin.close()
      await ctl.close()
    },
  }
}
