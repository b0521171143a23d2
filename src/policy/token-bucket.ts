// A token bucket: `rate` tokens a second, holding at most `burst`. Pure apart from the time it is
// given, so the rate limits are tested with a clock the test moves.
export class TokenBucket {
  private tokens: number
  private at: number
  private readonly rate: number
  private readonly burst: number

  constructor(rate: number, burst: number, now: number) {
    this.rate = rate
    this.burst = burst
    this.tokens = burst
    this.at = now
  }

  /** Takes a token if there is one; else returns the seconds until there will be. `now` in ms. */
  take(now: number): 0 | number {
    this.refill(now)
    if (this.tokens >= 1) {
      this.tokens -= 1
      return 0
    }
    return (1 - this.tokens) / this.rate
  }

  /** Full again: a bucket in this state can be forgotten (a new one starts full). */
  full(now: number): boolean {
    this.refill(now)
    return this.tokens >= this.burst
  }

  private refill(now: number): void {
    const dt = (now - this.at) / 1000
    this.at = now
    if (dt > 0) this.tokens = Math.min(this.burst, this.tokens + dt * this.rate)
  }
}
