// Wires the pieces: sources → store → compile → snapshot → data plane → listeners, plus demand
// reporting, the local runner and the admin server. Used by main.ts and by the tests, which start
// real gateways on ephemeral ports.
import type { Logger } from 'pino'
import type { GatewayConfig } from './config.ts'
import { ObjectStore } from './sources/store.ts'
import { FilesSource } from './sources/files.ts'
import { compileSnapshot } from './compile/snapshot.ts'
import type { CompileOptions } from './compile/snapshot.ts'
import type { Snapshot } from './model/snapshot.ts'
import { DataPlane } from './dataplane/data-plane.ts'
import { startListener } from './dataplane/listeners.ts'
import type { Listener } from './dataplane/listeners.ts'
import { startAdmin } from './admin/server.ts'
import type { AdminServer } from './admin/server.ts'
import { GatewayMetrics } from './metrics.ts'
import { StatReporter } from './autoscaler/reporter.ts'
import { KnativeStatSink } from './autoscaler/knative-sink.ts'
import { LocalRunner } from './autoscaler/local-runner.ts'
import { formatProblem } from './model/problems.ts'

export interface Gateway {
  readonly config: GatewayConfig
  readonly store: ObjectStore
  readonly plane: DataPlane
  readonly reporter: StatReporter
  readonly ports: { http: number; local: number; admin: number }
  readonly files: FilesSource | undefined
  readonly runner: LocalRunner | undefined
  /** Compiles the store now (tests use it to avoid waiting for the coalesced recompile). */
  recompile(): Snapshot
  /** Stop taking new work: /readyz fails from now on. */
  startDraining(): void
  close(): Promise<void>
}

export interface StartOptions {
  log: Logger
  /** Process-level default metrics (off in tests that start several gateways in one process). */
  defaultMetrics?: boolean
}

export async function startGateway(config: GatewayConfig, opts: StartOptions): Promise<Gateway> {
  const log = opts.log
  const store = new ObjectStore()
  const compileOpts: CompileOptions = {
    ingressClass: config.ingressClass,
    domain: config.domain,
    clusterDomain: config.clusterDomain,
    translateServing: !config.kubernetes || config.watchServing,
  }
  let configLoaded = false
  let draining = false
  let plane: DataPlane | undefined
  let runner: LocalRunner | undefined

  const compile = (): Snapshot => {
    const snap = compileSnapshot(
      {
        ingresses: store.list('Ingress'),
        routes: store.list('Route'),
        domainMappings: store.list('DomainMapping'),
        revisions: store.list('Revision'),
        services: store.list('Service'),
        endpointSlices: store.list('EndpointSlice'),
        secrets: store.list('Secret'),
        sourceProblems: store.problems(),
      },
      compileOpts,
      store.version,
    )
    return snap
  }

  const metrics = new GatewayMetrics(
    {
      inFlight: () => plane?.active ?? 0,
      configProblems: () => plane?.snapshot.problems.length ?? 0,
      revisions: () =>
        (plane?.backendState() ?? []).map(({ backend, throttler }) => {
          const slash = backend.indexOf('/')
          return { namespace: backend.slice(backend.indexOf(':') + 1, slash), revision: backend.slice(slash + 1), inFlight: throttler.inFlight, queued: throttler.queued, pods: throttler.podCount }
        }),
    },
    { defaultMetrics: opts.defaultMetrics },
  )

  const reporter = new StatReporter({ podName: config.podName, log })
  const now = reporter.now
  const demand = reporter.demand
  plane = new DataPlane(compile(), {
    log,
    metrics,
    coldStartBudgetMs: config.coldStartTimeoutSeconds * 1000,
    maxQueuedPerRevision: config.maxQueuedPerRevision,
    maxQueuedTotal: config.maxQueuedTotal,
    accessLog: config.accessLog,
    demand: {
      requestIn: (rev) => demand.requestIn(rev, now()),
      requestOut: (rev) => demand.requestOut(rev, now()),
    },
    onColdStart: (rev) => runner?.coldStart(rev.namespace, rev.name),
  })
  const dataPlane = plane

  const apply = (): void => {
    try {
      const snap = compile()
      dataPlane.setSnapshot(snap)
      metrics.reloads.inc({ result: 'ok' })
      for (const p of snap.problems) log.debug({ problem: p }, formatProblem(p))
    } catch (err) {
      // Compile is total over valid objects; reaching here is a bug. Keep serving the last snapshot.
      metrics.reloads.inc({ result: 'error' })
      log.error({ err }, 'EDGE_ERR_COMPILE: compiling the configuration failed; the last snapshot stays in service')
    }
  }
  store.onChange(apply)

  let files: FilesSource | undefined
  if (!config.kubernetes) {
    files = new FilesSource({ dir: config.manifests, store, log })
    await files.start()
    runner = new LocalRunner({
      store,
      log: log.child({ component: 'local-runner' }),
      scaleToZeroAfterSeconds: config.scaleToZeroAfter,
      inFlightAt: (address) => {
        for (const { throttler } of dataPlane.backendState()) for (const p of throttler.pods()) if (p.endpoint.address === address) return p.inFlight
        return 0
      },
    })
    reporter.addSink(runner)
    apply()
    configLoaded = true
    runner.start()
  } else {
    throw new Error('EDGE_ERR_KUBERNETES: the Kubernetes source is not available in this build; run with --manifests DIR')
  }

  let sink: KnativeStatSink | undefined
  if (config.autoscalerUrl) {
    sink = new KnativeStatSink({ url: config.autoscalerUrl, log: log.child({ component: 'autoscaler-sink' }) })
    sink.start()
    reporter.addSink(sink)
  }
  reporter.start()

  const listenerOpts = { host: config.listenAddress }
  const listeners: Listener[] = []
  let admin: AdminServer | undefined
  try {
    listeners.push(await startListener(dataPlane, 'public', { ...listenerOpts, port: config.httpPort }))
    listeners.push(await startListener(dataPlane, 'local', { ...listenerOpts, port: config.localPort }))
    admin = await startAdmin(
      {
        metrics,
        plane: dataPlane,
        notReadyReason: () => (draining ? 'draining (shutting down)' : configLoaded ? undefined : 'initial configuration not loaded'),
        sources: () => ({
          files: files ? { dir: config.manifests, scans: files.scans } : undefined,
          localRunner: runner?.describe(),
          autoscaler: sink ? { url: config.autoscalerUrl, connected: sink.connected, ...sink.stats } : undefined,
        }),
      },
      config.listenAddress,
      config.adminPort,
    )
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()))
    files?.stop()
    await runner?.close()
    reporter.stop()
    await sink?.close()
    throw err
  }

  log.info({ http: listeners[0]!.port, local: listeners[1]!.port, admin: admin.port, manifests: files ? config.manifests : undefined }, 'edge-gateway listening')

  return {
    config,
    store,
    plane: dataPlane,
    reporter,
    files,
    runner,
    ports: { http: listeners[0]!.port, local: listeners[1]!.port, admin: admin.port },
    recompile: () => {
      const snap = compile()
      dataPlane.setSnapshot(snap)
      return snap
    },
    startDraining: () => {
      draining = true
    },
    close: async () => {
      draining = true
      files?.stop()
      reporter.stop()
      await Promise.all(listeners.map((l) => l.close()))
      for (const l of listeners) l.server.closeAllConnections()
      await admin!.close()
      await runner?.close()
      await sink?.close()
      await dataPlane.close()
    },
  }
}
