// prom-client keeps every label set a metric was given for the life of the process. For metrics
// labelled by revision that would grow with every rollout (issue 23's soak), so a revision the
// configuration no longer has loses its series at the second scrape that finds it gone: the first
// still shows their final values. Meant for metrics observed only while their revision is configured
// (holds end when a pod of it is granted; retries go to its pods), so nothing new arrives between
// the two scrapes. edge_requests_total and the latency histogram, which a request still at a gone
// revision's pod can add to, use request-accounting.ts's own rule instead.
import type { RevisionServed } from './request-accounting.ts'

interface RevisionLabels {
  namespace: string
  revision: string
}

export class GoneRevisionSeries<L extends RevisionLabels> {
  /** `namespace/revision` → each label set given for it, by its values. */
  private readonly byRevision = new Map<string, Map<string, L>>()
  /** Revisions found gone at the last sweep. */
  private goneBefore = new Set<string>()

  /** A series was observed with `labels` (an empty revision is not a revision's, and stays). */
  noted(labels: L): void {
    if (labels.revision === '') return
    const key = `${labels.namespace}/${labels.revision}`
    let sets = this.byRevision.get(key)
    if (!sets) this.byRevision.set(key, (sets = new Map()))
    const id = Object.values(labels).join('\u0000')
    if (!sets.has(id)) sets.set(id, labels)
  }

  /** At a scrape, before the values are read: `remove` each series of a revision gone since the last scrape too. */
  sweep(served: RevisionServed, remove: (labels: L) => void): void {
    const goneNow = new Set<string>()
    for (const [key, sets] of this.byRevision) {
      const first = sets.values().next().value!
      if (served(first.namespace, first.revision)) continue
      if (!this.goneBefore.has(key)) {
        goneNow.add(key)
        continue
      }
      for (const labels of sets.values()) remove(labels)
      this.byRevision.delete(key)
    }
    this.goneBefore = goneNow
  }
}
