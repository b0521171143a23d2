// Small helpers around @kubernetes/client-node calls: a per-request timeout (the generated clients
// have none, so a hung apiserver connection would stall leader election), merge-patch content type,
// and reading the HTTP status out of an error.
import { ApiException, HttpMethod, Observable, PatchStrategy } from '@kubernetes/client-node'
import type { ConfigurationOptions, RequestContext, ResponseContext } from '@kubernetes/client-node'

/** The name every write is recorded under in managedFields (client-node's default names itself). */
export const FIELD_MANAGER = 'edge-gateway'

/**
 * Options for one call: abort it after `timeoutMs` (or when `signal` aborts), and optionally send a
 * JSON merge patch. The
 * object-parameter API (makeApiClient) hands these straight to the observable API, so the middleware
 * returns client-node's Observable stub, as its own setHeaderMiddleware does.
 */
export function callOptions(timeoutMs: number, mergePatch = false, signal?: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx: RequestContext) => {
          const timeout = AbortSignal.timeout(timeoutMs)
          ctx.setSignal(signal ? AbortSignal.any([timeout, signal]) : timeout)
          if (mergePatch) ctx.setHeaderParam('Content-Type', PatchStrategy.MergePatch)
          // Set here rather than per call, so no write can forget it. DELETE takes no fieldManager.
          const method = ctx.getHttpMethod()
          if (method === HttpMethod.POST || method === HttpMethod.PUT || method === HttpMethod.PATCH) ctx.setQueryParam('fieldManager', FIELD_MANAGER)
          return new Observable(Promise.resolve(ctx))
        },
        post: (res: ResponseContext) => new Observable(Promise.resolve(res)),
      },
    ],
    middlewareMergeStrategy: 'append',
  }
}

/** The HTTP status of a failed call, or undefined for a transport error (refused, reset, timed out). */
export function httpCode(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined
}

export function errorText(err: unknown): string {
  if (err instanceof ApiException) {
    const body = err.body as unknown
    let msg: unknown
    try {
      msg = typeof body === 'string' ? (JSON.parse(body) as { message?: unknown }).message : (body as { message?: unknown } | undefined)?.message
    } catch {
      msg = body
    }
    return `HTTP ${err.code}${msg ? `: ${String(msg)}` : ''}`
  }
  const e = err as { message?: string; cause?: { code?: string; message?: string } }
  return [e?.message ?? String(err), e?.cause?.code ?? e?.cause?.message].filter(Boolean).join(': ')
}
