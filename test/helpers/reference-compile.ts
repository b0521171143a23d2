// The compiler as it was before it became incremental (full recompile, one pass in age order), kept
// as the oracle the incremental compiler is checked against. Not used by the gateway.
// Compile: objects in, one immutable routing Snapshot out. Pure — no I/O, no clocks — so it can be
// tested with plain objects and fuzzed. Per-object work (translation, hashing) is memoised by object
// identity: the store replaces an object when it changes, so an unchanged object is never re-done.
import type { DomainMapping, HTTPIngressPath, IngressSpec, KIngress, Revision, Route, Secret, Service, EndpointSlice } from '../../src/model/k8s.ts'
import { ANN_INGRESS_CLASS, keyOf } from '../../src/model/k8s.ts'
import type { ConfigProblem } from '../../src/model/problems.ts'
import { ConfigError } from '../../src/model/problems.ts'
import type { ErrorCode } from '../../src/errors.ts'
import type { BackendSpec, HeaderSet, HostEntry, IngressRef, IngressSummary, PathEntry, RevisionRef, Snapshot, SplitEntry, TLSCertificate } from '../../src/model/snapshot.ts'
import { indexSlices, resolveBackend, revisionRef } from '../../src/compile/backends.ts'
import type { BackendIndex } from '../../src/compile/backends.ts'
import { ingressHash, setIngressDefaults } from '../../src/compile/hash.ts'
import { routeToIngress } from '../../src/translate/route.ts'
import { tagsByHost } from '../../src/compile/tag-to-host.ts'
import { domainMappingToIngress } from '../../src/translate/domain-mapping.ts'
import type { TranslateOptions } from '../../src/translate/options.ts'

export interface CompileInput {
  ingresses: readonly KIngress[]
  routes: readonly Route[]
  domainMappings: readonly DomainMapping[]
  revisions: readonly Revision[]
  services: readonly Service[]
  endpointSlices: readonly EndpointSlice[]
  secrets: readonly Secret[]
  /** Problems the sources already found (bad files...), carried into the snapshot for /debug/routes. */
  sourceProblems?: readonly ConfigProblem[]
}

export interface CompileOptions extends TranslateOptions {
  /** Translate Routes and DomainMappings (files source, or --watch-serving in a cluster). */
  translateServing: boolean
}

interface Candidate {
  ingress: KIngress
  origin: IngressRef['origin']
  spec: IngressSpec
  hash: string
}

const translated = new WeakMap<object, { ingress?: KIngress; problems: ConfigProblem[] }>()
const defaulted = new WeakMap<KIngress, { spec: IngressSpec; hash: string }>()

function problemFrom(err: unknown, object: string, code: ErrorCode): ConfigProblem[] {
  if (err instanceof ConfigError) return err.problems.map((p) => ({ ...p, source: p.source || 'kubernetes' }))
  return [{ source: 'kubernetes', object, field: '', reason: err instanceof Error ? err.message : String(err), code }]
}

function translateOnce<T extends Route | DomainMapping>(obj: T, fn: (o: T) => KIngress): { ingress?: KIngress; problems: ConfigProblem[] } {
  let r = translated.get(obj)
  if (!r) {
    try {
      r = { ingress: fn(obj), problems: [] }
    } catch (err) {
      r = { problems: problemFrom(err, `${obj.kind} ${keyOf(obj.metadata)}`, 'EDGE_ERR_TRANSLATE') }
    }
    translated.set(obj, r)
  }
  return r
}

function defaultedSpec(ing: KIngress): { spec: IngressSpec; hash: string } {
  let d = defaulted.get(ing)
  if (!d) {
    const spec = setIngressDefaults(ing.spec ?? {})
    d = { spec, hash: ingressHash(ing.metadata.namespace ?? 'default', ing.metadata.name, ing.spec ?? {}) }
    defaulted.set(ing, d)
  }
  return d
}

/** Older object first (Kubernetes creation order), then by namespace/name, so conflicts are stable. */
function byAge(a: Candidate, b: Candidate): number {
  const ta = a.ingress.metadata.creationTimestamp ?? ''
  const tb = b.ingress.metadata.creationTimestamp ?? ''
  if (ta !== tb) return ta < tb ? -1 : 1
  const ka = `${a.ingress.metadata.namespace}/${a.ingress.metadata.name}/${a.origin}`
  const kb = `${b.ingress.metadata.namespace}/${b.ingress.metadata.name}/${b.origin}`
  return ka < kb ? -1 : ka > kb ? 1 : 0
}

function headerSets(h: Record<string, string> | undefined): HeaderSet[] {
  if (!h) return []
  return Object.keys(h)
    .sort()
    .map((name) => ({ name, lower: name.toLowerCase(), value: String(h[name]) }))
}

function normaliseHost(h: string): string {
  let host = h.trim().toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  return host
}

export function compileSnapshot(input: CompileInput, opts: CompileOptions, version: number): Snapshot {
  const problems: ConfigProblem[] = [...(input.sourceProblems ?? [])]
  const candidates: Candidate[] = []

  for (const ing of input.ingresses) {
    if (ing.metadata.annotations?.[ANN_INGRESS_CLASS] !== opts.ingressClass) continue
    try {
      const d = defaultedSpec(ing)
      candidates.push({ ingress: ing, origin: 'Ingress', spec: d.spec, hash: d.hash })
    } catch (err) {
      problems.push(...problemFrom(err, `Ingress ${keyOf(ing.metadata)}`, 'EDGE_ERR_INGRESS'))
    }
  }
  if (opts.translateServing) {
    const sources: Array<[IngressRef['origin'], readonly (Route | DomainMapping)[], (o: never) => KIngress]> = [
      ['Route', input.routes, (r: Route) => routeToIngress(r, opts)],
      ['DomainMapping', input.domainMappings, (d: DomainMapping) => domainMappingToIngress(d, opts)],
    ] as never
    for (const [origin, objs, fn] of sources) {
      for (const obj of objs) {
        const r = translateOnce(obj, fn as (o: Route | DomainMapping) => KIngress)
        problems.push(...r.problems)
        if (!r.ingress) continue
        // The translated KIngress inherits the source object's age, so conflicts order as in a cluster.
        r.ingress.metadata.creationTimestamp ??= obj.metadata.creationTimestamp
        try {
          const d = defaultedSpec(r.ingress)
          candidates.push({ ingress: r.ingress, origin, spec: d.spec, hash: d.hash })
        } catch (err) {
          problems.push(...problemFrom(err, `${origin} ${keyOf(obj.metadata)}`, 'EDGE_ERR_TRANSLATE'))
        }
      }
    }
  }
  candidates.sort(byAge)

  const index: BackendIndex = {
    services: new Map(input.services.map((s) => [keyOf(s.metadata), s])),
    revisions: new Map(input.revisions.map((r) => [keyOf(r.metadata), r])),
    slicesByService: indexSlices(input.endpointSlices),
  }
  const secrets = new Map(input.secrets.map((s) => [keyOf(s.metadata), s]))
  const backends = new Map<string, BackendSpec>()
  const publicHosts = new Map<string, HostEntry>()
  const localHosts = new Map<string, HostEntry>()
  const certificates = new Map<string, TLSCertificate>()
  const ingresses: IngressSummary[] = []
  /** host → `Kind ns/name` of the accepted ingress that holds it. */
  const claims = new Map<string, string>()

  for (const c of candidates) {
    const ns = c.ingress.metadata.namespace ?? 'default'
    const name = c.ingress.metadata.name
    const ownerLabel = `${c.origin} ${ns}/${name}`
    const ref: IngressRef = {
      namespace: ns,
      name,
      key: `${ns}/${name}`,
      generation: c.ingress.metadata.generation ?? 1,
      hash: c.hash,
      origin: c.origin,
      httpOption: c.spec.httpOption ?? '',
      // The ingress's labels travel with it (an external authorizer's check context).
      ...(c.ingress.metadata.labels ? { labels: c.ingress.metadata.labels } : {}),
    }
    const ingressProblems: ConfigProblem[] = []
    const hosts: string[] = []
    const conflicts: Array<{ host: string; heldBy: string }> = []
    const entries: HostEntry[] = []
    const mine = new Set<string>()
    // Serving's tag-to-host annotation names each tag's hosts (only well-formed ones are generated here).
    const tagged = tagsByHost(c.ingress.metadata.annotations, normaliseHost)
    const tags = typeof tagged === 'string' ? new Map<string, string>() : tagged
    try {
      const rules = c.spec.rules ?? []
      rules.forEach((rule, ri) => {
        const paths = (rule.http?.paths ?? []).map((p, pi) => compilePath(p, `spec.rules[${ri}].http.paths[${pi}]`, index, backends))
        const ruleHosts = rule.hosts && rule.hosts.length > 0 ? rule.hosts : ['*']
        for (const raw of ruleHosts) {
          const host = normaliseHost(raw)
          // Within one ingress the first rule naming a host wins (KIngress contract).
          if (mine.has(host)) continue
          const holder = claims.get(host)
          if (holder !== undefined) {
            conflicts.push({ host, heldBy: holder })
            continue
          }
          mine.add(host)
          hosts.push(host)
          entries.push({ host, visibility: rule.visibility ?? 'ExternalIP', ingress: ref, paths, tag: tags.get(host) })
        }
      })
    } catch (err) {
      ingressProblems.push(...problemFrom(err, ownerLabel, 'EDGE_ERR_COMPILE'))
    }
    // An ingress that conflicts on any host is rejected whole (as Kourier does with DomainConflict):
    // serving half of it would route some of its hosts and not others with no one the wiser.
    if (conflicts.length === 0 && ingressProblems.length === 0) {
      for (const e of entries) {
        claims.set(e.host, ownerLabel)
        localHosts.set(e.host, e)
        if (e.visibility === 'ExternalIP') publicHosts.set(e.host, e)
      }
      collectCertificates(c.spec, ns, secrets, certificates, ingressProblems, ownerLabel)
    } else {
      for (const k of conflicts) {
        ingressProblems.push({
          source: 'kubernetes',
          object: ownerLabel,
          field: 'spec.rules[].hosts',
          reason: `host ${k.host} is already served by ${k.heldBy} (older object wins); remove the host from one of them`,
          code: 'DomainConflict',
        })
      }
    }
    problems.push(...ingressProblems)
    ingresses.push({ ref, hosts: conflicts.length === 0 ? hosts : [], conflicts, problems: ingressProblems })
  }

  const revisions = new Map<string, RevisionRef>()
  for (const r of input.revisions) {
    const ns = r.metadata.namespace ?? 'default'
    revisions.set(`${ns}/${r.metadata.name}`, revisionRef(ns, r.metadata.name, r))
  }
  return { version, publicHosts, localHosts, backends, certificates, ingresses, problems, revisions }
}

function compilePath(p: HTTPIngressPath, field: string, index: BackendIndex, backends: Map<string, BackendSpec>): PathEntry {
  const splits: SplitEntry[] = []
  const cumulative: number[] = []
  let total = 0
  for (const s of p.splits ?? []) {
    let backend = resolveBackend(s, index)
    const seen = backends.get(backend.key)
    if (seen) backend = seen
    else backends.set(backend.key, backend)
    const percent = typeof s.percent === 'number' && s.percent > 0 ? s.percent : 0
    total += percent
    splits.push({ percent, backend, setHeaders: headerSets(s.appendHeaders) })
    cumulative.push(total)
  }
  if (splits.length === 0) {
    throw new ConfigError([{ source: 'kubernetes', field: `${field}.splits`, reason: 'a path needs at least one split', code: 'EDGE_ERR_INVALID_FIELD' }])
  }
  return {
    prefix: p.path ?? '',
    headerMatches: Object.keys(p.headers ?? {}).map((k) => [k.toLowerCase(), String(p.headers![k]!.exact ?? '')] as const),
    rewriteHost: p.rewriteHost ? normaliseHost(p.rewriteHost) : undefined,
    setHeaders: headerSets(p.appendHeaders),
    splits,
    cumulative,
    totalPercent: total,
  }
}

function collectCertificates(
  spec: IngressSpec,
  namespace: string,
  secrets: ReadonlyMap<string, Secret>,
  out: Map<string, TLSCertificate>,
  problems: ConfigProblem[],
  owner: string,
): void {
  ;(spec.tls ?? []).forEach((tls, i) => {
    const secretKey = `${tls.secretNamespace || namespace}/${tls.secretName}`
    const secret = secrets.get(secretKey)
    const cert = secretData(secret, 'tls.crt')
    const key = secretData(secret, 'tls.key')
    if (!cert || !key) {
      problems.push({
        source: 'kubernetes',
        object: owner,
        field: `spec.tls[${i}].secretName`,
        reason: secret ? `Secret ${secretKey} has no tls.crt/tls.key` : `Secret ${secretKey} not found`,
        code: 'EDGE_ERR_TLS_SECRET',
      })
      return
    }
    for (const h of tls.hosts ?? []) {
      const host = normaliseHost(h)
      if (!out.has(host)) out.set(host, { secret: secretKey, cert, key })
    }
  })
}

export function secretData(secret: Secret | undefined, field: string): string | undefined {
  const s = secret?.stringData?.[field]
  if (s) return s
  const b = secret?.data?.[field]
  if (!b) return undefined
  return Buffer.from(b, 'base64').toString('utf8')
}
