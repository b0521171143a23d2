// One request's trace, made at arrival only when tracing is on (record.trace; undefined otherwise,
// so the stages pay one check). A request the sampler picked gets a SampledTrace: three spans, all
// ended by end() when nothing of the request is left:
//
//   server    the whole request (SERVER): arrival to the end of the response, or of the WebSocket
//   ├ hold      only when the request waited for a pod: why (cold start / no capacity), and its
//   │           place in the revision's queue as it entered (a retry that waits again: another one)
//   └ upstream  one per attempt at a pod (CLIENT): the pod's address, the attempt number; the pod
//               sees this span as its parent in the traceparent the gateway sends it
//
// The others get an UnsampledTrace (unsampled-trace.ts), which makes no span at all.
import type { Attributes, Context, HrTime, Span, Tracer } from '@opentelemetry/api'
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import type { TextMapPropagator } from '@opentelemetry/api'
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_RESEND_COUNT,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
} from '@opentelemetry/semantic-conventions'
import type { ClientRequest } from '../dataplane/client.ts'
import type { Resolution } from '../dataplane/resolve.ts'
import { hostOf } from '../dataplane/screen.ts'
import { unmappedIp } from '../dataplane/forwarded.ts'
import type { RequestRecord } from '../dataplane/request-record.ts'

/** The trace context headers the pod gets (set, never appended: the client's own are replaced). */
export interface TraceHeaders {
  traceparent?: string
  tracestate?: string
}

/** What the stages tell a request's trace, sampled or not. */
export interface RequestTrace {
  /** The trace the pod is told about (the caller's, or one the gateway started). */
  readonly traceId: string
  /** Admission chose (or, after a reroute, chose again) the route. */
  route(r: Resolution): void
  /** The request queued for a pod: `coldStart` when the revision had none, else every pod was full. */
  held(coldStart: boolean, queuePosition: number): void
  /** A pod was granted: the hold is over. */
  granted(): void
  /** An attempt at `host:port` begins; the headers carry the trace to the pod. */
  dispatch(host: string, port: number): TraceHeaders
  /** A moment of the current attempt: `connected` (an upgrade's TCP connection), `request sent`. */
  event(name: string): void
  /** The current attempt failed (`code`: the connection's error); a retry starts another. */
  failed(code: string): void
  /** Nothing of the request is left: the spans still open end, with what the client got. */
  end(r: RequestRecord): void
}

/** The gateway's own attributes (no semantic convention names these). */
export const EDGE_ATTR = {
  ingress: 'edge.ingress',
  namespace: 'edge.namespace',
  revision: 'edge.revision',
  service: 'edge.service',
  reason: 'edge.reason',
  pod: 'edge.pod',
  holdReason: 'edge.hold.reason',
  holdQueuePosition: 'edge.hold.queue_position',
} as const

const TEXT_SETTER = {
  set(carrier: TraceHeaders, key: string, value: string): void {
    carrier[key as keyof TraceHeaders] = value
  },
}

/** A sampled request: its spans are recorded and exported. */
export class SampledTrace implements RequestTrace {
  readonly server: Span
  private readonly tracer: Tracer
  private readonly propagator: TextMapPropagator
  /** The server span as the children's parent. */
  private readonly serverContext: Context
  private hold: Span | undefined
  private upstream: Span | undefined
  private attempts = 0
  /**
   * Wall-clock ms at performance.now() 0, read once per request: every time of its spans is taken
   * from the one monotonic clock through it, so they order correctly among themselves. (The SDK
   * anchors each span to Date.now() on its own, a millisecond apart at times: a hold could seem to
   * end after its upstream exchange began.)
   */
  private readonly anchorMs: number

  /** `parent`: the caller's sampled span context, or the root context for a trace the gateway starts. */
  constructor(tracer: Tracer, propagator: TextMapPropagator, parent: Context, req: ClientRequest, startedAt: number, secure: boolean) {
    this.tracer = tracer
    this.propagator = propagator
    this.anchorMs = Date.now() - performance.now()
    const method = req.method ?? 'GET'
    const server = tracer.startSpan(method, { kind: SpanKind.SERVER, startTime: this.at(startedAt) }, parent)
    this.server = server
    this.serverContext = trace.setSpan(parent, server)
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const attrs: Attributes = {
      [ATTR_HTTP_REQUEST_METHOD]: method,
      [ATTR_URL_PATH]: q < 0 ? url : url.slice(0, q),
      [ATTR_URL_SCHEME]: secure ? 'https' : 'http',
      [ATTR_NETWORK_PROTOCOL_VERSION]: req.httpVersionMajor === 2 ? '2' : req.httpVersion,
    }
    const client = unmappedIp(req.socket?.remoteAddress)
    if (client !== undefined) attrs[ATTR_CLIENT_ADDRESS] = client
    server.setAttributes(attrs)
  }

  get traceId(): string {
    return this.server.spanContext().traceId
  }

  route(r: Resolution): void {
    this.server.setAttribute(EDGE_ATTR.ingress, r.entry.ingress.key)
  }

  held(coldStart: boolean, queuePosition: number): void {
    const now = this.now()
    this.hold?.end(now)
    const attributes = { [EDGE_ATTR.holdReason]: coldStart ? 'cold start' : 'no capacity', [EDGE_ATTR.holdQueuePosition]: queuePosition }
    this.hold = this.tracer.startSpan('hold', { kind: SpanKind.INTERNAL, attributes, startTime: now }, this.serverContext)
  }

  granted(): void {
    this.hold?.end(this.now())
    this.hold = undefined
  }

  /** Its span starts, and is the pod's parent. */
  dispatch(host: string, port: number): TraceHeaders {
    const headers: TraceHeaders = {}
    const now = this.now()
    this.upstream?.end(now)
    const attrs: Attributes = { [ATTR_SERVER_ADDRESS]: host, [ATTR_SERVER_PORT]: port, [EDGE_ATTR.pod]: `${host}:${port}` }
    if (this.attempts > 0) attrs[ATTR_HTTP_REQUEST_RESEND_COUNT] = this.attempts
    this.attempts++
    const span = this.tracer.startSpan('upstream', { kind: SpanKind.CLIENT, attributes: attrs, startTime: now }, this.serverContext)
    this.upstream = span
    this.propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, TEXT_SETTER)
    return headers
  }

  event(name: string): void {
    this.upstream?.addEvent(name, this.now())
  }

  failed(code: string): void {
    const span = this.upstream
    if (!span) return
    span.setAttribute(ATTR_ERROR_TYPE, code)
    span.setStatus({ code: SpanStatusCode.ERROR, message: code })
    span.end(this.now())
    this.upstream = undefined
  }

  end(r: RequestRecord): void {
    const now = this.now()
    const status = r.status
    const reason = r.reason
    const hold = this.hold
    if (hold) {
      // Still held at the end: it never got a pod (timeout, full queue, drain; or the client left).
      if (reason !== undefined) failedWith(hold, reason)
      hold.end(now)
    }
    const up = this.upstream
    if (up) {
      if (reason === undefined) up.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status)
      else failedWith(up, reason)
      up.end(now)
    }
    const s = this.server
    const attrs: Attributes = { [ATTR_HTTP_RESPONSE_STATUS_CODE]: status }
    // The route's host once identified (lower-case, no port); else the Host as the client sent it.
    if (r.host) s.updateName(`${r.req.method ?? 'GET'} ${r.host}`)
    const host = r.host || hostOf(r.req)
    if (host !== undefined) attrs[ATTR_SERVER_ADDRESS] = host
    const b = r.backend
    if (b) {
      attrs[EDGE_ATTR.namespace] = b.namespace
      if (b.revision) attrs[EDGE_ATTR.revision] = b.revision.name
      else attrs[EDGE_ATTR.service] = b.serviceName
    }
    if (r.pod !== undefined) attrs[EDGE_ATTR.pod] = r.pod
    if (reason !== undefined) attrs[EDGE_ATTR.reason] = reason
    s.setAttributes(attrs)
    // A server span is an error for a 5xx (OpenTelemetry's HTTP conventions), whoever answered it.
    if (status >= 500) failedWith(s, reason ?? String(status))
    s.end(now)
  }

  private now(): HrTime {
    return this.at(performance.now())
  }

  /** A performance.now() time as the wall-clock [seconds, nanoseconds] of OpenTelemetry. */
  private at(perfMs: number): HrTime {
    const ms = this.anchorMs + perfMs
    const seconds = Math.floor(ms / 1000)
    return [seconds, Math.min(999_999_999, Math.round((ms - seconds * 1000) * 1e6))]
  }
}

function failedWith(span: Span, why: string): void {
  span.setAttribute(ATTR_ERROR_TYPE, why)
  span.setStatus({ code: SpanStatusCode.ERROR, message: why })
}
