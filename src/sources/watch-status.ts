// A watch ERROR event's Status, as the error the watch ends with.
//
// client-node ends a watch that carried an ERROR event as if it had closed cleanly, so ListWatch
// reconnects from the same resourceVersion and, for anything but a 410, the informer never hears of
// it. client-go's reflector instead ends the watch with the Status as its error; so do we.
import { KubeRequestError } from './kube-list.ts'

interface StatusCause {
  reason?: unknown
  message?: unknown
}

interface KubeStatus {
  code?: unknown
  reason?: unknown
  message?: unknown
  details?: { causes?: unknown; retryAfterSeconds?: unknown }
}

const TOO_LARGE = 'Too large resource version'

export class WatchStatusError extends KubeRequestError {
  /** The server's retryAfterSeconds, in ms. */
  readonly retryAfterMs: number | undefined
  /**
   * The server has not reached the resourceVersion asked for (504 Timeout, cause
   * ResourceVersionTooLarge): resuming from it cannot work, only a relist can.
   */
  readonly tooLargeResourceVersion: boolean

  /** `object`: the ERROR event's object, normally a Status. */
  constructor(path: string, object: unknown) {
    const status = (typeof object === 'object' && object !== null ? object : {}) as KubeStatus
    const code = typeof status.code === 'number' ? status.code : 500
    const message = typeof status.message === 'string' ? status.message : 'watch ERROR event without a message'
    super(code, `watch ${path}: ${code} ${message}`, typeof status.reason === 'string' ? status.reason : undefined)
    this.name = 'WatchStatusError'
    const retry = status.details?.retryAfterSeconds
    this.retryAfterMs = typeof retry === 'number' && retry > 0 ? retry * 1000 : undefined
    const causes = Array.isArray(status.details?.causes) ? (status.details.causes as StatusCause[]) : []
    // As client-go's check: the cause, or (servers before 1.19) the cause's or the Status's message.
    this.tooLargeResourceVersion = code === 504 &&
      (causes.some((c) => c?.reason === 'ResourceVersionTooLarge' || c?.message === TOO_LARGE) || message.includes(TOO_LARGE))
  }
}

export function isTooLargeResourceVersion(err: unknown): boolean {
  return err instanceof WatchStatusError && err.tooLargeResourceVersion
}

export function retryAfterMs(err: unknown): number | undefined {
  return err instanceof WatchStatusError ? err.retryAfterMs : undefined
}
