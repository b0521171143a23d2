// --workers N: a worker process. It serves the public, cluster-local and TLS listeners from a replica
// of the primary's store, borrows pod slots from the primary for revisions with a per-pod limit, and
// reports its demand to the primary, which sums the workers' reports.
import type { Logger } from 'pino'
import type { GatewayConfig } from '../config.ts'
import { startGateway } from '../gateway.ts'
import { RemoteSlots } from './remote-throttler.ts'
import { applyReplica } from './replication.ts'
import { isMessage } from './protocol.ts'
import type { ToPrimary, ToWorker } from './protocol.ts'

export async function runWorker(config: GatewayConfig, log: Logger): Promise<void> {
  const toPrimary = (m: ToPrimary): void => {
    if (process.connected) process.send!(m)
  }
  const slots = new RemoteSlots(toPrimary)
  const early: Array<Extract<ToWorker, { t: 'store' }>> = []
  let apply: ((m: Extract<ToWorker, { t: 'store' }>) => void) | undefined
  let onMessage: (m: ToWorker) => void = (m) => {
    // The full store arrives before the gateway is up: keep it until there is a store to apply it to.
    if (m.t === 'store') early.push(m)
  }
  process.on('message', (m: unknown) => {
    if (isMessage(m)) onMessage(m as ToWorker)
  })
  // The primary coordinates shutdown: a signal reaching the whole process group (Ctrl-C) must not
  // make workers drop their connections before the drain.
  process.on('SIGINT', () => {})
  process.on('SIGTERM', () => {})
  process.on('disconnect', () => process.exit(0))

  const gw = await startGateway(config, {
    log: log.child({ worker: process.env.NODE_UNIQUE_ID }),
    role: 'worker',
    worker: {
      slots,
      stats: {
        send: (entries, poke) => {
          toPrimary({ t: 'stats', entries, poke: poke === true, inFlight: poke ? undefined : inFlightByPod() })
          return true
        },
      },
      coldStart: (rev) => toPrimary({ t: 'cold-start', namespace: rev.namespace, name: rev.name }),
    },
  })
  function inFlightByPod(): Record<string, number> {
    const out: Record<string, number> = {}
    for (const { throttler } of gw.plane.backends.entries()) for (const p of throttler.busy()) out[p.endpoint.address] = (out[p.endpoint.address] ?? 0) + p.inFlight
    return out
  }
  apply = (m) => applyReplica(gw.store, m)
  for (const m of early.splice(0)) apply(m)
  gw.recompile()
  onMessage = (m) => {
    switch (m.t) {
      case 'store':
        return apply!(m)
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
