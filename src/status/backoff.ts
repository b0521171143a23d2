// Exponential backoff and an abortable sleep, shared by the prober, the status writer and leader election.

/** Delay before retry number `failures` (1-based): initial, 2×, 4×… capped at `max`. */
export function backoffDelay(failures: number, initialMs: number, maxMs: number): number {
  const exp = Math.min(Math.max(failures - 1, 0), 30)
  return Math.min(maxMs, initialMs * 2 ** exp)
}

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. The timer never holds the process. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    timer.unref()
    signal?.addEventListener('abort', done, { once: true })
  })
}
