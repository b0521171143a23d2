// Asking an HTTP authorizer, as Envoy's ext_authz http_service does with Kourier's settings: the
// client's method, to `<authorizer><--extauthz-path-prefix><original path and query>`, with the
// client's Host, Authorization and (when the body was read) the body with its length, plus Kourier's
// `client` header and any --extauthz-allowed-headers. Its answer: 200 allows (headers named by
// --extauthz-allowed-upstream-headers go to the pod; x-envoy-auth-headers-to-remove names client
// headers the pod must not see), 5xx is no decision, anything else is the client's answer as it is.
import { Pool } from 'undici'
import type { Authorizer, AuthzQuery, Decision } from './authorizer.ts'
import { ClientHeaders, EditsBuilder } from './header-edits.ts'
import type { HeaderEdits } from '../dataplane/upstream-headers.ts'

/** Always sent when the client sent them (Envoy's defaults for an HTTP authorizer). */
const ALWAYS = ['authorization']
/** A denial's body is the client's answer; one larger than this is not an answer but a fault. */
const MAX_DENIAL_BODY = 1024 * 1024
const HEADERS_TO_REMOVE = 'x-envoy-auth-headers-to-remove'

export interface HttpAuthorizerOptions {
  /** `http://host:port` or `https://host:port`. */
  origin: string
  pathPrefix: string
  /** Client headers sent besides Host, Authorization and Content-Length (lower-case). */
  allowedHeaders: readonly string[]
  /** Headers of an allowing answer that go to the pod (lower-case); Kourier's default: none. */
  upstreamHeaders: readonly string[]
}

export class HttpAuthorizer implements Authorizer {
  private readonly opts: HttpAuthorizerOptions
  /** One pool of keep-alive connections to the authorizer for the gateway process's life. */
  private readonly pool: Pool
  private readonly sent: readonly string[]

  constructor(opts: HttpAuthorizerOptions) {
    this.opts = opts
    this.pool = new Pool(opts.origin, { connections: 64, keepAliveTimeout: 4000 })
    this.sent = [...ALWAYS, ...opts.allowedHeaders.filter((h) => !ALWAYS.includes(h))]
  }

  async check(q: AuthzQuery, timeoutMs: number): Promise<Decision> {
    const headers: Record<string, string> = { host: q.host, 'content-length': String(q.body?.length ?? 0), client: 'edge-gateway' }
    for (const name of this.sent) {
      const v = q.headers[name]
      if (v !== undefined && headers[name] === undefined) headers[name] = v
    }
    try {
      const res = await this.pool.request({
        method: q.method,
        path: this.opts.pathPrefix + q.path,
        headers,
        body: q.body !== undefined && q.body.length > 0 ? q.body : null,
        signal: AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      })
      const body = await bodyOf(res.body)
      if (res.statusCode >= 500) return { kind: 'error', why: `the authorizer answered ${res.statusCode}` }
      if (res.statusCode === 200) return { kind: 'allow', edits: this.allowed(res.headers) }
      const out = new ClientHeaders()
      for (const name in res.headers) {
        const v = res.headers[name]
        if (v === undefined || name === HEADERS_TO_REMOVE) continue
        for (const one of typeof v === 'string' ? [v] : v) out.add(name, one, 'append')
      }
      return { kind: 'deny', status: res.statusCode, headers: out.headers, body }
    } catch (err) {
      const e = err as Error & { code?: string }
      if (e.name === 'TimeoutError' || e.code === 'UND_ERR_ABORTED' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT') return { kind: 'error', why: `no answer within ${timeoutMs} ms` }
      return { kind: 'error', why: e.code ? `${e.code}: ${e.message}` : e.message }
    }
  }

  close(): Promise<void> {
    return this.pool.close()
  }

  private allowed(headers: Record<string, string | string[] | undefined>): HeaderEdits | undefined {
    const b = new EditsBuilder()
    for (const name of this.opts.upstreamHeaders) {
      const v = headers[name]
      if (v === undefined) continue
      // Replaces the client's header of that name (Envoy's allowed_upstream_headers); every value kept.
      const values = typeof v === 'string' ? [v] : v
      values.forEach((one, i) => b.upstream(name, one, i === 0 ? 'set' : 'append'))
    }
    const remove = headers[HEADERS_TO_REMOVE]
    for (const list of remove === undefined ? [] : typeof remove === 'string' ? [remove] : remove) for (const name of list.split(',')) b.without(name)
    return b.build()
  }
}

async function bodyOf(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const chunk of body) {
    n += chunk.length
    if (n > MAX_DENIAL_BODY) throw new Error(`the authorizer's answer is longer than ${MAX_DENIAL_BODY} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, n)
}
