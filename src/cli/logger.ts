// The gateway's logger: JSON lines on stdout. Secrets never reach the output: redaction and the PEM
// scrub run in pino, before a line is written.
import { pino } from 'pino'
import type { Logger } from 'pino'
import type { GatewayConfig } from '../config.ts'

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

export function gatewayLogger(config: Pick<GatewayConfig, 'logLevel' | 'podName'>): Logger {
  return pino({ level: config.logLevel, base: { pod: config.podName }, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, hooks: { logMethod: scrubPem } })
}
