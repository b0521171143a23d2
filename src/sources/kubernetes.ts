// The cluster source: informers on the API server fill the store with the objects the gateway
// serves. Like the files source it only writes to the store (source `kubernetes`); the compiler
// cannot tell the two apart. It never writes to the API server.
import type { Logger } from 'pino'
import { KubeConfig } from '@kubernetes/client-node'
import type { ObjectStore } from './store.ts'
import { ResilientInformer } from './informer.ts'
import { ServerReturnWatcher } from './server-return.ts'
import type { BackoffOptions, InformerDescription } from './informer.ts'
import { TLS_SECRET_TYPE, apiVersionOf, collectionPath, namedConfigMap, ownReplicaSlices, watchedResources } from './kube-resources.ts'
import type { NamedConfigMap, WatchedResource } from './kube-resources.ts'
import { ANN_INGRESS_CLASS, KNATIVE_SYSTEM_NAMESPACE, ROUTING_CERTS_SECRET, keyOf } from '../model/k8s.ts'
import type { KubeObject, Secret } from '../model/k8s.ts'
import { EdgeError, coded } from '../errors.ts'

export const KUBERNETES_SOURCE = 'kubernetes'

export interface KubernetesSourceOptions {
  kubeConfig: KubeConfig
  store: ObjectStore
  log: Logger
  /** KIngresses of other classes are never stored. */
  ingressClass: string
  /** Also watch Routes and DomainMappings. */
  watchServing: boolean
  /** Watch only these namespaces (one informer per namespace and type); empty = cluster-wide. */
  namespaces?: readonly string[]
  /**
   * With `namespaces` set and the gateway's own namespace not among them: its own replicas'
   * EndpointSlices (its local Service's), watched there and nothing else of that namespace.
   */
  ownReplicas?: { namespace: string; service: string }
  /** ConfigMaps read by name in their own namespace (the settings ConfigMaps: src/settings/). */
  configMaps?: readonly NamedConfigMap[]
  /** Called with the source's health whenever it may have changed (for `edge_source_up`). */
  onHealthChange?: (healthy: boolean) => void
  /** See ResilientInformerOptions; defaults 200 ms → 30 s and 5 min. */
  backoff?: BackoffOptions
  watchdogMs?: number
  /** See ResilientInformerOptions.watchInactivityMs (default 150 s). */
  watchInactivityMs?: number
  /** While the API server is unreachable, how often to check whether it is back (default 1 s). */
  probeMs?: number
  /** See ResilientInformerOptions.forbiddenGraceMs (default 30 s). */
  forbiddenGraceMs?: number
}

/** Tuning knobs a caller (tests, mostly) may override. */
export type KubernetesSourceTuning = Pick<KubernetesSourceOptions, 'backoff' | 'watchdogMs' | 'watchInactivityMs' | 'probeMs' | 'forbiddenGraceMs'>

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'

/** Loads `path`, else the in-cluster service account inside a pod, else the usual kubeconfig lookup. */
export function loadKubeConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const kc = new KubeConfig()
  try {
    if (path) kc.loadFromFile(path)
    else if (env.KUBERNETES_SERVICE_HOST) kc.loadFromCluster()
    else kc.loadFromDefault()
  } catch (err) {
    throw new EdgeError('EDGE_ERR_KUBECONFIG', `cannot load ${path ?? 'the default kubeconfig'}: ${(err as Error).message}`)
  }
  if (!kc.getCurrentCluster()) throw new EdgeError('EDGE_ERR_KUBECONFIG', `${path ?? 'the default kubeconfig'} names no current cluster`)
  return kc
}

export class KubernetesSource {
  private readonly opts: KubernetesSourceOptions
  private readonly informers: ResilientInformer[] = []
  private readonly serverReturn: ServerReturnWatcher
  private stopped = false
  private startPromise: Promise<void> | undefined
  private lastHealthy: boolean | undefined

  constructor(opts: KubernetesSourceOptions) {
    this.opts = opts
    const namespaces = opts.namespaces?.length ? [...new Set(opts.namespaces)] : [undefined]
    for (const res of watchedResources(opts.watchServing)) {
      // A resource pinned to one namespace (Knative's trust bundles) is watched there only.
      for (const ns of res.namespace !== undefined ? [res.namespace] : namespaces) this.informers.push(this.informer(res, ns))
    }
    if (opts.ownReplicas) this.informers.push(this.informer(ownReplicaSlices(opts.ownReplicas.service), opts.ownReplicas.namespace))
    for (const cm of opts.configMaps ?? []) this.informers.push(this.informer(namedConfigMap(cm), cm.namespace))
    this.serverReturn = new ServerReturnWatcher(opts.kubeConfig, this.informers, opts.probeMs)
  }

  /** One resource's list/watch, cluster-wide or in one namespace. */
  private informer(res: WatchedResource, ns: string | undefined): ResilientInformer {
    const opts = this.opts
    return new ResilientInformer({
      name: ns === undefined || res.namespace !== undefined ? (res.name ?? res.plural) : `${res.name ?? res.plural}@${ns}`,
      kubeConfig: opts.kubeConfig,
      path: collectionPath(res, ns),
      fieldSelector: res.fieldSelector,
      labelSelector: res.labelSelector,
      handlers: { upsert: (o) => this.upsert(res, o), remove: (o) => this.remove(res, o) },
      log: opts.log,
      backoff: opts.backoff,
      watchdogMs: opts.watchdogMs,
      watchInactivityMs: opts.watchInactivityMs,
      forbiddenGraceMs: opts.forbiddenGraceMs,
      onStateChange: () => this.stateChanged(),
      onRetrying: (unreachable) => this.serverReturn.informerRetrying(unreachable),
      onRecovered: () => this.serverReturn.informerRecovered(),
    })
  }

  /** Starts every informer; resolves once each has listed once (or when stopped before that). Idempotent. */
  start(): Promise<void> {
    if (!this.startPromise) {
      this.stateChanged()
      this.opts.log.info(
        { apiServer: this.opts.kubeConfig.getCurrentCluster()?.server, namespaces: this.opts.namespaces?.length ? this.opts.namespaces : 'all', informers: this.informers.map((i) => i.name) },
        'watching the Kubernetes API server',
      )
      this.startPromise = Promise.all(this.informers.map((i) => i.start())).then(() => {
        if (!this.stopped) this.opts.log.info({ objects: this.opts.store.ownedBy(KUBERNETES_SOURCE).length }, 'Kubernetes source synced')
      })
    }
    return this.startPromise
  }

  stop(): void {
    if (this.stopped) return
    this.stopped = true
    this.serverReturn.stop()
    for (const i of this.informers) i.stop()
  }

  /** Every informer has completed its first list. Stays true: later outages keep the last state. */
  get synced(): boolean {
    return this.informers.every((i) => i.synced)
  }

  /** False while any informer is failing (in backoff) or has not reached the API server yet. */
  get healthy(): boolean {
    return !this.stopped && this.informers.every((i) => i.healthy)
  }

  /** Why the source is not synced yet (for /readyz), or undefined once it is. */
  notSyncedReason(): string | undefined {
    const waiting = this.informers.filter((i) => !i.synced)
    if (waiting.length === 0) return undefined
    const errors = waiting.map((i) => i.describe().lastError?.message).filter((m): m is string => m !== undefined)
    return `waiting for the first list of ${waiting.map((i) => i.name).join(', ')} from the API server` + (errors.length ? ` (last error: ${errors[0]})` : '')
  }

  describe(): {
    apiServer: string | undefined
    ingressClass: string
    namespaces: readonly string[] | 'all'
    synced: boolean
    healthy: boolean
    objects: number
    serverReturn: ServerReturnWatcher['counts']
    informers: Record<string, InformerDescription>
  } {
    return {
      apiServer: this.opts.kubeConfig.getCurrentCluster()?.server,
      ingressClass: this.opts.ingressClass,
      namespaces: this.opts.namespaces?.length ? this.opts.namespaces : 'all',
      synced: this.synced,
      healthy: this.healthy,
      objects: this.opts.store.ownedBy(KUBERNETES_SOURCE).length,
      serverReturn: { ...this.serverReturn.counts },
      informers: Object.fromEntries(this.informers.map((i) => [i.name, i.describe()])),
    }
  }

  // ---------------------------------------------------------------- events → store

  private upsert(res: WatchedResource, obj: KubeObject): void {
    // List items of built-in types carry no kind/apiVersion; the store and compiler key on kind.
    obj.kind = res.objectKind ?? res.kind
    obj.apiVersion = apiVersionOf(res)
    slim(obj)
    const key = keyOf(obj.metadata)
    if (!this.accepts(res, obj)) {
      // Not ours (another class) or not a TLS secret: dropped, and its bulk freed from the informer's
      // cache too. If it was ours before (class changed), it goes away.
      forget(obj)
      this.opts.store.remove(res.kind, key, KUBERNETES_SOURCE)
      return
    }
    const cur = this.opts.store.get(res.kind, key)
    // A relist reports every object again: unchanged ones must not trigger a recompile.
    if (cur && cur.metadata.resourceVersion !== undefined && cur.metadata.resourceVersion === obj.metadata.resourceVersion && this.opts.store.ownerOf(res.kind, key) === KUBERNETES_SOURCE) return
    this.opts.store.upsert(obj, KUBERNETES_SOURCE)
  }

  private remove(res: WatchedResource, obj: KubeObject): void {
    this.opts.store.remove(res.kind, keyOf(obj.metadata), KUBERNETES_SOURCE)
  }

  private accepts(res: WatchedResource, obj: KubeObject): boolean {
    if (res.kind === 'Ingress') return obj.metadata.annotations?.[ANN_INGRESS_CLASS] === this.opts.ingressClass
    // Any type for routing-serving-certs (its ca.crt is a trust bundle), whichever informer sees it.
    if (res.kind === 'Secret') return (obj as Secret).type === TLS_SECRET_TYPE || (obj.metadata.namespace === KNATIVE_SYSTEM_NAMESPACE && obj.metadata.name === ROUTING_CERTS_SECRET)
    // A server that ignored a name selector lists the namespace's every ConfigMap: keep the named one.
    // (Trust bundles are selected by label, not name.)
    if (res.kind === 'ConfigMap') return res.fieldSelector === undefined || res.fieldSelector === `metadata.name=${obj.metadata.name}`
    return true
  }

  private stateChanged(): void {
    const healthy = this.healthy
    if (healthy === this.lastHealthy) return
    if (this.lastHealthy === true && !healthy && !this.stopped) {
      const failing = this.informers.filter((i) => !i.healthy).map((i) => i.name)
      this.opts.log.warn({ failing }, coded('EDGE_ERR_KUBE_UNHEALTHY', 'a list/watch on the API server is failing; the last known configuration stays in service while it retries'))
    } else if (this.lastHealthy === false && healthy) {
      this.opts.log.info('Kubernetes source healthy: every list/watch is open')
    }
    this.lastHealthy = healthy
    this.opts.onHealthChange?.(healthy)
  }
}

/** Drops what the gateway never reads and that can be large (managedFields, kubectl's copy of the object). */
function slim(obj: KubeObject): void {
  const meta = obj.metadata as KubeObject['metadata'] & { managedFields?: unknown }
  delete meta.managedFields
  if (meta.annotations?.[LAST_APPLIED] !== undefined) delete meta.annotations[LAST_APPLIED]
}

/** An object we do not serve keeps only its metadata in the informer's cache (enough for diffs). */
function forget(obj: KubeObject): void {
  const o = obj as unknown as Record<string, unknown>
  for (const field of ['spec', 'status', 'data', 'stringData']) delete o[field]
}
