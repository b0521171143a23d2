// One request's record, filled in as it passes the front door's stages and read once when it ends:
// by the request count and duration (metrics), the access log and the in-flight count. A plain
// object with a fixed shape, made once per request.
import type { BackendSpec } from '../model/snapshot.ts'
import type { RequestTrace } from '../observe/request-trace.ts'
import type { ClientRequest } from './client.ts'
import type { ListenerKind } from './identify.ts'
import type { Reason } from './reply.ts'
import { unmappedIp } from './forwarded.ts'
import type { HeaderEdits } from './upstream-headers.ts'

export interface RequestRecord {
  /** performance.now() at arrival. */
  readonly startedAt: number
  readonly listener: ListenerKind
  /** An HTTP/1.1 upgrade (WebSocket): its status is the handshake's answer. */
  readonly upgrade: boolean
  readonly req: ClientRequest
  /** The client's address as its socket gave it at arrival (the socket may be gone by the end). */
  readonly remote: string | undefined
  /** The route's host once identified: the metrics label (an unknown Host never becomes one). */
  host: string
  backend: BackendSpec | undefined
  /** What the client got: the pod's status, the gateway's, or 499 when the client left first. */
  status: number
  /** Set when the gateway answered itself. */
  reason: Reason | undefined
  /** The pod's address, once one was dialled. */
  pod: string | undefined
  /** How long it was held for a pod (ms), when it was; -1 otherwise. */
  coldStartMs: number
  /** When the response head went out (performance.now()); 0 before. */
  firstByteAt: number
  /** Request body bytes (Content-Length, or counted as it streamed); an upgrade's: client to pod. */
  bytesIn: number
  /** Response body bytes sent; an upgrade's: pod to client. */
  bytesOut: number
  /** Its spans, when tracing is on (--tracing-endpoint); undefined otherwise, and then nothing is traced. */
  trace: RequestTrace | undefined
  /** What the policy stage changes on the way to the pod (an authorizer's headers); undefined: nothing. */
  edits: HeaderEdits | undefined
}

/** The gateway answered itself with `detail` as the body: when, and how many bytes. */
export function noteAnswer(r: RequestRecord, detail: string): void {
  r.firstByteAt = performance.now()
  r.bytesOut = Buffer.byteLength(detail) + 1
}

export function newRecord(req: ClientRequest, listener: ListenerKind, upgrade: boolean): RequestRecord {
  return { startedAt: performance.now(), listener, upgrade, req, remote: unmappedIp(req.socket?.remoteAddress), host: '', backend: undefined, status: 0, reason: undefined, pod: undefined, coldStartMs: -1, firstByteAt: 0, bytesIn: 0, bytesOut: 0, trace: undefined, edits: undefined }
}
