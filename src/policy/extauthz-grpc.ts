// Asking a gRPC authorizer: Envoy's envoy.service.auth.v3.Authorization/Check over one long-lived
// channel (HTTP/2, plaintext, as Kourier's extAuthz cluster), with the definitions in proto/ and
// Kourier's initial metadata naming the client. Its answer, read as Envoy reads it: status OK allows
// (with the OkHttpResponse's header changes), any other status denies (with the DeniedHttpResponse's
// status, 403 by default, headers and body), and a failed call (unreachable, deadline) is no decision.
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ChannelOptions, Client, Metadata, ServiceClientConstructor, ServiceError } from '@grpc/grpc-js'
import { denialStatus } from './authorizer.ts'
import type { Authorizer, AuthzQuery, Decision } from './authorizer.ts'
import { ClientHeaders, EditsBuilder } from './header-edits.ts'

/** proto/ at the package root, from src/policy/ (tests) and dist/policy/ (built) alike. */
const PROTO_ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'proto')

/**
 * Reconnect quickly after an outage: grpc-js's default backoff grows to two minutes, and calls fail
 * at once meanwhile, so an authorizer that is back would stay "down" for that long.
 */
const CHANNEL: ChannelOptions = {
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2000,
  'grpc.keepalive_time_ms': 30_000,
}

interface HeaderValueOption {
  header?: { key?: string; value?: string; raw_value?: Buffer }
  append?: { value?: boolean } | null
  append_action?: number
  keep_empty_value?: boolean
}

interface CheckResponse {
  status?: { code?: number; message?: string } | null
  denied_response?: { status?: { code?: number } | null; headers?: HeaderValueOption[]; body?: string } | null
  ok_response?: { headers?: HeaderValueOption[]; headers_to_remove?: string[]; response_headers_to_add?: HeaderValueOption[] } | null
}

type CheckClient = Client & {
  Check(request: unknown, metadata: Metadata, options: { deadline: number }, callback: (err: ServiceError | null, res?: CheckResponse) => void): unknown
}

interface Loaded {
  client: CheckClient
  metadata: Metadata
}

export class GrpcAuthorizer implements Authorizer {
  private readonly loaded: Promise<Loaded>
  private readonly packAsBytes: boolean

  constructor(target: string, packAsBytes: boolean) {
    this.packAsBytes = packAsBytes
    this.loaded = connect(target)
    // A failure to load is reported per check (as no decision); never an unhandled rejection.
    this.loaded.catch(() => {})
  }

  async check(q: AuthzQuery, timeoutMs: number): Promise<Decision> {
    let loaded: Loaded
    try {
      loaded = await this.loaded
    } catch (err) {
      return { kind: 'error', why: `the gRPC client could not be made: ${(err as Error).message}` }
    }
    const request = { attributes: this.attributes(q) }
    return new Promise<Decision>((resolve) => {
      loaded.client.Check(request, loaded.metadata, { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) resolve({ kind: 'error', why: `gRPC ${statusName(err.code)}: ${err.details || err.message}` })
        else resolve(decisionOf(res ?? {}, q))
      })
    })
  }

  async close(): Promise<void> {
    try {
      ;(await this.loaded).client.close()
    } catch {
      // Never made: nothing to close.
    }
  }

  private attributes(q: AuthzQuery): unknown {
    const now = Date.now()
    const http: Record<string, unknown> = {
      id: q.id,
      method: q.method,
      headers: q.headers,
      path: q.path,
      host: q.host,
      scheme: q.scheme,
      size: q.size,
      protocol: q.protocol,
    }
    if (q.body !== undefined) {
      if (this.packAsBytes) http.raw_body = q.body
      else http.body = q.body.toString('utf8')
    }
    return {
      source: { address: { socket_address: { address: q.source.address, port_value: q.source.port } } },
      destination: { address: { socket_address: { address: q.destination.address, port_value: q.destination.port } } },
      request: { time: { seconds: Math.floor(now / 1000), nanos: (now % 1000) * 1e6 }, http },
      context_extensions: q.context,
    }
  }
}

async function connect(target: string): Promise<Loaded> {
  // Loaded only when external authorization is on over gRPC.
  const grpc = await import('@grpc/grpc-js')
  const loader = await import('@grpc/proto-loader')
  const definition = await loader.load('envoy/service/auth/v3/external_auth.proto', { includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true })
  const loaded = grpc.loadPackageDefinition(definition) as unknown as { envoy: { service: { auth: { v3: { Authorization: ServiceClientConstructor } } } } }
  const client = new loaded.envoy.service.auth.v3.Authorization(target, grpc.credentials.createInsecure(), CHANNEL) as unknown as CheckClient
  // Connect now, not on the first request: that one would otherwise pay for the connection within its timeout.
  client.getChannel().getConnectivityState(true)
  const metadata = new grpc.Metadata()
  // Kourier sends `client: kourier`; the gateway names itself the same way.
  metadata.set('client', 'edge-gateway')
  return { client, metadata }
}

function statusName(code: number): string {
  return ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'][code] ?? `status ${code}`
}

/** A HeaderValueOption's name and value, or undefined when it names nothing or (unless kept) is empty. */
function pair(o: HeaderValueOption): [string, string] | undefined {
  const key = o.header?.key ?? ''
  const value = o.header?.value || (o.header?.raw_value ? o.header.raw_value.toString('latin1') : '')
  if (key === '' || (value === '' && !o.keep_empty_value)) return undefined
  return [key, value]
}

/**
 * Whether a header replaces the request's, is added beside it, or is skipped. The deprecated `append`
 * wins when set (most authorizers send it); otherwise the append action, where the API's documented
 * default for these messages is to replace.
 */
function modeOf(o: HeaderValueOption, present: boolean): 'set' | 'append' | undefined {
  if (o.append !== undefined && o.append !== null) return o.append.value ? 'append' : 'set'
  switch (o.append_action ?? 0) {
    case 1: // ADD_IF_ABSENT
      return present ? undefined : 'set'
    case 3: // OVERWRITE_IF_EXISTS
      return present ? 'set' : undefined
    default: // APPEND_IF_EXISTS_OR_ADD left at its zero value, OVERWRITE_IF_EXISTS_OR_ADD
      return 'set'
  }
}

export function decisionOf(res: CheckResponse, q: AuthzQuery): Decision {
  const code = res.status?.code ?? 0
  if (code === 0) {
    const b = new EditsBuilder()
    const ok = res.ok_response
    for (const o of ok?.headers ?? []) {
      const p = pair(o)
      if (p === undefined) continue
      const mode = modeOf(o, q.headers[p[0].toLowerCase()] !== undefined)
      if (mode !== undefined) b.upstream(p[0], p[1], mode)
    }
    for (const name of ok?.headers_to_remove ?? []) b.without(name)
    for (const o of ok?.response_headers_to_add ?? []) {
      const p = pair(o)
      if (p !== undefined) b.toClient(p[0], p[1])
    }
    return { kind: 'allow', edits: b.build() }
  }
  const denied = res.denied_response
  const headers = new ClientHeaders()
  for (const o of denied?.headers ?? []) {
    const p = pair(o)
    if (p !== undefined) headers.add(p[0], p[1], o.append?.value ? 'append' : 'set')
  }
  return { kind: 'deny', status: denialStatus(denied?.status?.code ?? 0), headers: headers.headers, body: Buffer.from(denied?.body ?? '', 'utf8') }
}
