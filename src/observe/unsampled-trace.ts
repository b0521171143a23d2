// A request the sampler did not pick (most of them, at a low rate): no span and no SDK object. It
// only tells the pod the trace id and the decision (flags 00), so the app's own tracing follows the
// same decision rather than starting traces of its own. Made in a fraction of what an SDK span
// costs: ids come from a pooled buffer of random bytes, and the traceparent is one string.
import { randomFillSync } from 'node:crypto'
import type { RequestTrace, TraceHeaders } from './request-trace.ts'

/** Random bytes for ids, refilled as a whole (one call per ~170 requests). */
const pool = Buffer.allocUnsafe(4096)
let used = pool.length

function randomHex(bytes: number): string {
  if (used + bytes > pool.length) {
    randomFillSync(pool)
    used = 0
  }
  const hex = pool.toString('hex', used, used + bytes)
  used += bytes
  return hex
}

const ZERO_TRACE_ID = '0'.repeat(32)
const ZERO_SPAN_ID = '0'.repeat(16)

/** A trace id for a trace the gateway starts (all zeros is invalid in W3C trace context). */
export function newTraceId(): string {
  let id = randomHex(16)
  while (id === ZERO_TRACE_ID) id = randomHex(16)
  return id
}

function newSpanId(): string {
  let id = randomHex(8)
  while (id === ZERO_SPAN_ID) id = randomHex(8)
  return id
}

export class UnsampledTrace implements RequestTrace {
  readonly traceId: string
  /** The same for every attempt: the parent the pod is told of is never exported anyway. */
  private readonly headers: TraceHeaders

  /** `tracestate`: the caller's, passed on as it came (none for a trace the gateway starts). */
  constructor(traceId: string, tracestate: string | undefined) {
    this.traceId = traceId
    this.headers = { traceparent: `00-${traceId}-${newSpanId()}-00`, tracestate }
  }

  dispatch(): TraceHeaders {
    return this.headers
  }

  route(): void {}
  held(): void {}
  granted(): void {}
  event(): void {}
  failed(): void {}
  end(): void {}
}
