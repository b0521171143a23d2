// How many requests (and WebSocket connections) are being handled, and whether the gateway is
// draining: the drain waits for this count to reach zero, and responses say Connection: close
// meanwhile so HTTP/1.1 clients reconnect elsewhere.
export class InFlight {
  /** Requests being handled right now, held ones included. */
  count = 0
  /** Shutting down: HTTP/1.1 responses close their connection. */
  draining = false
  private idleWaiters: Array<() => void> = []

  enter(): void {
    this.count++
  }

  leave(): void {
    this.count--
    if (this.count === 0 && this.idleWaiters.length > 0) {
      const ws = this.idleWaiters
      this.idleWaiters = []
      for (const w of ws) w()
    }
  }

  /** Resolves when nothing is in flight or held. */
  whenIdle(): Promise<void> {
    if (this.count === 0) return Promise.resolve()
    return new Promise((r) => this.idleWaiters.push(r))
  }
}
