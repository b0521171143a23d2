// --proxy-protocol: every connection on the public and cluster-local listeners (plain and TLS) starts
// with a PROXY header from the load balancer. It is read here, under a deadline, before anything else
// (sniffing, TLS, per-IP limits); the client address it carries becomes the socket's remoteAddress,
// so X-Forwarded-For, access logs, per-IP limits and rate limits all see the client, not the load
// balancer. A connection without a valid header is closed and counted by reason.
import type net from 'node:net'
import { INCOMPLETE, parseProxyHeader } from './proxy-protocol.ts'
import type { ProxyRejection } from './proxy-protocol.ts'

export type ProxyFailure = ProxyRejection | 'timeout' | 'closed'

export interface ProxyFrontOptions {
  /** The header must be complete within this long. */
  timeoutMs: number
  onRejected(reason: ProxyFailure): void
}

/**
 * Reads the header off `socket`, then calls `next` with the socket (its address now the client's)
 * and any bytes read past the header.
 */
export function readProxyHeader(socket: net.Socket, opts: ProxyFrontOptions, next: (socket: net.Socket, rest: Buffer | undefined) => void): void {
  let seen: Buffer | undefined
  let settled = false
  const fail = (reason: ProxyFailure): void => {
    if (settled) return
    settled = true
    cleanup()
    opts.onRejected(reason)
    socket.destroy()
  }
  const timer = setTimeout(() => fail('timeout'), opts.timeoutMs)
  timer.unref()
  const onData = (chunk: Buffer): void => {
    seen = seen ? Buffer.concat([seen, chunk]) : chunk
    const h = parseProxyHeader(seen)
    if (h === INCOMPLETE) return
    if (typeof h === 'string') return fail(h)
    settled = true
    cleanup()
    socket.pause()
    if (h.source) claimAddress(socket, h.source.address, h.source.port)
    next(socket, h.length < seen.length ? seen.subarray(h.length) : undefined)
  }
  const onEnd = (): void => fail('closed')
  const onError = (): void => fail('closed')
  function cleanup(): void {
    clearTimeout(timer)
    socket.off('data', onData)
    socket.off('end', onEnd)
    socket.off('error', onError)
  }
  socket.on('data', onData)
  socket.on('end', onEnd)
  socket.on('error', onError)
  socket.resume()
}

/**
 * Makes `socket` report the client's address (its own getters ask the kernel, which knows only the
 * load balancer). Sockets made from this one (a TLS socket over it, a socket adopting its handle)
 * take it over with copyClaimedAddress.
 */
export function claimAddress(socket: net.Socket, address: string, port: number): void {
  Object.defineProperty(socket, 'remoteAddress', { value: address, configurable: true })
  Object.defineProperty(socket, 'remotePort', { value: port, configurable: true })
  Object.defineProperty(socket, 'remoteFamily', { value: address.includes(':') ? 'IPv6' : 'IPv4', configurable: true })
}

/** Carries a claimed client address from one socket object to another on the same connection. */
export function copyClaimedAddress(from: object, to: net.Socket): void {
  const own = Object.getOwnPropertyDescriptor(from, 'remoteAddress')
  if (own === undefined) return
  const port = Object.getOwnPropertyDescriptor(from, 'remotePort')?.value as number | undefined
  claimAddress(to, own.value as string, port ?? 0)
}
