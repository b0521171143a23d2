// The status prober: is the ingress's current spec (its K-Network-Hash) served by every gateway
// replica? Knative's pkg/status prober, reduced to what the gateway needs (kingress-contract.md §2.7):
// one work item per replica × host, each retried with exponential backoff until the replica answers
// the hash probe with the expected hash. A new hash for an ingress cancels the old hash's probes;
// a replica that leaves cancels its probes. An ingress Ready for a hash stays Ready for it.
import http from 'node:http'
import type { Logger } from 'pino'
import { HEADER_NETWORK_HASH, HEADER_NETWORK_PROBE } from '../model/k8s.ts'
import { backoffDelay, sleep } from './backoff.ts'
import type { Replica } from './replicas.ts'

export interface ProberOptions {
  log: Logger
  /** Called (asynchronously) when an ingress becomes ready for a hash. */
  onReady: (key: string, hash: string) => void
  /** Per-request timeout (Knative: 1 s). */
  timeoutMs?: number
  initialBackoffMs?: number
  maxBackoffMs?: number
  /** Probes in flight at once (Knative: 15 workers). */
  concurrency?: number
}

export type ProbeState =
  | { ready: true }
  | { ready: false; reason: 'no-replicas' | 'probing'; pending: number; total: number }

type ProbeVerdict = 'ok' | 'retry'

interface Target {
  readonly replica: Replica
  readonly host: string
  ok: boolean
  attempts: number
  last: string
  readonly abort: AbortController
}

interface Entry {
  readonly key: string
  readonly hash: string
  readonly hosts: readonly string[]
  readonly targets: Map<string, Target>
  ready: boolean
  readonly abort: AbortController
}

/** Hosts a probe can name: wildcard and catch-all rules have no single Host to send. */
export function probeableHosts(hosts: readonly string[]): string[] {
  return [...new Set(hosts.filter((h) => h !== '' && !h.includes('*')))].sort()
}

export class IngressProber {
  private readonly opts: Required<Omit<ProberOptions, 'log' | 'onReady'>>
  private readonly log: Logger
  private readonly onReady: ProberOptions['onReady']
  private readonly entries = new Map<string, Entry>()
  private replicas: readonly Replica[] = []
  private inFlight = 0
  private readonly waiting: Array<() => void> = []
  private stopped = false
  /** Probe requests sent (for /debug and tests). */
  requests = 0

  constructor(opts: ProberOptions) {
    this.log = opts.log
    this.onReady = opts.onReady
    this.opts = {
      timeoutMs: opts.timeoutMs ?? 1000,
      initialBackoffMs: opts.initialBackoffMs ?? 50,
      maxBackoffMs: opts.maxBackoffMs ?? 5000,
      concurrency: opts.concurrency ?? 15,
    }
  }

  /** The replicas to probe. New replicas join unfinished probes; gone ones are dropped from them. */
  setReplicas(replicas: readonly Replica[]): void {
    const same = replicas.length === this.replicas.length && replicas.every((r, i) => r.key === this.replicas[i]?.key)
    if (same || this.stopped) return
    this.replicas = replicas
    for (const e of this.entries.values()) {
      if (e.ready) continue
      const want = new Set<string>()
      for (const r of replicas) for (const h of e.hosts) want.add(targetKey(r, h))
      for (const [k, t] of e.targets) {
        if (want.has(k)) continue
        t.abort.abort()
        e.targets.delete(k)
      }
      for (const r of replicas) for (const h of e.hosts) this.addTarget(e, r, h)
      this.evaluate(e)
    }
  }

  /**
   * Where probing of `hash` for ingress `key` stands; starts it if this hash is new for the key
   * (and cancels the probes of the key's previous hash), as Knative's IsReady does.
   */
  check(key: string, hash: string, hosts: readonly string[]): ProbeState {
    let e = this.entries.get(key)
    if (!e || e.hash !== hash) {
      e?.abort.abort()
      e = { key, hash, hosts: probeableHosts(hosts), targets: new Map(), ready: false, abort: new AbortController() }
      this.entries.set(key, e)
      if (!this.stopped) for (const r of this.replicas) for (const h of e.hosts) this.addTarget(e, r, h)
      // Nothing to probe (no host a probe can name): there is nothing to wait for either.
      if (e.hosts.length === 0) e.ready = true
    }
    if (e.ready) return { ready: true }
    const total = e.targets.size
    const pending = [...e.targets.values()].filter((t) => !t.ok).length
    return { ready: false, reason: total === 0 ? 'no-replicas' : 'probing', pending, total }
  }

  /** Forget ingresses that are gone (cancelling their probes). */
  retain(keys: ReadonlySet<string>): void {
    for (const [k, e] of this.entries) {
      if (keys.has(k)) continue
      e.abort.abort()
      this.entries.delete(k)
    }
  }

  stop(): void {
    this.stopped = true
    for (const e of this.entries.values()) e.abort.abort()
    this.entries.clear()
    for (const w of this.waiting.splice(0)) w()
  }

  describe(): { replicas: string[]; requests: number; inFlight: number; ingresses: Array<{ key: string; hash: string; ready: boolean; targets: Array<{ replica: string; host: string; ok: boolean; attempts: number; last: string }> }> } {
    return {
      replicas: this.replicas.map((r) => r.key),
      requests: this.requests,
      inFlight: this.inFlight,
      ingresses: [...this.entries.values()].map((e) => ({
        key: e.key,
        hash: e.hash,
        ready: e.ready,
        targets: [...e.targets.values()].map((t) => ({ replica: t.replica.key, host: t.host, ok: t.ok, attempts: t.attempts, last: t.last })),
      })),
    }
  }

  private addTarget(e: Entry, replica: Replica, host: string): void {
    const k = targetKey(replica, host)
    if (e.targets.has(k)) return
    const abort = new AbortController()
    // One abort of the entry (new hash, ingress gone, stop) cancels every target of it.
    e.abort.signal.addEventListener('abort', () => abort.abort(), { once: true })
    const t: Target = { replica, host, ok: false, attempts: 0, last: '', abort }
    e.targets.set(k, t)
    void this.run(e, t)
  }

  private async run(e: Entry, t: Target): Promise<void> {
    const signal = t.abort.signal
    while (!signal.aborted) {
      await this.acquire()
      let verdict: ProbeVerdict = 'retry'
      try {
        if (signal.aborted) return
        t.attempts++
        this.requests++
        verdict = await this.probeOnce(t, e.hash, signal)
      } finally {
        this.release()
      }
      if (signal.aborted) return
      if (verdict === 'ok') {
        t.ok = true
        this.evaluate(e)
        return
      }
      await sleep(backoffDelay(t.attempts, this.opts.initialBackoffMs, this.opts.maxBackoffMs), signal)
    }
  }

  private evaluate(e: Entry): void {
    if (e.ready || e.targets.size === 0) return
    for (const t of e.targets.values()) if (!t.ok) return
    e.ready = true
    this.log.debug({ ingress: e.key, hash: e.hash, targets: e.targets.size }, 'every gateway replica serves the ingress')
    setImmediate(() => {
      if (this.entries.get(e.key) === e) this.onReady(e.key, e.hash)
    })
  }

  /** One probe. Verdicts follow Knative's prober: only 404, 503, a wrong hash and I/O errors are retried. */
  private probeOnce(t: Target, hash: string, signal: AbortSignal): Promise<ProbeVerdict> {
    return new Promise((resolve) => {
      const req = http.request({
        host: t.replica.ip,
        port: t.replica.port,
        method: 'GET',
        path: '/healthz',
        agent: false, // Knative probes with keep-alives off: each probe sees the replica's current state.
        timeout: this.opts.timeoutMs,
        signal,
        headers: {
          host: t.host,
          'user-agent': 'Knative-Ingress-Probe',
          [HEADER_NETWORK_PROBE]: 'probe',
          [HEADER_NETWORK_HASH]: 'override',
        },
      })
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.opts.timeoutMs} ms`)))
      req.on('error', (err) => {
        t.last = `error: ${err.message}`
        resolve('retry')
      })
      req.on('response', (res) => {
        res.resume()
        const status = res.statusCode ?? 0
        const got = res.headers[HEADER_NETWORK_HASH.toLowerCase()]
        t.last = `${status}${got === undefined ? '' : ` hash=${String(got).slice(0, 12)}`}`
        if (status === 200 && got === hash) return resolve('ok')
        if (status === 200 && got === undefined) {
          // Not our gateway answering (or an old one): Knative gives up on such a target and calls it ready.
          this.log.warn({ replica: t.replica.key, host: t.host }, 'probe answered 200 without K-Network-Hash; not probing this target further')
          return resolve('ok')
        }
        if (status === 200 || status === 404 || status === 503) return resolve('retry')
        // Knative: "better to say that an Ingress is Ready before it actually is" than to wait forever.
        this.log.warn({ replica: t.replica.key, host: t.host, status }, 'unexpected probe status; not probing this target further')
        resolve('ok')
      })
      req.end()
    })
  }

  private acquire(): Promise<void> {
    if (this.inFlight < this.opts.concurrency || this.stopped) {
      this.inFlight++
      return Promise.resolve()
    }
    return new Promise((resolve) => this.waiting.push(() => {
      this.inFlight++
      resolve()
    }))
  }

  private release(): void {
    this.inFlight--
    const next = this.waiting.shift()
    if (next) next()
  }
}

function targetKey(r: Replica, host: string): string {
  return `${r.key} ${host}`
}
