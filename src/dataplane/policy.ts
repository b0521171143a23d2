// The front door's third stage: may this request go on to its revision? Runs after the route is known
// and before admission, so a refused request is never held, never counted as demand and never wakes
// a revision at zero. External authorization and rate limits plug in here; each policy answers
// (refuses) or passes, and the first answer wins. With no policy configured the stage costs nothing.
import type { ClientRequest } from './client.ts'
import type { ListenerKind } from './identify.ts'
import type { Answer } from './reply.ts'
import type { Resolution } from './resolve.ts'

/** What a policy may look at. */
export interface PolicyInput {
  readonly req: ClientRequest
  readonly listener: ListenerKind
  readonly secure: boolean
  /** The route the request takes (its host entry carries the ingress and its annotations). */
  readonly resolution: Resolution
  /** An HTTP/1.1 upgrade (WebSocket) rather than a request or stream. */
  readonly upgrade: boolean
}

/** undefined passes the request on; an Answer refuses it. */
export type Verdict = Answer | undefined

export interface Policy {
  /** For logs and metrics: which policy answered. */
  readonly name: string
  /** Decides at once, or later (a call to an authorizer). A policy that throws refuses with 500. */
  check(input: PolicyInput): Verdict | Promise<Verdict>
}

/** Runs the policies in order; the first answer wins. Synchronous as long as every policy is. */
export function runPolicies(policies: readonly Policy[], input: PolicyInput): Verdict | Promise<Verdict> {
  return runFrom(policies, 0, input)
}

function runFrom(policies: readonly Policy[], i: number, input: PolicyInput): Verdict | Promise<Verdict> {
  for (; i < policies.length; i++) {
    const v = policies[i]!.check(input)
    if (v instanceof Promise) {
      const next = i + 1
      return v.then((answer) => answer ?? runFrom(policies, next, input))
    }
    if (v !== undefined) return v
  }
  return undefined
}
