// The activator's readiness probe, for pods Kubernetes has not marked Ready yet: queue-proxy answers
// `GET /healthz` with `K-Network-Probe: queue` (and an activator User-Agent) with 200 and the body
// `queue` as soon as the app is up, which is often well before the kubelet's next probe flips the
// EndpointSlice. A pod that passes is used at once, so held requests do not wait for Kubernetes.
// Retries back off exponentially from a few milliseconds; there is no polling loop with a fixed sleep.
import http from 'node:http'
import type { BackendSpec, Endpoint } from '../model/snapshot.ts'

export interface PodProberOptions {
  /** A probed pod became usable, or stopped being a candidate: re-read healthy(key). */
  onChange(backendKey: string): void
  /** One probe; the default is queue-proxy's readiness probe over HTTP/1.1. */
  probe?: (ep: Endpoint) => Promise<boolean>
  firstDelayMs?: number
  maxDelayMs?: number
}

interface Target {
  endpoint: Endpoint
  healthy: boolean
  timer: NodeJS.Timeout | undefined
  delay: number
  stopped: boolean
}

const PROBE_HEADERS = { 'k-network-probe': 'queue', 'user-agent': 'Knative-Activator-Probe' }

/** queue-proxy's answer to the activator: 200 with the exact body `queue`. */
export function probeQueueProxy(ep: Endpoint, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: ep.host, port: ep.port, path: '/healthz', headers: PROBE_HEADERS, timeout: timeoutMs, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        if (body.length < 64) body += c
      })
      res.on('end', () => resolve(res.statusCode === 200 && body === 'queue'))
      res.on('error', () => resolve(false))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(false))
  })
}

export class PodProber {
  private readonly opts: PodProberOptions
  private readonly probe: (ep: Endpoint) => Promise<boolean>
  /** backend key → address → target */
  private readonly targets = new Map<string, Map<string, Target>>()

  constructor(opts: PodProberOptions) {
    this.opts = opts
    this.probe = opts.probe ?? ((ep) => probeQueueProxy(ep))
  }

  /** The not-ready candidates of a backend now; probing starts for new ones and stops for the rest. */
  sync(backendKey: string, candidates: readonly Endpoint[] | undefined): void {
    const have = this.targets.get(backendKey)
    if (!candidates || candidates.length === 0) {
      if (have) this.drop(backendKey, have)
      return
    }
    const next = new Map<string, Target>()
    for (const ep of candidates) {
      const t = have?.get(ep.address) ?? this.start(backendKey, ep)
      next.set(ep.address, t)
    }
    let lostHealthy = false
    for (const [addr, t] of have ?? []) {
      if (next.has(addr)) continue
      this.stop(t)
      if (t.healthy) lostHealthy = true
    }
    this.targets.set(backendKey, next)
    if (lostHealthy) this.opts.onChange(backendKey)
  }

  /** Candidates that passed the probe: usable now. */
  healthy(backendKey: string): Endpoint[] {
    const m = this.targets.get(backendKey)
    if (!m) return []
    const out: Endpoint[] = []
    for (const t of m.values()) if (t.healthy) out.push(t.endpoint)
    return out
  }

  close(): void {
    for (const [k, m] of this.targets) this.drop(k, m, false)
  }

  private drop(backendKey: string, m: Map<string, Target>, notify = true): void {
    let lostHealthy = false
    for (const t of m.values()) {
      this.stop(t)
      if (t.healthy) lostHealthy = true
    }
    this.targets.delete(backendKey)
    if (lostHealthy && notify) this.opts.onChange(backendKey)
  }

  private start(backendKey: string, endpoint: Endpoint): Target {
    const t: Target = { endpoint, healthy: false, timer: undefined, delay: this.opts.firstDelayMs ?? 5, stopped: false }
    void this.run(backendKey, t)
    return t
  }

  private stop(t: Target): void {
    t.stopped = true
    if (t.timer) clearTimeout(t.timer)
  }

  private async run(backendKey: string, t: Target): Promise<void> {
    if (t.stopped) return
    const ok = await this.probe(t.endpoint)
    if (t.stopped) return
    if (ok) {
      t.healthy = true
      this.opts.onChange(backendKey)
      return
    }
    t.timer = setTimeout(() => void this.run(backendKey, t), t.delay)
    t.timer.unref()
    t.delay = Math.min(t.delay * 1.5, this.opts.maxDelayMs ?? 1000)
  }
}

/**
 * The pods a backend's throttler may use: the Ready ones, plus not-yet-Ready revision pods that
 * already passed the probe. One per place that grants pods: a data plane, or (with --workers) the
 * primary's broker for the revisions it holds.
 */
export class ProbedEndpoints {
  private readonly prober: PodProber

  constructor(opts: PodProberOptions) {
    this.prober = new PodProber(opts)
  }

  /** `b`'s usable pods now; probing starts for its new not-ready pods and stops for the rest. */
  of(b: BackendSpec): readonly Endpoint[] {
    this.prober.sync(b.key, b.notReady)
    const early = this.prober.healthy(b.key)
    return early.length === 0 ? b.endpoints : [...b.endpoints, ...early]
  }

  /** The backend left the configuration: stop probing its pods. */
  forget(backendKey: string): void {
    this.prober.sync(backendKey, undefined)
  }

  close(): void {
    this.prober.close()
  }
}
