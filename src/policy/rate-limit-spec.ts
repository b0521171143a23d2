// What a rate limit is written as: `100/s` or `6000/m` (a whole number of requests per second or per
// minute), with an optional burst (default: the count). Pure: text in, the limit or why not out.
export interface RateLimitSpec {
  /** Requests per second. */
  readonly rate: number
  /** The most that may come at once. */
  readonly burst: number
  /** As written, for /debug/routes and messages. */
  readonly text: string
}

export const ANN_RATE_LIMIT = 'edge.knative.dev/rate-limit'
export const ANN_RATE_LIMIT_BURST = 'edge.knative.dev/rate-limit-burst'

/** The limit, or a sentence saying what is wrong and how to write it. */
export function parseRateLimit(text: string, burstText: string | undefined, divideBy = 1): RateLimitSpec | string {
  const m = /^\s*([1-9]\d{0,8})\s*\/\s*(s|m)\s*$/.exec(text)
  if (!m) return `${JSON.stringify(text)} is not a rate: write a whole number of requests per second or per minute, e.g. "100/s" or "6000/m"`
  const count = Number(m[1])
  let burst = count
  if (burstText !== undefined) {
    if (!/^\s*[1-9]\d{0,8}\s*$/.test(burstText)) return `burst ${JSON.stringify(burstText)} is not a whole number of requests above 0, e.g. "200"`
    burst = Number(burstText)
  }
  const rate = m[2] === 's' ? count : count / 60
  // With --workers each process holds its share of the limit (documented in the README).
  return { rate: rate / divideBy, burst: Math.max(1, burst / divideBy), text: burstText === undefined ? text.trim() : `${text.trim()} (burst ${burstText.trim()})` }
}
