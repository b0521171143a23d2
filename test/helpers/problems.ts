// Translation errors as a test sees them: the ConfigError's problems, or a failure if none was thrown.
import { ConfigError } from '../../src/model/problems.ts'
import type { ConfigProblem } from '../../src/model/problems.ts'

export function problemsOf(fn: () => unknown): ConfigProblem[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  throw new Error('expected a ConfigError')
}
