// Where a request's end is told, once: the request count and duration by host and revision, and the
// access log. Reads only the request's record.
import type { Logger } from 'pino'
import type { GatewayMetrics } from '../metrics.ts'
import type { Refusal } from './guard.ts'
import type { RequestRecord } from './request-record.ts'

export class RequestLog {
  private readonly metrics: GatewayMetrics
  private readonly log: Logger
  private readonly accessLog: boolean

  constructor(metrics: GatewayMetrics, log: Logger, accessLog: boolean) {
    this.metrics = metrics
    this.log = log
    this.accessLog = accessLog
  }

  ended(r: RequestRecord): void {
    const seconds = (performance.now() - r.startedAt) / 1000
    this.metrics.request(r.host, r.backend, r.status, seconds)
    if (!this.accessLog) return
    const req = r.req
    this.log.info(
      {
        method: req.method,
        url: req.url,
        host: r.host || req.headers.host || req.headers[':authority'],
        status: r.status,
        reason: r.reason,
        revision: r.backend?.revision?.key,
        pod: r.pod,
        upgrade: r.upgrade || undefined,
        ms: Math.round(seconds * 1000),
        coldStartMs: r.coldStartMs >= 0 ? Math.round(r.coldStartMs) : undefined,
      },
      'access',
    )
  }

  /** The parser refused a connection's bytes before there was a request (no record). */
  unparsed(r: Refusal): void {
    this.metrics.request('', undefined, r.status, 0)
    if (this.accessLog) this.log.info({ status: r.status, reason: r.reason }, 'access')
  }
}
