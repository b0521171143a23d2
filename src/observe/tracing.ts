// Tracing (--tracing-endpoint): W3C trace context in, OTLP/HTTP protobuf spans out. Loaded only
// when an endpoint is configured (compose/parts.ts imports it dynamically), so a gateway without
// one carries none of the SDK. Each request gets a RequestTrace (request-trace.ts) from begin();
// finished spans go through a bounded buffer to a batching exporter (span-export.ts): a slow or
// absent collector costs dropped spans, counted in edge_tracing_spans_dropped_total, never a
// request's time.
//
// Sampling: a caller's traceparent decides (sampled: always; not sampled: never); a request
// without one starts a trace with probability --tracing-sampling-rate. The decision is made here,
// before the SDK: a request that is not sampled gets an UnsampledTrace, which costs two random ids
// and a string (an SDK span, even a non-recording one, cost about four times as much, and at a low
// rate that is nearly every request); only sampled requests reach the SDK's tracer. The provider is
// this gateway's own, not the process-wide global one, and no context manager is installed: spans
// are parented explicitly, so nothing runs per async hop.
import type { Logger } from 'pino'
import { Counter } from 'prom-client'
import type { Registry } from 'prom-client'
import type { TextMapGetter, Tracer } from '@opentelemetry/api'
import { ROOT_CONTEXT, TraceFlags } from '@opentelemetry/api'
import { parseTraceParent, W3CTraceContextPropagator } from '@opentelemetry/core'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, TracerProvider } from '@opentelemetry/sdk-trace'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto'
import { ATTR_SERVICE_INSTANCE_ID, ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions'
import type { ClientRequest } from '../dataplane/client.ts'
import { SampledTrace } from './request-trace.ts'
import type { RequestTrace } from './request-trace.ts'
import { newTraceId, UnsampledTrace } from './unsampled-trace.ts'
import { BoundedSpanProcessor, budgetedExporter } from './span-export.ts'
import type { SpanBudget } from './span-export.ts'

/** The batching, tunable by tests (a small buffer, a short delay); the defaults are the SDK's. */
export interface TracingTuning {
  /** Spans waiting or being exported at most; more are dropped. */
  maxQueueSize?: number
  maxExportBatchSize?: number
  /** How long finished spans wait to be batched. */
  scheduledDelayMs?: number
  /** One export's limit, retries included; its spans are dropped after it. */
  exportTimeoutMs?: number
}

export interface TracingOptions {
  /** The collector's base URL; spans are posted to `/v1/traces` under it. */
  endpoint: string
  samplingRate: number
  serviceName: string
  /** This replica (service.instance.id). */
  instance: string
  log: Logger
  /** Spans that will never reach the collector. */
  onDrop(spans: number): void
  tuning?: TracingTuning
}

/** How often an export failure is logged at most: the drop counter says how many, the log says why. */
const FAILURE_LOG_INTERVAL_MS = 60_000

export class Tracing {
  private readonly provider: TracerProvider
  private readonly tracer: Tracer
  private readonly propagator = new W3CTraceContextPropagator()
  private readonly exportTimeoutMs: number
  private samplingRate: number

  constructor(opts: TracingOptions) {
    this.samplingRate = opts.samplingRate
    const tuning = opts.tuning ?? {}
    const maxQueueSize = tuning.maxQueueSize ?? 2048
    this.exportTimeoutMs = tuning.exportTimeoutMs ?? 10_000
    let lastFailureLog = -Infinity
    const budget: SpanBudget = {
      pending: 0,
      max: maxQueueSize,
      onDrop: opts.onDrop,
      onExportFailed: (error, spans) => {
        const now = performance.now()
        if (now - lastFailureLog < FAILURE_LOG_INTERVAL_MS) return
        lastFailureLog = now
        opts.log.warn({ err: error, endpoint: opts.endpoint, spans }, 'tracing: spans could not be exported and were dropped (further failures within a minute are only counted in edge_tracing_spans_dropped_total)')
      },
    }
    const exporter = new OTLPTraceExporter({ url: `${opts.endpoint.replace(/\/+$/, '')}/v1/traces`, timeoutMillis: this.exportTimeoutMs })
    const batcher = new BatchSpanProcessor({
      exporter: budgetedExporter(exporter, budget),
      maxQueueSize,
      maxExportBatchSize: Math.min(tuning.maxExportBatchSize ?? 512, maxQueueSize),
      scheduledDelayMillis: tuning.scheduledDelayMs ?? 5000,
      // The exporter ends every export within its own timeout; the batcher's is only a backstop.
      exportTimeoutMillis: this.exportTimeoutMs + 1000,
    })
    this.provider = new TracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: opts.serviceName, [ATTR_SERVICE_INSTANCE_ID]: opts.instance }),
      // begin() has decided already: only sampled requests start spans here.
      sampler: new ParentBasedSampler({ root: new AlwaysOnSampler() }),
      spanProcessors: [new BoundedSpanProcessor(batcher, budget)],
    })
    this.tracer = this.provider.getTracer('edge-gateway')
  }

  /** --tracing-sampling-rate changed (config-edge-gateway): requests from now on are sampled by it. */
  setSamplingRate(rate: number): void {
    this.samplingRate = rate
  }

  /** A request arrived (at `startedAt`, performance.now()): its trace, sampled or not. */
  begin(req: ClientRequest, startedAt: number, secure: boolean): RequestTrace {
    const headers = req.headers
    const tp = headers.traceparent
    // Sent twice (an array from HTTP/2; node:http joins them into one invalid string): not valid.
    const caller = typeof tp === 'string' ? parseTraceParent(tp) : null
    if (caller !== null) {
      if ((caller.traceFlags & TraceFlags.SAMPLED) !== 0) return new SampledTrace(this.tracer, this.propagator, this.propagator.extract(ROOT_CONTEXT, headers, HEADER_GETTER), req, startedAt, secure)
      const ts = headers.tracestate
      return new UnsampledTrace(caller.traceId, Array.isArray(ts) ? ts.join(',') : ts)
    }
    // No caller's trace (or not a valid one, whose tracestate then goes too): the gateway starts one.
    if (Math.random() < this.samplingRate) return new SampledTrace(this.tracer, this.propagator, ROOT_CONTEXT, req, startedAt, secure)
    return new UnsampledTrace(newTraceId(), undefined)
  }

  /** Exports what is buffered, for at most one export's timeout; what is left then is lost. */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const limit = new Promise<void>((r) => {
      timer = setTimeout(r, this.exportTimeoutMs)
      timer.unref()
    })
    await Promise.race([this.provider.shutdown().catch(() => undefined), limit])
    clearTimeout(timer)
  }
}

/** Node's header objects: lower-case names; a repeated tracestate arrives as an array. */
const HEADER_GETTER: TextMapGetter<ClientRequest['headers']> = {
  get: (carrier, key) => carrier[key],
  keys: (carrier) => Object.keys(carrier),
}

/** edge_tracing_spans_dropped_total on the gateway's registry: how the composition counts drops. */
export function spanDropCounter(registry: Registry): (spans: number) => void {
  const counter = new Counter({
    name: 'edge_tracing_spans_dropped_total',
    help: 'Trace spans dropped: the export buffer was full, or the collector failed or timed out (requests are never slowed by tracing)',
    registers: [registry],
  })
  return (spans) => counter.inc(spans)
}
