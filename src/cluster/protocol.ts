// Messages between the primary and its worker processes (node:cluster IPC). The primary owns the one
// source of truth (sources, store, compile, status, local runner, autoscaler link); workers serve
// traffic from a replica of the store and borrow pod slots for revisions with a per-pod limit.
import type { KubeObject, Kind } from '../model/k8s.ts'
import type { StatEntry } from '../autoscaler/stat-encoding.ts'
import type { EnqueueResult } from '../activator/throttler.ts'
import type { SettingOverrides } from '../settings/live-settings.ts'
import type { MetricObjectWithValues, MetricValue } from 'prom-client'

export type ToWorker =
  /** The settings ConfigMaps' values now, over the worker's own flags and environment (src/settings/). */
  | { t: 'settings'; overrides: SettingOverrides }
  /** Store replication: objects written and removed since the last message, in order. */
  | { t: 'store'; upsert: KubeObject[]; remove: Array<[Kind, string]> }
  /** A slot for request `id` on pod `address` (or a refusal). */
  | { t: 'grant'; id: number; key: string; address: string; waited: boolean }
  | { t: 'refuse'; id: number; reason: Exclude<EnqueueResult, 'queued'> }
  /** Stop accepting, finish in-flight work, then exit. */
  | { t: 'drain'; finishMs: number }
  /** Draining has begun: readiness already fails; close HTTP/1.1 connections after each response. */
  | { t: 'draining' }
  /** Send your metrics (for the primary's /metrics). */
  | { t: 'metrics'; id: number }
  /** Revision `ns/name` cannot serve now (why, and what caused it), or can again (no detail): see BackendTable.setFault. */
  | { t: 'no-runtime'; revision: string; reason: 'no-runtime' | 'revision-failed'; detail?: string; cause?: string }

export type ToPrimary =
  | { t: 'listening' }
  /** Ask for a pod slot of backend `key` for request `id` (FIFO at the primary). */
  | { t: 'acquire'; id: number; key: string; bytes: number }
  | { t: 'cancel'; id: number }
  | { t: 'release'; key: string; address: string }
  | { t: 'failed'; key: string; address: string; backoffMs: number }
  /** The worker's demand: each tick's report, and pokes as they happen. */
  | { t: 'stats'; entries: StatEntry[]; poke: boolean; inFlight?: Record<string, number> }
  | { t: 'cold-start'; namespace: string; name: string }
  | { t: 'metrics'; id: number; json: MetricObjectWithValues<MetricValue<string>>[] }

export function isMessage(m: unknown): m is { t: string } {
  return typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string'
}
