// Wires the pieces: sources → store → compile → snapshot → data plane → listeners, plus demand
// reporting, the local runner and the admin server. Used by main.ts and by the tests, which start
// real gateways on ephemeral ports.
import type { Logger } from 'pino'
import type { GatewayConfig } from './config.ts'
import { ObjectStore, withoutKind } from './sources/store.ts'
import type { StoreChanges } from './sources/store.ts'
import { FilesSource } from './sources/files.ts'
import { LiveCompiler } from './compile/live.ts'
import type { CompileOptions } from './compile/snapshot.ts'
import type { Snapshot } from './model/snapshot.ts'
import { DataPlane } from './dataplane/data-plane.ts'
import { startListener, startTlsListener } from './dataplane/listeners.ts'
import { clientLimits } from './dataplane/guard.ts'
import { CertificateStore } from './dataplane/tls.ts'
import type { RemoteSlots } from './cluster/remote-throttler.ts'
import { brokered } from './cluster/slot-broker.ts'
import type { StatSink } from './autoscaler/reporter.ts'
import type { RevisionRef } from './model/snapshot.ts'
import { gatewayReplicas } from './status/replicas.ts'
import type { MetricObjectWithValues, MetricValue } from 'prom-client'
import type { Listener } from './dataplane/listeners.ts'
import { startAdmin } from './admin/server.ts'
import type { AdminServer } from './admin/server.ts'
import { GatewayMetrics } from './metrics.ts'
import { StatReporter } from './autoscaler/reporter.ts'
import { KnativeStatSink } from './autoscaler/knative-sink.ts'
import { LocalRunner } from './autoscaler/local-runner.ts'
import { formatProblem } from './model/problems.ts'
import type { KubeConfig } from '@kubernetes/client-node'
// The Kubernetes client takes about a second to load: cluster-mode modules are imported only in
// cluster mode (workers and the files source start without them).
import type { KubernetesSource } from './sources/kubernetes.ts'
import type { KIngressStatusWriter } from './status/status-writer.ts' // KIngress status writer
import type { StatusWriterOptions } from './status/status-writer.ts'
import type { KubernetesSourceTuning } from './sources/kubernetes.ts'

export interface Gateway {
  readonly config: GatewayConfig
  readonly store: ObjectStore
  readonly plane: DataPlane
  readonly reporter: StatReporter
  /** `localHttps` only with --local-https-port. */
  readonly ports: { http: number; local: number; admin: number; https: number; localHttps?: number }
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
  /**
   * With --workers: the `primary` owns the sources, the status writer, the local runner, the autoscaler
   * link and the admin port, and serves no traffic; each `worker` serves traffic from a replica of the
   * primary's store. `single` (the default) does everything in one process.
   */
  role?: 'single' | 'primary' | 'worker'
  /** Worker: the way to the primary. */
  worker?: WorkerLink
  /** Primary: /metrics adds the workers' metrics (requests are counted where they are served). */
  metricsFrom?: () => Promise<MetricObjectWithValues<MetricValue<string>>[][]>
  /** Primary: requests in flight per pod address, as the workers report them (the local runner's safe stop). */
  inFlightAt?: (address: string) => number
  /** Primary: extra state for /debug/routes (the slot broker). */
  debugExtra?: () => Record<string, unknown>
  /** Primary: per-pod requests in flight for /debug/routes, from the workers' reports. */
  podInFlight?: (address: string) => number
  /** Primary: another reason not to be ready (workers still starting). */
  notReady?: () => string | undefined
  /** Where this replica's share of pod capacity goes (default: the data plane; the primary: its broker). */
  onReplicaShare?: (index: number, count: number) => void
}

/** What a worker process needs from its primary. */
export interface WorkerLink {
  slots: RemoteSlots
  /** Receives this worker's demand reports and pokes. */
  stats: StatSink
  coldStart(rev: RevisionRef): void
}

export async function startGateway(rawConfig: GatewayConfig, opts: StartOptions): Promise<Gateway> {
  const log = opts.log
  const role = opts.role ?? 'single'
  const link = opts.worker
  // Defaults that depend on the mode: in a cluster the Knative autoscaler is at its well-known address.
  const config: GatewayConfig = {
    ...rawConfig,
    autoscalerUrl: rawConfig.autoscalerUrl ?? (rawConfig.kubernetes ? `ws://autoscaler.knative-serving.svc.${rawConfig.clusterDomain}:8080` : undefined),
  }
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

  // Compile stays pure; `live` keeps it warm so a change recompiles only what it touches.
  const live = new LiveCompiler(store, compileOpts)
  const compile = (): Snapshot => live.full().snapshot

  const metrics = new GatewayMetrics(
    {
      inFlight: () => plane?.active ?? 0,
      configProblems: () => plane?.snapshot.problems.length ?? 0,
      // Issue 7: the autoscaler link's health on /metrics (the sink is created below).
      autoscaler: () => (sink && config.autoscalerUrl ? { url: config.autoscalerUrl, connected: sink.connected } : undefined),
      revisions: () =>
        (plane?.backends.entries() ?? []).map(({ backend, throttler }) => {
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
    streamIdleTimeoutMs: config.streamIdleTimeoutSeconds * 1000,
    maxQueuedPerRevision: config.maxQueuedPerRevision,
    maxQueuedTotal: config.maxQueuedTotal,
    accessLog: config.accessLog,
    // rev.key is revisionKey(rev), built once per snapshot: no string per request to hash.
    demand: {
      requestIn: (rev) => demand.requestInKey(rev.key, rev, now()),
      requestOut: (rev) => demand.requestOutKey(rev.key, now()),
    },
    onColdStart: (rev) => (link ? link.coldStart(rev) : runner?.coldStart(rev.namespace, rev.name)),
    // Workers share per-pod limits through the primary's broker (see src/cluster/slot-broker.ts).
    remoteThrottler: link ? (b) => (brokered(b) ? link.slots.throttler(b.key, b.revision!.containerConcurrency, b.endpoints) : undefined) : undefined,
  })
  const dataPlane = plane

  const apply = (changes?: StoreChanges): void => {
    try {
      const before = dataPlane.snapshot
      const r = changes ? live.update(changes) : live.full()
      dataPlane.setSnapshot(r.snapshot, r.changedBackends)
      metrics.reloads.inc({ result: 'ok' })
      if (r.snapshot.problems !== before.problems) for (const p of r.snapshot.problems) log.debug({ problem: p }, formatProblem(p))
    } catch (err) {
      // Compile is total over valid objects; reaching here is a bug. Keep serving the last snapshot.
      metrics.reloads.inc({ result: 'error' })
      log.error({ err }, 'EDGE_ERR_COMPILE: compiling the configuration failed; the last snapshot stays in service')
    }
  }
  // Pods becoming ready go straight to the throttlers (a held request dispatches on this microtask),
  // not behind the coalesced recompile; that one then skips the EndpointSlices already applied (a
  // microtask always runs before the setImmediate that delivers the same change again).
  store.onChange((changes) => {
    const rest = withoutKind(changes, 'EndpointSlice')
    if (rest) apply(rest)
  })
  store.onChangeSoon(['EndpointSlice'], apply)

  let files: FilesSource | undefined
  if (role === 'worker') {
    // The store is a replica of the primary's (src/cluster/replication.ts): no sources here.
    configLoaded = true
    reporter.addSink(link!.stats)
  } else if (!config.kubernetes) {
    files = new FilesSource({ dir: config.manifests, store, log })
    await files.start()
    runner = new LocalRunner({
      store,
      log: log.child({ component: 'local-runner' }),
      scaleToZeroAfterSeconds: config.scaleToZeroAfter,
      // A stopped process must have no request in flight; in the primary the workers know.
      stopGraceMs: opts.inFlightAt ? 2500 : 0,
      inFlightAt: opts.inFlightAt ?? ((address) => {
        // busy(), not pods(): a pod already out of the endpoints may still be finishing requests.
        for (const { throttler } of dataPlane.backends.entries()) for (const p of throttler.busy()) if (p.endpoint.address === address) return p.inFlight
        return 0
      }),
    })
    reporter.addSink(runner)
    apply()
    configLoaded = true
    runner.start()
  }

  // ---- Kubernetes source (cluster mode) -------------------------------------------------------
  // Informers fill the store; listeners start at once and /readyz fails until every informer has
  // listed. Nothing is removed while the API server is unreachable: the last snapshot keeps serving.
  let kube: { config: KubeConfig; source: KubernetesSource } | undefined
  if (config.kubernetes && role !== 'worker') {
    const { KubernetesSource, loadKubeConfig } = await import('./sources/kubernetes.ts')
    const kubeConfig = loadKubeConfig(config.kubeconfig)
    const source = new KubernetesSource({
      kubeConfig,
      store,
      log: log.child({ component: 'kubernetes' }),
      ingressClass: config.ingressClass,
      watchServing: config.watchServing,
      // The status writer finds the gateway's own replicas in POD_NAMESPACE: watch it even when scoped.
      namespaces: config.namespaces.length > 0 && !config.namespaces.includes(config.podNamespace) ? [...config.namespaces, config.podNamespace] : config.namespaces,
      onHealthChange: (up) => metrics.sourceUp.set({ source: 'kubernetes' }, up ? 1 : 0),
      ...opts.kubernetes,
    })
    kube = { config: kubeConfig, source }
    void source.start().then(() => {
      configLoaded = source.synced
    })
  }
  const loadingReason = (): string | undefined =>
    configLoaded ? undefined : (kube?.source.notSyncedReason() ?? 'initial configuration not loaded')
  // ---- end Kubernetes source --------------------------------------------------------------------

  // ---- KIngress status writer (cluster mode; issue 3 part B) ----------------------------------
  // The leader among the replicas writes KIngress status once every replica serves each ingress.
  // It starts after the first full list, so a half-filled store never turns into status writes.
  let statusWriter: KIngressStatusWriter | undefined
  if (kube && opts.statusWriter !== false) {
    const { KIngressStatusWriter } = await import('./status/status-writer.ts')
    const writer = new KIngressStatusWriter({
      kubeConfig: kube.config,
      store,
      snapshot: () => dataPlane.snapshot,
      // Registered after `apply`, so on each store change the new snapshot is in place when this runs.
      onSnapshot: (cb) => store.onChange(() => cb(dataPlane.snapshot)),
      config,
      log,
      options: opts.statusWriter || undefined,
    })
    statusWriter = writer
    void kube.source.start().then(() => {
      if (statusWriter === writer) writer.start()
    })
  }
  const stopStatusWriter = async (): Promise<void> => {
    const w = statusWriter
    statusWriter = undefined
    await w?.stop()
  }
  // ---- end KIngress status writer -------------------------------------------------------------

  let sink: KnativeStatSink | undefined
  if (config.autoscalerUrl && role !== 'worker') {
    sink = new KnativeStatSink({ url: config.autoscalerUrl, log: log.child({ component: 'autoscaler-sink' }) })
    sink.start()
    reporter.addSink(sink)
  }
  reporter.start()

  // Issue 7: header/body/connection limits and trusted proxies, from the options.
  const listenerOpts = { host: config.listenAddress, http1Server: config.http1Server, ...clientLimits(config) }
  const listeners: Listener[] = []
  let admin: AdminServer | undefined
  try {
    if (role !== 'primary') {
    listeners.push(await startListener(dataPlane, 'public', { ...listenerOpts, port: config.httpPort }))
    listeners.push(await startListener(dataPlane, 'local', { ...listenerOpts, port: config.localPort }))
    // TLS: certificates follow the snapshot (KIngress tls), in the files source every TLS Secret
    // (a laptop has no KIngress to name them), and --default-tls-secret. In a cluster a Secret no
    // KIngress names is never served: any namespace can hold a TLS Secret.
    const certs = new CertificateStore(log.child({ component: 'tls' }), { ciphers: config.tlsCiphers, defaultSecret: config.defaultTlsSecret })
    const updateCerts = (): void =>
      certs.update(dataPlane.snapshot, config.kubernetes ? [] : store.list('Secret'), config.defaultTlsSecret ? store.get('Secret', config.defaultTlsSecret) : undefined)
    updateCerts()
    store.onChange(updateCerts)
    listeners.push(await startTlsListener(dataPlane, certs, { ...listenerOpts, port: config.httpsPort, ciphers: config.tlsCiphers }))
    // Cluster-local TLS (Knative's cluster-local-domain-tls): every rule, the same certificates.
    if (config.localHttpsPort !== undefined) listeners.push(await startTlsListener(dataPlane, certs, { ...listenerOpts, port: config.localHttpsPort, ciphers: config.tlsCiphers }, 'local'))
    }
    if (role !== 'worker') admin = await startAdmin(
      {
        metrics,
        plane: dataPlane,
        notReadyReason: () => (draining ? 'draining (shutting down)' : (loadingReason() ?? opts.notReady?.())),
        sources: () => ({
          files: files ? { dir: config.manifests, scans: files.scans } : undefined,
          kubernetes: kube?.source.describe(),
          statusWriter: statusWriter?.describe(),
          localRunner: runner?.describe(),
          autoscaler: sink ? { url: config.autoscalerUrl, connected: sink.connected, ...sink.stats } : undefined,
          ...opts.debugExtra?.(),
        }),
        podInFlight: opts.podInFlight,
      },
      config.listenAddress,
      config.adminPort,
      opts.metricsFrom,
    )
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()))
    files?.stop()
    await stopStatusWriter() // KIngress status writer
    kube?.source.stop()
    await runner?.close()
    reporter.stop()
    await sink?.close()
    throw err
  }

  const ports = {
    http: listeners[0]?.port ?? config.httpPort,
    local: listeners[1]?.port ?? config.localPort,
    https: listeners[2]?.port ?? config.httpsPort,
    admin: admin?.port ?? config.adminPort,
    localHttps: listeners[3]?.port ?? config.localHttpsPort,
  }
  if (role !== 'worker') log.info({ ...ports, role, manifests: files ? config.manifests : undefined }, 'edge-gateway listening')

  // Capacity sharing between gateway replicas (cluster mode): this replica's index among the ready
  // endpoints of the gateway's own cluster-local Service, so containerConcurrency holds cluster-wide.
  if (kube && config.podIp) {
    const share = (): void => {
      const replicas = gatewayReplicas(store.list('EndpointSlice'), config.podNamespace, config.localService, config.localPort)
      const ips = [...new Set(replicas.map((r) => r.ip))].sort()
      const index = ips.indexOf(config.podIp!)
      ;(opts.onReplicaShare ?? ((i, n) => dataPlane.backends.setReplicaShare(i, n)))(index, Math.max(1, ips.length))
    }
    store.onChangeSoon(['EndpointSlice'], share)
    share()
  }

  return {
    config,
    store,
    plane: dataPlane,
    reporter,
    files,
    runner,
    kube,
    ports,
    recompile: () => {
      const snap = compile()
      dataPlane.setSnapshot(snap)
      return snap
    },
    startDraining: () => {
      draining = true
      dataPlane.draining = true
    },
    close: async (finishMs = 1000) => {
      draining = true
      dataPlane.draining = true
      files?.stop()
      await stopStatusWriter() // KIngress status writer: step down and release the Lease first
      kube?.source.stop()
      reporter.stop()
      // Stop accepting, let in-flight requests finish for a moment, then end what is left.
      const closed = Promise.all(listeners.map((l) => l.close()))
      dataPlane.rejectHeld()
      await Promise.race([dataPlane.whenIdle(), new Promise((r) => setTimeout(r, finishMs).unref())])
      for (const l of listeners) l.closeAll()
      await closed
      await admin?.close()
      await runner?.close()
      await sink?.close()
      await dataPlane.close()
    },
  }
}
