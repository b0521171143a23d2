// A raw LIST request with the KubeConfig's credentials. The typed API classes of client-node
// deserialize into model classes (Dates instead of strings, unknown fields dropped) while watch
// events arrive as plain JSON; listing raw keeps both paths the same shape for the store.
import { fetch } from 'undici'
import type { Dispatcher } from 'undici'
import { HttpMethod, RequestContext } from '@kubernetes/client-node'
import type { KubeConfig, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node'
import { EdgeError } from '../errors.ts'

/** An HTTP error from the API server: `statusCode`/`code` as ListWatch and ApiException name them. */
export class KubeRequestError extends Error {
  readonly statusCode: number
  readonly code: number
  readonly reason: string | undefined
  constructor(statusCode: number, message: string, reason?: string) {
    super(message)
    this.name = 'KubeRequestError'
    this.statusCode = statusCode
    this.code = statusCode
    this.reason = reason
  }
}

export interface ListQuery {
  labelSelector?: string | undefined
  fieldSelector?: string | undefined
}

/** A list that takes longer than this is treated as failed (and retried with backoff). */
const LIST_TIMEOUT_MS = 60_000

/** One GET with the KubeConfig's credentials: the status and the body text. */
export async function kubeGet(kc: KubeConfig, path: string, query: ListQuery, timeoutMs: number): Promise<{ status: number; text: string }> {
  const cluster = kc.getCurrentCluster()
  if (!cluster) throw new EdgeError('EDGE_ERR_KUBECONFIG', 'the kubeconfig has no current cluster')
  const url = new URL(cluster.server.replace(/\/+$/, '') + path)
  if (query.labelSelector) url.searchParams.set('labelSelector', query.labelSelector)
  if (query.fieldSelector) url.searchParams.set('fieldSelector', query.fieldSelector)
  const ctx = new RequestContext(url.toString(), HttpMethod.GET)
  await kc.applySecurityAuthentication(ctx)
  const res = await fetch(url, {
    method: 'GET',
    headers: { ...ctx.getHeaders(), accept: 'application/json' },
    dispatcher: ctx.getDispatcher() as Dispatcher | undefined,
    signal: AbortSignal.timeout(timeoutMs),
  })
  return { status: res.status, text: await res.text() }
}

export async function listCollection(kc: KubeConfig, path: string, query: ListQuery = {}): Promise<KubernetesListObject<KubernetesObject>> {
  const { status, text } = await kubeGet(kc, path, query, LIST_TIMEOUT_MS)
  if (status !== 200) {
    let message = text.slice(0, 500)
    let reason: string | undefined
    try {
      const parsed = JSON.parse(text) as { message?: string; reason?: string }
      message = parsed.message ?? message
      reason = parsed.reason
    } catch {
      // Not a Status object: keep the raw text.
    }
    throw new KubeRequestError(status, `list ${path}: ${status} ${message}`, reason)
  }
  const list = JSON.parse(text) as KubernetesListObject<KubernetesObject>
  list.items ??= []
  return list
}
