// The gateway's logger: JSON lines on stdout for machines, or lines for a person when stdout is a
// terminal (--log-format). Either way secrets never reach the output: redaction and the PEM scrub
// run in pino, before a line is formatted.
import { pino } from 'pino'
import type { Logger } from 'pino'
import type { GatewayConfig } from '../config.ts'
import type { LiveSettings } from '../settings/live-settings.ts'
import { prettyDestination } from './pretty-log.ts'

// Field paths catch credentials logged as objects (a request's headers, a Secret, a kubeconfig
// user); the PEM scrub catches key or certificate text that ends up inside a message, e.g. a parser
// error quoting the line of a manifest it failed on.
export const REDACT_PATHS = [
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

/** `auto` is pretty exactly when stdout is a terminal (a person is reading). */
export function wantsPretty(format: GatewayConfig['logFormat'], stdoutIsTty: boolean): boolean {
  return format === 'pretty' || (format === 'auto' && stdoutIsTty)
}

export function gatewayLogger(config: Pick<GatewayConfig, 'logLevel' | 'logFormat' | 'podName'>): Logger {
  const redact = { paths: REDACT_PATHS, censor: '[redacted]' }
  const hooks = { logMethod: scrubPem }
  // On a terminal the pod name (the host name outside a cluster) on every line is noise.
  if (wantsPretty(config.logFormat, process.stdout.isTTY === true)) return pino({ level: config.logLevel, base: null, redact, hooks }, prettyDestination())
  return pino({ level: config.logLevel, base: { pod: config.podName }, redact, hooks })
}

/**
 * config-edge-gateway's log-level, set on `root` as it changes. Its child loggers follow: pino makes
 * a child from its parent's prototype, and none of ours sets a level of its own.
 */
export function followLogLevel(settings: LiveSettings, root: Logger): void {
  settings.onChange((next, prev) => {
    if (next.logLevel !== prev.logLevel) root.level = next.logLevel
  })
}
