// Keeps an IncrementalCompiler in step with an object store: a full load at start (or on demand),
// then only the objects each change notification names. Reads the store, never writes it.
import type { Kind, KubeObject } from '../model/k8s.ts'
import { KINDS, objectKey } from '../model/k8s.ts'
import type { ConfigProblem } from '../model/problems.ts'
import { IncrementalCompiler } from './incremental.ts'
import type { BuildResult, CompileOptions } from './incremental.ts'

/** What the compiler reads: the ObjectStore has this shape. */
export interface ObjectSource {
  get(kind: Kind, key: string): KubeObject | undefined
  list(kind: Kind): KubeObject[]
  problems(): ConfigProblem[]
  readonly version: number
}

export interface ObjectChanges {
  readonly objects: ReadonlyMap<string, { readonly kind: Kind; readonly key: string }>
  readonly problems: boolean
}

export interface LiveBuild extends Omit<BuildResult, 'changedBackends'> {
  /** undefined after a full load: every backend may have changed. */
  readonly changedBackends: ReadonlySet<string> | undefined
}

export class LiveCompiler {
  private compiler: IncrementalCompiler
  private readonly source: ObjectSource
  private opts: CompileOptions

  constructor(source: ObjectSource, opts: CompileOptions) {
    this.source = source
    this.opts = opts
    this.compiler = new IncrementalCompiler(opts)
  }

  /** Compiles everything the source holds, from scratch. */
  full(): LiveBuild {
    const c = new IncrementalCompiler(this.opts)
    for (const kind of KINDS) for (const o of this.source.list(kind)) c.set(kind, objectKey(o), o)
    c.setSourceProblems(this.source.problems())
    this.compiler = c
    return { snapshot: c.build(this.source.version).snapshot, changedBackends: undefined }
  }

  /** New options (the domain settings changed): everything is compiled again with them. */
  reconfigure(opts: CompileOptions): LiveBuild {
    this.opts = opts
    return this.full()
  }

  /** Applies only the named changes to the warm compiler. */
  update(changes: ObjectChanges): LiveBuild {
    const c = this.compiler
    for (const { kind, key } of changes.objects.values()) c.set(kind, key, this.source.get(kind, key))
    if (changes.problems) c.setSourceProblems(this.source.problems())
    return c.build(this.source.version)
  }
}
