// A process's memory over a long run, read from its admin /metrics (the process metrics an operator's
// dashboard shows), so that a soak can tell growths apart:
// - V8 heap *used* growing is something the gateway keeps (a map that never shrinks, listeners);
// - heap used flat while the young generation's reserved size (`new` space) grows is V8 sizing its
//   semi-spaces up under allocation bursts (src/runtime-flags.ts caps that);
// - RSS growing with both flat is memory outside V8's heap (buffers, native parsers, the allocator);
//   `malloc heap` (read from /proc by the caller) is how much of it glibc's main arena keeps resident.

const MB = 1024 * 1024

export interface MemorySample {
  /** Minutes since the run started. */
  minute: number
  rss: number
  heapUsed: number
  heapTotal: number
  /** Reserved size of V8's young generation (both semi-spaces). */
  newSpace: number
  oldUsed: number
  /** Memory V8 tracks outside its heap: Buffers, ArrayBuffers. */
  external: number
  /** Resident size of glibc's main malloc arena (bench/lib/procs.ts mallocHeapMb), if known. */
  mallocHeap: number | undefined
}

/** The value of one Prometheus sample line, matched by its name and label text exactly. */
function metricValue(text: string, series: string): number {
  for (const line of text.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1).split(' ')[0])
  }
  throw new Error(`memory curve: /metrics has no "${series}" (is it the gateway's admin port, with prom-client's process metrics?)`)
}

/** One sample from the text of a /metrics scrape, taken `minute` minutes into the run. */
export function parseMemorySample(text: string, minute: number, mallocHeap?: number): MemorySample {
  return {
    minute,
    rss: metricValue(text, 'process_resident_memory_bytes') / MB,
    heapUsed: metricValue(text, 'nodejs_heap_size_used_bytes') / MB,
    heapTotal: metricValue(text, 'nodejs_heap_size_total_bytes') / MB,
    newSpace: metricValue(text, 'nodejs_heap_space_size_total_bytes{space="new"}') / MB,
    oldUsed: metricValue(text, 'nodejs_heap_space_size_used_bytes{space="old"}') / MB,
    external: metricValue(text, 'nodejs_external_memory_bytes') / MB,
    mallocHeap,
  }
}

const COLUMNS = ['minute', 'RSS MB', 'heap used MB', 'heap total MB', 'young gen MB', 'old space used MB', 'external MB', 'malloc heap MB']

export function memoryRow(s: MemorySample): string {
  const cells = [s.minute.toFixed(1), ...[s.rss, s.heapUsed, s.heapTotal, s.newSpace, s.oldUsed, s.external, s.mallocHeap].map((n) => n?.toFixed(1) ?? '?')]
  return `| ${cells.join(' | ')} |`
}

export function memoryTable(samples: readonly MemorySample[]): string {
  return [`| ${COLUMNS.join(' | ')} |`, `|${COLUMNS.map(() => '---').join('|')}|`, ...samples.map(memoryRow)].join('\n')
}

export interface LateGrowth {
  fromMinute: number
  toMinute: number
  /** RSS at the last sample against the first sample of the second half, in per cent. */
  rssPct: number
  /** The highest RSS of the second half against its first sample, in per cent. */
  rssPeakPct: number
  heapUsedPct: number
  /**
   * The least-squares line through the second half's RSS: its change from the first sample's minute
   * to the last's, in per cent of its value at the first. RSS moves ±10% with each GC and each trim
   * of malloc's arena, so one sample against another says less than this trend does.
   */
  rssTrendPct: number
}

/**
 * Growth over the second half of a run (issue 23: flat over the last 30 of 60 minutes), from the
 * first sample at or after half-time to the last sample. Undefined with fewer than two such samples.
 */
export function lateGrowth(samples: readonly MemorySample[], runMinutes: number): LateGrowth | undefined {
  const late = samples.filter((s) => s.minute >= runMinutes / 2)
  if (late.length < 2) return undefined
  const first = late[0]!
  const last = late[late.length - 1]!
  const pct = (to: number, from: number): number => ((to - from) / from) * 100
  return {
    fromMinute: first.minute,
    toMinute: last.minute,
    rssPct: pct(last.rss, first.rss),
    rssPeakPct: pct(Math.max(...late.map((s) => s.rss)), first.rss),
    heapUsedPct: pct(last.heapUsed, first.heapUsed),
    rssTrendPct: trendPct(late.map((s) => [s.minute, s.rss])),
  }
}

/** A least-squares line through (x, y) points: its rise from the first x to the last, in per cent of its value at the first. */
export function trendPct(points: ReadonlyArray<readonly [number, number]>): number {
  const n = points.length
  const mx = points.reduce((a, [x]) => a + x, 0) / n
  const my = points.reduce((a, [, y]) => a + y, 0) / n
  let sxy = 0
  let sxx = 0
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my)
    sxx += (x - mx) ** 2
  }
  const slope = sxx === 0 ? 0 : sxy / sxx
  const x0 = points[0]![0]
  const x1 = points[n - 1]![0]
  const y0 = my + slope * (x0 - mx)
  return ((slope * (x1 - x0)) / y0) * 100
}
