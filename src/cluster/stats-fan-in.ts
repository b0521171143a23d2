// Demand from several workers, as one replica's: each worker reports its own window every second;
// the primary sums the latest report of every worker per revision once a tick and sends that to the
// autoscaler and the local runner, so neither sees a worker's share as the whole. Pokes go on at once.
import type { StatEntry } from '../autoscaler/stat-encoding.ts'

export class StatsFanIn {
  private readonly latest = new Map<number, StatEntry[]>()
  private readonly forward: (entries: StatEntry[]) => void
  private timer: NodeJS.Timeout | undefined

  constructor(forward: (entries: StatEntry[]) => void) {
    this.forward = forward
  }

  start(intervalMs = 1000): void {
    this.timer = setInterval(() => this.tick(), intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  receive(workerId: number, entries: StatEntry[], poke: boolean): void {
    if (poke) return this.forward(entries)
    const prev = this.latest.get(workerId)
    // Two reports from one worker within one tick: both windows count.
    this.latest.set(workerId, prev ? [...prev, ...entries] : entries)
  }

  tick(): void {
    if (this.latest.size === 0) return
    const sums = new Map<string, StatEntry>()
    for (const entries of this.latest.values()) {
      for (const e of entries) {
        const k = `${e.namespace}/${e.name}`
        const s = sums.get(k)
        if (!s) sums.set(k, { ...e })
        else {
          s.averageConcurrentRequests += e.averageConcurrentRequests
          s.requestCount += e.requestCount
        }
      }
    }
    this.latest.clear()
    this.forward([...sums.values()])
  }
}
