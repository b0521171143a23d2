// What our upstream clients (h1/client/pool.ts, h2/client.ts) share as speakers of undici's dispatch
// interface: the state a per-request controller exposes, and errors with undici's documented codes,
// which the Exchange reads to decide between a retry and which 5xx.
import type { Dispatcher } from 'undici'

/** One request's controller state; each client says what aborting, pausing and resuming do. */
export abstract class DispatchControl implements Dispatcher.DispatchController {
  protected _aborted = false
  protected _paused = false
  protected _reason: Error | null = null

  get aborted(): boolean {
    return this._aborted
  }

  get paused(): boolean {
    return this._paused
  }

  get reason(): Error | null {
    return this._reason
  }

  abstract abort(reason: Error): void
  abstract pause(): void
  abstract resume(): void
}

/** An upstream failure with a code: the socket's own (ECONNREFUSED, ...) or undici's (UND_ERR_*). */
export class UpstreamError extends Error {
  readonly code: string
  constructor(message: string, code: string) {
    super(message)
    this.code = code
  }
}
