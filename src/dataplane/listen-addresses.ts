// --listen-address with several addresses (Kourier's listen-ip-addresses): each listener binds every
// address on its one port. The listener's own server binds the first; every further address gets a
// server that only accepts and hands each connection over as if the listener had accepted it, so a
// listener keeps one set of limits, connections and sessions whatever address a client came to.
import net from 'node:net'
import type { AddressInfo } from 'node:net'

/** One address to bind, and whether an IPv6 socket must refuse IPv4 (see bindAddresses). */
export interface BindAddress {
  readonly host: string
  readonly ipv6Only: boolean
}

/**
 * On Linux an IPv6 wildcard (`::`) also takes IPv4 unless it is IPv6-only, and then `0.0.0.0` on
 * the same port fails with EADDRINUSE. So with both families listed each binds its own, as Envoy
 * binds `::` (its SocketAddress ipv4_compat is off by default); `::` alone keeps taking both.
 */
export function bindAddresses(addresses: readonly string[]): BindAddress[] {
  const anyIpv4 = addresses.some((a) => net.isIPv4(a))
  return addresses.map((host) => ({ host, ipv6Only: anyIpv4 && net.isIPv6(host) }))
}

/** How the listener's own server takes new connections; the extra servers must do the same. */
export interface AcceptOptions {
  pauseOnConnect?: boolean
  noDelay?: boolean
}

export interface BoundAddresses {
  /** The port every address is bound on (the one the first address got, with port 0). */
  readonly port: number
  /** Closes the extra servers (the listener closes its own). */
  close(): Promise<void>
}

/** Binds one server, resolving once it listens. */
export function listenOne(server: net.Server, at: BindAddress, port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: at.host, port, ipv6Only: at.ipv6Only }, () => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

/**
 * The addresses after the first, bound on `port` (what the listener's own server got on the first).
 * On a failure whatever this bound is closed again and the error names the address.
 */
export async function bindRest(server: net.Server, rest: readonly BindAddress[], port: number, accept: AcceptOptions): Promise<BoundAddresses> {
  const extra: net.Server[] = []
  const closeExtra = (): Promise<void> => Promise.all(extra.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined)
  for (const at of rest) {
    const relay = net.createServer({ pauseOnConnect: accept.pauseOnConnect ?? false, noDelay: accept.noDelay ?? false }, (socket) => server.emit('connection', socket))
    try {
      await listenOne(relay, at, port)
    } catch (err) {
      await closeExtra()
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message
      throw new Error(`cannot listen on ${net.isIPv6(at.host) ? `[${at.host}]` : at.host}:${port} (--listen-address): ${code}`, { cause: err })
    }
    extra.push(relay)
  }
  return { port, close: closeExtra }
}

/** Binds `server` on every address, the first directly and the rest through bindRest. */
export async function listenOnAll(server: net.Server, addresses: readonly BindAddress[], port: number, accept: AcceptOptions): Promise<BoundAddresses> {
  const [first, ...rest] = addresses
  if (!first) throw new Error('no listen address')
  const bound = await listenOne(server, first, port)
  try {
    return await bindRest(server, rest, bound, accept)
  } catch (err) {
    await new Promise<void>((resolve) => server.close(() => resolve()))
    throw err
  }
}
