// `edge-gateway [options]`: options → config → gateway, and the shutdown sequence on signals.
import cluster from 'node:cluster'
import { parseConfig, usage, UsageError, wantsHelp } from '../config.ts'
import { startGateway } from '../gateway.ts'
import { runPrimary } from '../cluster/primary.ts'
import { runWorker } from '../cluster/worker.ts'
import { gatewayLogger } from './logger.ts'

/** Knative's max-revision-timeout-seconds: no request can legitimately outlive this after the drain. */
const MAX_REVISION_TIMEOUT_MS = 600_000

export async function gatewayCommand(argv: readonly string[]): Promise<void> {
  if (wantsHelp(argv)) {
    process.stdout.write(usage() + '\n')
    return
  }
  let config
  try {
    config = parseConfig(argv)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`edge-gateway: ${err.message}\n\n${usage()}\n`)
      process.exit(2)
    }
    throw err
  }
  const log = gatewayLogger(config)
  // --workers N (N > 1): this process becomes the primary and forks the workers; a worker is this same
  // program started by node:cluster (see src/cluster/).
  if (cluster.isWorker) {
    await runWorker(config, log)
    return
  }
  const target = config.workers > 1 ? await runPrimary(config, log) : await startGateway(config, { log })
  const startDraining = (): void => target.startDraining()

  let stopping = false
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    stopping = true
    // SIGTERM is Kubernetes asking politely: /readyz fails at once and HTTP/1.1 responses close their
    // connections, but serving goes on for --drain-seconds while load balancers deregister us. Then
    // the listeners stop accepting, requests still held for a pod get a 503, and in-flight requests
    // may finish (up to the longest revision timeout Knative allows). SIGINT is a person at a
    // terminal: no drain wait, and a short finish.
    startDraining()
    const drainMs = signal === 'SIGTERM' ? config.drainSeconds * 1000 : 0
    const finishMs = signal === 'SIGTERM' ? MAX_REVISION_TIMEOUT_MS : 2000
    log.info({ signal, drainSeconds: drainMs / 1000 }, 'shutting down')
    if (drainMs > 0) await new Promise((r) => setTimeout(r, drainMs))
    await target.close(finishMs)
    log.info('stopped')
    process.exit(0)
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'))
  process.on('SIGINT', () => void shutdown('SIGINT'))
}
