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
import fs from 'node:fs'
import net from 'node:net'
import type { Logger } from 'pino'
import type { KubeConfig } from '@kubernetes/client-node'
import type { MetricObjectWithValues, MetricValue } from 'prom-client'
import { checkExtAuthz } from '../config.ts'
import type { GatewayConfig } from '../config.ts'
import type { CompileOptions } from '../compile/snapshot.ts'
import type { RevisionRef, Snapshot } from '../model/snapshot.ts'
import { holdBounds } from '../activator/throttler.ts'
import type { Throttler } from '../activator/throttler.ts'
import { ObjectStore } from '../sources/store.ts'
import { FilesSource } from '../sources/files.ts'
import { DataPlane } from '../dataplane/data-plane.ts'
import type { DataPlaneOptions } from '../dataplane/data-plane.ts'
import { startListener, startTlsListener } from '../dataplane/listeners.ts'
import { bindAddresses } from '../dataplane/listen-addresses.ts'
import { canonicalIp } from '../model/addresses.ts'
import type { Listener } from '../dataplane/listeners.ts'
import { clientLimits, trustedProxyList } from '../dataplane/guard.ts'
import { AccessLog, parseAccessTemplate } from '../observe/access-log.ts'
import { LineWriter } from '../observe/line-writer.ts'
import { RateLimitPolicy } from '../policy/rate-limit.ts'
import { parseRateLimit } from '../policy/rate-limit-spec.ts'
import { ExtAuthzPolicy } from '../policy/extauthz.ts'
import { ReplaceablePolicy } from '../policy/replaceable.ts'
import { GrpcAuthorizer } from '../policy/extauthz-grpc.ts'
import { HttpAuthorizer } from '../policy/extauthz-http.ts'
import type { Policy } from '../dataplane/policy.ts'
import { CertificateStore } from '../dataplane/tls.ts'
import { UpstreamTls } from '../dataplane/upstream-tls.ts'
import { ROUTING_CERTS_KEY, trustBundleOf } from '../dataplane/trust-bundle.ts'
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
import { differs } from '../settings/live-settings.ts'
import type { LiveSettings } from '../settings/live-settings.ts'
import { SettingsFollower } from '../settings/follow.ts'
import { DOMAIN_CONFIGMAP, EDGE_CONFIGMAP, NETWORK_CONFIGMAP } from '../settings/configmaps.ts'
import type { RateLimitSpec } from '../policy/rate-limit-spec.ts'
import { DomainNames } from '../serving/domain.ts'
import { httpOptionOf } from '../translate/options.ts'
// The Kubernetes client takes about a second to load: cluster-mode modules are imported only in
// cluster mode (workers and the files source start without them).
import type { KubernetesSource, KubernetesSourceTuning } from '../sources/kubernetes.ts'
import type { RevisionHealth } from '../sources/revision-health.ts'
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

export function configPipeline(settings: LiveSettings, log: Logger, onCompiled: (ok: boolean) => void): ConfigPipeline {
  const store = new ObjectStore()
  const publisher = new SnapshotPublisher(store, compileOptions(settings.current), { log, onCompiled })
  // Routes get their hosts from the domain settings: a change translates every Route again.
  settings.onChange((next, prev) => {
    if (differs(prev, next, DOMAIN_KEYS)) publisher.reconfigure(compileOptions(next))
  })
  return { store, publisher }
}

/** The settings Route hosts are made from (config-domain, config-network's templates). */
const DOMAIN_KEYS: ReadonlyArray<keyof GatewayConfig> = ['domain', 'domainTemplate', 'tagTemplate', 'httpProtocol']

function compileOptions(config: GatewayConfig): CompileOptions {
  return {
    ingressClass: config.ingressClass,
    domain: config.domain,
    clusterDomain: config.clusterDomain,
    names: new DomainNames(config.domainTemplate, config.tagTemplate),
    httpProtocol: httpOptionOf(config.httpProtocol),
    translateServing: !config.kubernetes || config.watchServing,
  }
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

export function dataPlane(settings: LiveSettings, log: Logger, metrics: GatewayMetrics, reporter: StatReporter, publisher: SnapshotPublisher, extra: Pick<DataPlaneOptions, 'onColdStart' | 'remoteThrottler' | 'policies' | 'tracing' | 'upstreamTls'> & { processes: number }): DataPlane {
  const config = settings.current
  const now = reporter.now
  const demand = reporter.demand
  const accessLogs = accessLogFactory(metrics)
  const limiter = rateLimits(config, metrics, extra.processes)
  const authz = new ReplaceablePolicy('extauthz', externalAuthorization(config, log, metrics))
  const plane = new DataPlane(publisher.snapshot, {
    log,
    metrics,
    coldStartBudgetMs: config.coldStartTimeoutSeconds * 1000,
    streamIdleTimeoutMs: config.streamIdleTimeoutSeconds * 1000,
    maxQueuedPerRevision: config.maxQueuedPerRevision,
    holds: holdBounds(config),
    accessLog: accessLogs(config),
    // Rate limits decide before admission, then the external authorizer (a flood over the limit is
    // not passed on to it); further policies (tests) follow them.
    policies: [limiter, authz, ...(extra.policies ?? [])],
    // rev.key is revisionKey(rev), built once per snapshot: no string per request to hash.
    demand: {
      requestIn: (rev) => demand.requestInKey(rev.key, rev, now()),
      requestOut: (rev) => demand.requestOutKey(rev.key, now()),
    },
    onColdStart: extra.onColdStart,
    remoteThrottler: extra.remoteThrottler,
    tracing: extra.tracing,
    upstreamTls: extra.upstreamTls,
  })
  publisher.subscribe('data-plane', (p) => plane.setSnapshot(p.snapshot, p.changedBackends))
  // What the ConfigMaps may change (config.ts's live options) reaches the data plane's parts here.
  settings.onChange((next, prev) => {
    if (differs(prev, next, ['accessLog', 'accessLogTemplate', 'trustedProxies'])) plane.setAccessLog(accessLogs(next))
    if (differs(prev, next, ['rateLimitPerClient'])) limiter.setPerClient(perClientLimit(next, extra.processes))
    if (differs(prev, next, EXTAUTHZ_KEYS)) replaceAuthorizer(authz, next, prev, log, metrics)
    if (differs(prev, next, ['coldStartTimeoutSeconds', 'streamIdleTimeoutSeconds'])) plane.setTimeouts(next.coldStartTimeoutSeconds * 1000, next.streamIdleTimeoutSeconds * 1000)
    if (differs(prev, next, HOLD_KEYS)) plane.backends.setQueueBounds(next.maxQueuedPerRevision, holdBounds(next))
  })
  return plane
}

/** The options that bound held requests (config-edge-gateway may change each). */
const HOLD_KEYS = ['maxQueuedPerRevision', 'maxQueuedTotal', 'maxQueuedPerNamespace', 'maxHeldBodyBytes', 'maxHeldBodyBytesPerNamespace'] as const

/**
 * TLS to revision pods (system-internal-tls). The setting is read through an accessor at every
 * request, so a live source for it (config-network) only has to change `config.systemInternalTls`;
 * the trust bundles follow their ConfigMaps and routing-serving-certs in the store (files or
 * cluster), for new connections.
 */
export function upstreamTls(config: GatewayConfig, log: Logger, store: ObjectStore): UpstreamTls {
  const upstream = new UpstreamTls({ enabled: () => config.systemInternalTls, log: log.child({ component: 'upstream-tls' }) })
  const load = (): void => upstream.setBundle(trustBundleOf(store.list('ConfigMap'), store.get('Secret', ROUTING_CERTS_KEY)))
  load()
  store.onChange((changes) => {
    for (const c of changes.objects.values()) {
      if (c.kind === 'ConfigMap' || (c.kind === 'Secret' && c.key === ROUTING_CERTS_KEY)) return load()
    }
  })
  return upstream
}

/**
 * Access-log lines to stdout, written asynchronously in whole-line batches; lines the output cannot
 * take are dropped and counted (edge_access_log_dropped_total), never waited for. What is pending at
 * exit is written then. One writer per process, made when access logging is first on; each setting
 * of --access-log, its template or --trusted-proxies gets a new AccessLog on it (undefined: off).
 */
function accessLogFactory(metrics: GatewayMetrics): (config: GatewayConfig) => AccessLog | undefined {
  let writer: LineWriter | undefined
  return (config) => {
    if (!config.accessLog) return undefined
    if (!writer) {
      const w = new LineWriter({ fd: 1, onDrop: (n) => metrics.accessLogDropped(n) })
      process.once('exit', () => w.flushSync())
      writer = w
    }
    const template = config.accessLogTemplate === undefined ? undefined : parseAccessTemplate(config.accessLogTemplate)
    return new AccessLog({ writer, template, trustedProxies: trustedProxyList(config.trustedProxies) })
  }
}

const EXTAUTHZ_KEYS: ReadonlyArray<keyof GatewayConfig> = [
  'extAuthzHost',
  'extAuthzProtocol',
  'extAuthzFailureModeAllow',
  'extAuthzMaxRequestBodyBytes',
  'extAuthzTimeoutMs',
  'extAuthzPathPrefix',
  'extAuthzPackAsBytes',
  'extAuthzSkipClusterLocal',
  'extAuthzAllowedHeaders',
  'extAuthzAllowedUpstreamHeaders',
  'extAuthzCaFile',
]

/**
 * The extauthz-* settings changed (config-edge-gateway): a new authorizer from now on, unless the
 * new combination is one the flags would refuse; then the one in place stays, and the log says why.
 */
function replaceAuthorizer(authz: ReplaceablePolicy, next: GatewayConfig, prev: GatewayConfig, log: Logger, metrics: GatewayMetrics): void {
  const settings = { ...next }
  try {
    checkExtAuthz(settings)
  } catch (err) {
    log.error({ code: 'EDGE_ERR_CONFIGMAP_VALUE', err: (err as Error).message }, 'external authorization settings not applied: the authorizer in place stays')
    return
  }
  authz.replace(externalAuthorization(settings, log, metrics), prev.extAuthzTimeoutMs)
  log.info({ extauthz: settings.extAuthzHost === undefined ? 'off' : `${settings.extAuthzProtocol}://${settings.extAuthzHost}` }, 'external authorization settings applied')
}

/** --extauthz-host: one authorizer connection per process, asked for every request it checks. */
function externalAuthorization(config: GatewayConfig, log: Logger, metrics: GatewayMetrics): Policy | undefined {
  if (config.extAuthzHost === undefined) return undefined
  const target = config.extAuthzHost
  const authorizer =
    config.extAuthzProtocol === 'grpc'
      ? new GrpcAuthorizer(target, config.extAuthzPackAsBytes)
      : new HttpAuthorizer({
          origin: `${config.extAuthzProtocol}://${target}`,
          pathPrefix: config.extAuthzPathPrefix ?? '',
          allowedHeaders: config.extAuthzAllowedHeaders,
          upstreamHeaders: config.extAuthzAllowedUpstreamHeaders,
          // Checked readable by the option's own check, just before.
          ca: config.extAuthzCaFile === undefined ? undefined : fs.readFileSync(config.extAuthzCaFile, 'utf8'),
        })
  return new ExtAuthzPolicy({
      authorizer,
      target: `${config.extAuthzProtocol}://${target}`,
      failureModeAllow: config.extAuthzFailureModeAllow,
      maxBodyBytes: config.extAuthzMaxRequestBodyBytes,
      timeoutMs: config.extAuthzTimeoutMs,
      skipClusterLocal: config.extAuthzSkipClusterLocal,
      log,
      onChecked: (outcome) => metrics.extAuthzChecked(outcome),
    })
}

/** Per host (edge.knative.dev/rate-limit) and per client (--rate-limit-per-client), this process's share. */
function rateLimits(config: GatewayConfig, metrics: GatewayMetrics, processes: number): RateLimitPolicy {
  return new RateLimitPolicy({ perClient: perClientLimit(config, processes), processes, onLimited: (host, limit) => metrics.rateLimited(host, limit) })
}

function perClientLimit(config: GatewayConfig, processes: number): RateLimitSpec | undefined {
  const per = config.rateLimitPerClient === undefined ? undefined : parseRateLimit(config.rateLimitPerClient, undefined, processes)
  return typeof per === 'object' ? per : undefined
}

// ---- tracing -----------------------------------------------------------------------------------

/**
 * Tracing, when --tracing-endpoint names a collector (else undefined, and the data plane makes no
 * span, context or id). Spans it drops are counted in edge_tracing_spans_dropped_total, a counter
 * registered on this process's registry (with --workers, summed into the primary's /metrics).
 */
export async function startTracing(settings: LiveSettings, log: Logger, metrics: GatewayMetrics, tuning?: TracingTuning): Promise<Tracing | undefined> {
  const endpoint = settings.current.tracingEndpoint
  if (endpoint === undefined) return undefined
  const { Tracing, spanDropCounter } = await import('../observe/tracing.ts')
  // Read after the import: a worker may have heard of new settings meanwhile.
  const config = settings.current
  const tracing = new Tracing({
    endpoint,
    samplingRate: config.tracingSamplingRate,
    serviceName: config.tracingServiceName,
    instance: config.podName,
    log: log.child({ component: 'tracing' }),
    onDrop: spanDropCounter(metrics.registry),
    tuning,
  })
  settings.onChange((next) => tracing.setSamplingRate(next.tracingSamplingRate))
  return tracing
}

// ---- listeners ----------------------------------------------------------------------------------

/** The settings clientLimits() reads: a change to one of them reaches every listener. */
const CLIENT_LIMIT_KEYS: ReadonlyArray<keyof GatewayConfig> = ['headerTimeoutSeconds', 'maxHeaderBytes', 'maxHeaders', 'maxBodyBytes', 'maxConnectionsPerIp', 'maxUrlLength', 'trustedProxies']

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
export async function startListeners(settings: LiveSettings, log: Logger, plane: DataPlane, pipeline: ConfigPipeline): Promise<Listeners> {
  const config = settings.current
  const { store, publisher } = pipeline
  const opts = { addresses: bindAddresses(config.listenAddresses), http1Server: config.http1Server, proxyProtocol: config.proxyProtocol, ...clientLimits(config) }
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
    const updateCerts = (): void => {
      const defaultSecret = settings.current.defaultTlsSecret
      certs.update(publisher.snapshot, config.kubernetes ? [] : store.list('Secret'), defaultSecret ? store.get('Secret', defaultSecret) : undefined)
    }
    updateCerts()
    publisher.subscribe('certificates', updateCerts)
    const https = await add(startTlsListener(plane, certs, { ...opts, port: config.httpsPort, ciphers: config.tlsCiphers }))
    // Cluster-local TLS (Knative's cluster-local-domain-tls): every rule, the same certificates.
    const localHttps = config.localHttpsPort === undefined ? undefined : await add(startTlsListener(plane, certs, { ...opts, port: config.localHttpsPort, ciphers: config.tlsCiphers }, 'local'))
    const follow = (next: GatewayConfig, prev: GatewayConfig): void => {
      if (differs(prev, next, CLIENT_LIMIT_KEYS)) for (const l of started) l.setLimits(clientLimits(next))
      if (differs(prev, next, ['proxyProtocol'])) for (const l of started) l.setProxyProtocol(next.proxyProtocol)
      if (!differs(prev, next, ['tlsCiphers', 'defaultTlsSecret'])) return
      certs.configure({ ciphers: next.tlsCiphers, defaultSecret: next.defaultTlsSecret })
      for (const l of started) l.setCiphers?.(next.tlsCiphers)
      updateCerts()
    }
    settings.onChange(follow)
    // A worker may hear of the settings while its listeners start: they catch up here.
    if (settings.current !== config) follow(settings.current, config)
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
   * `no-runtime` or `revision-failed` instead of holding them. In a cluster, the same for a revision
   * whose pods or conditions say it cannot become ready; `cause` labels the fast-failure metric.
   */
  onUnrunnable?: (namespace: string, name: string, detail: string | undefined, reason: RevisionFaultReason, cause?: string) => void
}

export interface Control {
  readonly files: FilesSource | undefined
  readonly runner: LocalRunner | undefined
  readonly kube: { readonly config: KubeConfig; readonly source: KubernetesSource } | undefined
  readonly sink: KnativeStatSink | undefined
  /** A request is held for a revision with no pod: the local runner starts one, the cluster's pods are watched. */
  coldStart(namespace: string, name: string): void
  /** Every revision that cannot serve now, with why (for a --workers worker that joins later). */
  faults(): Map<string, { reason: RevisionFaultReason; detail: string; cause?: string }>
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
export async function startControl(settings: LiveSettings, log: Logger, pipeline: ConfigPipeline, reporter: StatReporter, metrics: GatewayMetrics, hooks: ControlHooks): Promise<Control> {
  const config = settings.current
  const { store, publisher } = pipeline
  // Before any source writes: the settings ConfigMaps apply as they arrive, the files' before the
  // first compile.
  const follower = new SettingsFollower(store, settings, log.child({ component: 'settings' }))
  follower.start()
  let configLoaded = false
  let files: FilesSource | undefined
  let runner: LocalRunner | undefined
  let serving: ServingController | undefined
  if (!config.kubernetes) {
    files = new FilesSource({ dir: config.manifests, store, log })
    await files.start()
    follower.refresh()
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
    serving = servingController(settings, log, store, (ns, name) => localRunner.coldStart(ns, name))
    publisher.full()
    configLoaded = true
    runner.start()
  }

  let kube: Control['kube']
  let health: RevisionHealth | undefined
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
      namespaces: config.namespaces,
      // The status writer and the replica share find the gateway's own replicas in POD_NAMESPACE:
      // when scoped elsewhere, their EndpointSlices are watched there, and nothing else of it.
      ownReplicas: config.namespaces.length > 0 && !config.namespaces.includes(config.podNamespace) ? { namespace: config.podNamespace, service: config.localService } : undefined,
      configMaps: [
        { namespace: config.podNamespace, name: EDGE_CONFIGMAP },
        { namespace: config.knativeNamespace, name: NETWORK_CONFIGMAP },
        { namespace: config.knativeNamespace, name: DOMAIN_CONFIGMAP },
      ],
      onHealthChange: (up) => metrics.sourceUp.set({ source: 'kubernetes' }, up ? 1 : 0),
      ...hooks.kubernetes,
    })
    kube = { config: kubeConfig, source }
    health = await revisionHealth(config, log, pipeline, kubeConfig, hooks)
    reporter.addSink(health)
    // Without a Serving controller in the cluster, the gateway derives what it would (in memory only).
    if (config.watchServing) serving = servingController(settings, log, store, undefined)
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
    coldStart: (namespace, name) => {
      runner?.coldStart(namespace, name)
      health?.coldStart(namespace, name)
    },
    faults: () => {
      const out: ReturnType<Control['faults']> = runner?.faults() ?? new Map()
      for (const [key, v] of health?.faults() ?? []) out.set(key, { reason: 'revision-failed', detail: v.detail, cause: v.cause })
      return out
    },
    loadingReason: () => (configLoaded ? undefined : (kube?.source.notSyncedReason() ?? 'initial configuration not loaded')),
    describe: () => ({
      settings: follower.describe(),
      files: files ? { dir: config.manifests, scans: files.scans } : undefined,
      serving: serving?.describe(),
      kubernetes: kube?.source.describe(),
      statusWriter: statusWriter?.describe(),
      localRunner: runner?.describe(),
      revisionHealth: health?.describe(),
      autoscaler: sink ? { url: config.autoscalerUrl, connected: sink.connected, ...sink.stats } : undefined,
    }),
    stopSources: async () => {
      follower.stop()
      files?.stop()
      serving?.stop()
      const w = statusWriter
      statusWriter = undefined
      await w?.stop()
      health?.stop()
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
 * Cluster mode: why a revision cannot become ready (its pods, its conditions), told to the data
 * plane as `revision-failed` through the same hook as the local runner's failures.
 */
async function revisionHealth(config: GatewayConfig, log: Logger, pipeline: ConfigPipeline, kubeConfig: KubeConfig, hooks: ControlHooks): Promise<RevisionHealth> {
  const { RevisionHealth } = await import('../sources/revision-health.ts')
  const { publisher } = pipeline
  const health = new RevisionHealth({
    kubeConfig,
    store: pipeline.store,
    log: log.child({ component: 'revision-health' }),
    namespaces: config.namespaces,
    readyEndpoints: (key) => {
      let n = 0
      for (const b of publisher.snapshot.backends.values()) if (b.revision?.key === key) n += b.endpoints.length
      return n
    },
    onChange: (namespace, name, verdict) => hooks.onUnrunnable?.(namespace, name, verdict?.detail, 'revision-failed', verdict?.cause),
    backoff: hooks.kubernetes?.backoff,
    watchdogMs: hooks.kubernetes?.watchdogMs,
    forbiddenGraceMs: hooks.kubernetes?.forbiddenGraceMs,
  })
  publisher.subscribe('revision-health', () => health.snapshotChanged())
  health.start()
  return health
}

/**
 * Knative Services and Configurations become Configurations, Revisions and Routes in the store, as
 * Serving would make them (src/serving/).
 */
function servingController(settings: LiveSettings, log: Logger, store: ObjectStore, startRevision: ((ns: string, name: string) => void) | undefined): ServingController {
  const config = settings.current
  const serving = new ServingController({
    store,
    log: log.child({ component: 'serving' }),
    names: new DomainNames(config.domainTemplate, config.tagTemplate),
    domain: config.domain,
    clusterDomain: config.clusterDomain,
    startRevision,
  })
  serving.start()
  settings.onChange((next, prev) => {
    if (differs(prev, next, DOMAIN_KEYS)) serving.setDomain(new DomainNames(next.domainTemplate, next.tagTemplate), next.domain)
  })
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
  return startAdmin({ metrics, routes: hooks.routes, notReadyReason: hooks.notReadyReason, sources: hooks.sources, podInFlight: hooks.podInFlight }, bindAddresses(config.listenAddresses), config.adminPort, hooks.metricsFrom)
}

// ---- replica share ------------------------------------------------------------------------------

/**
 * Capacity sharing between gateway replicas (cluster mode with --pod-ip): this replica's index among
 * the ready endpoints of the gateway's own cluster-local Service, so containerConcurrency holds
 * cluster-wide. `apply` is where the share goes (the data plane, or the primary's broker).
 */
export function followReplicaShare(config: GatewayConfig, pipeline: ConfigPipeline, apply: (index: number, count: number) => void): void {
  if (!config.kubernetes || !config.podIp) return
  const podIp = canonicalIp(config.podIp)
  // A dual-stack Service lists each replica once per family: count the replicas in POD_IP's family.
  const family = net.isIP(podIp)
  const share = (): void => {
    const replicas = gatewayReplicas(pipeline.store.list('EndpointSlice'), config.podNamespace, config.localService, config.localPort)
    const ips = [...new Set(replicas.map((r) => r.ip).filter((ip) => net.isIP(ip) === family))].sort()
    apply(ips.indexOf(podIp), Math.max(1, ips.length))
  }
  pipeline.publisher.subscribe('replica-share', (p) => {
    if (p.endpointsOnly) share()
  })
  share()
}
