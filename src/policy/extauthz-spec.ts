// How external authorization is written: the authorizer's address (--extauthz-host HOST:PORT, as
// Kourier's extauthz-host), its protocol, and the per-host opt-out annotation. Pure: text in, the
// value or a sentence saying what is wrong and how to write it.
import net from 'node:net'

export type ExtAuthzProtocol = 'grpc' | 'http' | 'https'
export const EXTAUTHZ_PROTOCOLS: readonly ExtAuthzProtocol[] = ['grpc', 'http', 'https']

/** On a KIngress, or a Route or DomainMapping whose annotations reach it: `disabled` skips the check for its hosts. */
export const ANN_EXTAUTHZ = 'edge.knative.dev/extauthz'

export interface AuthorizerAddress {
  readonly host: string
  readonly port: number
  /** `host:port` (`[v6]:port`), as dialled and as messages name it. */
  readonly text: string
}

/** `authz.example:9000`, `10.0.0.5:9000` or `[fd00::5]:9000`. */
export function parseAuthorizerAddress(text: string): AuthorizerAddress | string {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]\s/]+):(\d{1,5})$/.exec(text)
  const example = 'e.g. ext-authz.auth-system.svc.cluster.local:9000 or [fd00::5]:9000'
  if (!m) return `'${text}' is not HOST:PORT (${example})`
  const host = m[1]!
  const port = Number(m[2])
  if (port < 1 || port > 65535) return `'${text}': port ${port} is not between 1 and 65535`
  if (text.startsWith('[') && net.isIPv6(host) === false) return `'${text}': ${host} is not an IPv6 address`
  return { host, port, text }
}

/** The opt-out annotation's value: whether the check is skipped, or why the value is not understood. */
export function parseExtAuthzAnnotation(value: string): boolean | string {
  const v = value.trim().toLowerCase()
  if (v === 'disabled') return true
  if (v === 'enabled') return false
  return `${JSON.stringify(value)} is not "disabled" or "enabled"`
}
