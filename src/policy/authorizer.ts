// What the external-authorization policy asks an authorizer and what it gets back, the same for both
// ways of asking (gRPC: extauthz-grpc.ts, HTTP: extauthz-http.ts). The policy (extauthz.ts) decides
// what a decision means for the request; an authorizer only asks and reads the answer.
import type { HeaderEdits } from '../dataplane/upstream-headers.ts'

export interface PeerAddress {
  readonly address: string
  readonly port: number
}

/** A request as an authorizer sees it (Envoy's AttributeContext). */
export interface AuthzQuery {
  readonly method: string
  readonly scheme: 'http' | 'https'
  /** The Host (or :authority) the client sent. */
  readonly host: string
  /** The request target: path and query, as sent. */
  readonly path: string
  /** `HTTP/1.0`, `HTTP/1.1` or `HTTP/2`. */
  readonly protocol: string
  /**
   * Lower-case names, repeated headers joined (`, `; cookies `; `), with Envoy's pseudo-headers
   * (`:authority`, `:method`, `:path`, `:scheme`) whatever the protocol, and no `host`.
   */
  readonly headers: Readonly<Record<string, string>>
  /** X-Request-Id, when the client sent one. */
  readonly id: string
  /** Content-Length, or -1 when unknown (chunked, HTTP/2 without one). */
  readonly size: number
  /** Up to --extauthz-max-request-body-bytes of the body, when it could be read (extauthz-body.ts). */
  readonly body: Buffer | undefined
  readonly source: PeerAddress
  readonly destination: PeerAddress
  /** Kourier's context extensions: who asks, the rule's visibility, the ingress's labels. */
  readonly context: Readonly<Record<string, string>>
}

export type Decision =
  /** Let it through, with the authorizer's changes (none: undefined). */
  | { readonly kind: 'allow'; readonly edits: HeaderEdits | undefined }
  /** The authorizer's own answer goes back to the client. */
  | { readonly kind: 'deny'; readonly status: number; readonly headers: Readonly<Record<string, string | string[]>>; readonly body: Buffer }
  /** No decision (unreachable, too slow, a 5xx, a malformed answer): --extauthz-failure-mode-allow decides. */
  | { readonly kind: 'error'; readonly why: string }

export interface Authorizer {
  /** Resolves with a decision within about `timeoutMs`; never rejects. */
  check(query: AuthzQuery, timeoutMs: number): Promise<Decision>
  close(): Promise<void>
}

/** A denial status an authorizer may give; anything else (0, unset, out of range) is Envoy's 403. */
export function denialStatus(code: number): number {
  return Number.isInteger(code) && code >= 200 && code <= 599 ? code : 403
}
