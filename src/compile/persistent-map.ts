// A string-keyed ReadonlyMap that is copied on write in pieces: the keys are spread over a fixed
// number of shards (plain Maps), and an update copies only the shards it touches. A snapshot's host
// and backend tables can then change by one entry in microseconds even with tens of thousands of
// entries, while every published table stays immutable (a request keeps the one it started with).
const SHARD_BITS = 8
const SHARDS = 1 << SHARD_BITS
const EMPTY_SHARD: ReadonlyMap<string, never> = new Map<string, never>()

/** FNV-1a over the UTF-16 code units: cheap, no allocation, and spreads host names well. */
function shardOf(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  return (h ^ (h >>> SHARD_BITS) ^ (h >>> 16)) & (SHARDS - 1)
}

export class PersistentMap<V> implements ReadonlyMap<string, V> {
  private readonly shards: ReadonlyArray<ReadonlyMap<string, V>>
  readonly size: number

  private constructor(shards: ReadonlyArray<ReadonlyMap<string, V>>, size: number) {
    this.shards = shards
    this.size = size
  }

  static empty<V>(): PersistentMap<V> {
    return new PersistentMap<V>(new Array<ReadonlyMap<string, V>>(SHARDS).fill(EMPTY_SHARD), 0)
  }

  static from<V>(entries: Iterable<readonly [string, V]>): PersistentMap<V> {
    const e = PersistentMap.empty<V>().edit()
    for (const [k, v] of entries) e.set(k, v)
    return e.done()
  }

  get(key: string): V | undefined {
    return this.shards[shardOf(key)]!.get(key)
  }

  has(key: string): boolean {
    return this.shards[shardOf(key)]!.has(key)
  }

  /** Starts a batch of changes; `done()` returns the new map and leaves this one as it was. */
  edit(): PersistentMapEditor<V> {
    return new PersistentMapEditor(this.shards, this.size, (shards, size) => new PersistentMap(shards, size))
  }

  forEach(fn: (value: V, key: string, map: ReadonlyMap<string, V>) => void, thisArg?: unknown): void {
    for (const s of this.shards) for (const [k, v] of s) fn.call(thisArg, v, k, this)
  }

  *entries(): MapIterator<[string, V]> {
    for (const s of this.shards) yield* s.entries()
  }

  *keys(): MapIterator<string> {
    for (const s of this.shards) yield* s.keys()
  }

  *values(): MapIterator<V> {
    for (const s of this.shards) yield* s.values()
  }

  [Symbol.iterator](): MapIterator<[string, V]> {
    return this.entries()
  }

  get [Symbol.toStringTag](): string {
    return 'PersistentMap'
  }
}

/** Collects changes; each touched shard is copied once per edit, never mutated in place. */
export class PersistentMapEditor<V> {
  private readonly shards: Array<ReadonlyMap<string, V>>
  private readonly copied = new Set<number>()
  private size: number
  private readonly make: (shards: ReadonlyArray<ReadonlyMap<string, V>>, size: number) => PersistentMap<V>
  private changed = false
  private readonly base: ReadonlyArray<ReadonlyMap<string, V>>

  constructor(base: ReadonlyArray<ReadonlyMap<string, V>>, size: number, make: (shards: ReadonlyArray<ReadonlyMap<string, V>>, size: number) => PersistentMap<V>) {
    this.base = base
    this.shards = base.slice()
    this.size = size
    this.make = make
  }

  private writable(i: number): Map<string, V> {
    if (!this.copied.has(i)) {
      this.copied.add(i)
      this.shards[i] = new Map(this.shards[i]!)
    }
    return this.shards[i] as Map<string, V>
  }

  set(key: string, value: V): void {
    const i = shardOf(key)
    const s = this.shards[i]!
    const had = s.has(key)
    if (had && s.get(key) === value) return
    this.writable(i).set(key, value)
    if (!had) this.size++
    this.changed = true
  }

  delete(key: string): void {
    const i = shardOf(key)
    if (!this.shards[i]!.has(key)) return
    this.writable(i).delete(key)
    this.size--
    this.changed = true
  }

  get(key: string): V | undefined {
    return this.shards[shardOf(key)]!.get(key)
  }

  /** The new map; `undefined` when nothing changed (the caller keeps the old one). */
  doneOrUnchanged(): PersistentMap<V> | undefined {
    return this.changed ? this.make(this.shards, this.size) : undefined
  }

  done(): PersistentMap<V> {
    return this.make(this.changed ? this.shards : this.base.slice(), this.size)
  }
}
