// Where a request's end is told: the request count and duration by host and revision when the client
// has its answer (for an upgrade, the handshake's), and the access-log line and the end of its spans
// (when traced) when nothing of it is left (for a WebSocket, when it closes). Reads only the
// request's record.
import type { GatewayMetrics } from '../metrics.ts'
import type { AccessLog } from '../observe/access-log.ts'
import type { Refusal } from './guard.ts'
import type { RequestRecord } from './request-record.ts'
import { unmappedIp } from './forwarded.ts'

export class RequestLog {
  private readonly metrics: GatewayMetrics
  private access: AccessLog | undefined

  constructor(metrics: GatewayMetrics, access: AccessLog | undefined) {
    this.metrics = metrics
    this.access = access
  }

  /** Whether access-log lines are written (the record's byte counts are only needed then). */
  get logging(): boolean {
    return this.access !== undefined
  }

  /** Access logging turned on, off or re-templated (config-edge-gateway): from the next line on. */
  setAccessLog(access: AccessLog | undefined): void {
    this.access = access
  }

  answered(r: RequestRecord): void {
    this.metrics.request(r.host, r.backend, r.status, (performance.now() - r.startedAt) / 1000, r.reason)
  }

  ended(r: RequestRecord): void {
    r.trace?.end(r)
    this.access?.write(r)
  }

  /** The parser refused a connection's bytes before there was a request (no record). */
  unparsed(r: Refusal, remoteAddress: string | undefined): void {
    this.metrics.request('', undefined, r.status, 0, r.reason)
    this.access?.writeRefusal(r.status, r.reason, unmappedIp(remoteAddress))
  }
}
