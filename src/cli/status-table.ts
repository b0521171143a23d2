// `edge-gateway status` as text: what a running gateway serves, read from its /debug/routes, one row
// per host and revision, as `kn route describe` shows a Route's traffic. Pure: JSON in, text out.
import type { Holds } from '../activator/throttler.ts'
import { formatProblem } from '../model/problems.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { ColdStartView } from '../admin/cold-starts.ts'

/** The part of /debug/routes this reads (admin/server.ts describeRoutes writes it). */
export interface RoutesJson {
  version: number
  hosts: HostJson[]
  problems: ConfigProblem[]
  sources: Record<string, unknown>
  /** Requests held for pods and their bodies' bytes (absent from an older gateway). */
  holds?: Holds
}

interface HostJson {
  host: string
  visibility: 'ExternalIP' | 'ClusterLocal'
  ingress: string
  paths: PathJson[]
}

interface PathJson {
  prefix?: string
  headers?: Record<string, string>
  rewriteHost?: string
  setHeaders?: Record<string, string>
  splits: SplitJson[]
}

interface SplitJson {
  percent: number
  backend: string
  revision?: string
  external?: string
  problem?: string
  /** The revision cannot become ready: its requests are answered 503 at once (`reason`), and why. */
  failing?: { reason: string; detail: string }
  queued?: number
  endpoints: Array<{ address: string; inFlight: number }>
  lastColdStart?: ColdStartView
}

export interface StatusRow {
  host: string
  revision: string
  traffic: string
  tag: string
  ready: string
  inFlight: string
  queued: string
  lastColdStart: string
}

const COLUMNS: Array<[keyof StatusRow, string]> = [
  ['host', 'HOST'],
  ['revision', 'REVISION'],
  ['traffic', 'TRAFFIC'],
  ['tag', 'TAG'],
  ['ready', 'READY'],
  ['inFlight', 'IN FLIGHT'],
  ['queued', 'QUEUED'],
  ['lastColdStart', 'LAST COLD START'],
]

/** Knative routes a request by tag with this header; a tag's own host sets it. */
const TAG_HEADER = 'knative-serving-tag'

function header(map: Record<string, string> | undefined, lower: string): string | undefined {
  for (const [k, v] of Object.entries(map ?? {})) if (k.toLowerCase() === lower) return v
  return undefined
}

/** 170 ms, 1.4 s, 2 min */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  return `${Math.round(ms / 60_000)} min`
}

/** 12s, 5m, 3h, 2d */
function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86_400) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}

function coldStartCell(c: ColdStartView | undefined, now: number): string {
  if (!c) return '-'
  if ('waitingForMs' in c) return `waiting ${duration(c.waitingForMs)}`
  return `${duration(c.readyAfterMs)}, ${ago(now - Date.parse(c.startedAt))} ago`
}

/**
 * Cluster-local hosts come in short forms (`hello.default`, `hello.default.svc`) beside the full
 * `hello.default.svc.cluster.local`: only the full name is shown when the short ones route the same.
 */
function shownHosts(hosts: readonly HostJson[]): HostJson[] {
  const same = (a: HostJson, b: HostJson): boolean => a.ingress === b.ingress && JSON.stringify(a.paths) === JSON.stringify(b.paths)
  return hosts.filter((h) => h.visibility !== 'ClusterLocal' || !hosts.some((o) => o !== h && o.visibility === 'ClusterLocal' && o.host.startsWith(h.host + '.') && same(o, h)))
}

/** Route's main host first, then its tag hosts, then cluster-local names; routes by name. */
function order(a: HostJson, b: HostJson): number {
  const rank = (h: HostJson): number => (h.visibility === 'ExternalIP' ? 0 : 2) + (h.paths.some((p) => header(p.setHeaders, TAG_HEADER) !== undefined) ? 1 : 0)
  return a.ingress.localeCompare(b.ingress) || rank(a) - rank(b) || a.host.localeCompare(b.host)
}

/** Where a split's requests go: the revision's name, a Service or an external host. */
function target(s: SplitJson): string {
  if (s.revision) return s.revision.slice(s.revision.indexOf('/') + 1)
  return s.external ?? s.backend
}

export interface StatusTable {
  rows: StatusRow[]
  /** Splits that cannot be served, and why. */
  notes: string[]
}

/** The rows, and notes on splits that cannot be served; `now` (ms since the epoch) dates the cold starts. */
export function statusRows(routes: RoutesJson, now: number): StatusTable {
  const rows: StatusRow[] = []
  const notes: string[] = []
  // With --workers the admin port is the primary's, which holds no requests: queued is not known there.
  const queuedKnown = routes.sources.workers === undefined
  for (const h of shownHosts(routes.hosts).sort(order)) {
    // Paths matching Knative-Serving-Tag are the route's tags: shown as the TAG of their revision.
    const tags = new Map<string, string[]>()
    for (const p of h.paths) {
      const tag = header(p.headers, TAG_HEADER)
      if (tag === undefined) continue
      for (const s of p.splits) tags.set(target(s), [...(tags.get(target(s)) ?? []), tag])
    }
    for (const p of h.paths) {
      if (header(p.headers, TAG_HEADER) !== undefined) continue
      const otherHeaders = Object.entries(p.headers ?? {}).map(([k, v]) => `${k}=${v}`)
      const where = `${h.host}${p.prefix ?? ''}${otherHeaders.length ? ` [${otherHeaders.join(',')}]` : ''}`
      const ownTag = header(p.setHeaders, TAG_HEADER)
      if (p.rewriteHost) {
        // A DomainMapping: the gateway serves it as the target host, whose rows count its requests.
        rows.push({ host: where, revision: `-> ${p.rewriteHost}`, traffic: '100%', tag: '-', ready: '-', inFlight: '-', queued: '-', lastColdStart: '-' })
        continue
      }
      const shown = new Set<string>()
      for (const s of p.splits) {
        shown.add(target(s))
        // A failing revision's own words say more than "no ready pods".
        if (s.failing) notes.push(`${where} -> ${target(s)}: failing (503 ${s.failing.reason}): ${s.failing.detail}`)
        else if (s.problem) notes.push(`${where} -> ${s.backend}: ${s.problem}`)
        rows.push({
          host: where,
          revision: target(s),
          traffic: `${s.percent}%`,
          tag: ownTag ?? (tags.get(target(s))?.join(',') || '-'),
          ready: s.failing ? `${s.endpoints.length} (failing)` : String(s.endpoints.length),
          inFlight: String(s.endpoints.reduce((n, e) => n + e.inFlight, 0)),
          queued: queuedKnown ? String(s.queued ?? 0) : '-',
          lastColdStart: coldStartCell(s.lastColdStart, now),
        })
      }
      // A tagged revision that takes none of the untagged traffic (kn shows it as 0%). Its counts are
      // on its tag host's row.
      for (const [rev, t] of tags) {
        if (!shown.has(rev)) rows.push({ host: where, revision: rev, traffic: '0%', tag: t.join(','), ready: '-', inFlight: '-', queued: '-', lastColdStart: '-' })
      }
    }
  }
  return { rows, notes }
}

/** Columns padded to their widest cell, two spaces apart, kubectl style. */
export function formatTable(rows: readonly StatusRow[]): string {
  const widths = COLUMNS.map(([key, title]) => Math.max(title.length, ...rows.map((r) => r[key].length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(COLUMNS.map(([, title]) => title)), ...rows.map((r) => line(COLUMNS.map(([key]) => r[key])))].join('\n')
}

export function renderStatus(routes: RoutesJson, adminUrl: string, now: number): string {
  const { rows, notes } = statusRows(routes, now)
  const out = [`edge-gateway at ${adminUrl}, configuration version ${routes.version}`, '']
  out.push(rows.length ? formatTable(rows) : 'no hosts served (no Route, DomainMapping or KIngress yet)')
  if (routes.sources.workers !== undefined) out.push('', 'QUEUED is per worker process with --workers > 1: see the edge_revision_requests_queued metric.')
  const held = heldLine(routes)
  if (held !== undefined) out.push('', held)
  if (notes.length) out.push('', 'not servable:', ...notes.map((n) => `  ${n}`))
  if (routes.problems.length) {
    out.push('', `${routes.problems.length} configuration problem(s), ignored while they last:`)
    for (const p of routes.problems) out.push(`  ${formatProblem(p)}`)
  }
  return out.join('\n') + '\n'
}

/** What is held for pods, against the byte bounds (--max-held-body-bytes[-per-namespace]). */
function heldLine(routes: RoutesJson): string | undefined {
  const h = routes.holds
  if (h === undefined || h.requests === 0) return undefined
  const where = routes.sources.workers !== undefined ? " at the primary's broker (revisions with containerConcurrency > 0)" : ''
  const byNamespace = Object.entries(h.namespaces)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([ns, n]) => `${ns} ${n.requests} (${n.bodyBytes} bytes)`)
  return `held for pods${where}: ${h.requests} request(s) with ${h.bodyBytes} bytes of bodies; by namespace: ${byNamespace.join(', ')}`
}
