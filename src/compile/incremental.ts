// The compiler, kept warm between snapshots. Objects go in one at a time (`set`); `build` then does
// only the work those changes imply and returns a new immutable Snapshot that shares everything
// unchanged with the previous one:
// - an ingress object that changed is recompiled alone (a Fragment); the others are untouched;
// - host conflicts are re-decided only for the hosts it claims, in age order, so a host freed by an
//   older holder passes to the next-oldest claimant, and that claimant's other hosts follow on;
// - a Service, Revision or EndpointSlice change re-resolves only the backends that read it, and only
//   ingresses whose backends really changed get new path entries;
// - tables are PersistentMaps: an update copies the few shards it touches, not 20,000 entries.
// Still pure: no I/O, no clocks. compileSnapshot() is this, started empty and built once.
import type { DomainMapping, EndpointSlice, KIngress, Kind, KubeObject, Revision, Route, Secret, Service } from '../model/k8s.ts'
import { ANN_INGRESS_CLASS, LABEL_SERVICE_NAME, keyOf } from '../model/k8s.ts'
import { validateObject } from './validate.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { BackendSpec, HostEntry, IngressSummary, RevisionRef, Snapshot, TLSCertificate } from '../model/snapshot.ts'
import { backendTarget, resolveTarget, revisionRef, sameBackend } from './backends.ts'
import type { BackendIndex, BackendTarget } from './backends.ts'
import { Fragment, byAge, defaultedSpec, normaliseHost, problemFrom, translateOnce } from './fragment.ts'
import type { HostClaim, Origin } from './fragment.ts'
import { FragmentQueue } from './fragment-queue.ts'
import { PersistentMap } from './persistent-map.ts'
import type { PersistentMapEditor } from './persistent-map.ts'
import { routeToIngress } from '../translate/route.ts'
import { domainMappingToIngress } from '../translate/domain-mapping.ts'
import type { TranslateOptions } from '../translate/options.ts'

export interface CompileOptions extends TranslateOptions {
  /** Translate Routes and DomainMappings (files source, or --watch-serving in a cluster). */
  translateServing: boolean
}

export interface BuildResult {
  readonly snapshot: Snapshot
  /** Backend keys added, changed or removed since the last build: the data plane updates only these. */
  readonly changedBackends: ReadonlySet<string>
}

interface BackendRecord {
  /** The target of the oldest user's first split with this key (its Service name is the backend's). */
  target: BackendTarget
  rep: Fragment
  spec: BackendSpec
  /** Fragment → how many of its splits use this backend. */
  readonly users: Map<Fragment, number>
}

const NO_CERTS: ReadonlyMap<string, TLSCertificate> = new Map()
const NO_HOSTS: readonly string[] = Object.freeze([])
const NO_CONFLICTS: ReadonlyArray<{ host: string; heldBy: string }> = Object.freeze([])
const NO_PROBLEMS: ConfigProblem[] = Object.freeze([]) as unknown as ConfigProblem[]
const ORIGINS: readonly Origin[] = ['Ingress', 'Route', 'DomainMapping']
const sharedCerts = new WeakMap<Secret, TLSCertificate>()

function addTo<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k)
  if (s) s.add(v)
  else m.set(k, new Set([v]))
}

function removeFrom<K, V>(m: Map<K, Set<V>>, k: K, v: V): void {
  const s = m.get(k)
  if (!s) return
  s.delete(v)
  if (s.size === 0) m.delete(k)
}

export class IncrementalCompiler {
  private readonly opts: CompileOptions
  // ---- inputs, by `namespace/name` ----
  private readonly sources: Record<Origin, Map<string, KIngress | Route | DomainMapping>> = { Ingress: new Map(), Route: new Map(), DomainMapping: new Map() }
  private readonly revisionObjects = new Map<string, Revision>()
  private readonly services = new Map<string, Service>()
  private readonly slices = new Map<string, { svc: string | undefined; slice: EndpointSlice }>()
  private readonly slicesBySvcKey = new Map<string, Map<string, EndpointSlice>>()
  private readonly slicesByService = new Map<string, EndpointSlice[]>()
  private readonly secrets = new Map<string, Secret>()
  private sourceProblems: readonly ConfigProblem[] = []
  /** Objects refused at the door (they fail validation), by `Kind:key`: reported, never compiled. */
  private readonly refused = new Map<string, readonly ConfigProblem[]>()
  private readonly index: BackendIndex = { services: this.services, revisions: this.revisionObjects, slicesByService: this.slicesByService }

  // ---- compiled state ----
  private readonly fragments = new Map<string, Fragment>()
  /** Translation/defaulting problems per candidate id, grouped by origin (the order compile reports them). */
  private readonly objectProblems: Record<Origin, Map<string, ConfigProblem[]>> = { Ingress: new Map(), Route: new Map(), DomainMapping: new Map() }
  /** Every fragment, oldest first: the order of `snapshot.ingresses`. */
  private order: Fragment[] = []
  /** host → the accepted fragment serving it. */
  private readonly holders = new Map<string, Fragment>()
  /** host → every fragment naming it (accepted or not); one fragment is kept bare (most hosts have one). */
  private readonly claimants = new Map<string, Fragment | Set<Fragment>>()
  /** host → accepted fragments with a usable certificate for it. */
  private readonly certClaimants = new Map<string, Set<Fragment>>()
  private readonly backendRecords = new Map<string, BackendRecord>()
  /** `namespace/service-name` of EndpointSlices → backend keys whose endpoints come from them. */
  private readonly backendsBySlices = new Map<string, Set<string>>()
  /** `namespace/name` of a Service → fragments with a split naming it. */
  private readonly fragmentsByService = new Map<string, Set<Fragment>>()
  private readonly fragmentsBySecret = new Map<string, Set<Fragment>>()

  // ---- published tables ----
  private publicHosts = PersistentMap.empty<HostEntry>()
  private localHosts = PersistentMap.empty<HostEntry>()
  private backends = PersistentMap.empty<BackendSpec>()
  private certificates = PersistentMap.empty<TLSCertificate>()
  private revisions = PersistentMap.empty<RevisionRef>()
  private summaries: readonly IngressSummary[] = []
  private problems: readonly ConfigProblem[] = []

  // ---- work pending for the next build ----
  private readonly dirtyCandidates = new Map<string, Origin>()
  private readonly dirtyServices = new Set<string>()
  private readonly dirtySecrets = new Set<string>()
  private readonly dirtyBackends = new Set<string>()
  private readonly dirtyRevisions = new Set<string>()
  private readonly pathsDirty = new Set<Fragment>()
  private readonly queue = new FragmentQueue()
  private readonly dirtyHosts = new Set<string>()
  private readonly dirtyCertHosts = new Set<string>()
  private changedBackends = new Set<string>()
  private backendEdit: PersistentMapEditor<BackendSpec> | undefined
  private summariesDirty = true
  private problemsDirty = true

  /** One BackendTarget object per distinct target (by backend key): 10,000 ingresses on one Service share it. */
  private readonly targets = new Map<string, BackendTarget[]>()
  private readonly internTarget = (t: BackendTarget): BackendTarget => {
    const list = this.targets.get(t.key)
    if (!list) {
      this.targets.set(t.key, [t])
      return t
    }
    for (const x of list) if (x.serviceName === t.serviceName && x.servicePort === t.servicePort) return x
    list.push(t)
    return t
  }

  constructor(opts: CompileOptions) {
    this.opts = opts
  }

  /** Records the current version of one object (`undefined`: it is gone). Work waits for build(). */
  set(kind: Kind, key: string, input: KubeObject | undefined): void {
    // Compile trusts what it reads; an object too broken to read at all (no metadata...) is
    // refused here with the validator's field-by-field problems instead.
    let obj = input
    const id = `${kind}:${key}`
    const bad = obj === undefined ? undefined : unreadable(obj)
    if (bad) {
      this.refused.set(id, bad)
      this.problemsDirty = true
      obj = undefined
    } else if (this.refused.delete(id)) this.problemsDirty = true
    switch (kind) {
      case 'Ingress':
      case 'Route':
      case 'DomainMapping': {
        if (kind !== 'Ingress' && !this.opts.translateServing) return
        const m = this.sources[kind]
        if (m.get(key) === obj) return
        if (obj) m.set(key, obj as KIngress)
        else if (!m.delete(key)) return
        this.dirtyCandidates.set(`${kind}:${key}`, kind)
        return
      }
      case 'Revision':
        if (this.revisionObjects.get(key) === obj) return
        if (obj) this.revisionObjects.set(key, obj as Revision)
        else this.revisionObjects.delete(key)
        this.dirtyRevisions.add(key)
        this.dirtyBackends.add(`rev:${key}`)
        return
      case 'Service':
        if (this.services.get(key) === obj) return
        if (obj) this.services.set(key, obj as Service)
        else this.services.delete(key)
        this.dirtyServices.add(key)
        return
      case 'EndpointSlice':
        this.setSlice(key, obj as EndpointSlice | undefined)
        return
      case 'Secret':
        if (this.secrets.get(key) === obj) return
        if (obj) this.secrets.set(key, obj as Secret)
        else this.secrets.delete(key)
        this.dirtySecrets.add(key)
        return
    }
  }

  setSourceProblems(problems: readonly ConfigProblem[]): void {
    if (problems.length === 0 && this.sourceProblems.length === 0) return
    this.sourceProblems = problems
    this.problemsDirty = true
  }

  /** True when set() recorded something build() has not consumed yet. */
  get pending(): boolean {
    return this.dirtyCandidates.size + this.dirtyServices.size + this.dirtySecrets.size + this.dirtyBackends.size + this.dirtyRevisions.size > 0 || this.problemsDirty || this.summariesDirty
  }

  private setSlice(key: string, slice: EndpointSlice | undefined): void {
    const prev = this.slices.get(key)
    if (prev?.slice === slice) return
    const svcName = slice?.metadata.labels?.[LABEL_SERVICE_NAME]
    const svc = slice && svcName ? `${slice.metadata.namespace ?? 'default'}/${svcName}` : undefined
    if (slice) this.slices.set(key, { svc, slice })
    else this.slices.delete(key)
    if (prev?.svc !== undefined) this.reindexSlices(prev.svc, key, undefined)
    if (svc !== undefined) this.reindexSlices(svc, key, slice)
  }

  private reindexSlices(svc: string, key: string, slice: EndpointSlice | undefined): void {
    let m = this.slicesBySvcKey.get(svc)
    if (slice) {
      if (!m) this.slicesBySvcKey.set(svc, (m = new Map()))
      m.set(key, slice)
    } else m?.delete(key)
    if (m && m.size > 0) this.slicesByService.set(svc, [...m.values()])
    else {
      this.slicesBySvcKey.delete(svc)
      this.slicesByService.delete(svc)
    }
    for (const b of this.backendsBySlices.get(svc) ?? []) this.dirtyBackends.add(b)
  }

  build(version: number): BuildResult {
    this.changedBackends = new Set()
    this.backendEdit = undefined

    // 1. Candidates whose object changed: recompile them alone.
    const added: Fragment[] = []
    for (const [id, origin] of this.dirtyCandidates) {
      const old = this.fragments.get(id)
      if (old) this.detach(old)
      const f = this.makeFragment(id, origin)
      if (f) added.push(f)
    }
    this.dirtyCandidates.clear()
    this.insertOrdered(added)
    for (const f of added) this.attach(f)

    // 2. Services: the splits naming them may point elsewhere now (a revision label), or resolve differently.
    // Fragments compiled in step 1 already saw the new Services.
    const fresh = new Set(added)
    for (const svc of this.dirtyServices) {
      for (const f of [...(this.fragmentsByService.get(svc) ?? [])]) if (!fresh.has(f)) this.retarget(f, svc)
    }
    this.dirtyServices.clear()

    // 3. Backends whose Service, Revision or EndpointSlices changed: resolve again, and only if the
    //    result differs do the ingresses using them get new path entries.
    for (const key of this.dirtyBackends) {
      const rec = this.backendRecords.get(key)
      if (!rec) continue
      const spec = safeResolve(rec.target, this.index)
      if (sameBackend(spec, rec.spec)) continue
      rec.spec = spec
      this.publishBackend(key, spec)
      for (const f of rec.users.keys()) this.pathsDirty.add(f)
    }
    this.dirtyBackends.clear()

    for (const f of this.pathsDirty) {
      if (f.removed) continue
      f.buildPaths((key) => this.backendRecords.get(key)!.spec)
      this.queue.push(f)
    }
    this.pathsDirty.clear()
    for (const s of this.dirtySecrets) for (const f of this.fragmentsBySecret.get(s) ?? []) this.queue.push(f)
    this.dirtySecrets.clear()

    // 4. Host conflicts, oldest first: a fragment's outcome depends only on older ones.
    for (let f = this.queue.pop(); f; f = this.queue.pop()) this.evaluate(f)

    return { snapshot: this.publish(version), changedBackends: this.changedBackends }
  }

  private makeFragment(id: string, origin: Origin): Fragment | undefined {
    const key = id.slice(origin.length + 1)
    const obj = this.sources[origin].get(key)
    const hadProblems = this.objectProblems[origin].delete(id)
    if (hadProblems) this.problemsDirty = true
    if (!obj) return undefined
    let ingress: KIngress
    let problems: ConfigProblem[] = []
    if (origin === 'Ingress') {
      ingress = obj as KIngress
      if (ingress.metadata.annotations?.[ANN_INGRESS_CLASS] !== this.opts.ingressClass) return undefined
    } else {
      const r =
        origin === 'Route'
          ? translateOnce(obj as Route, this.opts, (o) => routeToIngress(o, this.opts))
          : translateOnce(obj as DomainMapping, this.opts, (o) => domainMappingToIngress(o, this.opts))
      problems = r.problems
      if (!r.ingress) {
        this.setObjectProblems(origin, id, problems)
        return undefined
      }
      ingress = r.ingress
      // The translated KIngress inherits the source object's age, so conflicts order as in a cluster.
      ingress.metadata.creationTimestamp ??= obj.metadata.creationTimestamp
    }
    try {
      const d = defaultedSpec(ingress)
      const f = new Fragment(id, origin, ingress, d.hash, d.spec)
      f.compile(d.spec, this.index, this.internTarget)
      return f
    } catch (err) {
      const what = origin === 'Ingress' ? problemFrom(err, `Ingress ${keyOf(ingress.metadata)}`, 'EDGE_ERR_INGRESS', ingress) : problemFrom(err, `${origin} ${keyOf(obj.metadata)}`, 'EDGE_ERR_TRANSLATE', obj)
      this.setObjectProblems(origin, id, [...problems, ...what])
      return undefined
    }
  }

  private setObjectProblems(origin: Origin, id: string, problems: ConfigProblem[]): void {
    if (problems.length === 0) return
    this.objectProblems[origin].set(id, problems)
    this.problemsDirty = true
  }

  private insertOrdered(added: Fragment[]): void {
    if (added.length === 0) return
    if (added.length > 32) {
      this.order = [...this.order, ...added].sort(byAge)
      return
    }
    for (const f of added) this.order.splice(this.position(f), 0, f)
  }

  /** Index of f in `order`, or where it would go. */
  private position(f: Fragment): number {
    let lo = 0
    let hi = this.order.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (byAge(this.order[mid]!, f) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  private attach(f: Fragment): void {
    this.fragments.set(f.id, f)
    for (const h of f.hosts) this.addClaimant(h, f)
    this.attachBackends(f)
    for (const tls of f.tls) {
      try {
        addTo(this.fragmentsBySecret, `${tls.secretNamespace || f.ref.namespace}/${tls.secretName}`, f)
      } catch {
        // A malformed tls entry: evaluate() reports it.
      }
    }
    this.pathsDirty.add(f)
    this.summariesDirty = true
  }

  /** Takes a fragment out: its hosts go to the next claimants, its backends lose a user. */
  private detach(f: Fragment): void {
    f.removed = true
    this.fragments.delete(f.id)
    this.releaseHosts(f, f.held, undefined)
    for (const h of f.hosts) this.removeClaimant(h, f)
    for (const h of f.certs.keys()) {
      removeFrom(this.certClaimants, h, f)
      this.dirtyCertHosts.add(h)
    }
    this.detachBackends(f)
    for (const tls of f.tls) {
      try {
        removeFrom(this.fragmentsBySecret, `${tls.secretNamespace || f.ref.namespace}/${tls.secretName}`, f)
      } catch {
        // as in attach
      }
    }
    const i = this.position(f)
    if (this.order[i] === f) this.order.splice(i, 1)
    this.summariesDirty = true
    if (f.summary && f.summary.problems.length > 0) this.problemsDirty = true
  }

  private attachBackends(f: Fragment): void {
    for (const s of f.splits) {
      const t = s.target
      addTo(this.fragmentsByService, `${t.namespace}/${t.serviceName}`, f)
      const rec = this.backendRecords.get(t.key)
      if (!rec) {
        const spec = safeResolve(t, this.index)
        this.backendRecords.set(t.key, { target: t, rep: f, spec, users: new Map([[f, 1]]) })
        addTo(this.backendsBySlices, t.sliceService, t.key)
        this.publishBackend(t.key, spec)
        continue
      }
      const n = rec.users.get(f)
      rec.users.set(f, (n ?? 0) + 1)
      if (n === undefined && rec.rep !== f && byAge(f, rec.rep) < 0) {
        rec.rep = f
        rec.target = t
        this.dirtyBackends.add(t.key)
      }
    }
  }

  private detachBackends(f: Fragment): void {
    for (const s of f.splits) {
      const t = s.target
      removeFrom(this.fragmentsByService, `${t.namespace}/${t.serviceName}`, f)
      const rec = this.backendRecords.get(t.key)
      if (!rec) continue
      const n = rec.users.get(f) ?? 0
      if (n > 1) {
        rec.users.set(f, n - 1)
        continue
      }
      rec.users.delete(f)
      if (rec.users.size === 0) {
        this.backendRecords.delete(t.key)
        this.targets.delete(t.key)
        removeFrom(this.backendsBySlices, rec.target.sliceService, t.key)
        this.publishBackend(t.key, undefined)
        continue
      }
      if (rec.rep === f) {
        let oldest: Fragment | undefined
        for (const g of rec.users.keys()) if (!oldest || byAge(g, oldest) < 0) oldest = g
        rec.rep = oldest!
        rec.target = oldest!.splits.find((x) => x.target.key === t.key)!.target
        this.dirtyBackends.add(t.key)
      }
    }
  }

  /** A Service changed: the fragment's splits that name it may resolve to other backends now. */
  private retarget(f: Fragment, svc: string): void {
    this.detachBackends(f)
    for (const s of f.splits) {
      if (`${s.input.serviceNamespace}/${s.input.serviceName}` !== svc) continue
      try {
        s.target = this.internTarget(backendTarget(s.input, this.index))
      } catch {
        // It compiled before with the same input; keep the old target.
      }
      if (s.target.revisionName === undefined) this.dirtyBackends.add(s.target.key)
    }
    this.attachBackends(f)
    this.pathsDirty.add(f)
  }

  private publishBackend(key: string, spec: BackendSpec | undefined): void {
    this.backendEdit ??= this.backends.edit()
    if (spec) this.backendEdit.set(key, spec)
    else this.backendEdit.delete(key)
    this.changedBackends.add(key)
  }

  /** Decides one fragment against the hosts held by older ones, exactly as a full compile would. */
  private evaluate(f: Fragment): void {
    if (f.removed) return
    const mine = new Set<string>()
    const hosts: string[] = []
    const firstClaim: HostClaim[] = []
    const conflicts: Array<{ host: string; heldBy: string }> = []
    for (const c of f.claims) {
      if (mine.has(c.host)) continue
      const h = this.holders.get(c.host)
      if (h !== undefined && h !== f && byAge(h, f) < 0) {
        conflicts.push({ host: c.host, heldBy: h.label })
        continue
      }
      mine.add(c.host)
      hosts.push(c.host)
      firstClaim.push(c)
    }
    // An ingress that conflicts on any host is rejected whole (as Kourier does with DomainConflict):
    // serving half of it would route some of its hosts and not others with no one the wiser.
    const accepted = conflicts.length === 0 && f.error.length === 0
    let problems: ConfigProblem[] = f.error.length === 0 ? [...f.warnings] : [...f.error, ...f.warnings]
    let certs = NO_CERTS
    if (accepted) certs = this.certificatesOf(f, problems)
    else {
      for (const k of conflicts) {
        problems.push({
          source: 'kubernetes',
          object: f.label,
          field: 'spec.rules[].hosts',
          reason: `host ${k.host} is already served by ${k.heldBy} (older object wins); remove the host from one of them`,
          code: 'DomainConflict',
        })
      }
    }

    this.releaseHosts(f, f.held, accepted ? mine : undefined)
    if (accepted) {
      for (const c of firstClaim) {
        const prev = this.holders.get(c.host)
        if (prev !== f) {
          this.holders.set(c.host, f)
          this.wakeYounger(c.host, f)
        }
        f.entry(c)
        this.dirtyHosts.add(c.host)
      }
    } else f.clearEntries()
    f.held = accepted ? hosts : NO_HOSTS
    f.accepted = accepted

    if (certs !== f.certs) {
      for (const h of f.certs.keys()) if (!certs.has(h)) removeFrom(this.certClaimants, h, f)
      for (const h of certs.keys()) addTo(this.certClaimants, h, f)
      for (const h of f.certs.keys()) this.dirtyCertHosts.add(h)
      for (const h of certs.keys()) this.dirtyCertHosts.add(h)
      f.certs = certs
    }
    if ((f.summary?.problems.length ?? 0) > 0 || problems.length > 0) this.problemsDirty = true
    if (problems.length === 0) problems = NO_PROBLEMS
    f.summary = { ref: f.ref, hosts: conflicts.length === 0 ? hosts : NO_HOSTS, conflicts: conflicts.length === 0 ? NO_CONFLICTS : conflicts, problems }
    this.summariesDirty = true
  }

  /** Gives up the hosts in `held` that are not in `keep`; the next claimants get to try for them. */
  private releaseHosts(f: Fragment, held: readonly string[], keep: ReadonlySet<string> | undefined): void {
    for (const h of held) {
      if (keep?.has(h)) continue
      if (this.holders.get(h) === f) {
        this.holders.delete(h)
        this.dirtyHosts.add(h)
      }
      this.wakeYounger(h, f)
    }
  }

  /** Younger claimants of a host whose holder changed must be decided again. */
  private wakeYounger(host: string, f: Fragment): void {
    const c = this.claimants.get(host)
    if (c === undefined) return
    if (c instanceof Set) {
      for (const g of c) if (g !== f && byAge(g, f) > 0) this.queue.push(g)
    } else if (c !== f && byAge(c, f) > 0) this.queue.push(c)
  }

  private addClaimant(host: string, f: Fragment): void {
    const c = this.claimants.get(host)
    if (c === undefined) this.claimants.set(host, f)
    else if (c instanceof Set) c.add(f)
    else if (c !== f) this.claimants.set(host, new Set([c, f]))
  }

  private removeClaimant(host: string, f: Fragment): void {
    const c = this.claimants.get(host)
    if (c === f) this.claimants.delete(host)
    else if (c instanceof Set) {
      c.delete(f)
      if (c.size === 1) this.claimants.set(host, c.values().next().value!)
    }
  }

  private certificatesOf(f: Fragment, problems: ConfigProblem[]): ReadonlyMap<string, TLSCertificate> {
    if (f.tlsMalformed) problems.push({ source: 'kubernetes', object: f.label, field: 'spec.tls', reason: 'spec.tls must be a list', code: 'EDGE_ERR_INVALID_FIELD' })
    if (f.tls.length === 0) return NO_CERTS
    const out = new Map<string, TLSCertificate>()
    try {
      f.tls.forEach((tls, i) => {
        const secretKey = `${tls.secretNamespace || f.ref.namespace}/${tls.secretName}`
        const secret = this.secrets.get(secretKey)
        const cert = certificateOf(secret, secretKey)
        if (!cert) {
          problems.push({
            source: 'kubernetes',
            object: f.label,
            field: `spec.tls[${i}].secretName`,
            reason: secret ? `Secret ${secretKey} has no tls.crt/tls.key` : `Secret ${secretKey} not found`,
            code: 'EDGE_ERR_TLS_SECRET',
          })
          return
        }
        for (const h of tls.hosts ?? []) {
          const host = normaliseHost(h)
          if (!out.has(host)) out.set(host, cert)
        }
      })
    } catch (err) {
      problems.push(...problemFrom(err, f.label, 'EDGE_ERR_COMPILE', f.ingress))
    }
    return out.size === 0 ? NO_CERTS : out
  }

  private publish(version: number): Snapshot {
    if (this.dirtyHosts.size > 0) {
      const pub = this.publicHosts.edit()
      const local = this.localHosts.edit()
      for (const h of this.dirtyHosts) {
        const e = this.holders.get(h)?.entryFor(h)
        if (e) {
          local.set(h, e)
          if (e.visibility === 'ExternalIP') pub.set(h, e)
          else pub.delete(h)
        } else {
          local.delete(h)
          pub.delete(h)
        }
      }
      this.dirtyHosts.clear()
      this.publicHosts = pub.doneOrUnchanged() ?? this.publicHosts
      this.localHosts = local.doneOrUnchanged() ?? this.localHosts
    }
    if (this.dirtyCertHosts.size > 0) {
      const certs = this.certificates.edit()
      for (const h of this.dirtyCertHosts) {
        let best: Fragment | undefined
        for (const g of this.certClaimants.get(h) ?? []) if (!best || byAge(g, best) < 0) best = g
        const c = best?.certs.get(h)
        if (c) certs.set(h, c)
        else certs.delete(h)
      }
      this.dirtyCertHosts.clear()
      this.certificates = certs.doneOrUnchanged() ?? this.certificates
    }
    if (this.backendEdit) this.backends = this.backendEdit.doneOrUnchanged() ?? this.backends
    this.backendEdit = undefined
    if (this.dirtyRevisions.size > 0) {
      const revs = this.revisions.edit()
      for (const key of this.dirtyRevisions) {
        const r = this.revisionObjects.get(key)
        if (!r) {
          revs.delete(key)
          continue
        }
        const ns = r.metadata.namespace ?? 'default'
        revs.set(`${ns}/${r.metadata.name}`, revisionRef(ns, r.metadata.name, r))
      }
      this.dirtyRevisions.clear()
      this.revisions = revs.doneOrUnchanged() ?? this.revisions
    }
    if (this.summariesDirty) {
      this.summaries = this.order.map((f) => f.summary!)
      this.summariesDirty = false
    }
    if (this.problemsDirty) {
      const all: ConfigProblem[] = [...this.sourceProblems]
      for (const ps of this.refused.values()) all.push(...ps)
      for (const o of ORIGINS) for (const ps of this.objectProblems[o].values()) all.push(...ps)
      for (const s of this.summaries) if (s.problems.length > 0) all.push(...s.problems)
      this.problems = all
      this.problemsDirty = false
    }
    return {
      version,
      publicHosts: this.publicHosts,
      localHosts: this.localHosts,
      backends: this.backends,
      certificates: this.certificates,
      ingresses: this.summaries,
      problems: this.problems,
      revisions: this.revisions,
    }
  }
}

function safeResolve(t: BackendTarget, index: BackendIndex): BackendSpec {
  try {
    return resolveTarget(t, index)
  } catch (err) {
    // Only a malformed Service/Revision gets here; the backend reports it instead of the compile failing.
    const reason = err instanceof Error ? err.message : String(err)
    return { key: t.key, kind: 'pods', namespace: t.namespace, serviceName: t.serviceName, protocol: 'http1', endpoints: [], problem: `cannot resolve ${t.key}: ${reason}` }
  }
}

/** One certificate object per Secret version, however many hosts and ingresses use it. */
function certificateOf(secret: Secret | undefined, secretKey: string): TLSCertificate | undefined {
  if (!secret) return undefined
  const shared = sharedCerts.get(secret)
  if (shared && shared.secret === secretKey) return shared
  const cert = secretData(secret, 'tls.crt')
  const key = secretData(secret, 'tls.key')
  if (!cert || !key) return undefined
  const c: TLSCertificate = { secret: secretKey, cert, key }
  sharedCerts.set(secret, c)
  return c
}

/** A Secret's field as text; a value that is not a string counts as missing (reported as such). */
export function secretData(secret: Secret | undefined, field: string): string | undefined {
  const s = secret?.stringData?.[field]
  if (typeof s === 'string' && s !== '') return s
  const b = secret?.data?.[field]
  if (typeof b !== 'string' || b === '') return undefined
  return Buffer.from(b, 'base64').toString('utf8')
}

/** Problems for an object whose metadata cannot be read at all; undefined when it can be compiled. */
function unreadable(obj: KubeObject): readonly ConfigProblem[] | undefined {
  if (typeof obj !== 'object' || obj === null) return [{ source: 'kubernetes', field: '', reason: 'not an object', code: 'EDGE_ERR_INVALID_OBJECT' }]
  const m = obj.metadata as unknown
  if (typeof m === 'object' && m !== null && typeof (m as { name?: unknown }).name === 'string') return undefined
  const r = validateObject(obj, 'kubernetes')
  if ('problems' in r && r.problems.length > 0) return r.problems
  return [{ source: 'kubernetes', field: 'metadata.name', reason: 'the object has no metadata.name; give it one', code: 'EDGE_ERR_INVALID_OBJECT' }]
}
