// IP addresses as the gateway names them: one spelling per address (so a pod listed as `fd00:0::5`
// and as `fd00::5` is one pod, one pool) and IPv6 in brackets wherever a port or a URL follows.
import net from 'node:net'

/** An IP in the form Node reports it (IPv6 compressed, lower case); anything else unchanged. */
export function canonicalIp(ip: string): string {
  return net.isIPv6(ip) ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip
}

/** `host:port`, with an IPv6 host in brackets (`[fd00::5]:8080`), as URLs and Host headers write it. */
export function hostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`
}
