// A client-node Watch that asks for bookmarks and keeps quiet watches open as long as the server
// allows. client-node sends neither allowWatchBookmarks nor timeoutSeconds, and ends a watch that
// carried nothing for 30 s, so a quiet collection reconnected every 30-60 s.
//
// With bookmarks the API server sends its current resourceVersion about once a minute on a quiet
// watch (and just before the watch's deadline); ListWatch stores it, so the reconnect resumes from
// there instead of from an old resourceVersion that compaction may have removed (a 410 and a relist).
//
// It also tells the informer two things ListWatch keeps to itself:
// - `silent`: the watch carried nothing, not even a bookmark, for the inactivity timeout. ListWatch
//   just reconnects from the same resourceVersion. But a server that sends bookmarks is silent that
//   long only if it has not reached that resourceVersion (restored from an older etcd backup): such a
//   watch is accepted and stays silent until the server passes it, so only a relist ends the blindness;
// - an ERROR event ends the watch with its Status as the error (see watch-status.ts).
import { Watch } from '@kubernetes/client-node'
import type { KubeConfig } from '@kubernetes/client-node'
import { WatchStatusError } from './watch-status.ts'

/** kube-apiserver's own choice without timeoutSeconds: between --min-request-timeout (1800 s) and twice that. */
const MIN_TIMEOUT_S = 1800
/** More than two bookmark periods (about 60 s each): only a dead connection stays silent this long. */
export const WATCH_INACTIVITY_MS = 150_000

export interface WatchHooks {
  /** A BOOKMARK arrived: a sign of life on a quiet watch. */
  bookmark(): void
  /** The watch was aborted after carrying nothing, not even a bookmark, for the inactivity timeout. */
  silent(): void
}

function isTimeout(err: unknown): boolean {
  return (err as { name?: unknown } | null | undefined)?.name === 'TimeoutError'
}

export class BookmarkWatch extends Watch {
  private readonly hooks: WatchHooks

  constructor(kc: KubeConfig, hooks: WatchHooks, inactivityMs = WATCH_INACTIVITY_MS) {
    super(kc)
    this.hooks = hooks
    // Declared private in client-node 2.0.1's typings but read on every watch: the only way to set it.
    ;(this as unknown as { requestTimeoutMs: number }).requestTimeoutMs = inactivityMs
  }

  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // Spread over [1800, 3600) s, as the server would, so replicas' watches do not end together.
    const timeoutSeconds = MIN_TIMEOUT_S + Math.floor(Math.random() * MIN_TIMEOUT_S)
    const params = { ...queryParams, allowWatchBookmarks: true, timeoutSeconds }
    let errorEvent: WatchStatusError | undefined
    return super.watch(path, params, (phase, obj, watchObj) => {
      if (phase === 'BOOKMARK') this.hooks.bookmark()
      else if (phase === 'ERROR') errorEvent ??= new WatchStatusError(path, obj)
      callback(phase, obj, watchObj)
    }, (err) => {
      // Before `done`: the informer may replace this ListWatch, which then does not reconnect.
      if (isTimeout(err)) this.hooks.silent()
      done(err ?? errorEvent ?? null)
    })
  }
}
