// The listeners: public and cluster-local (HTTP/1.1 and h2c on one port), and TLS (HTTP/2 and
// HTTP/1.1 by ALPN, SNI certificates). Our own HTTP/1.1 server side for bodyless requests in the
// clear, and plain node:http/http2 servers for the rest, rather than fastify: the proxy path needs no
// routing framework, and every layer it skips is throughput (docs/hot-path.md).
import http from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import type tls from 'node:tls'
import type { Duplex } from 'node:stream'
import type { DataPlane, ListenerKind } from './data-plane.ts'
import type { CertificateStore } from './tls.ts'
import { createSniffingServer, nodeHttp1 } from './sniff.ts'
import { H2StreamRequest, H2StreamResponse } from './h2/server.ts'
import { EdgeH1Server } from './h1/server/server.ts'
// Hostile input (issue 7): limits, per-IP connections, the parser's refusals. Per-request checks are
// the front door's (front-door.ts): every request, stream and upgrade goes straight there.
import { onClientError, perIpAdmission, withDefaults } from './guard.ts'
import { copyClaimedAddress, readProxyHeader } from './proxy-front.ts'
import type { ProxyFailure } from './proxy-front.ts'
import type { ClientLimits } from './guard.ts'
import type { Entrance } from './front-door.ts'
import { listenOnAll } from './listen-addresses.ts'
import type { AcceptOptions, BindAddress, BoundAddresses } from './listen-addresses.ts'

export interface ListenerOptions extends Partial<ClientLimits> {
  /** Every address binds `port` (bindAddresses: IPv6-only where both families are listed). */
  addresses: readonly BindAddress[]
  port: number
  /** Time a client has to send its request headers. */
  headersTimeoutMs?: number
  /** Keep idle client connections longer than a typical load balancer's idle timeout (60 s). */
  keepAliveTimeoutMs?: number
  maxHeaderSize?: number
  /** Plain HTTP/1.1: the gateway's own server for bodyless requests (default), or node:http for all. */
  http1Server?: 'edge' | 'node'
  /** Every connection starts with a PROXY protocol header (v1 or v2) from a load balancer. */
  proxyProtocol?: boolean
}

export interface Listener {
  readonly kind: ListenerKind
  /** The HTTP/1.1 server (requests from h1 connections). */
  readonly server: http.Server
  readonly port: number
  /**
   * New client limits (config-edge-gateway): each request reads them as it arrives, each connection's
   * next request head is parsed and timed by them. Connections already refused or closed stay so.
   */
  setLimits(limits: ClientLimits): void
  /** --proxy-protocol on or off for the connections accepted from now on (open ones keep theirs). */
  setProxyProtocol(on: boolean): void
  /** TLS listeners: a new TLS 1.2 cipher list for the handshakes from now on. */
  setCiphers?(ciphers: string | undefined): void
  close(): Promise<void>
  /** Ends every connection now (after a drain). */
  closeAll(): void
}

/** Idle client keep-alive connections close after this (longer than a typical load balancer's 60 s). */
const CLIENT_KEEP_ALIVE_MS = 65_000

function http1Server(plane: DataPlane, at: Entrance, opts: ListenerOptions): http.Server {
  const limits = at.limits
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
  const door = plane.door
  server.on('request', (req, res) => door.request(req, res, at, 'h1'))
  // Expect: 100-continue: the front door refuses (e.g. a Content-Length over the body limit) before
  // the body is sent, and sends 100 Continue once the request may go on.
  server.on('checkContinue', (req, res) => door.request(req, res, at, 'h1', true))
  server.on('upgrade', (req, socket, head) => door.upgrade(req, socket, head, at))
  answerClientErrors(server, plane)
  return server
}

/** node:http's parser errors (malformed, headers too large or too slow) get our answer, and are counted. */
function answerClientErrors(server: http.Server | http2.Http2SecureServer, plane: DataPlane): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const refused = onClientError(err, socket)
    if (refused) plane.requests.unparsed(refused, (socket as net.Socket).remoteAddress)
  })
}

function http2Handlers(server: http2.Http2Server | http2.Http2SecureServer, plane: DataPlane, at: Entrance): void {
  const door = plane.door
  // Streams, not node:http2's 'request' (its compatibility layer): h2/server.ts says why. No
  // HTTP/1.1 request reaches this server: the TLS listener gives ALPN http/1.1 to our own server side.
  server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
    door.request(new H2StreamRequest(stream, headers, rawHeaders), new H2StreamResponse(stream), at, 'h2', headers.expect === '100-continue')
  })
  // A misbehaving HTTP/2 client ends its own session, never the listener.
  server.on('sessionError', () => {})
  server.on('session', (session) => session.on('error', () => session.destroy()))
}

const H2_SETTINGS: http2.Settings = { maxConcurrentStreams: 1000, enablePush: false }

// How the plain front (sniff.ts) and the PROXY-protocol front (netServer) take connections; a TLS
// server takes them as node:tls does by default.
const PAUSED: AcceptOptions = { pauseOnConnect: true, noDelay: true }
const TLS_ACCEPT: AcceptOptions = {}

/**
 * --proxy-protocol: each connection's PROXY header is read first (under the header timeout); the
 * per-IP limit then counts the client it names.
 */
function proxyFirst(plane: DataPlane, at: Entrance, perIp: (socket: net.Socket) => boolean, proxy: { on: boolean }): (socket: net.Socket, go: (rest: Buffer | undefined) => void) => void {
  const onRejected = (reason: ProxyFailure): void => plane.metrics.connectionRefused(`proxy-protocol-${reason}`)
  return (socket, go) => {
    // Without it, the per-IP limit counts the peer at once and the connection goes straight on.
    if (!proxy.on) {
      if (perIp(socket)) go(undefined)
      return
    }
    readProxyHeader(socket, { timeoutMs: at.limits.headersTimeoutMs, onRejected }, (s, rest) => {
      if (perIp(s)) go(rest)
    })
  }
}

/** The per-IP limit of a listener, read from its entrance at each connection. */
function perIpOf(plane: DataPlane, at: Entrance): (socket: net.Socket) => boolean {
  return perIpAdmission(() => at.limits.maxConnectionsPerIp, () => plane.metrics.connectionRefused('per-ip-limit'))
}

/** What setLimits changes besides the entrance: node:http's and our HTTP/1.1 server's own copies. */
function applyLimits(at: Entrance, h1: http.Server, edge: EdgeH1Server | undefined, limits: ClientLimits): void {
  at.limits = limits
  h1.headersTimeout = limits.headersTimeoutMs
  h1.maxHeadersCount = limits.maxHeadersCount
  // node:http reads it for each new connection's parser.
  ;(h1 as http.Server & { maxHeaderSize: number }).maxHeaderSize = limits.maxHeaderSize
  edge?.setLimits(limits)
}

/** Public or cluster-local listener: HTTP/1.1 and HTTP/2 prior knowledge (h2c) on one port. */
export async function startListener(plane: DataPlane, kind: ListenerKind, opts: ListenerOptions): Promise<Listener> {
  const limits = withDefaults(opts)
  const at: Entrance = { listener: kind, secure: false, limits }
  const h1 = http1Server(plane, at, opts)
  const h2 = http2.createServer({ settings: H2_SETTINGS, maxSessionMemory: 64 })
  http2Handlers(h2, plane, at)
  const sessions = trackSessions(h2)
  // h1 never listens itself (the sniffing front hands it connections), so start the connection
  // tracking Node attaches to 'listening': without it neither headersTimeout (slow clients) nor
  // closeIdleConnections/closeAllConnections apply to any connection.
  h1.emit('listening')
  const edge = opts.http1Server === 'node' ? undefined : edgeHttp1Server(plane, at, opts, h1)
  const proxy = { on: opts.proxyProtocol === true }
  const before = proxyFirst(plane, at, perIpOf(plane, at), proxy)
  const sniffing = { firstByteTimeoutMs: limits.headersTimeoutMs }
  const front = createSniffingServer(edge ? (socket, seen) => edge.accept(socket, seen) : nodeHttp1(h1), h2, sniffing, before)
  const l = listening(kind, front, await listenOnAll(front, opts.addresses, opts.port, PAUSED), h1, edge, sessions, undefined)
  return {
    ...l,
    setLimits: (next) => {
      applyLimits(at, h1, edge, next)
      sniffing.firstByteTimeoutMs = next.headersTimeoutMs
    },
    setProxyProtocol: (on) => (proxy.on = on),
  }
}

/**
 * A started listener: `accepting` takes the connections (those to further addresses reach it from
 * `bound`); h1 (node:http, never listening itself), our HTTP/1.1 server side and the HTTP/2
 * sessions serve them; `sockets` are other connections to end on closeAll (HTTP/1.1 over TLS).
 */
function listening(kind: ListenerKind, accepting: net.Server, bound: BoundAddresses, h1: http.Server, edge: EdgeH1Server | undefined, sessions: Set<http2.Http2Session>, sockets: Set<net.Socket> | undefined): Omit<Listener, 'setLimits' | 'setProxyProtocol'> {
  return {
    kind,
    server: h1,
    port: bound.port,
    close: () =>
      new Promise<void>((resolve) => {
        let open = 2
        const done = (): void => {
          if (--open === 0) resolve()
        }
        accepting.close(done)
        void bound.close().then(done)
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
      if (sockets) for (const sock of sockets) sock.destroy()
    },
  }
}

/**
 * The gateway's own HTTP/1.1 server side (h1/server/server.ts) in front of node:http: it answers bodyless
 * requests and hands every other connection to `h1` with the bytes it has read.
 */
function edgeHttp1Server(plane: DataPlane, at: Entrance, opts: ListenerOptions, h1: http.Server): EdgeH1Server {
  const limits = at.limits
  const door = plane.door
  return new EdgeH1Server({
    maxHeaderSize: limits.maxHeaderSize,
    maxHeadersCount: limits.maxHeadersCount,
    headersTimeoutMs: limits.headersTimeoutMs,
    keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? CLIENT_KEEP_ALIVE_MS,
    // The same front door node:http's 'request' event enters: our request and response are a
    // ClientRequest and a ClientResponse (client.ts).
    onRequest: (req, res) => door.request(req, res, at, 'h1'),
    handOff: nodeHttp1(h1),
    onHeadersTimeout: (socket) => {
      const refused = onClientError(HEADERS_TIMEOUT, socket)
      if (refused) plane.requests.unparsed(refused, socket.remoteAddress)
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
  const at: Entrance = { listener: kind, secure: true, limits }
  // HTTP/1.1 over TLS (ALPN http/1.1, or none) starts on our own server side too, as in the clear:
  // node:http2's secure server would give every such connection to node:http. Its own handler keeps
  // the h2 connections; node:http (h1) still takes what ours hands off (bodies, upgrades, Expect,
  // anything malformed), and everything with --http1-server node.
  const h1 = http1Server(plane, at, opts)
  h1.emit('listening')
  const edge = opts.http1Server === 'node' ? undefined : edgeHttp1Server(plane, at, opts, h1)
  const http2Takes = server.listeners('secureConnection') as Array<(socket: tls.TLSSocket) => void>
  server.removeAllListeners('secureConnection')
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    // A client address from a PROXY header was claimed on the accepted socket under the TLS socket.
    const under = (socket as tls.TLSSocket & { _parent?: object })._parent
    if (under) copyClaimedAddress(under, socket)
    if (socket.alpnProtocol === 'h2') for (const l of http2Takes) l.call(server, socket)
    else if (edge) edge.accept(socket, undefined)
    else nodeHttp1(h1)(socket, undefined)
  })
  http2Handlers(server, plane, at)
  // --proxy-protocol: the PROXY header comes before the TLS handshake, so a plain server takes the
  // connections, reads it, and gives the TLS server the connection as if it had accepted it. Bytes
  // of the handshake read past the header go back onto the socket: node:tls reads those first. The
  // plain server takes every connection, so the option can be turned on and off at run time.
  const proxy = { on: opts.proxyProtocol === true }
  const before = proxyFirst(plane, at, perIpOf(plane, at), proxy)
  const accepting = netServer((socket) =>
    before(socket, (rest) => {
      if (rest) socket.unshift(rest)
      server.emit('connection', socket)
    }),
  )
  server.on('tlsClientError', () => {}) // logged once per name by the certificate store
  answerClientErrors(server, plane)
  const sessions = trackSessions(server)
  // HTTP/1.1-over-TLS connections are not HTTP/2 sessions: track their sockets to end them on close.
  const sockets = new Set<net.Socket>()
  server.on('secureConnection', (sock: net.Socket) => {
    sockets.add(sock)
    sock.once('close', () => sockets.delete(sock))
  })
  const l = listening(kind, accepting, await listenOnAll(accepting, opts.addresses, opts.port, PAUSED), h1, edge, sessions, sockets)
  return {
    ...l,
    setLimits: (next) => applyLimits(at, h1, edge, next),
    setProxyProtocol: (on) => (proxy.on = on),
    // The default context's list is the one a handshake negotiates with; the SNI contexts get the
    // same list from the certificate store (CertificateStore.configure).
    setCiphers: (ciphers) => server.setSecureContext({ minVersion: 'TLSv1.2', ciphers }),
  }
}

function netServer(onConnection: (socket: net.Socket) => void): net.Server {
  return net.createServer({ pauseOnConnect: true, noDelay: true }, onConnection)
}

function trackSessions(server: http2.Http2Server | http2.Http2SecureServer): Set<http2.Http2Session> {
  const sessions = new Set<http2.Http2Session>()
  server.on('session', (s) => {
    sessions.add(s)
    s.once('close', () => sessions.delete(s))
  })
  return sessions
}
