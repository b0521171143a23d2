// Per-request accounting for edge_requests_total and edge_request_duration_seconds without work per
// request beyond a few Map lookups and increments. prom-client's inc()/observe() build a label key
// string on every call (about 5% of the gateway's CPU at saturation in a profile, bench/); here the
// key is built once per new (host, revision, code, reason) combination, each row points at its
// latency series once, and the counter is brought up to date when it is scraped.
//
// Revisions come and go (every rollout makes one), so the rows and series of a revision the
// configuration no longer has are forgotten at the first scrape that finds nothing new on them: the
// final values have then been scraped once, and a gateway that rolls revisions all day keeps only
// its live ones (issue 23: without this they were the one thing a long soak's heap kept growing by).
import type { BackendSpec } from './model/snapshot.ts'
import type { Reason } from './dataplane/reply.ts'

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
const CODE_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const

/** The labels of one edge_requests_total series. `reason` only where the gateway answered itself. */
export interface RequestLabels {
  host: string
  namespace: string
  revision: string
  code: number
  reason?: Reason
}

/** One edge_request_duration_seconds series: a revision's requests of one status class. */
interface LatencySeries {
  readonly labels: { namespace: string; revision: string; code_class: string }
  /** Counts per bucket (not cumulative; the last is +Inf). */
  readonly counts: Float64Array
  sum: number
  /** The request count the last scrape showed. */
  scraped: number
  /** Forgotten (its revision is gone): a late request of that revision starts a new series. */
  gone: boolean
}

export interface RequestRow {
  readonly labels: RequestLabels
  count: number
  /** How much of `count` the Prometheus counter already has. */
  flushed: number
  latency: LatencySeries
  /** Forgotten (its revision is gone): a late request of that revision starts a new row. */
  gone: boolean
  /** The same host, backend and code answered by the gateway itself, per reason. */
  reasons: Map<Reason, RequestRow> | undefined
}

type Values = Array<{ labels: Record<string, string | number>; value: number; metricName: string }>

/** Whether the configuration still has the revision (`namespace`, `name`). */
export type RevisionServed = (namespace: string, name: string) => boolean

/** Requests the gateway answered itself before routing (no backend). */
const NO_BACKEND = {}

export class RequestAccounting {
  /**
   * Every label combination seen, by its key; bounded as the labels are: hosts the configuration
   * knows (an unknown Host is counted as ""), revisions it has (see forget), status codes and the
   * closed Reason union.
   */
  readonly rows = new Map<string, RequestRow>()
  /** backend → host → code → row. Weak: a recompiled snapshot's backends replace the old ones. */
  private readonly fast = new WeakMap<object, Map<string, Map<number, RequestRow>>>()
  private readonly latency = new Map<string, LatencySeries>()

  record(host: string, backend: BackendSpec | undefined, code: number, seconds: number, reason?: Reason): void {
    const b = backend ?? NO_BACKEND
    let byHost = this.fast.get(b)
    if (!byHost) this.fast.set(b, (byHost = new Map()))
    let byCode = byHost.get(host)
    if (!byCode) byHost.set(host, (byCode = new Map()))
    let row = byCode.get(code)
    if (!row || row.gone) byCode.set(code, (row = this.row(host, backend, code)))
    if (reason !== undefined) {
      const own = row.reasons?.get(reason)
      row = own && !own.gone ? own : this.reasonRow(row, reason)
    }
    row.count++
    let series = row.latency
    if (series.gone) row.latency = series = this.series(row.labels.namespace, row.labels.revision, row.labels.code)
    let i = 0
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++
    series.counts[i]!++
    series.sum += seconds
  }

  private reasonRow(base: RequestRow, reason: Reason): RequestRow {
    const { host, namespace, revision, code } = base.labels
    const row = this.rowFor({ host, namespace, revision, code, reason })
    ;(base.reasons ??= new Map()).set(reason, row)
    return row
  }

  private row(host: string, backend: BackendSpec | undefined, code: number): RequestRow {
    const rev = backend?.revision
    return this.rowFor({ host, namespace: rev?.namespace ?? backend?.namespace ?? '', revision: rev?.name ?? '', code })
  }

  private rowFor(labels: RequestLabels): RequestRow {
    const key = `${labels.host}\u0000${labels.namespace}\u0000${labels.revision}\u0000${labels.code}\u0000${labels.reason ?? ''}`
    let row = this.rows.get(key)
    if (!row) this.rows.set(key, (row = { labels, count: 0, flushed: 0, latency: this.series(labels.namespace, labels.revision, labels.code), reasons: undefined, gone: false }))
    return row
  }

  private series(namespace: string, revision: string, code: number): LatencySeries {
    const cls = CODE_CLASSES[code >= 500 ? 4 : code >= 400 ? 3 : code >= 300 ? 2 : code >= 200 ? 1 : 0]
    const key = `${namespace}\u0000${revision}\u0000${cls}`
    let s = this.latency.get(key)
    if (!s) this.latency.set(key, (s = { labels: { namespace, revision, code_class: cls }, counts: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0, scraped: 0, gone: false }))
    return s
  }

  /**
   * At a scrape: brings the counter up to date (`add` each row's new requests), and forgets the rows
   * of revisions no longer `served` that have nothing new since the last scrape (`removed` for each,
   * so the counter drops its series too). Rows without a revision (Services, unrouted) stay.
   */
  flushRequests(add: (labels: RequestLabels, n: number) => void, removed: (labels: RequestLabels) => void, served: RevisionServed): void {
    for (const [key, row] of this.rows) {
      if (row.count !== row.flushed) {
        add(row.labels, row.count - row.flushed)
        row.flushed = row.count
      } else if (row.labels.revision !== '' && !served(row.labels.namespace, row.labels.revision)) {
        row.gone = true
        this.rows.delete(key)
        removed(row.labels)
      }
    }
  }

  /**
   * The duration histogram in prom-client's metric shape (cumulative buckets, _sum, _count). A series
   * of a revision no longer `served` with nothing new since the last scrape is forgotten instead.
   */
  durationValues(name: string, served: RevisionServed): Values {
    const out: Values = []
    for (const [key, series] of this.latency) {
      const { labels, counts, sum } = series
      let total = 0
      for (const n of counts) total += n
      if (total === series.scraped && !served(labels.namespace, labels.revision)) {
        series.gone = true
        this.latency.delete(key)
        continue
      }
      series.scraped = total
      if (total === 0) continue
      let cumulative = 0
      DURATION_BUCKETS.forEach((le, i) => {
        cumulative += counts[i]!
        out.push({ labels: { ...labels, le }, value: cumulative, metricName: `${name}_bucket` })
      })
      out.push({ labels: { ...labels, le: '+Inf' }, value: total, metricName: `${name}_bucket` })
      out.push({ labels, value: sum, metricName: `${name}_sum` })
      out.push({ labels, value: total, metricName: `${name}_count` })
    }
    return out
  }
}
