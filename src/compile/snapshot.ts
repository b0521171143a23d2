// Compile: objects in, one immutable routing Snapshot out. Pure — no I/O, no clocks — so it can be
// tested with plain objects and fuzzed. This is the from-scratch entry point: the gateway keeps an
// IncrementalCompiler warm instead and feeds it only what changed; both give the same snapshot.
import type { DomainMapping, EndpointSlice, Kind, KubeObject, Revision, Route, Secret, Service, KIngress } from '../model/k8s.ts'
import { objectKey } from '../model/k8s.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { Snapshot } from '../model/snapshot.ts'
import { IncrementalCompiler } from './incremental.ts'
import type { CompileOptions } from './incremental.ts'

export type { CompileOptions } from './incremental.ts'
export { IncrementalCompiler, secretData } from './incremental.ts'

export interface CompileInput {
  ingresses: readonly KIngress[]
  routes: readonly Route[]
  domainMappings: readonly DomainMapping[]
  revisions: readonly Revision[]
  services: readonly Service[]
  endpointSlices: readonly EndpointSlice[]
  secrets: readonly Secret[]
  /** Problems the sources already found (bad files...), carried into the snapshot for /debug/routes. */
  sourceProblems?: readonly ConfigProblem[]
}

/** Feeds every object of `input` to a compiler (empty or warm). */
export function loadInput(c: IncrementalCompiler, input: CompileInput): void {
  const all: Array<[Kind, readonly KubeObject[]]> = [
    ['Ingress', input.ingresses],
    ['Route', input.routes],
    ['DomainMapping', input.domainMappings],
    ['Revision', input.revisions],
    ['Service', input.services],
    ['EndpointSlice', input.endpointSlices],
    ['Secret', input.secrets],
  ]
  for (const [kind, objs] of all) for (const o of objs) c.set(kind, objectKey(o), o)
  c.setSourceProblems(input.sourceProblems ?? [])
}

export function compileSnapshot(input: CompileInput, opts: CompileOptions, version: number): Snapshot {
  const c = new IncrementalCompiler(opts)
  loadInput(c, input)
  return c.build(version).snapshot
}
