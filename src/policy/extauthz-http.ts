// Asking an HTTP authorizer, as Envoy's ext_authz http_service does with Kourier's settings: the
// client's method, to `<authorizer><--extauthz-path-prefix><original path and query>`, with the
// client's Host, Authorization and (when the body was read) the body with its length, plus Kourier's
// `client` header and any --extauthz-allowed-headers. Its answer: 200 allows (headers named by
// --extauthz-allowed-upstream-headers go to the pod; x-envoy-auth-headers-to-remove names client
// headers the pod must not see), 5xx is no decision, anything else is the client's answer as it is.
import net from 'node:net'
import { Pool, buildConnector } from 'undici'
import type { Dispatcher } from 'undici'
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
  /** https: the PEM CAs its certificate must chain to, instead of Node's. */
  ca?: string
}

export class HttpAuthorizer implements Authorizer {
  private readonly opts: HttpAuthorizerOptions
  /** One pool of keep-alive connections to the authorizer for the gateway process's life. */
  private readonly pool: Pool
  private readonly sent: readonly string[]
  /** The authorizer's own name, for TLS (see the constructor). */
  private readonly servername: string

  constructor(opts: HttpAuthorizerOptions) {
    this.opts = opts
    const u = new URL(opts.origin)
    this.servername = u.hostname.replace(/^\[|\]$/g, '')
    // Over https, undici takes a request's TLS name from its Host header, which here is the
    // client's (as Envoy sends it): the authorizer's certificate would be checked against the
    // client's host, and a connection dropped whenever the next request's Host differs. The name is
    // the authorizer's instead: each request says so, and the connector uses it (none for an IP
    // address, whose certificate is then checked for that IP).
    const base = buildConnector(opts.ca === undefined ? {} : { ca: opts.ca })
    const name = net.isIP(this.servername) === 0 ? this.servername : undefined
    const connect: buildConnector.connector = (o, cb) => base({ ...o, servername: name }, cb)
    this.pool = new Pool(opts.origin, { connections: 64, keepAliveTimeout: 4000, connect })
    this.sent = [...ALWAYS, ...opts.allowedHeaders.filter((h) => !ALWAYS.includes(h))]
  }

  async check(q: AuthzQuery, timeoutMs: number): Promise<Decision> {
    const headers: Record<string, string> = { host: q.host, 'content-length': String(q.body?.length ?? 0), client: 'edge-gateway' }
    for (const name of this.sent) {
      const v = q.headers[name]
      if (v !== undefined && headers[name] === undefined) headers[name] = v
    }
    try {
      // `servername` is read by undici's Request, though its types leave it out.
      const request: Dispatcher.RequestOptions & { servername: string } = {
        servername: this.servername,
        method: q.method as Dispatcher.HttpMethod,
        path: this.opts.pathPrefix + q.path,
        headers,
        body: q.body !== undefined && q.body.length > 0 ? q.body : null,
        signal: AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      }
      const res = await this.pool.request(request)
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
