// A problem with configuration input: which object, where it came from, which field, and why.
// Every rejection the gateway makes of a manifest or cluster object is one of these, so an operator
// sees the same shape in logs, in /debug/routes and in KIngress status messages.
import type { ErrorCode } from '../errors.ts'

export interface ConfigProblem {
  /** Where the object came from: a file path (files source) or `kubernetes`. */
  source: string
  /** Zero-based index of the YAML document in a multi-document file, when the source is a file. */
  document?: number
  /** `Kind namespace/name` of the object, when known. */
  object?: string
  /** JSON path of the offending field, e.g. `spec.rules[0].http.paths[1].splits[0].percent`. */
  field: string
  /** What is wrong and how to fix it, in one sentence. */
  reason: string
  /** A stable code an operator can search for; docs/errors.md explains each. */
  code: ErrorCode
}

export function formatProblem(p: ConfigProblem): string {
  const where = p.document === undefined ? p.source : `${p.source} (document ${p.document})`
  const what = p.object ? ` ${p.object}` : ''
  return `${p.code}: ${where}${what}: ${p.field}: ${p.reason}`
}

/** Thrown by pure translate/validate code; carries one or more problems. */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[]
  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('; '))
    this.name = 'ConfigError'
    this.problems = problems
  }
}
