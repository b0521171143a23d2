// Notices the API server coming back after an outage, so informers do not sit out a backoff that grew
// while it was away (up to 30 s each). While any informer waits because the server could not be
// reached, a cheap GET /version goes out every `probeMs`; the first one that gets an HTTP answer
// wakes every waiting informer. An informer that reaches the server on its own wakes the others too.
import type { KubeConfig } from '@kubernetes/client-node'
import type { ResilientInformer } from './informer.ts'
import { kubeGet } from './kube-list.ts'

export const DEFAULT_PROBE_MS = 1000

export class ServerReturnWatcher {
  private readonly kubeConfig: KubeConfig
  private readonly informers: readonly ResilientInformer[]
  private readonly probeMs: number
  private timer: NodeJS.Timeout | undefined
  private probing = false
  private stopped = false
  /** Probes sent and those that got an answer (for /debug/routes). */
  readonly counts = { probes: 0, answered: 0, wakes: 0 }

  constructor(kubeConfig: KubeConfig, informers: readonly ResilientInformer[], probeMs = DEFAULT_PROBE_MS) {
    this.kubeConfig = kubeConfig
    this.informers = informers
    this.probeMs = probeMs
  }

  /** An informer failed; if it could not reach the server, probe until the server answers. */
  informerRetrying(unreachable: boolean): void {
    if (unreachable) this.arm()
  }

  /** An informer reached the server again: the others need not wait out their backoff. */
  informerRecovered(): void {
    this.wakeAll()
  }

  stop(): void {
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
  }

  private arm(): void {
    if (this.stopped || this.timer || this.probing) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.probe()
    }, this.probeMs)
    this.timer.unref()
  }

  private async probe(): Promise<void> {
    if (this.stopped || !this.informers.some((i) => i.waitingForServer)) return
    this.probing = true
    this.counts.probes++
    let answered = false
    try {
      // Any HTTP answer counts: even a 401/403 means the server is up and the informers may retry.
      await kubeGet(this.kubeConfig, '/version', {}, Math.max(this.probeMs, 1000))
      answered = true
    } catch {
      // Still away.
    } finally {
      this.probing = false
    }
    if (answered) {
      this.counts.answered++
      this.wakeAll()
    } else this.arm()
  }

  private wakeAll(): void {
    if (this.stopped) return
    const waiting = this.informers.filter((i) => i.waitingForServer)
    if (waiting.length === 0) return
    this.counts.wakes++
    for (const i of waiting) i.retryNow()
  }
}
