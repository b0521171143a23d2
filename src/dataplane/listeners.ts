// The public and cluster-local HTTP listeners. Plain node:http servers (not fastify): the proxy path
// needs no routing framework, and every layer it skips is throughput (see docs/hot-path.md).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { DataPlane, ListenerKind } from './data-plane.ts'

export interface ListenerOptions {
  host: string
  port: number
  /** Time a client has to send its request headers. */
  headersTimeoutMs?: number
  /** Keep idle client connections longer than a typical load balancer's idle timeout (60 s). */
  keepAliveTimeoutMs?: number
  maxHeaderSize?: number
}

export interface Listener {
  readonly kind: ListenerKind
  readonly server: http.Server
  readonly port: number
  close(): Promise<void>
}

export async function startListener(plane: DataPlane, kind: ListenerKind, opts: ListenerOptions): Promise<Listener> {
  const server = http.createServer({
    // A request may legitimately take minutes (Knative allows 600 s), and streams longer: no total limit here.
    requestTimeout: 0,
    headersTimeout: opts.headersTimeoutMs ?? 15_000,
    // Node only enforces headersTimeout when it sweeps connections; sweep often enough to mean it.
    connectionsCheckingInterval: 1_000,
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? 65_000,
    maxHeaderSize: opts.maxHeaderSize ?? 32 * 1024,
    noDelay: true,
  })
  server.on('request', (req, res) => plane.handle(req, res, kind, false))
  server.on('upgrade', (req, socket, head) => plane.handleUpgrade(req, socket, head, kind, false))
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy()
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
    const body = `${http.STATUS_CODES[status]}: ${err.code ?? 'bad request'}\n`
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nx-edge-reason: bad-request\r\nconnection: close\r\n\r\n${body}`)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  return {
    kind,
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeIdleConnections()
      }),
  }
}
