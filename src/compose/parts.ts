// The parts a gateway process is composed of. Each role (gateway.ts: one process doing everything;
// cluster/primary.ts and cluster/worker.ts with --workers) composes the parts it needs in its own
// small function; nothing here asks which role it is in.
//
//   config pipeline   the store and the snapshot publisher (compile, subscribers in a fixed order)
//   data plane        the front door, throttlers and pools (serving roles)
//   listeners         public, cluster-local, TLS and cluster-local TLS ports, with certificates
//   control           the sources (files or Kubernetes), the local runner, the KIngress status
//                     writer and the link to the Knative autoscaler (roles that own configuration)
//   admin             health, readiness, metrics and /debug/routes
//   tracing           OTLP spans per request, only with --tracing-endpoint (serving roles)
import type { Logger } from 'pino'
import type { KubeConfig } from '@kubernetes/client-node'
import type { MetricObjectWithValues, MetricValue } from 'prom-client'
import type { GatewayConfig } from '../config.ts'
import type { CompileOptions } from '../compile/snapshot.ts'
import type { RevisionRef, Snapshot } from '../model/snapshot.ts'
import type { Throttler } from '../activator/throttler.ts'
import { ObjectStore } from '../sources/store.ts'
import { FilesSource } from '../sources/files.ts'
import { DataPlane } from '../dataplane/data-plane.ts'
import type { DataPlaneOptions } from '../dataplane/data-plane.ts'
import { startListener, startTlsListener } from '../dataplane/listeners.ts'
import type { Listener } from '../dataplane/listeners.ts'
import { clientLimits, trustedProxyList } from '../dataplane/guard.ts'
import { AccessLog, parseAccessTemplate } from '../observe/access-log.ts'
import { LineWriter } from '../observe/line-writer.ts'
import { RateLimitPolicy } from '../policy/rate-limit.ts'
import { parseRateLimit } from '../policy/rate-limit-spec.ts'
import { CertificateStore } from '../dataplane/tls.ts'
import type { GatewayMetrics } from '../metrics.ts'
import type { LiveState } from '../metrics.ts'
import { StatReporter } from '../autoscaler/reporter.ts'
import { KnativeStatSink } from '../autoscaler/knative-sink.ts'
import { LocalRunner, scopeOf } from '../autoscaler/local-runner.ts'
import type { RevisionFaultReason } from '../autoscaler/local-runner.ts'
import { startAdmin } from '../admin/server.ts'
import type { AdminServer, RoutesView } from '../admin/server.ts'
import { gatewayReplicas } from '../status/replicas.ts'
import { SnapshotPublisher } from './snapshot-publisher.ts'
import { ServingController } from '../serving/controller.ts'
import { DomainNames } from '../serving/domain.ts'
// The Kubernetes client takes about a second to load: cluster-mode modules are imported only in
// cluster mode (workers and the files source start without them).
import type { KubernetesSource, KubernetesSourceTuning } from '../sources/kubernetes.ts'
import type { KIngressStatusWriter, StatusWriterOptions } from '../status/status-writer.ts'
// The OpenTelemetry SDK is loaded only when tracing is on.
import type { Tracing, TracingTuning } from '../observe/tracing.ts'

/** Defaults that depend on the mode: in a cluster the Knative autoscaler is at its well-known address. */
export function withModeDefaults(raw: GatewayConfig): GatewayConfig {
  return { ...raw, autoscalerUrl: raw.autoscalerUrl ?? (raw.kubernetes ? `ws://autoscaler.knative-serving.svc.${raw.clusterDomain}:8080` : undefined) }
}

// ---- config pipeline ----------------------------------------------------------------------------

export interface ConfigPipeline {
  readonly store: ObjectStore
  readonly publisher: SnapshotPublisher
}

export function configPipeline(config: GatewayConfig, log: Logger, onCompiled: (ok: boolean) => void): ConfigPipeline {
  const store = new ObjectStore()
  const compile: CompileOptions = {
    ingressClass: config.ingressClass,
    domain: config.domain,
    clusterDomain: config.clusterDomain,
    names: new DomainNames(config.domainTemplate, config.tagTemplate),
    translateServing: !config.kubernetes || config.watchServing,
  }
  return { store, publisher: new SnapshotPublisher(store, compile, { log, onCompiled }) }
}

// ---- metrics ------------------------------------------------------------------------------------

/** Per-revision rows of the live gauges, from a process's throttlers (Service backends are not revisions). */
export function revisionRows(entries: Array<{ revision: RevisionRef | undefined; throttler: Throttler }>): ReturnType<LiveState['revisions']> {
  const rows: ReturnType<LiveState['revisions']> = []
  for (const { revision, throttler } of entries) {
    if (revision) rows.push({ namespace: revision.namespace, revision: revision.name, inFlight: throttler.inFlight, queued: throttler.queued, pods: throttler.podCount })
  }
  return rows
}

/**
 * Whether a snapshot still has the revision, as a Revision object or as a backend a split names:
 * the metrics forget the series of the others once scraped (src/request-accounting.ts).
 */
export function revisionInSnapshot(snap: Snapshot | undefined, namespace: string, name: string): boolean {
  if (!snap) return true
  const key = `${namespace}/${name}`
  return snap.revisions.has(key) || snap.backends.has(`rev:${key}`)
}

// ---- data plane ---------------------------------------------------------------------------------

export function dataPlane(config: GatewayConfig, log: Logger, metrics: GatewayMetrics, reporter: StatReporter, publisher: SnapshotPublisher, extra: Pick<DataPlaneOptions, 'onColdStart' | 'remoteThrottler' | 'policies' | 'tracing'> & { processes: number }): DataPlane {
  const now = reporter.now
  const demand = reporter.demand
  const plane = new DataPlane(publisher.snapshot, {
    log,
    metrics,
    coldStartBudgetMs: config.coldStartTimeoutSeconds * 1000,
    streamIdleTimeoutMs: config.streamIdleTimeoutSeconds * 1000,
    maxQueuedPerRevision: config.maxQueuedPerRevision,
    maxQueuedTotal: config.maxQueuedTotal,
    maxQueuedPerNamespace: config.maxQueuedPerNamespace,
    accessLog: config.accessLog ? accessLog(config, metrics) : undefined,
    // Rate limits decide before admission; further policies (tests) follow them.
    policies: [rateLimits(config, metrics, extra.processes), ...(extra.policies ?? [])],
    // rev.key is revisionKey(rev), built once per snapshot: no string per request to hash.
    demand: {
      requestIn: (rev) => demand.requestInKey(rev.key, rev, now()),
      requestOut: (rev) => demand.requestOutKey(rev.key, now()),
    },
    onColdStart: extra.onColdStart,
    remoteThrottler: extra.remoteThrottler,
    tracing: extra.tracing,
  })
  publisher.subscribe('data-plane', (p) => plane.setSnapshot(p.snapshot, p.changedBackends))
  return plane
}

/**
 * Access-log lines to stdout, written asynchronously in whole-line batches; lines the output cannot
 * take are dropped and counted (edge_access_log_dropped_total), never waited for. What is pending at
 * exit is written then.
 */
function accessLog(config: GatewayConfig, metrics: GatewayMetrics): AccessLog {
  const writer = new LineWriter({ fd: 1, onDrop: (n) => metrics.accessLogDropped(n) })
  process.once('exit', () => writer.flushSync())
  const template = config.accessLogTemplate === undefined ? undefined : parseAccessTemplate(config.accessLogTemplate)
  return new AccessLog({ writer, template, trustedProxies: trustedProxyList(config.trustedProxies) })
}

/** Per host (edge.knative.dev/rate-limit) and per client (--rate-limit-per-client), this process's share. */
function rateLimits(config: GatewayConfig, metrics: GatewayMetrics, processes: number): RateLimitPolicy {
  const per = config.rateLimitPerClient === undefined ? undefined : parseRateLimit(config.rateLimitPerClient, undefined, processes)
  return new RateLimitPolicy({ perClient: typeof per === 'object' ? per : undefined, processes, onLimited: (host, limit) => metrics.rateLimited(host, limit) })
}

// ---- tracing -----------------------------------------------------------------------------------

/**
 * Tracing, when --tracing-endpoint names a collector (else undefined, and the data plane makes no
 * span, context or id). Spans it drops are counted in edge_tracing_spans_dropped_total, a counter
 * registered on this process's registry (with --workers, summed into the primary's /metrics).
 */
export async function startTracing(config: GatewayConfig, log: Logger, metrics: GatewayMetrics, tuning?: TracingTuning): Promise<Tracing | undefined> {
  if (config.tracingEndpoint === undefined) return undefined
  const { Tracing, spanDropCounter } = await import('../observe/tracing.ts')
  return new Tracing({
    endpoint: config.tracingEndpoint,
    samplingRate: config.tracingSamplingRate,
    serviceName: config.tracingServiceName,
    instance: config.podName,
    log: log.child({ component: 'tracing' }),
    onDrop: spanDropCounter(metrics.registry),
    tuning,
  })
}

// ---- listeners ----------------------------------------------------------------------------------

export interface ListenerPorts {
  http: number
  local: number
  https: number
  /** Only with --local-https-port. */
  localHttps?: number
}

export interface Listeners {
  readonly ports: ListenerPorts
  /** Stop accepting; idle connections close (HTTP/2 gets GOAWAY). */
  close(): Promise<void>
  /** End every connection now (after a drain). */
  closeAll(): void
}

/**
 * The serving ports. TLS certificates follow the snapshot (KIngress tls), in the files source every
 * TLS Secret (a laptop has no KIngress to name them), and --default-tls-secret. In a cluster a Secret
 * no KIngress names is never served: any namespace can hold a TLS Secret.
 */
export async function startListeners(config: GatewayConfig, log: Logger, plane: DataPlane, pipeline: ConfigPipeline): Promise<Listeners> {
  const { store, publisher } = pipeline
  const opts = { host: config.listenAddress, http1Server: config.http1Server, proxyProtocol: config.proxyProtocol, ...clientLimits(config) }
  const started: Listener[] = []
  const add = async (l: Promise<Listener>): Promise<number> => {
    const one = await l
    started.push(one)
    return one.port
  }
  try {
    const http = await add(startListener(plane, 'public', { ...opts, port: config.httpPort }))
    const local = await add(startListener(plane, 'local', { ...opts, port: config.localPort }))
    const certs = new CertificateStore(log.child({ component: 'tls' }), { ciphers: config.tlsCiphers, defaultSecret: config.defaultTlsSecret })
    const updateCerts = (): void =>
      certs.update(publisher.snapshot, config.kubernetes ? [] : store.list('Secret'), config.defaultTlsSecret ? store.get('Secret', config.defaultTlsSecret) : undefined)
    updateCerts()
    publisher.subscribe('certificates', updateCerts)
    const https = await add(startTlsListener(plane, certs, { ...opts, port: config.httpsPort, ciphers: config.tlsCiphers }))
    // Cluster-local TLS (Knative's cluster-local-domain-tls): every rule, the same certificates.
    const localHttps = config.localHttpsPort === undefined ? undefined : await add(startTlsListener(plane, certs, { ...opts, port: config.localHttpsPort, ciphers: config.tlsCiphers }, 'local'))
    return {
      ports: { http, local, https, localHttps },
      close: async () => {
        await Promise.all(started.map((l) => l.close()))
      },
      closeAll: () => {
        for (const l of started) l.closeAll()
      },
    }
  } catch (err) {
    await Promise.all(started.map((l) => l.close()))
    throw err
  }
}

// ---- control: sources, local runner, status writer, autoscaler link ----------------------------

export interface ControlHooks {
  /** Cluster-mode tuning (tests shorten informer backoff and the status writer's timings). */
  kubernetes?: KubernetesSourceTuning
  statusWriter?: false | StatusWriterOptions
  /** Requests in flight at a local endpoint (the local runner never stops a busy process). */
  inFlightAt: (address: string) => number
  /** A stopped process must have no request in flight; where counts arrive late (--workers), wait this long. */
  stopGraceMs: number
  /**
   * The local runner cannot run a revision, or its instances keep failing before they are ready
   * (`detail` says why), or that is over (undefined): the data plane answers its requests 503
   * `no-runtime` or `revision-failed` instead of holding them.
   */
  onUnrunnable?: (namespace: string, name: string, detail: string | undefined, reason: RevisionFaultReason) => void
}

export interface Control {
  readonly files: FilesSource | undefined
  readonly runner: LocalRunner | undefined
  readonly kube: { readonly config: KubeConfig; readonly source: KubernetesSource } | undefined
  readonly sink: KnativeStatSink | undefined
  /** Why the configuration is not loaded yet, or undefined once it is. */
  loadingReason(): string | undefined
  /** Source state for /debug/routes. */
  describe(): Record<string, unknown>
  /** Stops the sources and steps the status writer down (first in a drain: no new config, Lease released). */
  stopSources(): Promise<void>
  /** Closes the local runner and the autoscaler link (last). */
  close(): Promise<void>
}

/**
 * The configuration side of a gateway: files (with the local runner) or Kubernetes informers (with the
 * status writer), and the link to the Knative autoscaler. In cluster mode the listeners start at
 * once and /readyz fails until every informer has listed; nothing is removed while the API server is
 * unreachable, so the last snapshot keeps serving.
 */
export async function startControl(config: GatewayConfig, log: Logger, pipeline: ConfigPipeline, reporter: StatReporter, metrics: GatewayMetrics, hooks: ControlHooks): Promise<Control> {
  const { store, publisher } = pipeline
  let configLoaded = false
  let files: FilesSource | undefined
  let runner: LocalRunner | undefined
  let serving: ServingController | undefined
  if (!config.kubernetes) {
    files = new FilesSource({ dir: config.manifests, store, log })
    await files.start()
    runner = new LocalRunner({
      store,
      log: log.child({ component: 'local-runner' }),
      scaleToZeroAfterSeconds: config.scaleToZeroAfter,
      stopGraceMs: hooks.stopGraceMs,
      inFlightAt: hooks.inFlightAt,
      containerEngine: config.containerEngine,
      // Gateways on the same manifests share a scope: a restart removes what a killed one left running.
      scope: scopeOf(config.manifests),
      onUnrunnable: hooks.onUnrunnable,
    })
    reporter.addSink(runner)
    // A rollout's new revision is started at once, so traffic can move to it when it is ready.
    const localRunner = runner
    serving = servingController(config, log, store, (ns, name) => localRunner.coldStart(ns, name))
    publisher.full()
    configLoaded = true
    runner.start()
  }

  let kube: Control['kube']
  let statusWriter: KIngressStatusWriter | undefined
  if (config.kubernetes) {
    const { KubernetesSource, loadKubeConfig } = await import('../sources/kubernetes.ts')
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
      ...hooks.kubernetes,
    })
    kube = { config: kubeConfig, source }
    // Without a Serving controller in the cluster, the gateway derives what it would (in memory only).
    if (config.watchServing) serving = servingController(config, log, store, undefined)
    void source.start().then(() => {
      configLoaded = source.synced
    })
    // The leader among the replicas writes KIngress status once every replica serves each ingress.
    // It starts after the first full list, so a half-filled store never turns into status writes.
    if (hooks.statusWriter !== false) {
      const { KIngressStatusWriter } = await import('../status/status-writer.ts')
      const writer = new KIngressStatusWriter({
        kubeConfig,
        store,
        snapshot: () => publisher.snapshot,
        onSnapshot: (cb) => publisher.subscribe('status-writer', (p) => cb(p.snapshot)),
        config,
        log,
        options: hooks.statusWriter || undefined,
      })
      statusWriter = writer
      void source.start().then(() => {
        if (statusWriter === writer) writer.start()
      })
    }
  }

  let sink: KnativeStatSink | undefined
  if (config.autoscalerUrl) {
    sink = new KnativeStatSink({ url: config.autoscalerUrl, log: log.child({ component: 'autoscaler-sink' }) })
    sink.start()
    reporter.addSink(sink)
  }
  reporter.start()

  return {
    files,
    runner,
    kube,
    sink,
    loadingReason: () => (configLoaded ? undefined : (kube?.source.notSyncedReason() ?? 'initial configuration not loaded')),
    describe: () => ({
      files: files ? { dir: config.manifests, scans: files.scans } : undefined,
      serving: serving?.describe(),
      kubernetes: kube?.source.describe(),
      statusWriter: statusWriter?.describe(),
      localRunner: runner?.describe(),
      autoscaler: sink ? { url: config.autoscalerUrl, connected: sink.connected, ...sink.stats } : undefined,
    }),
    stopSources: async () => {
      files?.stop()
      serving?.stop()
      const w = statusWriter
      statusWriter = undefined
      await w?.stop()
      kube?.source.stop()
      reporter.stop()
    },
    close: async () => {
      await runner?.close()
      await sink?.close()
    },
  }
}

/**
 * Knative Services and Configurations become Configurations, Revisions and Routes in the store, as
 * Serving would make them (src/serving/).
 */
function servingController(config: GatewayConfig, log: Logger, store: ObjectStore, startRevision: ((ns: string, name: string) => void) | undefined): ServingController {
  const serving = new ServingController({
    store,
    log: log.child({ component: 'serving' }),
    names: new DomainNames(config.domainTemplate, config.tagTemplate),
    domain: config.domain,
    clusterDomain: config.clusterDomain,
    startRevision,
  })
  serving.start()
  return serving
}

// ---- admin --------------------------------------------------------------------------------------

export interface AdminHooks {
  routes: RoutesView
  notReadyReason(): string | undefined
  sources(): Record<string, unknown>
  podInFlight?: (address: string) => number
  metricsFrom?: () => Promise<MetricObjectWithValues<MetricValue<string>>[][]>
}

export function startAdminPart(config: GatewayConfig, metrics: GatewayMetrics, hooks: AdminHooks): Promise<AdminServer> {
  return startAdmin({ metrics, routes: hooks.routes, notReadyReason: hooks.notReadyReason, sources: hooks.sources, podInFlight: hooks.podInFlight }, config.listenAddress, config.adminPort, hooks.metricsFrom)
}

// ---- replica share ------------------------------------------------------------------------------

/**
 * Capacity sharing between gateway replicas (cluster mode with --pod-ip): this replica's index among
 * the ready endpoints of the gateway's own cluster-local Service, so containerConcurrency holds
 * cluster-wide. `apply` is where the share goes (the data plane, or the primary's broker).
 */
export function followReplicaShare(config: GatewayConfig, pipeline: ConfigPipeline, apply: (index: number, count: number) => void): void {
  if (!config.kubernetes || !config.podIp) return
  const podIp = config.podIp
  const share = (): void => {
    const replicas = gatewayReplicas(pipeline.store.list('EndpointSlice'), config.podNamespace, config.localService, config.localPort)
    const ips = [...new Set(replicas.map((r) => r.ip))].sort()
    apply(ips.indexOf(podIp), Math.max(1, ips.length))
  }
  pipeline.publisher.subscribe('replica-share', (p) => {
    if (p.endpointsOnly) share()
  })
  share()
}
