// Route → KIngress, shaped as Knative Serving's route reconciler builds it (kingress-contract.md §1.7,
// §1.8) so a gateway fed Routes directly routes exactly as one fed Serving's KIngresses would.
// Differences from Serving, on purpose: tag-header routing is always on (Serving's feature flag
// defaults to off), backends always use port 80 (Serving picks 81 for h2c revisions, which needs the
// Revision), and there is no rollout annotation (no gradual rollout without Serving). The tag-to-host
// annotation is written as Serving 1.22 writes it (compile/tag-to-host.ts says what it is for).
import { ANN_TAG_TO_HOST, HEADER_DEFAULT_ROUTE, HEADER_NAMESPACE, HEADER_REVISION, HEADER_TAG, LABEL_VISIBILITY } from '../model/k8s.ts'
import type { HTTPIngressPath, IngressBackendSplit, IngressRule, KIngress, Route, TrafficTarget } from '../model/k8s.ts'
import { ConfigError } from '../model/problems.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { ErrorCode } from '../errors.ts'
import { httpOptionFrom, ingressAnnotations, isProblem } from './options.ts'
import type { TranslateOptions } from './options.ts'

export const LABEL_ROUTE = 'serving.knative.dev/route'
export const LABEL_ROUTE_NAMESPACE = 'serving.knative.dev/routeNamespace'

// The revision's public Service port for HTTP/1 (networking ports.go ServicePort(http1)).
const REVISION_SERVICE_PORT = 80

/** One revision's share of a target. */
interface Weighted {
  revision: string
  percent: number
}

/** The default target (tag '') or one tag: where its traffic goes and its public host. */
interface Target {
  tag: string
  splits: Weighted[]
  externalHost: string
}

type Report = (field: string, reason: string, code: ErrorCode) => void

/** Throws ConfigError (source '') listing every problem found, not just the first. */
export function routeToIngress(route: Route, opts: TranslateOptions): KIngress {
  const name = route.metadata.name
  const ns = route.metadata.namespace ?? 'default'
  const object = `Route ${ns}/${name}`
  const problems: ConfigProblem[] = []
  const report: Report = (field, reason, code) => problems.push({ source: '', object, field, reason, code })

  const httpOption = httpOptionFrom(route.metadata.annotations, object, opts.httpProtocol)
  if (isProblem(httpOption)) problems.push(httpOption)

  const targets = buildTargets(route, opts, report)
  if (problems.length > 0 || targets === undefined) throw new ConfigError(problems)

  const clusterLocalOnly = route.metadata.labels?.[LABEL_VISIBILITY] === 'cluster-local'
  const tagTargets = targets.slice(1)
  const rules: IngressRule[] = []
  // Serving's tag-to-host: each tag's primary host per visibility, cluster-local first (route/resources/ingress.go).
  const tagToHost: Array<[string, string[]]> = []
  for (const target of targets) {
    const paths = () => pathsFor(target, tagTargets, ns)
    const hostName = target.tag === '' ? name : `${target.tag}-${name}`
    const local = clusterLocalHosts(hostName, ns, opts.clusterDomain)
    rules.push({ hosts: local, visibility: 'ClusterLocal', http: { paths: paths() } })
    if (!clusterLocalOnly) rules.push({ hosts: [target.externalHost], visibility: 'ExternalIP', http: { paths: paths() } })
    if (target.tag !== '') tagToHost.push([target.tag, clusterLocalOnly ? [local.at(-1)!] : [local.at(-1)!, target.externalHost]])
  }
  const annotations = ingressAnnotations(route.metadata.annotations, opts.ingressClass)
  // Written pair by pair: the tags are sorted, as Go writes a map's keys (a JS object puts "9" before "10").
  if (tagToHost.length > 0) annotations[ANN_TAG_TO_HOST] = `{${tagToHost.map(([tag, hosts]) => `${JSON.stringify(tag)}:${JSON.stringify(hosts)}`).join(',')}}`

  return {
    apiVersion: 'networking.internal.knative.dev/v1alpha1',
    kind: 'Ingress',
    metadata: {
      name,
      namespace: ns,
      labels: { ...route.metadata.labels, [LABEL_ROUTE]: name, [LABEL_ROUTE_NAMESPACE]: ns },
      annotations,
    },
    spec: { rules, httpOption: isProblem(httpOption) ? '' : httpOption },
  }
}

// ---- traffic → targets ----

/** The default target first, then tags sorted by name; undefined when a problem was reported. */
function buildTargets(route: Route, opts: TranslateOptions, report: Report): Target[] | undefined {
  const name = route.metadata.name
  const ns = route.metadata.namespace ?? 'default'
  let reported = 0
  const counting: Report = (...args) => {
    reported++
    report(...args)
  }

  const { entries, path } = chooseTraffic(route)
  if (entries.length === 0) {
    counting('spec.traffic', 'the Route has no traffic targets; list at least one revision under spec.traffic with its percent', 'EDGE_ERR_ROUTE_NO_TRAFFIC')
    return undefined
  }

  const defaultSplits: Weighted[] = []
  const tags = new Map<string, { entries: Array<{ weighted: Weighted; index: number }>; url?: unknown; urlIndex?: number }>()
  let total = 0
  entries.forEach((entry, index) => {
    const field = `${path}[${index}]`
    const checked = checkEntry(entry, field, path, counting)
    if (checked === undefined) return
    total += checked.percent
    if (checked.percent > 0) addWeight(defaultSplits, checked.revision, checked.percent)
    if (checked.tag !== '') {
      const tag = tags.get(checked.tag) ?? { entries: [] }
      tag.entries.push({ weighted: { revision: checked.revision, percent: checked.percent }, index })
      if (tag.url === undefined && entry.url !== undefined && entry.url !== '') {
        tag.url = entry.url
        tag.urlIndex = index
      }
      tags.set(checked.tag, tag)
    }
  })
  if (reported > 0) return undefined

  if (total !== 100) {
    counting(
      path,
      `traffic percents total ${total}, but the default target needs exactly 100; adjust the percent of the entries so they add up to 100`,
      'EDGE_ERR_ROUTE_TRAFFIC',
    )
  }

  const fields = { name, namespace: ns, domain: opts.domain, labels: route.metadata.labels, annotations: route.metadata.annotations }
  const defaultHost = externalHost(route.status?.url, 'status.url', opts.names ? opts.names.host(fields) : `${name}.${ns}.${opts.domain}`, counting)
  const targets: Target[] = [{ tag: '', splits: defaultSplits, externalHost: defaultHost }]
  for (const tagName of [...tags.keys()].sort()) {
    const tag = tags.get(tagName)!
    const splits = tagSplits(tagName, tag.entries, path, counting)
    const urlField = `${path}[${tag.urlIndex ?? 0}].url`
    const host = externalHost(tag.url, urlField, opts.names ? opts.names.tagHost(tagName, fields) : `${tagName}-${name}.${ns}.${opts.domain}`, counting)
    targets.push({ tag: tagName, splits, externalHost: host })
  }
  return reported > 0 ? undefined : targets
}

/** Serving's resolved traffic when it has written one, otherwise what the user asked for. */
function chooseTraffic(route: Route): { entries: TrafficTarget[]; path: string } {
  const status = route.status?.traffic
  if (Array.isArray(status) && status.length > 0) return { entries: status, path: 'status.traffic' }
  const spec = route.spec?.traffic
  return { entries: Array.isArray(spec) ? spec : [], path: 'spec.traffic' }
}

function checkEntry(
  entry: TrafficTarget,
  field: string,
  path: string,
  report: Report,
): { revision: string; percent: number; tag: string } | undefined {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    report(field, 'a traffic entry must be a mapping with revisionName and percent', 'EDGE_ERR_ROUTE_TRAFFIC')
    return undefined
  }
  let ok = true
  const revision = entry.revisionName
  if (typeof revision !== 'string' || revision === '') {
    const why =
      path === 'spec.traffic'
        ? 'has no revisionName; a hand-written Route must name its revisions (configurationName and latestRevision are resolved for the Routes of Knative Services, which the gateway derives): name the revision, or write a Knative Service'
        : 'has no revisionName; every resolved traffic entry must name a revision'
    report(`${field}.revisionName`, `this traffic entry ${why}`, 'EDGE_ERR_ROUTE_REVISION')
    ok = false
  }
  const percent = entry.percent ?? 0
  if (typeof percent !== 'number' || !Number.isInteger(percent) || percent < 0 || percent > 100) {
    report(`${field}.percent`, `percent must be a whole number from 0 to 100, got ${JSON.stringify(percent)}`, 'EDGE_ERR_ROUTE_TRAFFIC')
    ok = false
  }
  const tag = entry.tag ?? ''
  if (typeof tag !== 'string') {
    report(`${field}.tag`, 'tag must be a string (a DNS label such as "candidate")', 'EDGE_ERR_ROUTE_TAG')
    ok = false
  }
  return ok ? { revision: revision as string, percent: percent as number, tag: tag as string } : undefined
}

function addWeight(splits: Weighted[], revision: string, percent: number): void {
  const existing = splits.find((s) => s.revision === revision)
  if (existing) existing.percent += percent
  else splits.push({ revision, percent })
}

/**
 * A tag routes to its revision at 100% whatever that entry's share of the default target is (a 0%
 * tag is the usual way to reach a revision by name). Several revisions under one tag (which Serving's
 * validation forbids) are kept only when their percents already total 100.
 */
function tagSplits(tag: string, entries: Array<{ weighted: Weighted; index: number }>, path: string, report: Report): Weighted[] {
  const merged: Weighted[] = []
  for (const { weighted } of entries) addWeight(merged, weighted.revision, weighted.percent)
  if (merged.length === 1) return [{ revision: merged[0]!.revision, percent: 100 }]
  const total = merged.reduce((sum, w) => sum + w.percent, 0)
  if (total !== 100) {
    report(
      `${path}[${entries[1]!.index}].tag`,
      `tag "${tag}" names revisions ${merged.map((w) => w.revision).join(', ')} with percents totalling ${total}; give each tag to one revision only`,
      'EDGE_ERR_ROUTE_TAG',
    )
  }
  return merged.filter((w) => w.percent > 0)
}

function externalHost(url: unknown, field: string, fallback: string, report: Report): string {
  if (url === undefined || url === null || url === '') return fallback
  const parsed = typeof url === 'string' ? URL.parse(url) : null
  if (parsed === null || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.hostname === '') {
    report(field, `${JSON.stringify(url)} is not an http(s) URL with a host; set it like "http://hello.default.example.com" or remove it`, 'EDGE_ERR_ROUTE_URL')
    return fallback
  }
  return parsed.hostname
}

// ---- targets → rules ----

/**
 * `name.ns`, `name.ns.svc` and `name.ns.svc.<cluster domain>`, as networking's ExpandedHosts gives
 * them. `name.ns` is left out for an all-digit namespace, which is not a valid top-level domain.
 */
function clusterLocalHosts(hostName: string, ns: string, clusterDomain: string): string[] {
  const short = /^[0-9]+$/.test(ns) ? [] : [`${hostName}.${ns}`]
  return [...short, `${hostName}.${ns}.svc`, `${hostName}.${ns}.svc.${clusterDomain}`]
}

/** Fresh objects on every call so no two rules share a path that a later step might mutate. */
function pathsFor(target: Target, tagTargets: Target[], ns: string): HTTPIngressPath[] {
  if (target.tag !== '') return [{ splits: splitsFor(target.splits, ns), appendHeaders: { [HEADER_TAG]: target.tag } }]
  const byTagHeader = tagTargets.map((tag) => ({ headers: { [HEADER_TAG]: { exact: tag.tag } }, splits: splitsFor(tag.splits, ns) }))
  return [...byTagHeader, { splits: splitsFor(target.splits, ns), appendHeaders: { [HEADER_DEFAULT_ROUTE]: 'true' } }]
}

function splitsFor(weighted: Weighted[], ns: string): IngressBackendSplit[] {
  return weighted.map(({ revision, percent }) => ({
    serviceNamespace: ns,
    serviceName: revision,
    servicePort: REVISION_SERVICE_PORT,
    percent,
    appendHeaders: { [HEADER_REVISION]: revision, [HEADER_NAMESPACE]: ns },
  }))
}
