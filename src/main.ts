#!/usr/bin/env -S node --max-semi-space-size=16
// edge-gateway's entry (package.json "bin" and "start"): first whether this Node can run the project
// at all, then the command line. Everything but the check is imported dynamically, after it, so that
// an old Node prints one line saying what to do instead of a dependency's stack trace.
import { nodeVersionProblem } from './node-version.ts'

const problem = nodeVersionProblem(process.versions.node, process.execPath)
if (problem) {
  process.stderr.write(problem + '\n')
  process.exit(1)
}
const { run } = await import('./cli/run.ts')
await run(process.argv.slice(2))
