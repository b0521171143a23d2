// `edge-gateway status`: asks a running gateway's admin port what it serves and prints it as a table
// (status-table.ts). Its own two options follow the gateway's pattern (config.ts): a flag, an
// environment variable, a default. EDGE_ADMIN_PORT is the gateway's own variable, so a shell that
// moved the gateway's admin port finds it without a flag.
import http from 'node:http'
import https from 'node:https'
import { formatUsage, parseOptions, UsageError, wantsHelp } from '../config.ts'
import type { OptionSpec } from '../config.ts'
import { renderStatus } from './status-table.ts'
import type { RoutesJson } from './status-table.ts'

interface StatusOptions {
  adminUrl: string | undefined
  adminPort: number
}

const OPTIONS: OptionSpec<keyof StatusOptions>[] = [
  { flag: 'admin-url', env: 'EDGE_ADMIN_URL', kind: 'string', key: 'adminUrl', def: () => undefined, check: checkUrl, help: "the gateway's admin address, e.g. http://10.0.0.5:9090 (wins over --admin-port)" },
  { flag: 'admin-port', env: 'EDGE_ADMIN_PORT', kind: 'int', key: 'adminPort', def: () => 9090, min: 1, max: 65535, help: 'admin port of a gateway on this machine (http://localhost:N)' },
]

function checkUrl(value: unknown, origin: string): void {
  let url: URL | undefined
  try {
    url = new URL(String(value))
  } catch {
    url = undefined
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new UsageError(`${origin}: '${String(value)}' is not an http:// or https:// URL (e.g. http://localhost:9090)`)
}

const STATUS_USAGE = ['usage: edge-gateway status [options]', '', "Prints what a running gateway serves: each host's revisions with their traffic, tag, ready", 'instances, requests in flight and queued, and the last cold start.']

/** The admin API's answer: the routing table, or why there is none. */
type Answer = { ok: true; routes: RoutesJson } | { ok: false; unreachable: boolean; message: string }

/** How long a gateway may take to answer before it counts as not answering. */
const TIMEOUT_MS = 5000

function getRoutes(base: string): Promise<Answer> {
  const url = new URL('/debug/routes', base)
  const client = url.protocol === 'https:' ? https : http
  return new Promise((resolve) => {
    const req = client.get(url, { timeout: TIMEOUT_MS }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('error', (err) => resolve({ ok: false, unreachable: true, message: err.message }))
      res.on('end', () => {
        const wrong = `${url.href} answered ${res.statusCode} but not with a routing table: is this the gateway's admin port?`
        if (res.statusCode !== 200) return resolve({ ok: false, unreachable: false, message: wrong })
        try {
          const routes = JSON.parse(body) as RoutesJson
          if (!Array.isArray(routes.hosts)) return resolve({ ok: false, unreachable: false, message: wrong })
          resolve({ ok: true, routes })
        } catch {
          resolve({ ok: false, unreachable: false, message: wrong })
        }
      })
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)))
    req.on('error', (err) => resolve({ ok: false, unreachable: true, message: err.message }))
  })
}

/** Runs the command; the exit status: 0 printed, 1 no gateway there, 2 bad options. */
export async function statusCommand(argv: readonly string[]): Promise<number> {
  const usage = formatUsage(STATUS_USAGE, OPTIONS)
  if (wantsHelp(argv)) {
    process.stdout.write(usage + '\n')
    return 0
  }
  let opts: StatusOptions
  try {
    opts = parseOptions<StatusOptions>(OPTIONS, argv, process.env)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`edge-gateway status: ${err.message}\n\n${usage}\n`)
    return 2
  }
  const base = (opts.adminUrl ?? `http://localhost:${opts.adminPort}`).replace(/\/+$/, '')
  const answer = await getRoutes(base)
  if (!answer.ok) {
    const hint = answer.unreachable ? `no gateway answering on ${base} — is it running? start it with npm start, or pass --admin-port (${answer.message})` : answer.message
    process.stderr.write(`edge-gateway status: ${hint}\n`)
    return 1
  }
  process.stdout.write(renderStatus(answer.routes, base, Date.now()))
  return 0
}
