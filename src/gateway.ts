// One gateway process doing everything (--workers 1, the default on one CPU, and the tests): the
// config pipeline, the control side (sources, local runner, status writer, autoscaler link), the
// data plane with its listeners, and the admin port, composed from the parts in compose/parts.ts.
// With --workers N the same parts make a primary (cluster/primary.ts) and workers (cluster/worker.ts).
import type { Logger } from 'pino'
import type { KubeConfig } from '@kubernetes/client-node'
import type { GatewayConfig } from './config.ts'
import type { ObjectStore } from './sources/store.ts'
import type { FilesSource } from './sources/files.ts'
import type { Snapshot } from './model/snapshot.ts'
import type { DataPlane } from './dataplane/data-plane.ts'
import type { Policy } from './dataplane/policy.ts'
import { GatewayMetrics } from './metrics.ts'
import { StatReporter } from './autoscaler/reporter.ts'
import type { LocalRunner } from './autoscaler/local-runner.ts'
import type { AdminServer } from './admin/server.ts'
import { ColdStarts } from './admin/cold-starts.ts'
import type { KubernetesSource, KubernetesSourceTuning } from './sources/kubernetes.ts'
import type { StatusWriterOptions } from './status/status-writer.ts'
import { configPipeline, dataPlane, followReplicaShare, revisionInSnapshot, revisionRows, startAdminPart, startControl, startListeners, startTracing, upstreamTls, withModeDefaults } from './compose/parts.ts'
import type { Control, ListenerPorts, Listeners } from './compose/parts.ts'
import type { TracingTuning } from './observe/tracing.ts'
import { LiveSettings } from './settings/live-settings.ts'
import { followLogLevel } from './cli/logger.ts'

export interface Gateway {
  /** As started: flags, environment and defaults (settings.current adds the ConfigMaps' values). */
  readonly config: GatewayConfig
  readonly settings: LiveSettings
  readonly store: ObjectStore
  readonly plane: DataPlane
  readonly reporter: StatReporter
  /** `localHttps` only with --local-https-port. */
  readonly ports: ListenerPorts & { admin: number }
  readonly files: FilesSource | undefined
  readonly runner: LocalRunner | undefined
  /** Cluster mode: the API server's KubeConfig (for the status writer) and the informer source. */
  readonly kube: { readonly config: KubeConfig; readonly source: KubernetesSource } | undefined
  /** Compiles the store now (tests use it to avoid waiting for the coalesced recompile). */
  recompile(): Snapshot
  /** Stop taking new work: /readyz fails from now on, and HTTP/1.1 responses say Connection: close. */
  startDraining(): void
  /**
   * Stops accepting, closes idle connections (HTTP/2 gets GOAWAY), answers requests still held for a
   * pod with 503 `draining`, lets in-flight requests finish for up to `finishMs` (default 1 s), then
   * ends what is left.
   */
  close(finishMs?: number): Promise<void>
}

export interface StartOptions {
  log: Logger
  /** Process-level default metrics (off in tests that start several gateways in one process). */
  defaultMetrics?: boolean
  /** Cluster mode: informer backoff and watchdog (tests shorten them). */
  kubernetes?: KubernetesSourceTuning
  /** KIngress status writer (cluster mode): `false` turns it off; an object tunes it (tests shorten its timings). */
  statusWriter?: false | StatusWriterOptions
  /** The front door's policy stage, in order (none by default). */
  policies?: readonly Policy[]
  /** With --tracing-endpoint: the span buffer and batching (tests make them small and quick). */
  tracing?: TracingTuning
}

export async function startGateway(rawConfig: GatewayConfig, opts: StartOptions): Promise<Gateway> {
  const config = withModeDefaults(rawConfig)
  // Flags, environment and defaults, under what the settings ConfigMaps say (src/settings/).
  const settings = new LiveSettings(config)
  const log = opts.log
  followLogLevel(settings, log)
  let draining = false
  let plane: DataPlane | undefined
  let control: Control | undefined
  const metrics = new GatewayMetrics(
    {
      inFlight: () => plane?.active ?? 0,
      configProblems: () => plane?.snapshot.problems.length ?? 0,
      holds: () => plane?.backends.holds(),
      autoscaler: () => (control?.sink && config.autoscalerUrl ? { url: config.autoscalerUrl, connected: control.sink.connected } : undefined),
      revisions: () => revisionRows(plane?.backends.entries() ?? []),
      revisionServed: (namespace, name) => revisionInSnapshot(plane?.snapshot, namespace, name),
    },
    { defaultMetrics: opts.defaultMetrics },
  )
  const pipeline = configPipeline(settings, log, (ok) => metrics.reloads.inc({ result: ok ? 'ok' : 'error' }))
  const coldStarts = new ColdStarts(() => pipeline.publisher.snapshot)
  pipeline.publisher.subscribe('cold-starts', (p) => coldStarts.published(p.snapshot, p.changedBackends))
  const reporter = new StatReporter({ podName: config.podName, log })
  const tracing = await startTracing(settings, log, metrics, opts.tracing)
  const upstream = upstreamTls(config, log, pipeline.store)
  const served = dataPlane(settings, log, metrics, reporter, pipeline.publisher, {
    onColdStart: (rev) => {
      coldStarts.began(rev.key)
      control?.coldStart(rev.namespace, rev.name)
    },
    policies: opts.policies,
    processes: 1,
    tracing,
    upstreamTls: upstream,
  })
  plane = served
  control = await startControl(settings, log, pipeline, reporter, metrics, {
    kubernetes: opts.kubernetes,
    statusWriter: opts.statusWriter,
    stopGraceMs: 0,
    onUnrunnable: (namespace, name, detail, reason, cause) => served.backends.setFault(`${namespace}/${name}`, reason, detail, cause),
    // busy(), not pods(): a pod already out of the endpoints may still be finishing requests.
    inFlightAt: (address) => {
      for (const { throttler } of served.backends.entries()) for (const p of throttler.busy()) if (p.endpoint.address === address) return p.inFlight
      return 0
    },
  })
  const ctl = control
  let listeners: Listeners | undefined
  let admin: AdminServer | undefined
  try {
    listeners = await startListeners(settings, log, served, pipeline)
    admin = await startAdminPart(config, metrics, {
      routes: { get snapshot() { return served.snapshot }, throttlerByKey: (key) => served.throttlerByKey(key), lastColdStart: (key) => coldStarts.of(key), fault: (key) => served.backends.fault(key), holds: () => served.backends.holds() },
      notReadyReason: () => (draining ? 'draining (shutting down)' : ctl.loadingReason()),
      sources: () => ({ ...ctl.describe(), upstreamTls: upstream.describe() }),
    })
  } catch (err) {
    await listeners?.close()
    await ctl.stopSources()
    await ctl.close()
    await tracing?.close()
    throw err
  }
  const ports = { ...listeners.ports, admin: admin.port }
  log.info({ ...ports, role: 'single', manifests: ctl.files ? config.manifests : undefined }, 'edge-gateway listening')
  followReplicaShare(config, pipeline, (i, n) => served.backends.setReplicaShare(i, n))

  const open = listeners
  const adminServer = admin
  return {
    config,
    settings,
    store: pipeline.store,
    plane: served,
    reporter,
    files: ctl.files,
    runner: ctl.runner,
    kube: ctl.kube,
    ports,
    recompile: () => pipeline.publisher.full(),
    startDraining: () => {
      draining = true
      served.draining = true
    },
    close: async (finishMs = 1000) => {
      draining = true
      served.draining = true
      await ctl.stopSources()
      await drainListeners(open, served, finishMs)
      await adminServer.close()
      await ctl.close()
      await served.close()
      // Last: the spans of the requests the drain finished go out (bounded by one export's timeout).
      await tracing?.close()
    },
  }
}

/**
 * Stops accepting, answers requests still held for a pod with 503 `draining`, lets in-flight requests
 * finish for up to `finishMs`, then ends what is left.
 */
export async function drainListeners(listeners: Listeners, plane: DataPlane, finishMs: number): Promise<void> {
  const closed = listeners.close()
  plane.rejectHeld()
  await Promise.race([plane.whenIdle(), new Promise((r) => setTimeout(r, finishMs).unref())])
  listeners.closeAll()
  await closed
}
