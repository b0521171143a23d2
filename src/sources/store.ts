// The object store: every Kubernetes object the gateway knows, by kind and `namespace/name`.
// Sources (manifest files, cluster informers, the local runner) only write here; the compiler
// only reads. Changes are coalesced so a burst of events gives one recompile, and each notification
// says which objects changed, so the compiler can redo only what they touch.
import type { Kind, KubeObject, ObjectsByKind } from '../model/k8s.ts'
import { keyOf, kindOf } from '../model/k8s.ts'
import type { ConfigProblem } from '../model/problems.ts'

export interface ChangedObject {
  readonly kind: Kind
  /** `namespace/name`; the object now is `store.get(kind, key)` (undefined: removed). */
  readonly key: string
}

export interface StoreChanges {
  /** Objects added, replaced or removed since the previous notification, by `Kind/namespace/name`. */
  readonly objects: ReadonlyMap<string, ChangedObject>
  /** The sources' problems changed. */
  readonly problems: boolean
}

/**
 * `changes` without the objects of `kind`; undefined when nothing is left (no other object and no
 * problem change). The same object when it has none of `kind`.
 */
export function withoutKind(changes: StoreChanges, kind: Kind): StoreChanges | undefined {
  let found = false
  for (const c of changes.objects.values()) {
    if (c.kind !== kind) continue
    found = true
    break
  }
  if (!found) return changes
  const rest = new Map<string, ChangedObject>()
  for (const [id, c] of changes.objects) if (c.kind !== kind) rest.set(id, c)
  return rest.size > 0 || changes.problems ? { objects: rest, problems: changes.problems } : undefined
}

/** Listeners written before changes were reported take no argument; that still type-checks. */
type ChangeListener = (changes: StoreChanges) => void

interface SoonListener {
  readonly kinds: ReadonlySet<Kind>
  readonly fn: ChangeListener
  pending: Map<string, ChangedObject>
  scheduled: boolean
}

export class ObjectStore {
  private readonly objects = new Map<Kind, Map<string, KubeObject>>()
  /** Which source wrote each object (`Kind/ns/name` → source), so a source can replace its own set. */
  private readonly owners = new Map<string, string>()
  private readonly bySource = new Map<string, Set<string>>()
  private readonly problemsBySource = new Map<string, ConfigProblem[]>()
  private readonly listeners = new Set<ChangeListener>()
  private readonly soonListeners = new Set<SoonListener>()
  private pending = new Map<string, ChangedObject>()
  private pendingProblems = false
  private notifyScheduled = false
  private batchDepth = 0
  private dirty = false
  /** Bumped on every change; the compiler stamps snapshots with it. */
  version = 0

  get<K extends Kind>(kind: K, key: string): ObjectsByKind[K] | undefined {
    return this.objects.get(kind)?.get(key) as ObjectsByKind[K] | undefined
  }

  list<K extends Kind>(kind: K): ObjectsByKind[K][] {
    const m = this.objects.get(kind)
    return m ? ([...m.values()] as ObjectsByKind[K][]) : []
  }

  /** All problems reported by every source. */
  problems(): ConfigProblem[] {
    return [...this.problemsBySource.values()].flat()
  }

  setProblems(source: string, problems: ConfigProblem[]): void {
    const had = this.problemsBySource.get(source)
    if (problems.length === 0) {
      if (!had) return
      this.problemsBySource.delete(source)
    } else this.problemsBySource.set(source, problems)
    this.pendingProblems = true
    this.changed()
  }

  upsert(obj: KubeObject, source: string): void {
    const kind = kindOf(obj)
    const key = keyOf(obj.metadata)
    let m = this.objects.get(kind)
    if (!m) this.objects.set(kind, (m = new Map()))
    const id = `${kind}/${key}`
    const prevOwner = this.owners.get(id)
    if (prevOwner !== undefined && prevOwner !== source) this.forgetOwned(prevOwner, id)
    this.owners.set(id, source)
    let owned = this.bySource.get(source)
    if (!owned) this.bySource.set(source, (owned = new Set()))
    owned.add(id)
    m.set(key, obj)
    this.changedObject(kind, key, id)
  }

  remove(kind: Kind, key: string, source: string): void {
    const id = `${kind}/${key}`
    // Only the source that wrote an object may remove it: a second file defining the same object
    // must not delete the first file's copy when it goes away.
    if (this.owners.get(id) !== source) return
    this.owners.delete(id)
    this.forgetOwned(source, id)
    if (this.objects.get(kind)?.delete(key)) this.changedObject(kind, key, id)
  }

  /**
   * A source no longer owns `id`; a source that owns nothing leaves the map. Sources come and go
   * with manifest files (one per file), and an empty entry per removed file grew the store for as
   * long as a directory's files churned (issue 23's soak: ~20 a minute).
   */
  private forgetOwned(source: string, id: string): void {
    const owned = this.bySource.get(source)
    if (!owned) return
    owned.delete(id)
    if (owned.size === 0) this.bySource.delete(source)
  }

  /** How many sources own objects now. */
  get sourceCount(): number {
    return this.bySource.size
  }

  /** Replaces everything one source contributed with a new set, atomically for the compiler. */
  replaceSource(source: string, objects: readonly KubeObject[]): void {
    this.batch(() => {
      const keep = new Set(objects.map((o) => `${kindOf(o)}/${keyOf(o.metadata)}`))
      for (const id of [...(this.bySource.get(source) ?? [])]) {
        if (keep.has(id)) continue
        const slash = id.indexOf('/')
        this.remove(id.slice(0, slash) as Kind, id.slice(slash + 1), source)
      }
      for (const o of objects) this.upsert(o, source)
    })
  }

  /** Objects currently owned by a source, as `Kind/ns/name` ids. */
  ownedBy(source: string): string[] {
    return [...(this.bySource.get(source) ?? [])]
  }

  ownerOf(kind: Kind, key: string): string | undefined {
    return this.owners.get(`${kind}/${key}`)
  }

  /** Runs fn with change notifications held until it returns, so listeners see one change. */
  batch(fn: () => void): void {
    this.batchDepth++
    try {
      fn()
    } finally {
      this.batchDepth--
      if (this.batchDepth === 0 && this.dirty) this.schedule()
    }
  }

  onChange(fn: ChangeListener): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /**
   * Like onChange, but only for objects of `kinds`, and on a microtask instead of setImmediate: for
   * changes that must reach the data plane at once (an EndpointSlice that makes a held request's pod
   * ready). Events of one synchronous run (a batch, one informer chunk) still arrive together.
   */
  onChangeSoon(kinds: readonly Kind[], fn: ChangeListener): () => void {
    const l: SoonListener = { kinds: new Set(kinds), fn, pending: new Map(), scheduled: false }
    this.soonListeners.add(l)
    return () => this.soonListeners.delete(l)
  }

  private changedObject(kind: Kind, key: string, id: string): void {
    const c: ChangedObject = { kind, key }
    this.pending.set(id, c)
    for (const l of this.soonListeners) {
      if (!l.kinds.has(kind)) continue
      l.pending.set(id, c)
      if (l.scheduled) continue
      l.scheduled = true
      queueMicrotask(() => {
        l.scheduled = false
        const objects = l.pending
        l.pending = new Map()
        if (this.soonListeners.has(l)) l.fn({ objects, problems: false })
      })
    }
    this.changed()
  }

  private changed(): void {
    this.version++
    this.dirty = true
    if (this.batchDepth === 0) this.schedule()
  }

  private schedule(): void {
    if (this.notifyScheduled) return
    this.notifyScheduled = true
    // setImmediate, not a microtask: informer events that arrive in one I/O turn collapse into one compile.
    setImmediate(() => {
      this.notifyScheduled = false
      this.dirty = false
      const changes: StoreChanges = { objects: this.pending, problems: this.pendingProblems }
      this.pending = new Map()
      this.pendingProblems = false
      for (const fn of this.listeners) fn(changes)
    })
  }
}
