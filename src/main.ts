#!/usr/bin/env node
// edge-gateway command line: options → config → gateway, and the shutdown sequence on signals.
import { pino } from 'pino'
import { parseConfig, usage, UsageError, wantsHelp } from './config.ts'
import { startGateway } from './gateway.ts'

const MIN_NODE_MAJOR = 22

async function main(): Promise<void> {
  const major = Number(process.versions.node.split('.')[0])
  if (major < MIN_NODE_MAJOR) {
    process.stderr.write(`edge-gateway needs Node ${MIN_NODE_MAJOR} or newer (this is ${process.version}); run it through npm (npm start / npx edge-gateway), which uses the project's Node 24\n`)
    process.exit(1)
  }
  const argv = process.argv.slice(2)
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
  const log = pino({ level: config.logLevel, base: { pod: config.podName }, redact: ['*.token', '*.password', '*["tls.key"]'] })
  const gw = await startGateway(config, { log })

  let stopping = false
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    stopping = true
    // SIGTERM is Kubernetes asking politely: fail readiness, keep serving while the load balancer
    // deregisters us, then let in-flight work finish. SIGINT is a person at a terminal: no drain wait.
    gw.startDraining()
    const drainMs = signal === 'SIGTERM' ? config.drainSeconds * 1000 : 0
    log.info({ signal, drainSeconds: drainMs / 1000 }, 'shutting down')
    if (drainMs > 0) await new Promise((r) => setTimeout(r, drainMs))
    await gw.close()
    log.info('stopped')
    process.exit(0)
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'))
  process.on('SIGINT', () => void shutdown('SIGINT'))
}

main().catch((err: unknown) => {
  process.stderr.write(`edge-gateway: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
