// HTTP/1.1 Upgrade (WebSocket) through any route: resolved like a request, then the two sockets are
// spliced byte for byte (no re-framing). The client gets its 101 from the pod itself, so a dead
// upstream yields an HTTP error, never a 101 followed by a close.
import net from 'node:net'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { DataPlane, ListenerKind } from './data-plane.ts'
import type { EnqueueResult, PodSlot, Throttler, Waiter } from '../activator/throttler.ts'
import type { BackendSpec } from '../model/snapshot.ts'
import { lookupHost, normaliseHostHeader } from './host.ts'
import { resolve } from './resolve.ts'
import type { Resolution } from './resolve.ts'
import { upstreamHeadersFor } from './upstream-headers.ts'
import { REASON_HEADER } from './reply.ts'
import type { Reason } from './reply.ts'
import { STATUS_CODES } from 'node:http'

export function writeRawReply(socket: Duplex, status: number, reason: Reason, detail: string): void {
  if (socket.destroyed) return
  const body = `${detail}\n`
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
      `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `${REASON_HEADER}: ${reason}\r\nconnection: close\r\n\r\n${body}`,
  )
}

class UpgradeWaiter implements Waiter {
  cancelled = false
  /** Granted a pod: out of the queue, so it must never be cancelled (that would corrupt the counts). */
  granted = false
  readonly queuedAt = performance.now()
  private readonly onGrant: (pod: PodSlot) => void
  /** Set after creation: the broker may refuse later, once the socket's failure path exists. */
  onRefuse: (() => void) | undefined
  constructor(onGrant: (pod: PodSlot) => void) {
    this.onGrant = onGrant
  }
  grant(pod: PodSlot): void {
    this.granted = true
    this.onGrant(pod)
  }
  refuse(): void {
    this.granted = true // out of the queue: never cancel it
    this.onRefuse?.()
  }
}

export function proxyUpgrade(plane: DataPlane, req: IncomingMessage, socket: Duplex, head: Buffer, listener: ListenerKind, secure: boolean, done: () => void): void {
  let finished = false
  const finish = (): void => {
    if (finished) return
    finished = true
    done()
  }
  socket.on('error', () => socket.destroy())
  socket.once('close', finish)
  const fail = (status: number, reason: Reason, detail: string): void => {
    writeRawReply(socket, status, reason, detail)
    finish()
  }

  const snap = plane.snapshot
  const hosts = listener === 'public' ? snap.publicHosts : snap.localHosts
  const rawHost = req.headers.host
  if (!rawHost) return fail(400, 'bad-request', 'the request has no Host header')
  const entry = lookupHost(hosts, rawHost)
  if (!entry) return fail(404, 'host-not-found', `no route for host ${normaliseHostHeader(rawHost) ?? ''} on the ${listener} listener`)
  if (!secure && listener === 'public' && entry.ingress.httpOption === 'Redirected') return fail(400, 'https-redirect', `use wss://${entry.host}${req.url ?? '/'}`)
  const url = req.url ?? '/'
  const r = resolve(snap, entry, url, req.headers)
  if ('failure' in r) return fail(404, 'path-not-found', `no path of host ${r.entry.host} matches ${url.split('?')[0]}`)
  const backend = r.inner?.split.backend ?? r.split.backend

  if (backend.kind === 'external') {
    connect(plane, req, socket, head, r, backend, secure, backend.externalHost!, backend.externalPort!, undefined, undefined, finish)
    return
  }
  if (backend.problem) return fail(503, 'no-backend', backend.problem)
  const throttler = plane.throttlerFor(backend)
  const rev = backend.revision
  if (!rev && throttler.podCount === 0) return fail(503, 'no-backend', `Service ${backend.namespace}/${backend.serviceName} has no ready endpoints`)
  if (rev) {
    plane.demandIn(rev)
    socket.once('close', () => plane.demandOut(rev))
  }
  const go = (pod: PodSlot): void => {
    if (socket.destroyed) {
      throttler.release(pod)
      return
    }
    connect(plane, req, socket, head, r, backend, secure, pod.endpoint.host, pod.endpoint.port, throttler, pod, finish)
  }
  const pod = throttler.tryAcquire()
  if (pod) return go(pod)
  const waiter = new UpgradeWaiter((p) => {
    clearTimeout(timer)
    go(p)
  })
  waiter.onRefuse = () => {
    clearTimeout(timer)
    fail(503, 'queue-full', 'too many requests waiting; retry shortly')
  }
  const outcome = throttler.enqueue(waiter)
  if (outcome !== 'queued') return fail(503, 'queue-full', 'too many requests waiting; retry shortly')
  const timer = setTimeout(() => {
    throttler.cancel(waiter)
    fail(504, 'cold-start-timeout', `no pod of revision ${rev?.key ?? backend.key} became ready within the cold start budget`)
  }, plane.coldStartBudgetMs)
  timer.unref()
  socket.once('close', () => {
    clearTimeout(timer)
    if (!waiter.granted) throttler.cancel(waiter)
  })
}

function connect(
  plane: DataPlane,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  r: Resolution,
  backend: BackendSpec,
  secure: boolean,
  host: string,
  port: number,
  throttler: Throttler | undefined,
  pod: PodSlot | undefined,
  finish: () => void,
): void {
  const headers = upstreamHeadersFor(req, r, secure, backend.revision !== undefined, true)
  let lines = `${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n`
  for (let i = 0; i < headers.length; i += 2) lines += `${headers[i]}: ${headers[i + 1]}\r\n`
  lines += '\r\n'

  let released = false
  const releasePod = (): void => {
    if (released) return
    released = true
    if (throttler && pod) throttler.release(pod)
  }
  const upstream = net.connect({ host, port })
  let connected = false
  upstream.setNoDelay(true)
  upstream.once('connect', () => {
    connected = true
    upstream.write(lines)
    if (head.length > 0) upstream.write(head)
    upstream.pipe(socket as NodeJS.WritableStream)
    ;(socket as NodeJS.ReadableStream).pipe(upstream)
  })
  upstream.on('error', (err: NodeJS.ErrnoException) => {
    if (!connected) writeRawReply(socket, 502, 'upstream-connect-failed', `cannot connect to upstream ${host}:${port}: ${err.code ?? err.message}`)
    else socket.destroy()
  })
  upstream.once('close', () => {
    releasePod()
    socket.end()
  })
  socket.once('close', () => {
    releasePod()
    upstream.destroy()
    finish()
  })
  plane.log.debug({ host, port, url: req.url }, 'upgrade')
}
