// Real external authorizers for the gateway to ask: a gRPC server speaking Envoy's
// envoy.service.auth.v3.Authorization/Check (built with @grpc/grpc-js on the gateway's own proto/
// definitions, which keep Envoy's field numbers), and a plain node:http server as an HTTP authorizer.
// Each records what it was asked, and decides by the request's path:
//   /deny…  denies (gRPC: 401 with a WWW-Authenticate, two cookies and a body; HTTP: 403 likewise)
//   /hang…  never answers (gRPC: released at stop; HTTP: cut at close)
//   /fail…  HTTP only: 503 (no decision, as Envoy reads a 5xx)
//   else    allows, with header changes for the pod and the client
import http from 'node:http'
import https from 'node:https'
import path from 'node:path'
import type { AddressInfo } from 'node:net'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

const PROTO = path.resolve(import.meta.dirname, '..', '..', 'proto')

/** The attributes of one CheckRequest as decoded (snake_case, as Envoy names them). */
export interface CheckSeen {
  client: string | undefined
  attributes: {
    source: { address: { socket_address: { address: string; port_value: number } } }
    destination: { address: { socket_address: { address: string; port_value: number } } }
    context_extensions: Record<string, string>
    request: {
      http: { method: string; path: string; host: string; scheme: string; protocol: string; size: number; headers: Record<string, string>; body?: string; raw_body?: Buffer }
    }
  }
}

export interface GrpcAuthorizerServer {
  port: number
  seen: CheckSeen[]
  /** Calls held by /hang. */
  hung: number
  stop(): Promise<void>
}

const definition = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', { includeDirs: [PROTO], keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true })
const service = (grpc.loadPackageDefinition(definition) as unknown as { envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } } }).envoy.service.auth.v3.Authorization.service

export async function startGrpcAuthorizer(port = 0): Promise<GrpcAuthorizerServer> {
  const server = new grpc.Server()
  const release: Array<() => void> = []
  const a: GrpcAuthorizerServer = {
    port: 0,
    seen: [],
    hung: 0,
    stop: async () => {
      for (const r of release) r()
      server.forceShutdown()
    },
  }
  server.addService(service, {
    Check: (call: grpc.ServerUnaryCall<{ attributes: CheckSeen['attributes'] }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const attributes = call.request.attributes
      a.seen.push({ client: call.metadata.get('client')[0]?.toString(), attributes })
      const p = attributes.request.http.path
      if (p.startsWith('/hang')) {
        a.hung++
        release.push(() => cb({ code: grpc.status.CANCELLED, details: 'test over' }))
        return
      }
      if (p.startsWith('/deny')) {
        cb(null, {
          status: { code: grpc.status.PERMISSION_DENIED, message: 'no token' },
          denied_response: {
            status: { code: 401 },
            headers: [
              { header: { key: 'WWW-Authenticate', value: 'Bearer realm="test"' } },
              { header: { key: 'set-cookie', value: 'a=1' }, append: { value: true } },
              { header: { key: 'set-cookie', value: 'b=2' }, append: { value: true } },
              // Framing is the gateway's: this one must not reach the client.
              { header: { key: 'content-length', value: '1' } },
            ],
            body: 'who are you?\n',
          },
        })
        return
      }
      cb(null, {
        status: { code: grpc.status.OK },
        ok_response: {
          headers: [
            { header: { key: 'x-user', value: 'alice' } },
            { header: { key: 'x-tag', value: 'from-authz' }, append: { value: false } },
            { header: { key: 'x-trace', value: '2' }, append: { value: true } },
            // Framing and the gateway's own headers are never taken from an authorizer.
            { header: { key: 'content-length', value: '1' } },
            { header: { key: 'k-proxy-request', value: 'forged' } },
            { header: { key: 'x-bad', value: 'line\r\nbreak' } },
          ],
          headers_to_remove: ['authorization'],
          response_headers_to_add: [{ header: { key: 'x-authz', value: 'checked' } }],
        },
      })
    },
  })
  a.port = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))))
  return a
}

export interface HttpSeen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  body: string
}

export interface HttpAuthorizerServer {
  port: number
  seen: HttpSeen[]
  /** Connections accepted (TLS ones once their handshake is done). */
  connections: number
  close(): Promise<void>
}

/** `tls`: an https authorizer serving this certificate. */
export async function startHttpAuthorizer(tls?: { cert: string; key: string }): Promise<HttpAuthorizerServer> {
  const a: HttpAuthorizerServer = { port: 0, seen: [], connections: 0, close: async () => {} }
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const url = req.url ?? ''
      a.seen.push({ method: req.method ?? '', url, headers: req.headers, body: Buffer.concat(chunks).toString() })
      const p = url.replace(/^\/check/, '')
      if (p.startsWith('/deny-chunked')) {
        // Written in two pieces with no length: node:http frames it chunked, on a kept-alive connection.
        res.writeHead(401, { 'content-type': 'text/plain' })
        res.write('no')
        res.end(' entry')
      } else if (p.startsWith('/deny')) {
        res.writeHead(403, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="test"', 'set-cookie': ['a=1', 'b=2'] })
        res.end('{"error":"forbidden"}')
      } else if (p.startsWith('/hang')) {
        // Never answered: the gateway's timeout must end it (the server's close cuts it afterwards).
      } else if (p.startsWith('/fail')) {
        res.writeHead(503)
        res.end('down for maintenance')
      } else {
        res.writeHead(200, { 'x-user': 'bob', 'x-other': 'not for the pod', 'x-envoy-auth-headers-to-remove': 'authorization' })
        res.end()
      }
    })
  }
  const server = tls ? https.createServer(tls, handler) : http.createServer(handler)
  server.on(tls ? 'secureConnection' : 'connection', () => a.connections++)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  a.port = (server.address() as AddressInfo).port
  a.close = async () => {
    server.closeAllConnections()
    await new Promise<void>((r) => server.close(() => r()))
  }
  return a
}
