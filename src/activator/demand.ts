// Per-revision demand accounting, as Knative's activator concurrency reporter does it
// (reference: activator-autoscaler.md §2.3, §2.4). Pure: every call takes the time in
// milliseconds; the same monotonic clock must feed requestIn/requestOut and report.
//
// Per revision the tracker keeps the number of requests in flight (held requests included: the
// gateway counts them from arrival, before any capacity wait) and, for the current window,
// Σ concurrency × Δt, the window length and the number of arrivals.
//
// Lifecycle of an entry:
// - Created by the first request for a revision that has none. That request triggers a "poke"
//   ({averageConcurrentRequests: 1, requestCount: 1}) sent synchronously through onPoke, so the
//   autoscaler can scale from zero without waiting for the tick. The window starts there.
// - Each report() emits one entry per revision and resets its window. The next report after a poke
//   subtracts it (average and count, both floored at 0) so the autoscaler does not count the first
//   request twice in the same 1 s bucket.
// - A report whose raw window average is 0 is still emitted, then the entry is deleted unless a
//   request is in flight. So after traffic stops, one final zero goes out and then nothing.
//
// Never-idle rule (deliberate deviation from Knative): if requests are in flight or held at report
// time, the reported average is > 0. Knative can report 0 here: one request held for the whole first
// window averages exactly 1, and subtracting the poke leaves 0, which lands in the autoscaler's
// bucket as "idle" while the client is still waiting. We keep the subtraction (so the poke and the
// tick together still sum to about the true demand) but raise a would-be 0 to BUSY_FLOOR, a token
// value that is not idle (ceil(0.001 / target) = 1 pod) yet adds almost nothing to the sum.
// Likewise a window of zero length (report at the same instant the entry was created) uses the
// current concurrency instead of 0/0.

import type { StatEntry } from '../autoscaler/stat-encoding.ts'

export interface RevisionKey {
  namespace: string
  name: string
}

export interface DemandSnapshotRow {
  namespace: string
  name: string
  /** Requests in flight or held right now. */
  concurrency: number
  /** Raw time-weighted average of the last reported window (before the poke adjustment). */
  averageConcurrency?: number
}

/** Reported instead of 0 while requests are in flight; see the never-idle rule above. */
export const BUSY_FLOOR = 0.001

/** The Map key for a revision. Hot paths can compute it once and use the *Key methods. */
export function revisionKey(rev: RevisionKey): string {
  return rev.namespace + '/' + rev.name
}

interface RevisionDemand {
  readonly namespace: string
  readonly name: string
  /** Requests in flight or held right now. */
  inFlight: number
  /** Start of the current constant-concurrency segment. */
  lastChangeMs: number
  /** Σ concurrency × Δt over the window, in request·ms. */
  weightedMs: number
  /** Σ Δt over the window. */
  windowMs: number
  /** Requests that arrived in the window. */
  arrivals: number
  /** 1 when a poke went out that the next report must subtract. */
  pokeToSubtract: number
  /** Raw (unadjusted) average of the last completed window, for gauges. */
  lastAverage: number | undefined
}

/** Adds the segment since the last change to the window. Time going backwards adds nothing. */
function advance(d: RevisionDemand, nowMs: number): void {
  const dt = nowMs - d.lastChangeMs
  if (dt > 0) {
    d.weightedMs += d.inFlight * dt
    d.windowMs += dt
    d.lastChangeMs = nowMs
  }
}

export class DemandTracker {
  private readonly podName: string
  private readonly onPoke: (entry: StatEntry) => void
  private readonly revisions = new Map<string, RevisionDemand>()

  constructor(opts: { podName: string; onPoke: (entry: StatEntry) => void }) {
    this.podName = opts.podName
    this.onPoke = opts.onPoke
  }

  /** A request for the revision arrived (it may be held: held requests count as concurrency). */
  requestIn(rev: RevisionKey, nowMs: number): void {
    this.requestInKey(revisionKey(rev), rev, nowMs)
  }

  /** requestIn with a key the caller already computed with revisionKey(rev). */
  requestInKey(key: string, rev: RevisionKey, nowMs: number): void {
    let d = this.revisions.get(key)
    const isNew = d === undefined
    if (d === undefined) {
      d = {
        namespace: rev.namespace,
        name: rev.name,
        inFlight: 0,
        lastChangeMs: nowMs,
        weightedMs: 0,
        windowMs: 0,
        arrivals: 0,
        pokeToSubtract: 1,
        lastAverage: undefined,
      }
      this.revisions.set(key, d)
    }
    advance(d, nowMs)
    d.inFlight++
    d.arrivals++
    // After the state update, so a throwing callback cannot leave the accounting half done.
    if (isNew) {
      this.onPoke({
        namespace: d.namespace,
        name: d.name,
        podName: this.podName,
        averageConcurrentRequests: 1,
        requestCount: 1,
      })
    }
  }

  /** The request finished (answered, failed, or the client left). */
  requestOut(rev: RevisionKey, nowMs: number): void {
    this.requestOutKey(revisionKey(rev), nowMs)
  }

  /** requestOut with a key the caller already computed with revisionKey(rev). */
  requestOutKey(key: string, nowMs: number): void {
    const d = this.revisions.get(key)
    // An entry cannot be deleted while a request is in flight, so a miss (or 0) means an
    // unmatched requestOut: ignore it rather than drive concurrency negative.
    if (d === undefined || d.inFlight === 0) return
    advance(d, nowMs)
    d.inFlight--
  }

  /** Build one tick's entries (one per revision with a stats entry) and reset the window. */
  report(nowMs: number): StatEntry[] {
    const out: StatEntry[] = []
    for (const [key, d] of this.revisions) {
      advance(d, nowMs)
      const average = d.windowMs > 0 ? d.weightedMs / d.windowMs : d.inFlight
      let reported = Math.max(average - d.pokeToSubtract, 0)
      if (reported === 0 && d.inFlight > 0) reported = BUSY_FLOOR
      out.push({
        namespace: d.namespace,
        name: d.name,
        podName: this.podName,
        averageConcurrentRequests: reported,
        requestCount: Math.max(d.arrivals - d.pokeToSubtract, 0),
      })

      d.lastAverage = average
      d.weightedMs = 0
      d.windowMs = 0
      d.arrivals = 0
      d.pokeToSubtract = 0
      if (average === 0 && d.inFlight === 0) this.revisions.delete(key)
    }
    return out
  }

  /** Current concurrency per revision (for Prometheus gauges and the local runner). */
  snapshot(): DemandSnapshotRow[] {
    const out: DemandSnapshotRow[] = []
    for (const d of this.revisions.values()) {
      const row: DemandSnapshotRow = {
        namespace: d.namespace,
        name: d.name,
        concurrency: d.inFlight,
      }
      if (d.lastAverage !== undefined) row.averageConcurrency = d.lastAverage
      out.push(row)
    }
    return out
  }

  concurrency(rev: RevisionKey): number {
    return this.revisions.get(revisionKey(rev))?.inFlight ?? 0
  }
}
