// When a local instance takes requests: the revision's readinessProbe (httpGet or tcpSocket) as the
// kubelet would run it, else a TCP connect, as Knative's default probe is. Always against the port
// requests will use (127.0.0.1), probed from 5 ms and backing off to 200 ms, so a fast app is used
// within milliseconds of listening.
import http from 'node:http'
import net from 'node:net'

export interface ReadinessProbe {
  httpGet?: { path?: string; port?: number | string; httpHeaders?: Array<{ name?: string; value?: string }> }
  tcpSocket?: { port?: number | string }
  exec?: unknown
}

export interface WaitOptions {
  timeoutMs: number
  /** Stop waiting (the instance exited, or is no longer wanted). */
  gone(): boolean
  /**
   * How long a TCP connection must stay open to count. A port forwarder in front of a container
   * (docker-proxy, rootless podman's) accepts at once and hangs up when the app does not answer
   * behind it; 0 for a process that listens itself.
   */
  settleMs: number
}

/** Resolves true once the probe passes; false when `gone()` or the timeout comes first. */
export async function waitReady(port: number, probe: ReadinessProbe | undefined, opts: WaitOptions): Promise<boolean> {
  const deadline = Date.now() + opts.timeoutMs
  const once = probe?.httpGet ? () => httpProbe(port, probe.httpGet!) : () => tcpProbe(port, opts.settleMs)
  let delay = 5
  while (Date.now() < deadline && !opts.gone()) {
    if (await once()) return !opts.gone()
    await new Promise((r) => setTimeout(r, delay))
    delay = Math.min(delay * 1.5, 200)
  }
  return false
}

function tcpProbe(port: number, settleMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    // The first outcome wins: a hang-up within the settle time resolves false before the timer.
    const done = (ok: boolean): void => {
      sock.destroy()
      resolve(ok)
    }
    sock.once('error', () => done(false))
    sock.once('close', () => done(false))
    sock.once('end', () => done(false))
    sock.once('connect', () => {
      if (settleMs <= 0) return done(true)
      setTimeout(() => done(true), settleMs).unref()
    })
  })
}

/** A 2xx or 3xx within a second passes, as for the kubelet. */
function httpProbe(port: number, get: NonNullable<ReadinessProbe['httpGet']>): Promise<boolean> {
  const headers: Record<string, string> = { 'user-agent': 'kube-probe/edge-gateway' }
  for (const h of get.httpHeaders ?? []) if (h.name) headers[h.name] = h.value ?? ''
  let path = get.path ?? '/'
  if (!path.startsWith('/')) path = `/${path}`
  return new Promise<boolean>((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers, agent: false, timeout: 1000 }, (res) => {
      res.resume()
      const status = res.statusCode ?? 0
      resolve(status >= 200 && status < 400)
    })
    req.once('timeout', () => req.destroy())
    req.once('error', () => resolve(false))
  })
}
