// One access-log line per request (and per WebSocket, when it closes), read from the request's
// record: JSON by default, or a text line from a template (as Kourier's service-access-log-template).
// The line goes to a LineWriter, so writing it never makes a request wait.
import type net from 'node:net'
import { isTrustedAddress } from '../dataplane/guard.ts'
import type { RequestRecord } from '../dataplane/request-record.ts'
import type { LineWriter } from './line-writer.ts'

/** Every field a line can carry, in the order JSON lines give them. */
export const ACCESS_FIELDS = [
  'time', 'client', 'method', 'host', 'path', 'protocol', 'status', 'bytesIn', 'bytesOut', 'durationMs', 'ttfbMs',
  'pod', 'namespace', 'revision', 'coldStartMs', 'reason', 'traceId', 'userAgent', 'requestId', 'upgrade',
] as const
export type AccessField = (typeof ACCESS_FIELDS)[number]

type Entry = Record<AccessField, string | number | boolean | undefined>

/** A text template: `{field}` placeholders among literal text; unknown fields are refused when it is read. */
export type AccessTemplate = Array<string | { field: AccessField }>

export function parseAccessTemplate(template: string): AccessTemplate {
  const parts: AccessTemplate = []
  let last = 0
  for (const m of template.matchAll(/\{([A-Za-z]+)\}/g)) {
    if (!(ACCESS_FIELDS as readonly string[]).includes(m[1]!)) throw new Error(`{${m[1]}} is not an access-log field; use ${ACCESS_FIELDS.map((f) => `{${f}}`).join(', ')}`)
    if (m.index > last) parts.push(template.slice(last, m.index))
    parts.push({ field: m[1] as AccessField })
    last = m.index + m[0].length
  }
  if (last < template.length) parts.push(template.slice(last))
  return parts
}

export interface AccessLogOptions {
  writer: LineWriter
  /** undefined: JSON lines. */
  template?: AccessTemplate
  trustedProxies: net.BlockList | undefined
}

let seq = 0
const PREFIX = `${process.pid.toString(36)}-${Date.now().toString(36)}-`

export class AccessLog {
  private readonly opts: AccessLogOptions

  constructor(opts: AccessLogOptions) {
    this.opts = opts
  }

  /** Never throws: a line that cannot be made is dropped and counted, and the request is unaffected. */
  write(r: RequestRecord): void {
    let e: Entry
    try {
      e = entry(r, this.opts.trustedProxies)
    } catch {
      this.opts.writer.dropped++
      return
    }
    const t = this.opts.template
    if (t === undefined) {
      this.opts.writer.write(JSON.stringify(e))
      return
    }
    this.opts.writer.write(render(t, e))
  }

  /** A connection the parser refused before there was a request to log. */
  writeRefusal(status: number, reason: string, remote: string | undefined): void {
    const e: Partial<Entry> = { time: new Date().toISOString(), client: remote, status, reason }
    const t = this.opts.template
    this.opts.writer.write(t === undefined ? JSON.stringify(e) : render(t, e))
  }
}

/** A template's line: each field's value, `-` for a field with none. */
function render(t: AccessTemplate, e: Partial<Entry>): string {
  let line = ''
  for (const p of t) line += typeof p === 'string' ? p : String(e[p.field] ?? '-')
  return line
}

function entry(r: RequestRecord, trusted: net.BlockList | undefined): Entry {
  const req = r.req
  const h = req.headers
  const now = performance.now()
  const rev = r.backend?.revision
  const traceparent = h.traceparent
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  const requestId = h['x-request-id']
  return {
    time: new Date().toISOString(),
    client: clientAddress(r.remote, h['x-forwarded-for'], trusted),
    method: req.method,
    host: r.host || (h.host ?? (h[':authority'] as string | undefined)),
    path: q < 0 ? url : url.slice(0, q),
    protocol: `HTTP/${req.httpVersion}`,
    status: r.status,
    bytesIn: r.bytesIn > 0 ? r.bytesIn : Number(h['content-length'] ?? 0) || 0,
    bytesOut: r.bytesOut,
    durationMs: round(now - r.startedAt),
    ttfbMs: r.firstByteAt > 0 ? round(r.firstByteAt - r.startedAt) : undefined,
    pod: r.pod,
    namespace: rev?.namespace ?? r.backend?.namespace,
    revision: rev?.name,
    coldStartMs: r.coldStartMs >= 0 ? round(r.coldStartMs) : undefined,
    reason: r.reason,
    // Tracing on: the trace the gateway sent the pod (the caller's, or one it started); else the caller's.
    traceId: r.trace !== undefined ? r.trace.traceId : typeof traceparent === 'string' && traceparent.length >= 35 ? traceparent.slice(3, 35) : undefined,
    userAgent: h['user-agent'],
    requestId: typeof requestId === 'string' ? requestId : `${PREFIX}${(++seq).toString(36)}`,
    upgrade: r.upgrade || undefined,
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10
}

/**
 * The client, after trusted proxies: a request from a trusted hop is from the rightmost
 * X-Forwarded-For address that is not itself trusted (the left part could be made up by the client).
 */
export function clientAddress(remote: string | undefined, xff: string | string[] | undefined, trusted: net.BlockList | undefined): string | undefined {
  if (trusted === undefined || xff === undefined || !isTrustedAddress(trusted, remote)) return remote
  const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',')
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!.trim()
    if (hop !== '' && !isTrustedAddress(trusted, hop)) return hop
  }
  return remote
}
