// A policy that settings can replace while the gateway runs (config-edge-gateway's extauthz-* keys):
// each request is checked by the policy in place when it arrived, and a replaced one is closed once
// the checks it started have had their time.
import type { Policy, PolicyInput, Verdict } from '../dataplane/policy.ts'

export class ReplaceablePolicy implements Policy {
  readonly name: string
  private current: Policy | undefined

  constructor(name: string, initial: Policy | undefined) {
    this.name = name
    this.current = initial
  }

  /** No policy in place: the request passes. */
  check(input: PolicyInput): Verdict | Promise<Verdict> {
    const p = this.current
    return p === undefined ? undefined : p.check(input)
  }

  /** `graceMs`: how long checks the old policy started may still run (its timeout). */
  replace(next: Policy | undefined, graceMs: number): void {
    const old = this.current
    this.current = next
    if (old?.close === undefined) return
    setTimeout(() => void old.close!().catch(() => {}), graceMs).unref()
  }

  get active(): boolean {
    return this.current !== undefined
  }

  close(): Promise<void> {
    const p = this.current
    this.current = undefined
    return p?.close?.() ?? Promise.resolve()
  }
}
