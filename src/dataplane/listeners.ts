// The listeners: public and cluster-local (HTTP/1.1 and h2c on one port), and TLS (HTTP/2 and
// HTTP/1.1 by ALPN, SNI certificates). Our own HTTP/1.1 server side for bodyless requests in the
// clear, and plain node:http/http2 servers for the rest, rather than fastify: the proxy path needs no
// routing framework, and every layer it skips is throughput (docs/hot-path.md).
import http from 'node:http'
import http2 from 'node:http2'
import type net from 'node:net'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { DataPlane, ListenerKind } from './data-plane.ts'
import type { CertificateStore } from './tls.ts'
import { createSniffingServer, nodeHttp1 } from './sniff.ts'
import { EdgeH1Server } from './h1/server.ts'
// Hostile input (issue 7): limits, framing checks, trusted hops, per-IP connections.
import { limitConnectionsPerIp, onClientError, screenRequest, screenUpgrade, withDefaults } from './guard.ts'
import type { ClientLimits } from './guard.ts'

export interface ListenerOptions extends Partial<ClientLimits> {
  host: string
  port: number
  /** Time a client has to send its request headers. */
  headersTimeoutMs?: number
  /** Keep idle client connections longer than a typical load balancer's idle timeout (60 s). */
  keepAliveTimeoutMs?: number
  maxHeaderSize?: number
  /** Plain HTTP/1.1: the gateway's own server for bodyless requests (default), or node:http for all. */
  http1Server?: 'edge' | 'node'
}

export interface Listener {
  readonly kind: ListenerKind
  /** The HTTP/1.1 server (requests from h1 connections). */
  readonly server: http.Server
  readonly port: number
  close(): Promise<void>
  /** Ends every connection now (after a drain). */
  closeAll(): void
}

/** Idle client keep-alive connections close after this (longer than a typical load balancer's 60 s). */
const CLIENT_KEEP_ALIVE_MS = 65_000

function http1Server(plane: DataPlane, kind: ListenerKind, secure: boolean, opts: ListenerOptions): http.Server {
  const limits = withDefaults(opts)
  const server = http.createServer({
    // A request may legitimately take minutes (Knative allows 600 s), and streams longer: no total limit here.
    requestTimeout: 0,
    headersTimeout: limits.headersTimeoutMs,
    // Node only enforces headersTimeout when it sweeps connections; sweep often enough to mean it.
    connectionsCheckingInterval: 1_000,
    keepAliveTimeout: opts.keepAliveTimeoutMs ?? CLIENT_KEEP_ALIVE_MS,
    maxHeaderSize: limits.maxHeaderSize,
    noDelay: true,
    // A request without Host is answered by handle() (400 with x-edge-reason), not by Node's bare 400.
    requireHostHeader: false,
  })
  // More header lines than this fail the parse (HPE_HEADER_OVERFLOW → 431 in onClientError).
  server.maxHeadersCount = limits.maxHeadersCount
  server.on('request', serveHttp1(plane, kind, secure, limits))
  // Expect: 100-continue: refuse (e.g. a Content-Length over the body limit) before the body is sent.
  server.on('checkContinue', (req, res) => {
    const refused = screenRequest(req, res, limits, true)
    if (refused) return plane.refused(req, refused)
    res.writeContinue()
    plane.handle(req, res, kind, secure)
  })
  server.on('upgrade', (req, socket, head) => {
    const refused = screenUpgrade(req, socket, limits)
    if (refused) return plane.refused(req, refused)
    plane.handleUpgrade(req, socket, head, kind, secure)
  })
  answerClientErrors(server, plane)
  return server
}

/** A parsed HTTP/1.x request (node:http's or our own server's): the guard, then the data plane. */
function serveHttp1(plane: DataPlane, kind: ListenerKind, secure: boolean, limits: ClientLimits): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  return (req, res) => {
    const refused = screenRequest(req, res, limits, true)
    if (refused) return plane.refused(req, refused)
    plane.handle(req, res, kind, secure)
  }
}

/** node:http's parser errors (malformed, headers too large or too slow) get our answer, and are counted. */
function answerClientErrors(server: http.Server | http2.Http2SecureServer, plane: DataPlane): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const refused = onClientError(err, socket)
    if (refused) plane.refused(undefined, refused)
  })
}

function http2Handlers(server: http2.Http2Server | http2.Http2SecureServer, plane: DataPlane, kind: ListenerKind, secure: boolean, limits: ClientLimits): void {
  server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    // HTTP/1.1 requests on a TLS connection (ALPN http/1.1) arrive here too, as node:http objects.
    const refused = screenRequest(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse, limits, !(req instanceof http2.Http2ServerRequest))
    if (refused) return plane.refused(req as unknown as http.IncomingMessage, refused)
    plane.handle(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse, kind, secure)
  })
  // A misbehaving HTTP/2 client ends its own session, never the listener.
  server.on('sessionError', () => {})
  server.on('session', (session) => session.on('error', () => session.destroy()))
}

const H2_SETTINGS: http2.Settings = { maxConcurrentStreams: 1000, enablePush: false }

async function listen(server: net.Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host, port }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return (server.address() as AddressInfo).port
}

/** Public or cluster-local listener: HTTP/1.1 and HTTP/2 prior knowledge (h2c) on one port. */
export async function startListener(plane: DataPlane, kind: ListenerKind, opts: ListenerOptions): Promise<Listener> {
  const h1 = http1Server(plane, kind, false, opts)
  const h2 = http2.createServer({ settings: H2_SETTINGS, maxSessionMemory: 64 })
  const limits = withDefaults(opts)
  http2Handlers(h2, plane, kind, false, limits)
  const sessions = trackSessions(h2)
  // h1 never listens itself (the sniffing front hands it connections), so start the connection
  // tracking Node attaches to 'listening': without it neither headersTimeout (slow clients) nor
  // closeIdleConnections/closeAllConnections apply to any connection.
  h1.emit('listening')
  const edge = opts.http1Server === 'node' ? undefined : edgeHttp1Server(plane, kind, limits, opts, h1)
  const front = createSniffingServer(edge ? (socket, seen) => edge.accept(socket, seen) : nodeHttp1(h1), h2, { firstByteTimeoutMs: limits.headersTimeoutMs })
  limitConnectionsPerIp(front, limits.maxConnectionsPerIp, () => plane.metrics.connectionRefused('per-ip-limit'))
  const port = await listen(front, opts.host, opts.port)
  return {
    kind,
    server: h1,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        front.close(() => resolve())
        // Not listening, so close() reports ERR_SERVER_NOT_RUNNING; what matters is that it stops
        // the connection sweep and closes idle keep-alive connections.
        h1.close(() => {})
        edge?.close()
        for (const s of sessions) s.close()
      }),
    closeAll: () => {
      h1.closeAllConnections()
      edge?.closeAll()
      for (const s of sessions) s.destroy()
    },
  }
}

/**
 * The gateway's own HTTP/1.1 server side (h1/server.ts) in front of node:http: it answers bodyless
 * requests and hands every other connection to `h1` with the bytes it has read.
 */
function edgeHttp1Server(plane: DataPlane, kind: ListenerKind, limits: ClientLimits, opts: ListenerOptions, h1: http.Server): EdgeH1Server {
  const serve = serveHttp1(plane, kind, false, limits)
  return new EdgeH1Server({
    maxHeaderSize: limits.maxHeaderSize,
    maxHeadersCount: limits.maxHeadersCount,
    headersTimeoutMs: limits.headersTimeoutMs,
    keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? CLIENT_KEEP_ALIVE_MS,
    // The same handler node:http's 'request' event runs: our request and response carry the part of
    // IncomingMessage and ServerResponse it uses.
    onRequest: (req, res) => serve(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse),
    handOff: nodeHttp1(h1),
    onHeadersTimeout: (socket) => {
      const refused = onClientError(HEADERS_TIMEOUT, socket)
      if (refused) plane.refused(undefined, refused)
    },
  })
}

/** What node:http reports for a request head that is too slow (guard.ts answers it with 408). */
const HEADERS_TIMEOUT: NodeJS.ErrnoException = Object.assign(new Error('request headers timed out'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' })

/**
 * A TLS listener: certificates chosen by SNI, h2 or http/1.1 by ALPN. `public` serves the
 * ExternalIP rules (--https-port); `local` every rule, for Knative's cluster-local TLS
 * (--local-https-port).
 */
export async function startTlsListener(plane: DataPlane, certs: CertificateStore, opts: ListenerOptions & { ciphers?: string }, kind: ListenerKind = 'public'): Promise<Listener> {
  const server = http2.createSecureServer({
    allowHTTP1: true,
    SNICallback: certs.sniCallback,
    minVersion: 'TLSv1.2',
    ciphers: opts.ciphers,
    settings: H2_SETTINGS,
    maxSessionMemory: 64,
  })
  const limits = withDefaults(opts)
  http2Handlers(server, plane, kind, true, limits)
  limitConnectionsPerIp(server, limits.maxConnectionsPerIp, () => plane.metrics.connectionRefused('per-ip-limit'))
  // WebSocket over TLS arrives as an HTTP/1.1 upgrade on the same server.
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const refused = screenUpgrade(req, socket, limits)
    if (refused) return plane.refused(req, refused)
    plane.handleUpgrade(req, socket, head, kind, true)
  })
  server.on('tlsClientError', () => {}) // logged once per name by the certificate store
  // HTTP/1.1 over TLS goes through node:http's parser too: the same answers as in the clear.
  answerClientErrors(server, plane)
  const sessions = trackSessions(server)
  // HTTP/1.1-over-TLS connections are not HTTP/2 sessions: track their sockets to end them on close.
  const sockets = new Set<net.Socket>()
  server.on('secureConnection', (sock: net.Socket) => {
    sockets.add(sock)
    sock.once('close', () => sockets.delete(sock))
  })
  const port = await listen(server, opts.host, opts.port)
  return {
    kind,
    server: server as unknown as http.Server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sessions) s.close()
      }),
    closeAll: () => {
      for (const s of sessions) s.destroy()
      for (const sock of sockets) sock.destroy()
    },
  }
}

function trackSessions(server: http2.Http2Server | http2.Http2SecureServer): Set<http2.Http2Session> {
  const sessions = new Set<http2.Http2Session>()
  server.on('session', (s) => {
    sessions.add(s)
    s.once('close', () => sessions.delete(s))
  })
  return sessions
}
