// Per-request accounting for edge_requests_total and edge_request_duration_seconds without work per
// request beyond a few Map lookups and increments. prom-client's inc()/observe() build a label key
// string on every call (about 5% of the gateway's CPU at saturation in a profile, bench/); here the
// key is built once per new (host, revision, code) combination, and the counter is brought up to
// date when it is scraped.
import type { BackendSpec } from './model/snapshot.ts'

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
const CODE_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const

export interface RequestRow {
  readonly labels: { host: string; namespace: string; revision: string; code: number }
  count: number
  /** How much of `count` the Prometheus counter already has. */
  flushed: number
}

/** Requests the gateway answered itself before routing (no backend). */
const NO_BACKEND = {}

export class RequestAccounting {
  /** Every label combination seen, by its key; bounded as the labels are (known hosts, revisions, codes). */
  readonly rows = new Map<string, RequestRow>()
  /** backend → host → code → row. Weak: a recompiled snapshot's backends replace the old ones. */
  private readonly fast = new WeakMap<object, Map<string, Map<number, RequestRow>>>()
  /** Per code class: counts per bucket (not cumulative; the last is +Inf), then the sum of seconds. */
  private readonly buckets = CODE_CLASSES.map(() => new Float64Array(DURATION_BUCKETS.length + 1))
  private readonly sums = new Float64Array(CODE_CLASSES.length)

  record(host: string, backend: BackendSpec | undefined, code: number, seconds: number): void {
    const b = backend ?? NO_BACKEND
    let byHost = this.fast.get(b)
    if (!byHost) this.fast.set(b, (byHost = new Map()))
    let byCode = byHost.get(host)
    if (!byCode) byHost.set(host, (byCode = new Map()))
    let row = byCode.get(code)
    if (!row) byCode.set(code, (row = this.row(host, backend, code)))
    row.count++
    const cls = code >= 500 ? 4 : code >= 400 ? 3 : code >= 300 ? 2 : code >= 200 ? 1 : 0
    const counts = this.buckets[cls]!
    let i = 0
    while (i < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[i]!) i++
    counts[i]!++
    this.sums[cls]! += seconds
  }

  private row(host: string, backend: BackendSpec | undefined, code: number): RequestRow {
    const rev = backend?.revision
    const labels = { host, namespace: rev?.namespace ?? backend?.namespace ?? '', revision: rev?.name ?? '', code }
    const key = `${labels.host}\u0000${labels.namespace}\u0000${labels.revision}\u0000${code}`
    let row = this.rows.get(key)
    if (!row) this.rows.set(key, (row = { labels, count: 0, flushed: 0 }))
    return row
  }

  /** The duration histogram in prom-client's metric shape (cumulative buckets, _sum, _count). */
  durationValues(name: string): Array<{ labels: Record<string, string | number>; value: number; metricName: string }> {
    const out: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = []
    CODE_CLASSES.forEach((cls, c) => {
      const counts = this.buckets[c]!
      let total = 0
      for (const n of counts) total += n
      if (total === 0) return
      let cumulative = 0
      DURATION_BUCKETS.forEach((le, i) => {
        cumulative += counts[i]!
        out.push({ labels: { le, code_class: cls }, value: cumulative, metricName: `${name}_bucket` })
      })
      out.push({ labels: { le: '+Inf', code_class: cls }, value: total, metricName: `${name}_bucket` })
      out.push({ labels: { code_class: cls }, value: this.sums[c]!, metricName: `${name}_sum` })
      out.push({ labels: { code_class: cls }, value: total, metricName: `${name}_count` })
    })
    return out
  }
}
