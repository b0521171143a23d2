// When a proxied request or upgrade must give up: Knative's three per-revision limits plus the
// gateway's cold-start budget and stream idle limit. Pure: the caller holds the timer, and re-asks
// when its state changes (queued → on a pod → responding) or when the timer fires, since activity
// moves the idle deadline on.
import type { RevisionRef } from '../model/snapshot.ts'
import type { Reason } from './reply.ts'

/** What the deadline depends on, as `performance.now()` milliseconds (0: not yet). */
export interface TimedState {
  readonly startedAt: number
  /** When it started waiting for a pod; 0 if it never waited. */
  readonly queuedAt: number
  /** Holds a pod now. */
  readonly onPod: boolean
  /** The pod has started answering. */
  readonly responded: boolean
  /** A long-lived stream (gRPC, server-sent events, an upgraded connection): no total timeout. */
  readonly streaming: boolean
  readonly lastActivity: number
}

export interface Limits {
  readonly coldStartBudgetMs: number
  /** Idle limit of a stream whose revision sets no idleTimeoutSeconds; 0: none. */
  readonly streamIdleTimeoutMs: number
}

export type TimeoutReason = Extract<Reason, 'request-timeout' | 'response-start-timeout' | 'cold-start-timeout' | 'idle-timeout'>

export interface Deadline {
  at: number
  reason: TimeoutReason
}

/** The earliest limit that applies in this state, never before `now + 1`; undefined if none does. */
export function nextDeadline(s: TimedState, rev: RevisionRef, limits: Limits, now: number): Deadline | undefined {
  let at = Infinity
  let reason: TimeoutReason = 'request-timeout'
  if (rev.timeoutSeconds !== undefined && !s.streaming) at = s.startedAt + rev.timeoutSeconds * 1000
  if (!s.responded && rev.responseStartTimeoutSeconds !== undefined) {
    const t = s.startedAt + rev.responseStartTimeoutSeconds * 1000
    if (t < at) (at = t), (reason = 'response-start-timeout')
  }
  if (!s.onPod && !s.responded && s.queuedAt > 0) {
    const t = s.queuedAt + limits.coldStartBudgetMs
    if (t < at) (at = t), (reason = 'cold-start-timeout')
  }
  const idleMs = idleLimitMs(s, rev, limits)
  if (idleMs !== undefined) {
    const t = (s.lastActivity || s.startedAt) + idleMs
    if (t < at) (at = t), (reason = 'idle-timeout')
  }
  return at === Infinity ? undefined : { at: Math.max(at, now + 1), reason }
}

/** The idle limit that applies (ms), undefined if none: only then does lastActivity matter. */
export function idleLimitMs(s: TimedState, rev: RevisionRef, limits: Limits): number | undefined {
  if (rev.idleTimeoutSeconds !== undefined) return rev.idleTimeoutSeconds * 1000
  return s.streaming && limits.streamIdleTimeoutMs > 0 ? limits.streamIdleTimeoutMs : undefined
}

/** What an operator reads when a deadline fires: which limit, of which revision, from where. */
export function timeoutDetail(reason: TimeoutReason, rev: RevisionRef, limits: Limits): string {
  switch (reason) {
    case 'cold-start-timeout':
      return `no pod of revision ${rev.key} became ready within the cold start budget (${limits.coldStartBudgetMs / 1000}s)`
    case 'request-timeout':
      return `revision ${rev.key} did not finish within its timeoutSeconds (${rev.timeoutSeconds}s)`
    case 'response-start-timeout':
      return `revision ${rev.key} did not start responding within its responseStartTimeoutSeconds (${rev.responseStartTimeoutSeconds}s)`
    case 'idle-timeout':
      return rev.idleTimeoutSeconds !== undefined
        ? `revision ${rev.key} sent nothing for its idleTimeoutSeconds (${rev.idleTimeoutSeconds}s)`
        : `the stream to revision ${rev.key} was silent for --stream-idle-timeout (${limits.streamIdleTimeoutMs / 1000}s)`
  }
}
