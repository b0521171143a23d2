// --workers N: a worker process. It serves the public, cluster-local and TLS listeners from a replica
// of the primary's store, borrows pod slots from the primary for revisions with a per-pod limit, and
// reports its demand to the primary, which sums the workers' reports.
import type { Logger } from 'pino'
import type { GatewayConfig } from '../config.ts'
import { drainListeners } from '../gateway.ts'
import { GatewayMetrics } from '../metrics.ts'
import { StatReporter } from '../autoscaler/reporter.ts'
import type { StatSink } from '../autoscaler/reporter.ts'
import type { RevisionRef } from '../model/snapshot.ts'
import type { DataPlane } from '../dataplane/data-plane.ts'
import type { ObjectStore } from '../sources/store.ts'
import { configPipeline, dataPlane, revisionInSnapshot, revisionRows, startListeners, startTracing, upstreamTls, withModeDefaults } from '../compose/parts.ts'
import { brokered } from './slot-broker.ts'
import { RemoteSlots } from './remote-throttler.ts'
import { applyReplica } from './replication.ts'
import { isMessage } from './protocol.ts'
import { LiveSettings } from '../settings/live-settings.ts'
import type { ToPrimary, ToWorker } from './protocol.ts'
import { followLogLevel } from '../cli/logger.ts'

export async function runWorker(config: GatewayConfig, log: Logger): Promise<void> {
  const toPrimary = (m: ToPrimary): void => {
    if (process.connected) process.send!(m)
  }
  const slots = new RemoteSlots(toPrimary)
  // The primary's settings ConfigMaps over this worker's flags and environment (the primary's own).
  const settings = new LiveSettings(withModeDefaults(config))
  followLogLevel(settings, log)
  type Early = Extract<ToWorker, { t: 'store' | 'no-runtime' }>
  const early: Early[] = []
  let onMessage: (m: ToWorker) => void = (m) => {
    // Settings apply at once: the parts read them as they start.
    if (m.t === 'settings') settings.override(m.overrides)
    // The full store (and what the local runner cannot run) arrives before the gateway is up: keep
    // it until there is a store and a data plane to apply it to.
    if (m.t === 'store' || m.t === 'no-runtime') early.push(m)
  }
  process.on('message', (m: unknown) => {
    if (isMessage(m)) onMessage(m as ToWorker)
  })
  // The primary coordinates shutdown: a signal reaching the whole process group (Ctrl-C) must not
  // make workers drop their connections before the drain.
  process.on('SIGINT', () => {})
  process.on('SIGTERM', () => {})
  process.on('disconnect', () => process.exit(0))

  const gw = await composeWorker(settings, log.child({ worker: process.env.NODE_UNIQUE_ID }), {
    slots,
    stats: {
      send: (entries, poke) => {
        toPrimary({ t: 'stats', entries, poke: poke === true, inFlight: poke ? undefined : inFlightByPod() })
        return true
      },
    },
    coldStart: (rev) => toPrimary({ t: 'cold-start', namespace: rev.namespace, name: rev.name }),
  })
  function inFlightByPod(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const { throttler } of gw.plane.backends.entries()) for (const p of throttler.busy()) out[p.endpoint.address] = (out[p.endpoint.address] ?? 0) + p.inFlight
    return out
  }
  const apply = (m: Early): void => (m.t === 'store' ? applyReplica(gw.store, m) : gw.plane.backends.setFault(m.revision, m.reason, m.detail, m.cause))
  for (const m of early.splice(0)) apply(m)
  gw.recompile()
  onMessage = (m) => {
    switch (m.t) {
      case 'settings':
        return settings.override(m.overrides)
      case 'store':
      case 'no-runtime':
        return apply(m)
      case 'grant':
      case 'refuse':
        return slots.onMessage(m)
      case 'metrics':
        void gw.plane.metrics.registry.getMetricsAsJSON().then((json) => toPrimary({ t: 'metrics', id: m.id, json }))
        return
      case 'draining':
        gw.startDraining()
        return
      case 'drain':
        gw.startDraining()
        void gw.close(m.finishMs).then(() => process.exit(0))
        return
    }
  }
  toPrimary({ t: 'listening' })
}

/** What a worker process needs from its primary. */
export interface WorkerLink {
  slots: RemoteSlots
  /** Receives this worker's demand reports and pokes. */
  stats: StatSink
  coldStart(rev: RevisionRef): void
}

interface WorkerGateway {
  readonly store: ObjectStore
  readonly plane: DataPlane
  recompile(): void
  startDraining(): void
  close(finishMs: number): Promise<void>
}

/**
 * A worker: the data plane and the listeners, from a replica of the primary's store (no sources
 * here: src/cluster/replication.ts), with pod slots of containerConcurrency > 0 revisions borrowed
 * from the primary's broker and demand reported to the primary. Its metrics are merged into the
 * primary's /metrics; it has no admin port.
 */
async function composeWorker(settings: LiveSettings, log: Logger, link: WorkerLink): Promise<WorkerGateway> {
  const config = settings.current
  let plane: DataPlane | undefined
  const metrics = new GatewayMetrics({
    inFlight: () => plane?.active ?? 0,
    configProblems: () => plane?.snapshot.problems.length ?? 0,
    holds: () => plane?.backends.holds(),
    revisions: () => revisionRows(plane?.backends.entries() ?? []),
    revisionServed: (namespace, name) => revisionInSnapshot(plane?.snapshot, namespace, name),
  })
  const pipeline = configPipeline(settings, log, (ok) => metrics.reloads.inc({ result: ok ? 'ok' : 'error' }))
  const reporter = new StatReporter({ podName: config.podName, log })
  reporter.addSink(link.stats)
  reporter.start()
  const tracing = await startTracing(settings, log, metrics)
  const served = dataPlane(settings, log, metrics, reporter, pipeline.publisher, {
    onColdStart: (rev) => link.coldStart(rev),
    // Each worker holds its share of a rate limit (README: rate limits with --workers).
    processes: Math.max(1, config.workers),
    // Workers share per-pod limits through the primary's broker (see src/cluster/slot-broker.ts).
    remoteThrottler: (b) => (brokered(b) ? link.slots.throttler(b.key, b.revision!.containerConcurrency, b.endpoints) : undefined),
    tracing,
    // Each worker dials pods itself: its own trust bundles, from its replicated store.
    upstreamTls: upstreamTls(config, log, pipeline.store),
  })
  plane = served
  const listeners = await startListeners(settings, log, served, pipeline)
  return {
    store: pipeline.store,
    plane: served,
    recompile: () => pipeline.publisher.full(),
    startDraining: () => {
      served.draining = true
    },
    close: async (finishMs) => {
      served.draining = true
      reporter.stop()
      await drainListeners(listeners, served, finishMs)
      await served.close()
      await tracing?.close()
    },
  }
}
