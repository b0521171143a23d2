// A client-node Watch that asks for bookmarks and keeps quiet watches open as long as the server
// allows. client-node sends neither allowWatchBookmarks nor timeoutSeconds, and ends a watch that
// carried nothing for 30 s, so a quiet collection reconnected every 30-60 s.
//
// With bookmarks the API server sends its current resourceVersion about once a minute on a quiet
// watch (and just before the watch's deadline); ListWatch stores it, so the reconnect resumes from
// there instead of from an old resourceVersion that compaction may have removed (a 410 and a relist).
import { Watch } from '@kubernetes/client-node'
import type { KubeConfig } from '@kubernetes/client-node'

/** kube-apiserver's own choice without timeoutSeconds: between --min-request-timeout (1800 s) and twice that. */
const MIN_TIMEOUT_S = 1800
/** More than two bookmark periods (about 60 s each): only a dead connection stays silent this long. */
export const WATCH_INACTIVITY_MS = 150_000

export class BookmarkWatch extends Watch {
  private readonly onBookmark: () => void

  constructor(kc: KubeConfig, onBookmark: () => void) {
    super(kc)
    this.onBookmark = onBookmark
    // Declared private in client-node 2.0.1's typings but read on every watch: the only way to set it.
    ;(this as unknown as { requestTimeoutMs: number }).requestTimeoutMs = WATCH_INACTIVITY_MS
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
    return super.watch(path, params, (phase, obj, watchObj) => {
      if (phase === 'BOOKMARK') this.onBookmark()
      callback(phase, obj, watchObj)
    }, done)
  }
}
