// The files source's stand-in for Knative Serving's controllers (and, with --watch-serving, for a
// cluster without Serving): from the Services and Configurations users write, it derives what
// Serving would (a Configuration and a Route per Service, a Revision per template change, the
// Route's traffic with every target named) and writes those objects into the store under its own
// source, where the compiler reads them like any other Route and Revision.
//
// A template edit rolls out with no downtime, as in Serving: the new revision is started at once, the
// Route keeps sending traffic to the latest *ready* revision until the new one has answered its first
// readiness check (a ready endpoint of `<revision>-private`), then follows it. Before any revision
// has been ready, the Route points at the latest created one, so the first request starts it.
import type { Logger } from 'pino'
import type { Configuration, KService, KubeObject, Route, TrafficTarget } from '../model/k8s.ts'
import { LABEL_SERVICE_NAME, LABEL_VISIBILITY, keyOf, kindOf } from '../model/k8s.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { ObjectStore, StoreChanges } from '../sources/store.ts'
import { documentOf } from '../sources/manifests.ts'
import type { DomainNames } from './domain.ts'
import { canonical, configurationOf, resolveTraffic, revisionOf, routeOf } from './derive.ts'
import { RevisionHistory } from './history.ts'

export const SERVING_SOURCE = 'serving-controller'

export interface ServingControllerOptions {
  store: ObjectStore
  log: Logger
  names: DomainNames
  domain: string
  clusterDomain: string
  /** A new revision should start now: a rollout, where the latest ready revision serves until it is ready. */
  startRevision?: (namespace: string, name: string) => void
}

/** What the controller keeps per Configuration between reconciles. */
interface ConfigState {
  readonly history: RevisionHistory
  /** Revisions that have had a ready endpoint at least once (Serving's Ready stays true at zero). */
  readonly everReady: Set<string>
  /** Revisions already asked to start for a rollout. */
  readonly started: Set<string>
  /** The Service's last Route whose traffic resolved, kept while a later edit does not. */
  lastGoodRoute: Route | undefined
  /** For /debug/routes: which kind of object owns it. */
  owner: 'Service' | 'Configuration'
}

export interface ServiceSummary {
  service: string
  url: string
  latestCreatedRevision: string | undefined
  latestReadyRevision: string | undefined
  revisions: string[]
  traffic: TrafficTarget[] | undefined
}

export class ServingController {
  private opts: ServingControllerOptions
  private readonly configs = new Map<string, ConfigState>()
  private lastProblems = '[]'
  private summaries: ServiceSummary[] = []
  private off: (() => void) | undefined

  constructor(opts: ServingControllerOptions) {
    this.opts = opts
  }

  start(): void {
    this.off = this.opts.store.onChange((changes) => {
      if (this.relevant(changes)) this.reconcile()
    })
    this.reconcile()
  }

  stop(): void {
    this.off?.()
    this.off = undefined
  }

  /** The domain settings changed (config-network, config-domain): every Route is derived again. */
  setDomain(names: DomainNames, domain: string): void {
    this.opts = { ...this.opts, names, domain }
    this.reconcile()
  }

  /** Each Service: its URL, revisions, latest created and ready, and resolved traffic. */
  describe(): { services: ServiceSummary[] } {
    return { services: this.summaries }
  }

  /** Its own writes change nothing it reads; anything else a user or a pod changes may. */
  private relevant(changes: StoreChanges): boolean {
    for (const { kind, key } of changes.objects.values()) {
      if (kind === 'KService' || kind === 'EndpointSlice') return true
      if ((kind === 'Configuration' || kind === 'Revision' || kind === 'Route') && this.opts.store.ownerOf(kind, key) !== SERVING_SOURCE) return true
    }
    return false
  }

  reconcile(): void {
    const store = this.opts.store
    const ready = readyRevisions(store.list('EndpointSlice'))
    const desired: KubeObject[] = []
    const problems: ConfigProblem[] = []
    const toStart: Array<[string, string]> = []
    const seen = new Set<string>()
    const summaries: ServiceSummary[] = []

    const configure = (config: Configuration, owner: KService | Configuration, ownerKind: 'Service' | 'Configuration'): ConfigState | undefined => {
      const key = keyOf(config.metadata)
      seen.add(key)
      let st = this.configs.get(key)
      if (!st) this.configs.set(key, (st = { history: new RevisionHistory(config.metadata.name), everReady: new Set(), started: new Set(), lastGoodRoute: undefined, owner: ownerKind }))
      st.owner = ownerKind
      const template = config.spec?.template ?? {}
      const seenNow = st.history.observe(template)
      if ('changedUnderName' in seenNow) {
        problems.push(this.problem(owner, ownerKind, 'spec.template.metadata.name', `the template changed but kept the name ${seenNow.changedUnderName}, which names a revision of the old template; give the new template a new name (or remove the name to number revisions); ${seenNow.changedUnderName} keeps serving meanwhile`, 'EDGE_ERR_REVISION_TEMPLATE_CHANGED'))
      }
      const file = store.ownerOf(kindOf(owner), keyOf(owner.metadata))
      const ns = config.metadata.namespace ?? 'default'
      for (const r of st.history.revisions) {
        desired.push(revisionOf(config, r.source, r.name, r.generation, file))
        if (ready.has(`${ns}/${r.name}`)) st.everReady.add(r.name)
      }
      // A rollout: the newest revision has never been ready while an older one has; start it now,
      // so traffic can move to it as soon as it answers.
      const latest = st.history.latest
      if (latest && !st.everReady.has(latest.name) && this.latestReady(st) !== undefined && !st.started.has(latest.name)) {
        st.started.add(latest.name)
        toStart.push([ns, latest.name])
      }
      return st
    }

    for (const svc of store.list('KService')) {
      const config = configurationOf(svc)
      desired.push(config)
      const st = configure(config, svc, 'Service')!
      const route = this.routeFor(svc, st, problems)
      if (route) desired.push(route)
      summaries.push({
        service: keyOf(svc.metadata),
        url: route?.status?.url ?? this.url(svc),
        latestCreatedRevision: st.history.latest?.name,
        latestReadyRevision: this.latestReady(st),
        revisions: st.history.revisions.map((r) => r.name),
        traffic: route?.status?.traffic,
      })
    }
    for (const config of store.list('Configuration')) {
      if (store.ownerOf('Configuration', keyOf(config.metadata)) === SERVING_SOURCE) continue
      configure(config, config, 'Configuration')
    }
    for (const key of [...this.configs.keys()]) if (!seen.has(key)) this.configs.delete(key)

    this.write(desired, problems)
    this.summaries = summaries
    for (const [ns, name] of toStart) this.opts.startRevision?.(ns, name)
  }

  private latestReady(st: ConfigState): string | undefined {
    const revs = st.history.revisions
    for (let i = revs.length - 1; i >= 0; i--) if (st.everReady.has(revs[i]!.name)) return revs[i]!.name
    return undefined
  }

  private url(svc: KService): string {
    const { name, namespace = 'default', labels, annotations } = svc.metadata
    if (labels?.[LABEL_VISIBILITY] === 'cluster-local') return `http://${name}.${namespace}.svc.${this.opts.clusterDomain}`
    return `http://${this.opts.names.host({ name, namespace, domain: this.opts.domain, labels, annotations })}`
  }

  /** The Service's Route: traffic to its latest ready revision (or the latest, before any is ready). */
  private routeFor(svc: KService, st: ConfigState, problems: ConfigProblem[]): Route | undefined {
    const latest = this.latestReady(st) ?? st.history.latest?.name
    if (latest === undefined) return st.lastGoodRoute
    const own = new Set(st.history.revisions.map((r) => r.name))
    const resolved = resolveTraffic(svc, own, latest)
    if (resolved.length > 0 && 'field' in resolved[0]!) {
      for (const p of resolved as Array<{ field: string; reason: string; code: ConfigProblem['code'] }>) problems.push(this.problem(svc, 'Service', p.field, p.reason, p.code))
      return st.lastGoodRoute
    }
    const { name, namespace = 'default', labels, annotations } = svc.metadata
    const fields = { name, namespace, domain: this.opts.domain, labels, annotations }
    st.lastGoodRoute = routeOf(svc, resolved as TrafficTarget[], this.url(svc), (tag) => `http://${this.opts.names.tagHost(tag, fields)}`)
    return st.lastGoodRoute
  }

  private problem(owner: KService | Configuration, kind: 'Service' | 'Configuration', field: string, reason: string, code: ConfigProblem['code']): ConfigProblem {
    const source = this.opts.store.ownerOf(kindOf(owner), keyOf(owner.metadata)) ?? 'kubernetes'
    const p: ConfigProblem = { source, object: `${kind} ${keyOf(owner.metadata)}`, field, reason, code }
    const document = documentOf(owner)
    if (document !== undefined) p.document = document
    return p
  }

  /**
   * Brings the store to `desired`: only what changed is written, so its own writes do not come back
   * as work. An object a manifest file defines under the same name is left to the file, and said.
   */
  private write(desired: KubeObject[], problems: ConfigProblem[]): void {
    const store = this.opts.store
    const keep = new Set<string>()
    const writes: KubeObject[] = []
    for (const obj of desired) {
      const kind = kindOf(obj)
      const key = keyOf(obj.metadata)
      const owner = store.ownerOf(kind, key)
      if (owner !== undefined && owner !== SERVING_SOURCE) {
        problems.push({ source: owner, object: `${obj.kind} ${key}`, field: 'metadata.name', reason: `${obj.kind} ${key} is defined in ${owner} and also derived from a Knative ${obj.metadata.labels?.['serving.knative.dev/service'] ? 'Service' : 'Configuration'}; the file's object is kept: remove it, or rename the Service`, code: 'EDGE_ERR_DERIVED_CONFLICT' })
        continue
      }
      keep.add(`${kind}/${key}`)
      const current = store.get(kind, key)
      if (current === undefined || canonical(current) !== canonical(obj)) writes.push(obj)
    }
    const stale = store.ownedBy(SERVING_SOURCE).filter((id) => !keep.has(id))
    if (writes.length > 0 || stale.length > 0) {
      store.batch(() => {
        for (const obj of writes) store.upsert(obj, SERVING_SOURCE)
        for (const id of stale) {
          const slash = id.indexOf('/')
          store.remove(id.slice(0, slash) as Parameters<ObjectStore['remove']>[0], id.slice(slash + 1), SERVING_SOURCE)
        }
      })
    }
    const text = JSON.stringify(problems)
    if (text !== this.lastProblems) {
      this.lastProblems = text
      store.setProblems(SERVING_SOURCE, problems)
      for (const p of problems) this.opts.log.warn({ problem: p }, `${p.code}: ${p.object}: ${p.field}: ${p.reason}`)
    }
  }
}

/** `namespace/name` of every revision with a ready endpoint in its `<revision>-private` slices. */
function readyRevisions(slices: ReadonlyArray<{ metadata: { namespace?: string; labels?: Record<string, string> }; endpoints?: Array<{ conditions?: { ready?: boolean } }> }>): Set<string> {
  const out = new Set<string>()
  for (const s of slices) {
    const svc = s.metadata.labels?.[LABEL_SERVICE_NAME]
    if (!svc?.endsWith('-private')) continue
    if (!(s.endpoints ?? []).some((e) => e.conditions?.ready !== false)) continue
    out.add(`${s.metadata.namespace ?? 'default'}/${svc.slice(0, -'-private'.length)}`)
  }
  return out
}

