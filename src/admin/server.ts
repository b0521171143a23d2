// The admin listener: health, readiness, Prometheus metrics and the routing table. It lives on its
// own port so none of it is reachable through the public or cluster-local listeners.
import type { Holds } from '../activator/throttler.ts'
import Fastify from 'fastify'
import { AggregatorRegistry } from 'prom-client'
import type { MetricObjectWithValues, MetricValue } from 'prom-client'
import type { FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import type { GatewayMetrics } from '../metrics.ts'
import type { BackendSpec, Snapshot } from '../model/snapshot.ts'
import type { Throttler } from '../activator/throttler.ts'
import type { ColdStartView } from './cold-starts.ts'
import { bindRest } from '../dataplane/listen-addresses.ts'
import type { BindAddress, BoundAddresses } from '../dataplane/listen-addresses.ts'

/** What /debug/routes reads of the serving side: the snapshot and, where this process serves, its throttlers. */
export interface RoutesView {
  readonly snapshot: Snapshot
  throttlerByKey(key: string): Throttler | undefined
  /** A revision's (`namespace/name`) last cold start, if it had one (admin/cold-starts.ts). */
  lastColdStart?(revisionKey: string): ColdStartView | undefined
  /** Why the revision cannot serve now (its requests are answered 503 at once), if it cannot. */
  fault?(revisionKey: string): { reason: string; detail: string } | undefined
  /** Requests held for pods and the bytes of their bodies, in all and per namespace (QueueBudgets.describe). */
  holds?(): Holds
}

export interface AdminDeps {
  metrics: GatewayMetrics
  routes: RoutesView
  /** Why the gateway is not ready, or undefined when it is. */
  notReadyReason(): string | undefined
  /** Extra state for /debug/routes from sources (watch health, scans...). */
  sources(): Record<string, unknown>
  /**
   * With --workers (the primary, which serves nothing itself): a pod's requests in flight, as the
   * workers last reported them (once a second). Without it, this process's own throttlers tell.
   */
  podInFlight?(address: string): number
}

export interface AdminServer {
  readonly app: FastifyInstance
  readonly port: number
  close(): Promise<void>
}

export async function startAdmin(
  deps: AdminDeps,
  addresses: readonly BindAddress[],
  port: number,
  /** With --workers: the workers' metrics, merged with this process's (counters summed). */
  metricsFrom?: () => Promise<MetricObjectWithValues<MetricValue<string>>[][]>,
): Promise<AdminServer> {
  const app = Fastify({ logger: false })
  app.get('/healthz', async (_req, reply) => reply.type('text/plain').send('ok\n'))
  app.get('/readyz', async (_req, reply) => {
    const why = deps.notReadyReason()
    if (why) return reply.code(503).header('x-edge-reason', 'not-ready').type('text/plain').send(`not ready: ${why}\n`)
    return reply.type('text/plain').send('ready\n')
  })
  app.get('/metrics', async (_req, reply) => {
    const own = deps.metrics.registry
    if (!metricsFrom) return reply.type(own.contentType).send(await own.metrics())
    const merged = AggregatorRegistry.aggregate([await own.getMetricsAsJSON(), ...(await metricsFrom())])
    return reply.type(own.contentType).send(await merged.metrics())
  })
  app.get('/debug/routes', async (_req, reply) => reply.send(describeRoutes(deps.routes.snapshot, deps.routes, deps.sources(), deps.podInFlight)))
  // Fastify binds the first address; the others hand their connections to its server.
  const [first, ...rest] = addresses
  if (!first) throw new Error('no listen address for the admin port')
  await app.listen({ host: first.host, port, ipv6Only: first.ipv6Only })
  let bound: BoundAddresses
  try {
    bound = await bindRest(app.server, rest, (app.server.address() as AddressInfo).port, {})
  } catch (err) {
    await app.close()
    throw err
  }
  return { app, port: bound.port, close: async () => { await Promise.all([app.close(), bound.close()]) } }
}

/**
 * Why a backend with nothing to send to answers as it does. For a plain Service it explains a 503
 * `no-backend`; for a revision it is its normal state at zero (the request is held, not refused).
 */
function noEndpointsState(b: BackendSpec): string | undefined {
  if (b.kind !== 'pods' || b.endpoints.length > 0) return undefined
  if (b.revision) return `revision ${b.revision.key} has no ready pods (scaled to zero: the first request starts it)`
  return `Service ${b.namespace}/${b.serviceName} has no ready endpoints`
}

/** A revision that cannot serve now: the 503 its requests get at once, and why. */
function failingOf(b: BackendSpec, plane: RoutesView): { reason: string; detail: string } | undefined {
  const f = b.revision ? plane.fault?.(b.revision.key) : undefined
  return f === undefined ? undefined : { reason: f.reason, detail: f.detail }
}

/** The routing table as JSON: host → rule → splits → endpoints, plus problems. Never Secret data. */
export function describeRoutes(snap: Snapshot, plane: RoutesView, sources: Record<string, unknown>, podInFlight?: (address: string) => number): unknown {
  const hosts = [...snap.localHosts.values()]
    .sort((a, b) => (a.host < b.host ? -1 : 1))
    .map((h) => ({
      host: h.host,
      visibility: h.visibility,
      tag: h.tag,
      ingress: h.ingress.key,
      origin: h.ingress.origin,
      generation: h.ingress.generation,
      hash: h.ingress.hash,
      httpOption: h.ingress.httpOption || undefined,
      tls: snap.certificates.get(h.host)?.secret,
      paths: h.paths.map((p) => ({
        prefix: p.prefix || undefined,
        headers: p.headerMatches.length ? Object.fromEntries(p.headerMatches) : undefined,
        rewriteHost: p.rewriteHost,
        setHeaders: p.setHeaders.length ? Object.fromEntries(p.setHeaders.map((s) => [s.name, s.value])) : undefined,
        splits: p.splits.map((s) => {
          const b = s.backend
          const t = plane.throttlerByKey(b.key)
          return {
            percent: s.percent,
            backend: b.key,
            kind: b.kind,
            protocol: b.protocol,
            revision: b.revision?.key,
            containerConcurrency: b.revision?.containerConcurrency,
            external: b.externalHost ? `${b.externalHost}:${b.externalPort}` : undefined,
            problem: b.problem ?? noEndpointsState(b),
            failing: failingOf(b, plane),
            setHeaders: s.setHeaders.length ? Object.fromEntries(s.setHeaders.map((x) => [x.name, x.value])) : undefined,
            queued: t?.queued,
            lastColdStart: b.revision ? plane.lastColdStart?.(b.revision.key) : undefined,
            endpoints: b.endpoints.map((e) => {
              if (podInFlight) return { address: e.address, inFlight: podInFlight(e.address) }
              const slot = t?.pods().find((p) => p.endpoint.address === e.address)
              return { address: e.address, inFlight: slot?.inFlight ?? 0 }
            }),
          }
        }),
      })),
    }))
  return {
    version: snap.version,
    hosts,
    ingresses: snap.ingresses.map((i) => ({ ingress: i.ref.key, origin: i.ref.origin, hosts: i.hosts, conflicts: i.conflicts.length ? i.conflicts : undefined })),
    problems: snap.problems,
    holds: plane.holds?.(),
    sources,
  }
}
