// Which gateway replicas the status prober must reach: the ready addresses in the EndpointSlices of
// the gateway's own cluster-local Service, as Kourier reads `kourier-internal` (kingress-contract.md
// §2.7). Pure: slices in, dial targets out.
import type { EndpointSlice } from '../model/k8s.ts'
import { LABEL_SERVICE_NAME } from '../model/k8s.ts'
import { canonicalIp, hostPort } from '../model/addresses.ts'

export interface Replica {
  readonly ip: string
  readonly port: number
  /** `ip:port` (IPv6 in brackets): identity of the replica and the authority to dial. */
  readonly key: string
}

/** Ports that are not the plain-HTTP local listener, whatever order the Service lists them in. */
const TLS_PORT_NAME = /^(https|tls|h2|grpcs)(-|$)/i

/**
 * The slice port the local listener answers on. A slice carries every port of the Service, so when
 * there are several we want the plain-HTTP one: named `http`/`http2`/`h2c` if present, else the first
 * that is not named like TLS, else `fallbackPort` (the gateway's own --local-port).
 */
function httpPort(slice: EndpointSlice, fallbackPort: number): number {
  const ports = (slice.ports ?? []).filter((p) => typeof p.port === 'number' && p.port > 0)
  const named = ports.find((p) => p.name === 'http' || p.name === 'http2' || p.name === 'h2c')
  if (named) return named.port!
  const plain = ports.find((p) => !TLS_PORT_NAME.test(p.name ?? '') && p.appProtocol !== 'https')
  return plain?.port ?? fallbackPort
}

export function gatewayReplicas(slices: readonly EndpointSlice[], namespace: string, service: string, fallbackPort: number): Replica[] {
  const out = new Map<string, Replica>()
  for (const s of slices) {
    if ((s.metadata.namespace ?? 'default') !== namespace) continue
    if (s.metadata.labels?.[LABEL_SERVICE_NAME] !== service) continue
    if (s.addressType === 'FQDN') continue
    const port = httpPort(s, fallbackPort)
    for (const ep of s.endpoints ?? []) {
      // Ready unset counts as ready (the EndpointSlice API says so; Kourier reads it the same way).
      if (ep.conditions?.ready === false) continue
      for (const listed of ep.addresses ?? []) {
        const ip = canonicalIp(listed)
        const key = hostPort(ip, port)
        if (!out.has(key)) out.set(key, { ip, port, key })
      }
    }
  }
  return [...out.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
}
