// Fragments waiting to be decided, oldest first (a binary heap on age): deciding in age order means
// each fragment sees the final outcome of every older one, so one pass settles any cascade.
import type { Fragment } from './fragment.ts'
import { byAge } from './fragment.ts'

export class FragmentQueue {
  private readonly heap: Fragment[] = []

  get size(): number {
    return this.heap.length
  }

  /** Adds f unless it is already waiting. */
  push(f: Fragment): void {
    if (f.inQueue || f.removed) return
    f.inQueue = true
    const h = this.heap
    let i = h.push(f) - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (byAge(h[parent]!, f) <= 0) break
      h[i] = h[parent]!
      i = parent
    }
    h[i] = f
  }

  pop(): Fragment | undefined {
    const h = this.heap
    const top = h[0]
    if (top === undefined) return undefined
    const last = h.pop()!
    if (h.length > 0) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= h.length) break
        const r = l + 1
        const c = r < h.length && byAge(h[r]!, h[l]!) < 0 ? r : l
        if (byAge(last, h[c]!) <= 0) break
        h[i] = h[c]!
        i = c
      }
      h[i] = last
    }
    top.inQueue = false
    return top
  }
}
