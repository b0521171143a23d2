#!/usr/bin/env -S node --max-semi-space-size=16
// edge-gateway command line: options → config → gateway, and the shutdown sequence on signals.
import { pino } from 'pino'
import { parseConfig, usage, UsageError, wantsHelp } from './config.ts'
import cluster from 'node:cluster'
import { startGateway } from './gateway.ts'
import { runPrimary } from './cluster/primary.ts'
import { runWorker } from './cluster/worker.ts'

/** Knative's max-revision-timeout-seconds: no request can legitimately outlive this after the drain. */
const MAX_REVISION_TIMEOUT_MS = 600_000

const MIN_NODE_MAJOR = 22

// Secrets never reach the logs. Field paths catch credentials logged as objects (a request's
// headers, a Secret, a kubeconfig user); the PEM scrub catches key or certificate text that ends up
// inside a message, e.g. a parser error quoting the line of a manifest it failed on.
const REDACT_PATHS = [
  'token', '*.token', 'password', '*.password',
  'authorization', '*.authorization', '*.headers.authorization', '*.headers.cookie', '*.headers["proxy-authorization"]',
  '*["tls.key"]', '*.data', '*.stringData', '*.*.data', '*.*.stringData',
  '*.user.token', '*.user.password', '*.user.keyData', '*.user.certData',
]
const PEM = /-----BEGIN [A-Z0-9 ]*-----[\s\S]*?(?:-----END [A-Z0-9 ]*-----|$)/g

function scrub(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return value.includes('-----BEGIN') ? value.replace(PEM, '[redacted PEM]') : value
  if (value instanceof Error) {
    if (!value.message.includes('-----BEGIN')) return value
    const e = new Error(value.message.replace(PEM, '[redacted PEM]'))
    e.name = value.name
    return e
  }
  if (depth > 4 || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) out[k] = scrub(v, depth + 1)
  return out
}

function scrubPem(this: unknown, args: unknown[], method: (...a: unknown[]) => void): void {
  method.apply(this, args.map((a) => scrub(a, 0)))
}

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
  const log = pino({ level: config.logLevel, base: { pod: config.podName }, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, hooks: { logMethod: scrubPem } })
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

main().catch((err: unknown) => {
  process.stderr.write(`edge-gateway: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
