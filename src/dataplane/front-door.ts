// The front door: every way a request arrives (our HTTP/1.1 server side, node:http for bodies, an
// HTTP/2 stream, a WebSocket upgrade, TLS or not) enters here and passes the same ordered stages:
//
//   screen (screen.ts)    limits, framing, Host
//   identify (identify.ts) listener side, host, path, tag → a route, or the gateway's own answer
//   policy (policy.ts)    each policy answers or passes (the seam for authorization, rate limits)
//   admit (admit.ts)      demand, throttler, hold, cold start, capacity
//   forward               forward-http.ts (HTTP/1.1, h2c) or forward-upgrade.ts (splice)
//
// Requests and upgrades differ only in the forward stage and in how an answer is written (a
// response object, or raw HTTP/1.1 on the upgrade's socket). Every answer the gateway makes itself
// before the forward stage is written here, in one place, and every request's end is told once
// through its record (request-record.ts). With tracing on, a request's trace (its server span)
// starts here at arrival, before the first stage, and ends with its record (request-log.ts).
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { bodyStream } from './client.ts'
import type { ClientRequest, ClientResponse } from './client.ts'
import { markIfTrusted, watchBody } from './guard.ts'
import type { ClientLimits } from './guard.ts'
import { identify, isAnswer } from './identify.ts'
import type { ListenerKind } from './identify.ts'
import { isPass, runPolicies } from './policy.ts'
import type { Policy, Verdict } from './policy.ts'
import { rawReply, reply } from './reply.ts'
import type { Answer } from './reply.ts'
import type { Resolution } from './resolve.ts'
import { newRecord, noteAnswer } from './request-record.ts'
import type { RequestTrace } from '../observe/request-trace.ts'
import type { RequestRecord } from './request-record.ts'
import { screen } from './screen.ts'
import type { Framing } from './screen.ts'
import { Exchange, exchangeOf } from './forward-http.ts'
import type { ForwardContext } from './forward-http.ts'
import { Upgrade } from './forward-upgrade.ts'
import type { UpgradeContext } from './forward-upgrade.ts'

/** Where a request came in: one per listener (and per TLS-ness), made once. */
export interface Entrance {
  readonly listener: ListenerKind
  readonly secure: boolean
  /** Swapped whole when the settings change (Listener.setLimits); each request reads it once. */
  limits: ClientLimits
}

/** Starts a request's trace at arrival (observe/tracing.ts); absent when tracing is off. */
export interface RequestTracer {
  begin(req: ClientRequest, startedAt: number, secure: boolean): RequestTrace
}

/** What a client is told when a bug in the gateway cost its request (plain or upgrade). */
const INTERNAL_ERROR: Answer = { status: 500, reason: 'internal-error', detail: 'the gateway failed while handling this request (the error is in its log)' }

export class FrontDoor {
  private readonly ctx: ForwardContext & UpgradeContext
  private readonly log: Logger
  private readonly policies: readonly Policy[]
  /** Requests in flight: entered here, left through ctx.left(). */
  private readonly enter: () => void

  /** Access-log lines are written: request body bytes are counted. Follows the settings. */
  logging: boolean
  /** Tracing is on: each request's trace starts at arrival, before the first stage. */
  private readonly tracer: RequestTracer | undefined

  constructor(ctx: ForwardContext & UpgradeContext, policies: readonly Policy[], enter: () => void, logging: boolean, tracer: RequestTracer | undefined) {
    this.ctx = ctx
    this.log = ctx.log
    this.policies = policies
    this.enter = enter
    this.logging = logging
    this.tracer = tracer
  }

  /**
   * A request or an HTTP/2 stream. `expectContinue`: the client waits for 100 Continue before it
   * sends its body; it gets it once the request has passed policy, so a refused one sends none.
   */
  request(req: ClientRequest, res: ClientResponse & { writeContinue?(): void }, at: Entrance, framing: Framing, expectContinue = false): void {
    this.enter()
    const record = newRecord(req, at.listener, false)
    try {
      if (this.tracer !== undefined) record.trace = this.tracer.begin(req, record.startedAt, at.secure)
      const refused = screen(req, at.limits, framing)
      if (refused) return this.answer(record, res, refused)
      markIfTrusted(req, at.limits.trustedProxies)
      const max = at.limits.maxBodyBytes
      // A body is watched only when it is limited or logged (its bytes counted as they stream).
      if ((max > 0 || this.logging) && hasBody(req, framing)) {
        const body = bodyStream(req)
        if (body !== undefined) watchBody(body, max, () => bodyTooLarge(req, res, max), record)
      }
      const route = identify(this.ctx.current(), req, at.listener, at.secure)
      if (isAnswer(route)) return this.answer(record, res, route)
      if (this.policies.length > 0) {
        const v = this.decide(req, at, route, record, false)
        if (v instanceof Promise) {
          const go = (): void => this.forward(req, res, route, at.secure, record, expectContinue)
          const failed = (err: unknown): void => this.internalError(err, record, res, undefined, undefined)
          return this.later(v, record, () => res.destroyed, (a) => this.answer(record, res, a), go, failed)
        }
        if (isPass(v)) record.edits = v.edits
        else if (v !== undefined) return this.answer(record, res, v)
      }
      this.forward(req, res, route, at.secure, record, expectContinue)
    } catch (err) {
      this.internalError(err, record, res, undefined, undefined)
    }
  }

  /** An HTTP/1.1 Upgrade (WebSocket): `head` holds bytes the client sent after its request head. */
  upgrade(req: ClientRequest, socket: Duplex, head: Buffer, at: Entrance): void {
    this.enter()
    const record = newRecord(req, at.listener, true)
    try {
      if (this.tracer !== undefined) record.trace = this.tracer.begin(req, record.startedAt, at.secure)
      const refused = screen(req, at.limits, 'h1')
      if (refused) return this.answerRaw(record, socket, refused)
      markIfTrusted(req, at.limits.trustedProxies)
      const route = identify(this.ctx.current(), req, at.listener, at.secure)
      if (isAnswer(route)) return this.answerRaw(record, socket, route)
      if (this.policies.length > 0) {
        const v = this.decide(req, at, route, record, true)
        if (v instanceof Promise) {
          const go = (): void => this.splice(req, socket, head, route, at.secure, record)
          const failed = (err: unknown): void => this.internalError(err, record, undefined, socket, undefined)
          return this.later(v, record, () => socket.destroyed, (a) => this.answerRaw(record, socket, a), go, failed)
        }
        if (isPass(v)) record.edits = v.edits
        else if (v !== undefined) return this.answerRaw(record, socket, v)
      }
      this.splice(req, socket, head, route, at.secure, record)
    } catch (err) {
      this.internalError(err, record, undefined, socket, undefined)
    }
  }

  /** Admission and the forward stage take over (and from now on the Exchange answers for itself). */
  private forward(req: ClientRequest, res: ClientResponse & { writeContinue?(): void }, route: Resolution, secure: boolean, record: RequestRecord, expectContinue: boolean): void {
    let x: Exchange | undefined
    try {
      if (expectContinue) res.writeContinue?.()
      x = new Exchange(this.ctx, req, res, route, secure, record)
      x.start()
    } catch (err) {
      this.internalError(err, record, res, undefined, x)
    }
  }

  private splice(req: ClientRequest, socket: Duplex, head: Buffer, route: Resolution, secure: boolean, record: RequestRecord): void {
    let u: Upgrade | undefined
    try {
      u = new Upgrade(this.ctx, req, socket, head, route, secure, record)
      u.start()
    } catch (err) {
      this.internalError(err, record, undefined, socket, u)
    }
  }

  /**
   * The policy stage. Its answer (or a client gone while it decides, a 499) is counted under the
   * route's host and backend, which are known by now. No closure unless a policy answers later.
   */
  private decide(req: ClientRequest, at: Entrance, route: Resolution, record: RequestRecord, upgrade: boolean): Verdict | Promise<Verdict> {
    record.host = route.entry.host
    record.backend = route.inner?.split.backend ?? route.split.backend
    return runPolicies(this.policies, { req, listener: at.listener, secure: at.secure, resolution: route, upgrade })
  }

  /** Continues once an asynchronous policy has decided: its answer, or the next stage. */
  private later(v: Promise<Verdict>, record: RequestRecord, gone: () => boolean, answer: (a: Answer) => void, next: () => void, failed: (err: unknown) => void): void {
    v.then(
      (a) => {
        if (gone()) this.clientLeft(record)
        else if (a === undefined) next()
        else if (isPass(a)) {
          record.edits = a.edits
          next()
        } else answer(a)
      },
      (err: unknown) => {
        this.log.error({ err }, 'a policy failed while deciding on a request')
        if (gone()) this.clientLeft(record)
        else answer(INTERNAL_ERROR)
      },
    ).catch(failed)
  }

  /** The gateway's own answer to a request or stream. */
  private answer(record: RequestRecord, res: ClientResponse, a: Answer): void {
    // After a screen refusal the connection's remaining bytes cannot be trusted: HTTP/1 closes it.
    const headers = a.close && record.req.httpVersionMajor === 1 ? { ...a.headers, connection: 'close' } : a.headers
    reply(res, a.status, a.reason, a.detail, headers, a.body)
    this.told(record, a)
  }

  /** The gateway's own answer to an upgrade, as raw HTTP/1.1 on its socket (then closed). */
  private answerRaw(record: RequestRecord, socket: Duplex, a: Answer): void {
    rawReply(socket, a.status, a.reason, a.detail, a.headers, a.body)
    this.told(record, a)
  }

  private told(record: RequestRecord, a: Answer): void {
    record.status = a.status
    record.reason = a.reason
    noteAnswer(record, a.detail)
    if (a.body !== undefined) record.bytesOut = a.body.length
    this.ctx.answered(record)
    this.ctx.left(record)
  }

  private clientLeft(record: RequestRecord): void {
    record.status = 499
    this.ctx.answered(record)
    this.ctx.left(record)
  }

  /**
   * A bug costs the request it happened in, never the process and the requests beside it. Once an
   * Exchange or Upgrade exists it answers (and ends) for itself, exactly once; before that, the
   * front door answers, unless it already had.
   */
  private internalError(err: unknown, record: RequestRecord, res: ClientResponse | undefined, socket: Duplex | undefined, forwarder: Exchange | Upgrade | undefined): void {
    const req = record.req
    this.log.error({ err, method: req.method, url: req.url, host: req.headers.host, upgrade: record.upgrade || undefined }, 'internal error while handling a request')
    try {
      if (forwarder) forwarder.fail(INTERNAL_ERROR.status, INTERNAL_ERROR.reason, INTERNAL_ERROR.detail)
      else if (record.status === 0 && res) this.answer(record, res, INTERNAL_ERROR)
      else if (record.status === 0 && socket) this.answerRaw(record, socket, INTERNAL_ERROR)
    } catch {
      res?.destroy()
      socket?.destroy()
    }
  }
}

/** A body follows the head: it is counted against --max-body-size as it streams. */
function hasBody(req: ClientRequest, framing: Framing): boolean {
  const cl = req.headers['content-length']
  return cl !== '0' && (cl !== undefined || framing === 'h2' || req.headers['transfer-encoding'] !== undefined)
}

/** The body grew past the limit while it streamed: 413, and the upstream request (if any) is aborted. */
function bodyTooLarge(req: ClientRequest, res: ClientResponse, max: number): void {
  const detail = `the request body is larger than the limit of ${max} bytes`
  const headers = req.httpVersionMajor === 1 ? { connection: 'close' } : undefined
  const x = exchangeOf(res)
  if (x && !x.finished) x.fail(413, 'body-too-large', detail, headers)
  else if (!res.headersSent) reply(res, 413, 'body-too-large', detail, headers)
  else res.destroy()
}
