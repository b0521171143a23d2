// Activator test fixtures on top of ./gateway.ts: a KIngress per revision, revision pods made of
// several local backends, backends that hold requests until told, and the gateway's queue state as
// seen from its admin port.
import fs from 'node:fs'
import net from 'node:net'
import { request as undiciRequest } from 'undici'
import type { Gateway } from '../../src/gateway.ts'
import { endpointSlice, kingress, startBackend, waitFor, writeManifest } from './gateway.ts'
import type { Backend, BackendHandler } from './gateway.ts'

export const NS = 'default'

/** A KIngress for `host` with one split to `rev`, as the Route reconciler writes it. */
export function revisionIngress(name: string, host: string, rev: string, ns = NS): unknown {
  return kingress(
    name,
    {
      rules: [
        {
          hosts: [host],
          visibility: 'ExternalIP',
          http: {
            paths: [
              {
                splits: [
                  {
                    serviceNamespace: ns,
                    serviceName: rev,
                    servicePort: 80,
                    percent: 100,
                    appendHeaders: { 'Knative-Serving-Revision': rev, 'Knative-Serving-Namespace': ns },
                  },
                ],
              },
            ],
          },
        },
      ],
    },
    { ns },
  )
}

/** The `<rev>-private` EndpointSlice with one ready address per port (all on 127.0.0.1). */
export function podsSlice(rev: string, ports: number[], ns = NS): unknown[] {
  // One slice per port: a slice has a single port list, and each local "pod" has its own port.
  return ports.map((port, i) => endpointSlice(`${rev}-private`, [{ name: 'http', port }], [{ ip: '127.0.0.1' }], ns, `${rev}-private-${i}`))
}

/** A port with nothing listening on it: connecting is refused. */
export async function closedPort(): Promise<number> {
  // Below the kernel's ephemeral range: tests start servers on such ports later (a pod that begins
  // to listen), and a port from that range can meanwhile become the source port of any outgoing
  // connection of the tests running in parallel (EADDRINUSE). Nothing here binds below it by
  // itself; a random pick, checked free, avoids the other test files.
  const low = ephemeralLow()
  for (;;) {
    const port = 10_000 + Math.floor(Math.random() * (low - 10_000))
    const srv = net.createServer()
    const ok = await new Promise<boolean>((r) => {
      srv.once('error', () => r(false))
      srv.listen(port, '127.0.0.1', () => r(true))
    })
    if (!ok) continue
    await new Promise<void>((r) => srv.close(() => r()))
    return port
  }
}

function ephemeralLow(): number {
  try {
    const low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    if (Number.isInteger(low) && low > 11_000) return low
  } catch {
    // not Linux: the IANA range starts at 49152
  }
  return 32_768
}

/** Answers `200 <backend name> <url>` after `ms`. */
export function delayed(ms: number): BackendHandler {
  return (req, res, b) => {
    const timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': b.name })
      res.end(`${b.name} ${req.url}`)
    }, ms)
    res.once('close', () => clearTimeout(timer))
  }
}

/** A backend whose requests wait until `open()`; after that it answers at once. */
export interface GatedBackend extends Backend {
  open(): void
}

export async function startGatedBackend(name: string): Promise<GatedBackend> {
  let isOpen = false
  const held: Array<() => void> = []
  const b = (await startBackend(name, (req, res, backend) => {
    const answer = (): void => {
      if (res.destroyed) return
      res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': backend.name })
      res.end(`${backend.name} ${req.url}`)
    }
    if (isOpen) answer()
    else held.push(answer)
  })) as GatedBackend
  b.open = () => {
    isOpen = true
    for (const a of held.splice(0)) a()
  }
  return b
}

/** A backend that reads the request and never answers (until closed). */
export async function startSilentBackend(name: string): Promise<Backend> {
  return startBackend(name, (req) => {
    req.resume()
  })
}

/** Sends the status line and headers and one chunk at once, then nothing more. */
export async function startStallingBackend(name: string): Promise<Backend> {
  return startBackend(name, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first chunk\n')
  })
}

interface SplitState {
  revision?: string
  queued?: number
  endpoints: Array<{ address: string; inFlight: number }>
}

/** The gateway's view of a revision from `/debug/routes` on the admin port. */
export async function revisionState(gw: Gateway, rev: string, ns = NS): Promise<SplitState | undefined> {
  const res = await undiciRequest(`http://127.0.0.1:${gw.ports.admin}/debug/routes`)
  const body = (await res.body.json()) as { hosts: Array<{ paths: Array<{ splits: SplitState[] }> }> }
  for (const h of body.hosts) for (const p of h.paths) for (const s of p.splits) if (s.revision === `${ns}/${rev}`) return s
  return undefined
}

export async function queuedCount(gw: Gateway, rev: string, ns = NS): Promise<number> {
  return (await revisionState(gw, rev, ns))?.queued ?? 0
}

/** The `edge_revision_requests_queued` gauge for a revision, from `/metrics` (0 when absent). */
export async function queuedMetric(gw: Gateway, rev: string, ns = NS): Promise<number> {
  const res = await undiciRequest(`http://127.0.0.1:${gw.ports.admin}/metrics`)
  const text = await res.body.text()
  const line = text.split('\n').find((l) => l.startsWith('edge_revision_requests_queued{') && l.includes(`namespace="${ns}"`) && l.includes(`revision="${rev}"`))
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0
}

export async function waitForQueued(gw: Gateway, rev: string, n: number, timeoutMs = 10_000, ns = NS): Promise<void> {
  let last = -1
  try {
    await waitFor(`${n} request(s) queued for ${rev}`, async () => (last = await queuedCount(gw, rev, ns)) === n, timeoutMs)
  } catch {
    throw new Error(`timed out waiting for ${n} request(s) queued for ${rev}; last seen ${last}`)
  }
}

/** Waits until the gateway routes `rev` to exactly `n` ready endpoints. */
export async function waitForEndpoints(gw: Gateway, rev: string, n: number, timeoutMs = 10_000): Promise<void> {
  let last = -1
  try {
    await waitFor(`${n} endpoint(s) for ${rev}`, async () => (last = (await revisionState(gw, rev))?.endpoints.length ?? -1) === n, timeoutMs)
  } catch {
    throw new Error(`timed out waiting for ${n} ready endpoint(s) for ${rev}; last seen ${last}`)
  }
}

/** Backend request count, with a clear failure message. */
export async function waitForSeen(b: Backend, n: number, timeoutMs = 10_000): Promise<void> {
  try {
    await waitFor(`${b.name} to see ${n} request(s)`, () => b.seen.length >= n, timeoutMs)
  } catch {
    throw new Error(`timed out waiting for backend ${b.name} to see ${n} request(s); it saw ${b.seen.length}`)
  }
}

/** `p`, or a clear failure once `ms` pass (a bounded wait for a response that may never come). */
export async function within<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([p, limit])
  } finally {
    clearTimeout(timer)
  }
}
