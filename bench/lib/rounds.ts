// Interleaved rounds and their statistics: every target runs once per round, in the same order, so
// that a machine whose speed drifts between rounds affects each target alike; tables show medians.
// LoadResult is what one load-generator run (wrk or h2load) yields.

export interface LoadResult {
  rps: number
  /** Latencies in ms; NaN where the tool does not report them (h2load gives no percentiles). */
  mean: number
  p50: number
  p90: number
  p99: number
  p999: number
  /** MB/s transferred */
  mbps: number
  /** Requests completed in the measured time. */
  requests: number
  /** Requests that failed: error statuses, socket errors, timeouts. */
  errors: number
  /** The tool's own lines about those failures, for the error message. */
  errorDetail: string
  /** CPU µs per request of the target's process over this run, when the caller measured it. */
  cpuUs?: number
  /** The share of one core the target's process used over this run (1 = a whole core). */
  busy?: number
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export function med(rs: LoadResult[], k: 'rps' | 'mean' | 'p50' | 'p90' | 'p99' | 'p999' | 'mbps' | 'cpuUs' | 'busy'): number {
  return median(rs.map((r) => r[k] ?? NaN))
}

export function fmt(n: number, digits = 0): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a'
}

/** Runs every target once per round, in order, `rounds` times; prints each run as it ends. */
export async function interleaved<T extends { name: string }>(targets: T[], run: (t: T) => Promise<LoadResult>, rounds: number): Promise<Map<string, LoadResult[]>> {
  const results = new Map<string, LoadResult[]>(targets.map((t) => [t.name, []]))
  for (let r = 0; r < rounds; r++) {
    for (const t of targets) {
      const res = await run(t)
      results.get(t.name)!.push(res)
      const latency = Number.isFinite(res.p50) ? `p50 ${fmt(res.p50, 2)} ms p99 ${fmt(res.p99, 2)} ms` : `mean ${fmt(res.mean, 2)} ms`
      const cpu = res.cpuUs !== undefined ? ` CPU ${fmt(res.cpuUs, 1)} µs/request, core ${fmt((res.busy ?? NaN) * 100)}% busy` : ''
      process.stdout.write(`  round ${r + 1} ${t.name}: ${fmt(res.rps)} req/s ${latency}${cpu}${res.errors ? ` errors ${res.errors}` : ''}\n`)
    }
  }
  return results
}
