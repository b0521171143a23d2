// The front door's third stage: may this request go on to its revision? Runs after the route is known
// and before admission, so a refused request is never held, never counted as demand and never wakes
// a revision at zero. External authorization and rate limits plug in here; each policy answers
// (refuses) or passes, possibly with changes to the request (an authorizer's headers), and the first
// answer wins. With no policy configured the stage costs nothing.
import type { ClientRequest } from './client.ts'
import type { ListenerKind } from './identify.ts'
import type { Answer } from './reply.ts'
import type { Resolution } from './resolve.ts'
import type { HeaderEdits } from './upstream-headers.ts'

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

/** A pass that changes the request on its way to the pod (an external authorizer's headers). */
export interface Pass {
  readonly edits: HeaderEdits
}

/** undefined passes the request on as it came; a Pass passes it with changes; an Answer refuses it. */
export type Verdict = Answer | Pass | undefined

export function isPass(v: Verdict): v is Pass {
  return v !== undefined && (v as Pass).edits !== undefined
}

export interface Policy {
  /** For logs and metrics: which policy answered. */
  readonly name: string
  /** Decides at once, or later (a call to an authorizer). A policy that throws refuses with 500. */
  check(input: PolicyInput): Verdict | Promise<Verdict>
  /** Lets go of what it holds (an authorizer's connection) when the data plane closes. */
  close?(): Promise<void>
}

/**
 * Runs the policies in order; the first answer wins, and the changes of every pass before it are
 * kept together. Synchronous as long as every policy is.
 */
export function runPolicies(policies: readonly Policy[], input: PolicyInput): Verdict | Promise<Verdict> {
  return runFrom(policies, 0, input, undefined)
}

function runFrom(policies: readonly Policy[], i: number, input: PolicyInput, edits: HeaderEdits | undefined): Verdict | Promise<Verdict> {
  for (; i < policies.length; i++) {
    const v = policies[i]!.check(input)
    if (v instanceof Promise) {
      const next = i + 1
      const before = edits
      return v.then((answer) => (answer === undefined || isPass(answer) ? runFrom(policies, next, input, joined(before, answer?.edits)) : answer))
    }
    if (v === undefined) continue
    if (!isPass(v)) return v
    edits = joined(edits, v.edits)
  }
  return edits === undefined ? undefined : { edits }
}

function joined(a: HeaderEdits | undefined, b: HeaderEdits | undefined): HeaderEdits | undefined {
  if (a === undefined || b === undefined) return a ?? b
  return { set: [...a.set, ...b.set], append: [...a.append, ...b.append], remove: [...a.remove, ...b.remove], respond: [...a.respond, ...b.respond] }
}
