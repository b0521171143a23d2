// One ingress candidate (a KIngress, or a Route/DomainMapping translated to one) compiled on its
// own: its identity and age, its host claims in rule order, and its paths as templates whose
// backends are filled in later. Nothing here depends on other ingresses, so a fragment is built
// once per object version and reused until that object (or a Service it names) changes.
import type { DomainMapping, HTTPIngressPath, IngressBackendSplit, IngressSpec, IngressTLS, KIngress, Route, Visibility } from '../model/k8s.ts'
import { keyOf } from '../model/k8s.ts'
import { validateObject } from './validate.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { ErrorCode } from '../errors.ts'
import { ConfigError } from '../model/problems.ts'
import type { BackendSpec, HeaderSet, HostEntry, IngressRef, IngressSummary, PathEntry, SplitEntry, TLSCertificate } from '../model/snapshot.ts'
import { backendTarget } from './backends.ts'
import type { BackendIndex, BackendTarget } from './backends.ts'
import { computeSpecHash, setIngressDefaults } from './hash.ts'
import { ANN_RATE_LIMIT, ANN_RATE_LIMIT_BURST, parseRateLimit } from '../policy/rate-limit-spec.ts'
import type { RateLimitSpec } from '../policy/rate-limit-spec.ts'
import { TAG_TO_HOST_FIELD, tagsByHost, unservedTagHosts } from './tag-to-host.ts'
import type { TagsByHost } from './tag-to-host.ts'
import { ANN_EXTAUTHZ, parseExtAuthzAnnotation } from '../policy/extauthz-spec.ts'

export type Origin = IngressRef['origin']

const NO_HEADERS: readonly HeaderSet[] = Object.freeze([])
const NO_MATCHES: ReadonlyArray<readonly [string, string]> = Object.freeze([])
/** The common single split at 100%: one shared array instead of one per path. */
const CUMULATIVE_100: readonly number[] = Object.freeze([100])
const NO_ENTRIES: readonly HostEntry[] = Object.freeze([])
const NO_PROBLEMS: ConfigProblem[] = Object.freeze([]) as unknown as ConfigProblem[]
const NO_TAGS: TagsByHost = new Map()

export interface SplitTemplate {
  /** The (defaulted) split as written: a Service change re-derives its target from it. */
  readonly input: IngressBackendSplit
  readonly percent: number
  readonly setHeaders: readonly HeaderSet[]
  target: BackendTarget
}

/** A PathEntry without its backends. */
export interface PathTemplate {
  readonly prefix: string
  readonly headerMatches: ReadonlyArray<readonly [string, string]>
  readonly rewriteHost: string | undefined
  readonly setHeaders: readonly HeaderSet[]
  readonly splits: readonly SplitTemplate[]
  readonly cumulative: readonly number[]
  readonly totalPercent: number
}

/** A host as a rule names it, in rule order (duplicates kept: conflicts are reported per mention). */
export interface HostClaim {
  readonly host: string
  readonly visibility: Visibility
  readonly rule: number
}

export class Fragment {
  /** `origin:namespace/name`: unique among candidates. */
  readonly id: string
  readonly origin: Origin
  readonly ingress: KIngress
  /** creationTimestamp, then `ns/name/origin`: the age order that decides host conflicts. */
  readonly ts: string
  readonly tie: string
  readonly ref: IngressRef
  /** Per rule (up to a compile error), its paths. */
  readonly rules: PathTemplate[][] = []
  readonly claims: HostClaim[] = []
  /** Distinct hosts of `claims` (a handful: an array is smaller than a Set). */
  readonly hosts: string[] = []
  /** Every split's target, in order (also those before a compile error: they are live backends). */
  readonly splits: SplitTemplate[] = []
  error: ConfigProblem[] = []
  /** Problems that do not stop it serving (a bad rate-limit or tag-to-host annotation). */
  warnings: readonly ConfigProblem[] = NO_PROBLEMS
  /** Each host's traffic tag, from Serving's tag-to-host annotation (tag-to-host.ts). */
  readonly tags: TagsByHost
  /** `spec.tls` as written (checked when used: a malformed one is this ingress's problem, not a crash). */
  readonly tls: readonly IngressTLS[]
  readonly tlsMalformed: boolean

  // ---- state the compiler keeps for this fragment ----
  /** Per rule, its paths with the current backends; hosts of one rule share the array. */
  paths: PathEntry[][] = []
  accepted = false
  /** Hosts this fragment serves (holds) in the current tables. */
  held: readonly string[] = []
  /** Host entries of the held hosts, built once per paths version (parallel to nothing: looked up by host). */
  entries: HostEntry[] = NO_ENTRIES as HostEntry[]
  certs: ReadonlyMap<string, TLSCertificate> = new Map()
  summary: IngressSummary | undefined
  inQueue = false
  removed = false
  private intern: (t: BackendTarget) => BackendTarget = (t) => t

  constructor(id: string, origin: Origin, ingress: KIngress, hash: string, spec: IngressSpec) {
    this.id = id
    this.origin = origin
    this.ingress = ingress
    const m = ingress.metadata
    this.ts = m.creationTimestamp ?? ''
    this.tie = `${m.namespace}/${m.name}/${origin}`
    const ns = m.namespace ?? 'default'
    const rateLimit = rateLimitOf(m.annotations)
    const authzText = m.annotations?.[ANN_EXTAUTHZ]
    const authz = authzText === undefined ? false : parseExtAuthzAnnotation(authzText)
    this.ref = {
      namespace: ns, name: m.name, key: `${ns}/${m.name}`, generation: m.generation ?? 1, hash, origin, httpOption: spec.httpOption ?? '',
      ...(typeof rateLimit === 'object' ? { rateLimit } : {}),
      ...(authz === true ? { extAuthzDisabled: true } : {}),
      ...(m.labels ? { labels: m.labels } : {}),
    }
    // A bad limit is said, and the ingress serves without one (it is not rejected for it).
    if (typeof rateLimit === 'string') this.warn(`metadata.annotations["${ANN_RATE_LIMIT}"]`, `${rateLimit}; the hosts are served without a rate limit until it is fixed`, 'EDGE_ERR_RATE_LIMIT')
    const tags = tagsByHost(m.annotations, normaliseHost)
    this.tags = typeof tags === 'string' ? NO_TAGS : tags
    if (typeof tags === 'string') this.warn(TAG_TO_HOST_FIELD, `${tags}; the hosts are served, shown without their tags until it is fixed`, 'EDGE_ERR_TAG_TO_HOST')
    // A bad opt-out is said too, and the hosts stay checked: a typo never turns authorization off.
    if (typeof authz === 'string') this.warn(`metadata.annotations["${ANN_EXTAUTHZ}"]`, `${authz}; the hosts stay checked by the external authorizer until it is fixed`, 'EDGE_ERR_EXTAUTHZ_ANNOTATION')
    this.tlsMalformed = spec.tls != null && !Array.isArray(spec.tls)
    this.tls = Array.isArray(spec.tls) ? spec.tls : []
  }

  /** Compiles rules into templates and host claims; a bad rule stops it, as a whole-ingress error. */
  compile(spec: IngressSpec, index: BackendIndex, intern: (t: BackendTarget) => BackendTarget): void {
    this.intern = intern
    try {
      const rules = spec.rules ?? []
      rules.forEach((rule, ri) => {
        const paths = (rule.http?.paths ?? []).map((p, pi) => this.compilePath(p, `spec.rules[${ri}].http.paths[${pi}]`, index))
        this.rules.push(paths)
        const ruleHosts = rule.hosts && rule.hosts.length > 0 ? rule.hosts : ['*']
        for (const raw of ruleHosts) {
          const host = normaliseHost(raw)
          this.claims.push({ host, visibility: rule.visibility ?? 'ExternalIP', rule: ri })
          if (!this.hosts.includes(host)) this.hosts.push(host)
        }
      })
    } catch (err) {
      this.error.push(...problemFrom(err, this.label, 'EDGE_ERR_COMPILE', this.ingress))
    }
    if (this.error.length === 0) this.error = NO_PROBLEMS
    const unserved = this.error.length === 0 ? unservedTagHosts(this.tags, this.hosts) : []
    if (unserved.length > 0) this.warn(TAG_TO_HOST_FIELD, `names ${unserved.join(', ')}, which no rule of this ingress has; list under each tag the hosts of its rules`, 'EDGE_ERR_TAG_TO_HOST')
  }

  private warn(field: string, reason: string, code: ErrorCode): void {
    this.warnings = [...this.warnings, { source: 'kubernetes', object: this.label, field, reason, code }]
  }

  private compilePath(p: HTTPIngressPath, field: string, index: BackendIndex): PathTemplate {
    const splits: SplitTemplate[] = []
    const cumulative: number[] = []
    let total = 0
    for (const s of p.splits ?? []) {
      const target = this.intern(backendTarget(s, index))
      const percent = typeof s.percent === 'number' && s.percent > 0 ? s.percent : 0
      total += percent
      const t: SplitTemplate = { input: s, percent, setHeaders: headerSets(s.appendHeaders), target }
      splits.push(t)
      this.splits.push(t)
      cumulative.push(total)
    }
    if (splits.length === 0) {
      throw new ConfigError([{ source: 'kubernetes', field: `${field}.splits`, reason: 'a path needs at least one split', code: 'EDGE_ERR_INVALID_FIELD' }])
    }
    const headerKeys = Object.keys(p.headers ?? {})
    return {
      prefix: p.path ?? '',
      headerMatches: headerKeys.length === 0 ? NO_MATCHES : headerKeys.map((k) => [k.toLowerCase(), String(p.headers![k]!.exact ?? '')] as const),
      rewriteHost: p.rewriteHost ? normaliseHost(p.rewriteHost) : undefined,
      setHeaders: headerSets(p.appendHeaders),
      splits,
      cumulative: cumulative.length === 1 && cumulative[0] === 100 ? CUMULATIVE_100 : cumulative,
      totalPercent: total,
    }
  }

  /** Fills the templates with the current backends. */
  buildPaths(backend: (key: string) => BackendSpec): void {
    this.paths = this.rules.map((rule) =>
      rule.map((t): PathEntry => ({
        prefix: t.prefix,
        headerMatches: t.headerMatches,
        rewriteHost: t.rewriteHost,
        setHeaders: t.setHeaders,
        splits: t.splits.map((s): SplitEntry => ({ percent: s.percent, backend: backend(s.target.key), setHeaders: s.setHeaders })),
        cumulative: t.cumulative,
        totalPercent: t.totalPercent,
      })),
    )
    this.entries = NO_ENTRIES as HostEntry[]
  }

  /** `Kind ns/name`, as conflicts and problems name it (built when needed: most ingresses never need it). */
  get label(): string {
    return `${this.origin} ${this.ref.key}`
  }

  clearEntries(): void {
    this.entries = NO_ENTRIES as HostEntry[]
  }

  entryFor(host: string): HostEntry | undefined {
    for (const e of this.entries) if (e.host === host) return e
    return undefined
  }

  /** The host entry for a held host; one object per host, built once per paths version. */
  entry(claim: HostClaim): HostEntry {
    let e = this.entryFor(claim.host)
    if (!e) {
      e = { host: claim.host, visibility: claim.visibility, ingress: this.ref, paths: this.paths[claim.rule]!, tag: this.tags.get(claim.host) }
      if (this.entries === NO_ENTRIES) this.entries = [e]
      else this.entries.push(e)
    }
    return e
  }
}

/** Older object first (Kubernetes creation order), then by namespace/name, so conflicts are stable. */
export function byAge(a: Fragment, b: Fragment): number {
  if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1
  return a.tie < b.tie ? -1 : a.tie > b.tie ? 1 : 0
}

/**
 * A failure to compile an object, as problems. Given the object, the validator names the fields
 * that broke it; only when it finds nothing does the raw error stand, with no field.
 */
export function problemFrom(err: unknown, object: string, code: ErrorCode, obj?: unknown): ConfigProblem[] {
  if (err instanceof ConfigError) return err.problems.map((p) => ({ ...p, source: p.source || 'kubernetes' }))
  const named = obj === undefined ? undefined : validatorProblems(obj)
  if (named) return named.map((p) => ({ ...p, object: p.object ?? object }))
  return [{ source: 'kubernetes', object, field: '', reason: err instanceof Error ? err.message : String(err), code }]
}

function validatorProblems(obj: unknown): ConfigProblem[] | undefined {
  const r = validateObject(obj, 'kubernetes')
  return 'problems' in r && r.problems.length > 0 ? r.problems : undefined
}

function headerSets(h: Record<string, string> | undefined): readonly HeaderSet[] {
  if (!h) return NO_HEADERS
  const names = Object.keys(h)
  if (names.length === 0) return NO_HEADERS
  return names.sort().map((name) => ({ name, lower: name.toLowerCase(), value: String(h[name]) }))
}

export function normaliseHost(h: string): string {
  let host = h.trim().toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1)
  return host
}

// ---- per-object memos: the store replaces an object when it changes, so identity is a version ----

type Translation = { ingress?: KIngress; problems: ConfigProblem[] }

/** By the options translated with (new ones when the domain settings change), then by object version. */
const translated = new WeakMap<object, WeakMap<object, Translation>>()

export function translateOnce<T extends Route | DomainMapping>(obj: T, opts: object, fn: (o: T) => KIngress): Translation {
  let memo = translated.get(opts)
  if (!memo) translated.set(opts, (memo = new WeakMap()))
  let r = memo.get(obj)
  if (!r) {
    try {
      r = { ingress: fn(obj), problems: [] }
    } catch (err) {
      r = { problems: problemFrom(err, `${obj.kind} ${keyOf(obj.metadata)}`, 'EDGE_ERR_TRANSLATE') }
    }
    memo.set(obj, r)
  }
  return r
}

/**
 * The defaulted spec (what rules compile from, as Serving defaults before hashing) and its hash.
 * The defaulted copy is not kept: the fragment keeps only what it compiled from it.
 */
export function defaultedSpec(ing: KIngress): { spec: IngressSpec; hash: string } {
  // Not memoised: a fragment is built once per object version and keeps the hash in its ref.
  const spec = setIngressDefaults(ing.spec ?? {})
  return { spec, hash: computeSpecHash(ing.metadata.namespace ?? 'default', ing.metadata.name, spec) }
}

/**
 * edge.knative.dev/rate-limit (and -burst) on the KIngress, or on the Route or DomainMapping it was
 * made from (their annotations are copied to it): the limit, a problem's sentence, or none.
 */
function rateLimitOf(annotations: Record<string, string> | undefined): RateLimitSpec | string | undefined {
  const text = annotations?.[ANN_RATE_LIMIT]
  if (text === undefined) return annotations?.[ANN_RATE_LIMIT_BURST] === undefined ? undefined : `${ANN_RATE_LIMIT_BURST} is set without ${ANN_RATE_LIMIT}; add the rate (e.g. "100/s")`
  return parseRateLimit(text, annotations?.[ANN_RATE_LIMIT_BURST])
}
