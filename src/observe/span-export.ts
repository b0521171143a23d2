// The way out for finished spans: a bound on how many wait, and a count of the ones that never
// reached the collector. The SDK's BatchSpanProcessor batches and bounds its queue, but it keeps
// its drop count to itself (and resets it), and a batch the collector refused is lost without a
// count. So two thin wrappers share one SpanBudget: the processor in front of the batcher refuses a
// span once `max` are waiting or being exported, and the exporter behind it gives their places back
// when an export ends, counting the spans of a failed one as dropped. A slow or absent collector
// therefore costs dropped spans, never a request's time: nothing here waits.
import type { Context } from '@opentelemetry/api'
import { TraceFlags } from '@opentelemetry/api'
import type { ExportResult } from '@opentelemetry/core'
import { ExportResultCode } from '@opentelemetry/core'
import type { ReadableSpan, Span, SpanExporter, SpanProcessor } from '@opentelemetry/sdk-trace'

export interface SpanBudget {
  /** Spans waiting in the batcher or in an export right now. */
  pending: number
  /** The most that may be pending; more are dropped. */
  readonly max: number
  /** Spans that will never reach the collector: told to the composition (a metric). */
  readonly onDrop: (spans: number) => void
  /** An export failed (collector down, slow or refusing): why, and how many spans went with it. */
  readonly onExportFailed: (error: Error | undefined, spans: number) => void
}

/** In front of the batcher: a sampled span beyond the budget is dropped and counted, at once. */
export class BoundedSpanProcessor implements SpanProcessor {
  private readonly inner: SpanProcessor
  private readonly budget: SpanBudget

  constructor(inner: SpanProcessor, budget: SpanBudget) {
    this.inner = inner
    this.budget = budget
  }

  onStart(span: Span, parentContext: Context): void {
    this.inner.onStart(span, parentContext)
  }

  onEnd(span: ReadableSpan): void {
    // The batcher takes sampled spans only; others pass (it ignores them) and are not counted.
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return this.inner.onEnd(span)
    const b = this.budget
    if (b.pending >= b.max) {
      b.onDrop(1)
      return
    }
    b.pending++
    this.inner.onEnd(span)
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush()
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown()
  }
}

/** Behind the batcher: every export ends (the OTLP exporter retries within its timeout, then fails). */
export function budgetedExporter(inner: SpanExporter, budget: SpanBudget): SpanExporter {
  return {
    export(spans, resultCallback) {
      let settled = false
      const done = (result: ExportResult): void => {
        if (settled) return
        settled = true
        budget.pending -= spans.length
        if (result.code !== ExportResultCode.SUCCESS) {
          budget.onDrop(spans.length)
          budget.onExportFailed(result.error, spans.length)
        }
        resultCallback(result)
      }
      try {
        inner.export(spans, done)
      } catch (err) {
        done({ code: ExportResultCode.FAILED, error: err as Error })
      }
    },
    forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
    shutdown: () => inner.shutdown(),
  }
}
