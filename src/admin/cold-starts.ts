// Each revision's last cold start, for /debug/routes and `edge-gateway status`: when a request last
// found the revision without a ready pod, and how long it was until the configuration had one. Fed by
// the cold-start signal (a throttler's; with --workers, the broker's and the workers' through the
// primary) and by every snapshot. Per revision, not per request: x-edge-cold-start-ms and
// edge_cold_start_wait_seconds tell each request's own wait.
import type { Snapshot } from '../model/snapshot.ts'

/** What /debug/routes shows: when it began, and either how long until a pod was ready or how long it has waited so far. */
export type ColdStartView = { startedAt: string; readyAfterMs: number } | { startedAt: string; waitingForMs: number }

interface ColdStartRecord {
  /** Wall clock (ms since the epoch), for people. */
  readonly startedAt: number
  /** Monotonic clock (performance.now), for the duration. */
  readonly t0: number
  readyAfterMs: number | undefined
}

/** A revision's backend in the snapshot is `rev:namespace/name` (compile/backends.ts). */
const REV = 'rev:'
const backendKey = (revisionKey: string): string => REV + revisionKey

export class ColdStarts {
  private readonly records = new Map<string, ColdStartRecord>()
  /** Revisions still waiting for their first pod. */
  private readonly waiting = new Set<string>()
  private readonly current: () => Snapshot

  /** `current`: the snapshot now, to tell a revision that already has a pod (then nothing starts). */
  constructor(current: () => Snapshot) {
    this.current = current
  }

  /** A request waits for `revisionKey` (`namespace/name`) and it has no pod. Repeats while waiting change nothing. */
  began(revisionKey: string): void {
    const r = this.records.get(revisionKey)
    if (r && r.readyAfterMs === undefined) return
    if (hasReadyPod(this.current(), revisionKey)) return
    this.records.set(revisionKey, { startedAt: Date.now(), t0: performance.now(), readyAfterMs: undefined })
    this.waiting.add(revisionKey)
  }

  /**
   * A new snapshot: a waiting revision that has a ready pod in it has finished its cold start; the
   * record of a revision no longer served goes. It subscribes before the data plane, so the time is
   * the snapshot's, not after the held requests were sent on.
   */
  published(snap: Snapshot, changedBackends: ReadonlySet<string> | undefined): void {
    if (this.records.size === 0) return
    const now = performance.now()
    const look = (key: string): void => {
      const r = this.records.get(key)
      const b = snap.backends.get(backendKey(key))
      if (!r) return
      if (!b) {
        this.records.delete(key)
        this.waiting.delete(key)
      } else if (r.readyAfterMs === undefined && b.endpoints.length > 0) {
        r.readyAfterMs = now - r.t0
        this.waiting.delete(key)
      }
    }
    // Only what can have changed: the waiting revisions, and the recorded ones among the changed
    // backends (all of them after a full compile).
    if (!changedBackends) for (const key of this.records.keys()) look(key)
    else {
      for (const key of this.waiting) look(key)
      for (const k of changedBackends) if (k.startsWith(REV) && this.records.has(k.slice(REV.length))) look(k.slice(REV.length))
    }
  }

  of(revisionKey: string): ColdStartView | undefined {
    const r = this.records.get(revisionKey)
    if (!r) return undefined
    const startedAt = new Date(r.startedAt).toISOString()
    if (r.readyAfterMs !== undefined) return { startedAt, readyAfterMs: Math.round(r.readyAfterMs) }
    return { startedAt, waitingForMs: Math.round(performance.now() - r.t0) }
  }
}

function hasReadyPod(snap: Snapshot, revisionKey: string): boolean {
  return (snap.backends.get(backendKey(revisionKey))?.endpoints.length ?? 0) > 0
}
