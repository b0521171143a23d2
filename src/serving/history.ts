// The revisions of one Configuration, in the order their templates were seen: Serving numbers them by
// the Configuration's generation (`name-00001`, `-00002`, ...), or takes `template.metadata.name`.
// A revision never changes: the same name with a different template is refused, and the revision of
// the old template stays. Kept in memory: after a restart only the current template's revision exists.
import type { RevisionTemplate } from '../model/k8s.ts'
import { canonical, revisionName } from './derive.ts'

export interface RevisionEntry {
  readonly name: string
  readonly generation: number
  /** canonical(template): the template the revision was made from. */
  readonly template: string
  readonly source: RevisionTemplate
}

export type Observed = { latest: RevisionEntry; created: boolean } | { changedUnderName: string }

export class RevisionHistory {
  private readonly entries: RevisionEntry[] = []
  private latestIndex = -1
  private generation = 0
  private readonly configuration: string

  constructor(configuration: string) {
    this.configuration = configuration
  }

  /** The revisions, oldest first. */
  get revisions(): readonly RevisionEntry[] {
    return this.entries
  }

  /** The latest created revision. */
  get latest(): RevisionEntry | undefined {
    return this.entries[this.latestIndex]
  }

  /** The template as it is now: the same as the latest (nothing new), a new revision, or a refusal. */
  observe(template: RevisionTemplate): Observed {
    const text = canonical(template)
    const latest = this.latest
    if (latest && latest.template === text) return { latest, created: false }
    const named = template.metadata?.name
    if (named !== undefined) {
      const i = this.entries.findIndex((e) => e.name === named)
      if (i >= 0) {
        if (this.entries[i]!.template !== text) return { changedUnderName: named }
        // Back to an earlier named template: that revision is the latest again, as in Serving.
        this.latestIndex = i
        return { latest: this.entries[i]!, created: false }
      }
    }
    this.generation++
    const entry: RevisionEntry = { name: named ?? revisionName(this.configuration, this.generation), generation: this.generation, template: text, source: template }
    this.entries.push(entry)
    this.latestIndex = this.entries.length - 1
    return { latest: entry, created: true }
  }
}
