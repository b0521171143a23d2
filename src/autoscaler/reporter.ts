// Drives the DemandTracker like the activator's stat reporter: one report per interval to every sink,
// and each poke (first request for an idle revision) to every sink at once, from the request path.

import { DemandTracker } from '../activator/demand.ts'
import type { StatEntry } from './stat-encoding.ts'

export interface StatSink {
  /** Returns false when the batch was dropped (e.g. not connected). Must not throw, but may. */
  send(entries: StatEntry[], poke?: boolean): boolean
}

export interface StatReporterOptions {
  podName: string
  /** Knative reports every second. */
  intervalMs?: number
  /**
   * Monotonic milliseconds. Request handlers must call demand.requestIn/requestOut with
   * reporter.now(), so arrivals and ticks share one clock.
   */
  now?: () => number
  sinks?: StatSink[]
  log?: { warn(o: object, msg?: string): void }
}

export class StatReporter {
  readonly demand: DemandTracker
  readonly now: () => number
  private readonly intervalMs: number
  private readonly sinks: StatSink[]
  private readonly log: { warn(o: object, msg?: string): void } | undefined
  private timer: NodeJS.Timeout | undefined

  constructor(opts: StatReporterOptions) {
    this.intervalMs = opts.intervalMs ?? 1000
    this.now = opts.now ?? (() => performance.now())
    this.sinks = [...(opts.sinks ?? [])]
    this.log = opts.log
    this.demand = new DemandTracker({
      podName: opts.podName,
      onPoke: (entry) => this.sendToAll([entry], true),
    })
  }

  addSink(sink: StatSink): void {
    this.sinks.push(sink)
  }

  start(): void {
    if (this.timer !== undefined) return
    this.timer = setInterval(() => this.tick(), this.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** One report now; the interval calls this, tests may too. Returns what was reported. */
  tick(): StatEntry[] {
    const entries = this.demand.report(this.now())
    if (entries.length > 0) this.sendToAll(entries)
    return entries
  }

  /** Sends entries measured elsewhere (a worker's, summed by the primary) to every sink. */
  forward(entries: StatEntry[]): void {
    if (entries.length > 0) this.sendToAll(entries)
  }

  private sendToAll(entries: StatEntry[], poke = false): void {
    for (const sink of this.sinks) {
      // A failing sink must not break the request path (pokes) or the other sinks.
      try {
        sink.send(entries, poke)
      } catch (err) {
        this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'stat sink threw; batch dropped')
      }
    }
  }
}
