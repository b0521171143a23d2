// Object storage with apiserver write semantics, a global resourceVersion and a bounded event history.
import { randomUUID } from 'node:crypto'
import { ApiError } from './errors.ts'
import { clone, deepEqual } from './patch.ts'
import type { FieldSelector, LabelSelector } from './selectors.ts'
import {
  apiVersionOf, qualifiedKind, qualifiedResource, resKeyOf,
} from './types.ts'
import type { KObject, ResourceDef, StoredEvent } from './types.ts'

export interface StoreOptions {
  historySize?: number
  /**
   * How a malformed MicroTime is answered. 'invalid' (default): 422 Invalid naming the field.
   * 'decode': 400 BadRequest "<Kind> in version ... cannot be handled as a <Kind>: parsing time ...",
   * which is how (as far as I know) the real apiserver reports it, since it fails while decoding the body.
   */
  microTimeErrors?: 'invalid' | 'decode'
}

/** RFC 3339 with exactly six fractional digits and a `Z` (the real server also accepts ±hh:mm; we are stricter). */
export const MICROTIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/

const GEN_NAME_CHARS = 'bcdfghjklmnpqrstvwxz2456789'

export function nowRfc3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
}

function objKey(ns: string | undefined, name: string): string {
  return `${ns ?? ''}/${name}`
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function getPath(o: unknown, dotted: string): unknown {
  let cur: unknown = o
  for (const p of dotted.split('.')) {
    if (!isObj(cur)) return undefined
    cur = cur[p]
  }
  return cur
}

function nonMeta(o: KObject): Record<string, unknown> {
  const { metadata: _m, status: _s, kind: _k, apiVersion: _a, ...rest } = o
  return rest
}

/** The objects and resourceVersion at one moment, as an etcd snapshot holds them. */
export interface StoreBackup {
  readonly rv: number
  readonly objects: ReadonlyMap<string, ReadonlyMap<string, KObject>>
}

export interface UpdateOptions {
  subresource?: 'status' | undefined
  /** PUT: a missing metadata.resourceVersion is 422 (patches may omit it). */
  requireResourceVersion: boolean
}

export class Store {
  readonly defs = new Map<string, ResourceDef>()
  private readonly objects = new Map<string, Map<string, KObject>>()
  private history: StoredEvent[] = []
  private readonly historySize: number
  private readonly microTimeErrors: 'invalid' | 'decode'
  /** Current (highest issued) resourceVersion. */
  rv = 0
  /** A watch from a resourceVersion lower than this has lost events: 410 Expired. */
  compactedRv = 0
  onEvent: (ev: StoredEvent) => void = () => {}

  constructor(defs: ResourceDef[], opts: StoreOptions = {}) {
    this.historySize = Math.max(1, opts.historySize ?? 1000)
    this.microTimeErrors = opts.microTimeErrors ?? 'invalid'
    for (const d of defs) this.register(d)
  }

  register(def: ResourceDef): void {
    this.defs.set(resKeyOf(def.group, def.version, def.plural), def)
  }

  def(group: string, version: string, plural: string): ResourceDef | undefined {
    return this.defs.get(resKeyOf(group, version, plural))
  }

  mustDef(group: string, version: string, plural: string): ResourceDef {
    const d = this.def(group, version, plural)
    if (d === undefined) throw new Error(`fake-apiserver: unknown resource ${resKeyOf(group, version, plural)}`)
    return d
  }

  private bucket(def: ResourceDef): Map<string, KObject> {
    const k = resKeyOf(def.group, def.version, def.plural)
    let b = this.objects.get(k)
    if (b === undefined) {
      b = new Map()
      this.objects.set(k, b)
    }
    return b
  }

  // ---- reads ----

  get(def: ResourceDef, ns: string | undefined, name: string): KObject | undefined {
    const o = this.bucket(def).get(objKey(def.namespaced ? ns : undefined, name))
    return o === undefined ? undefined : clone(o)
  }

  mustGet(def: ResourceDef, ns: string | undefined, name: string): KObject {
    const o = this.get(def, ns, name)
    if (o === undefined) throw this.notFound(def, name)
    return o
  }

  list(def: ResourceDef, ns?: string, label?: LabelSelector, field?: FieldSelector): KObject[] {
    const out: KObject[] = []
    const keys = [...this.bucket(def).keys()].sort()
    for (const k of keys) {
      const o = this.bucket(def).get(k)
      if (o === undefined) continue
      if (ns !== undefined && def.namespaced && o.metadata.namespace !== ns) continue
      if (label !== undefined && !label(o.metadata.labels ?? {})) continue
      if (field !== undefined && !field(o)) continue
      out.push(clone(o))
    }
    return out
  }

  /** Events after `rv` (exclusive), oldest first; undefined when that part of history is gone. */
  eventsSince(rv: number): StoredEvent[] | undefined {
    if (rv < this.compactedRv) return undefined
    return this.history.filter((e) => e.rv > rv)
  }

  // ---- errors ----

  notFound(def: ResourceDef, name: string): ApiError {
    return new ApiError(404, `${qualifiedResource(def)} "${name}" not found`, 'NotFound',
      { name, group: def.group, kind: def.plural })
  }

  conflict(def: ResourceDef, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again'): ApiError {
    return new ApiError(409, `Operation cannot be fulfilled on ${qualifiedResource(def)} "${name}": ${why}`, 'Conflict',
      { name, group: def.group, kind: def.plural })
  }

  invalid(def: ResourceDef, name: string, field: string, detail: string): ApiError {
    return new ApiError(422, `${qualifiedKind(def)} "${name}" is invalid: ${field}: ${detail}`, 'Invalid', {
      name, group: def.group, kind: def.kind,
      causes: [{ reason: 'FieldValueInvalid', message: detail, field }],
    })
  }

  // ---- writes ----

  private emit(ev: StoredEvent): void {
    this.history.push(ev)
    while (this.history.length > this.historySize) {
      const dropped = this.history.shift()
      if (dropped !== undefined) this.compactedRv = dropped.rv
    }
    this.onEvent(ev)
  }

  private stamp(def: ResourceDef, o: KObject): void {
    o.apiVersion = apiVersionOf(def)
    o.kind = def.kind
  }

  private validate(def: ResourceDef, o: KObject): void {
    const name = o.metadata.name ?? ''
    for (const f of def.microTimeFields ?? []) {
      const v = getPath(o, f)
      if (v === undefined || v === null) continue
      if (typeof v === 'string' && MICROTIME_RE.test(v) && !Number.isNaN(Date.parse(v))) continue
      if (this.microTimeErrors === 'decode') {
        throw new ApiError(400,
          `${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: ` +
          `parsing time ${JSON.stringify(v)} as "2006-01-02T15:04:05.000000Z07:00": cannot parse (field ${f})`,
          'BadRequest')
      }
      throw this.invalid(def, name, f, `Invalid value: ${JSON.stringify(v)}: ` +
        'must be a MicroTime: RFC 3339 with exactly 6 fractional digits, e.g. 2006-01-02T15:04:05.000000Z')
    }
    const labels = o.metadata.labels
    if (labels !== undefined && (!isObj(labels) || Object.values(labels).some((v) => typeof v !== 'string'))) {
      throw this.invalid(def, name, 'metadata.labels', 'Invalid value: label values must be strings')
    }
  }

  private checkBody(def: ResourceDef, body: unknown): KObject {
    if (!isObj(body)) throw new ApiError(400, 'the body of the request must be a JSON object', 'BadRequest')
    const o = body as KObject
    if (o.metadata === undefined || o.metadata === null) o.metadata = {}
    if (!isObj(o.metadata)) throw new ApiError(400, 'metadata must be an object', 'BadRequest')
    if (o.kind !== undefined && o.kind !== def.kind) {
      throw new ApiError(400, `the kind of the provided object (${String(o.kind)}) does not match the kind of the resource (${def.kind})`, 'BadRequest')
    }
    if (o.apiVersion !== undefined && o.apiVersion !== apiVersionOf(def)) {
      throw new ApiError(400, `the API version in the data (${String(o.apiVersion)}) does not match the expected API version (${apiVersionOf(def)})`, 'BadRequest')
    }
    return o
  }

  create(def: ResourceDef, ns: string | undefined, body: unknown): KObject {
    const o = clone(this.checkBody(def, body))
    const md = o.metadata
    if (def.namespaced) {
      if (md.namespace !== undefined && md.namespace !== '' && md.namespace !== ns) {
        throw new ApiError(400, 'the namespace of the provided object does not match the namespace sent on the request', 'BadRequest')
      }
      md.namespace = ns
    } else {
      delete md.namespace
    }
    if ((md.name === undefined || md.name === '') && typeof md.generateName === 'string' && md.generateName !== '') {
      let suffix = ''
      for (let i = 0; i < 5; i++) suffix += GEN_NAME_CHARS[Math.floor(Math.random() * GEN_NAME_CHARS.length)]
      md.name = md.generateName + suffix
    }
    if (typeof md.name !== 'string' || md.name === '') {
      throw this.invalid(def, '', 'metadata.name', 'Required value: name or generateName is required')
    }
    const b = this.bucket(def)
    if (b.has(objKey(md.namespace, md.name))) {
      throw new ApiError(409, `${qualifiedResource(def)} "${md.name}" already exists`, 'AlreadyExists',
        { name: md.name, group: def.group, kind: def.plural })
    }
    delete md.resourceVersion
    delete md.deletionTimestamp
    delete md.deletionGracePeriodSeconds
    md.uid = randomUUID()
    md.creationTimestamp = nowRfc3339()
    if (def.generation !== undefined) md.generation = 1
    else delete md.generation
    if (def.statusSubresource) delete o.status
    this.stamp(def, o)
    this.validate(def, o)
    this.rv++
    md.resourceVersion = String(this.rv)
    b.set(objKey(md.namespace, md.name), o)
    this.emit({ rv: this.rv, resKey: resKeyOf(def.group, def.version, def.plural), type: 'ADDED', object: clone(o) })
    return clone(o)
  }

  /** PUT (and the second half of PATCH): `body` is the complete desired object. */
  update(def: ResourceDef, ns: string | undefined, name: string, body: unknown, opts: UpdateOptions): KObject {
    const next = clone(this.checkBody(def, body))
    const b = this.bucket(def)
    const key = objKey(def.namespaced ? ns : undefined, name)
    const old = b.get(key)
    if (next.metadata.name !== undefined && next.metadata.name !== name) {
      throw new ApiError(400, `the name of the object (${String(next.metadata.name)}) does not match the name on the URL (${name})`, 'BadRequest')
    }
    if (def.namespaced && next.metadata.namespace !== undefined && next.metadata.namespace !== '' && next.metadata.namespace !== ns) {
      throw new ApiError(400, 'the namespace of the provided object does not match the namespace sent on the request', 'BadRequest')
    }
    if (old === undefined) throw this.notFound(def, name)
    const rv = next.metadata.resourceVersion
    if (rv === undefined || rv === '') {
      if (opts.requireResourceVersion) {
        throw this.invalid(def, name, 'metadata.resourceVersion', 'Invalid value: 0x0: must be specified for an update')
      }
    } else if (rv !== old.metadata.resourceVersion) {
      throw this.conflict(def, name)
    }
    if (next.metadata.uid !== undefined && next.metadata.uid !== '' && next.metadata.uid !== old.metadata.uid) {
      throw this.conflict(def, name, `Precondition failed: UID in precondition: ${String(next.metadata.uid)}, UID in object meta: ${String(old.metadata.uid)}`)
    }

    let result: KObject
    if (opts.subresource === 'status') {
      // Only status moves; spec and metadata stay as stored.
      result = clone(old)
      if (next.status === undefined) delete result.status
      else result.status = next.status
    } else {
      result = next
      const md = result.metadata
      md.name = name
      if (def.namespaced) md.namespace = ns
      else delete md.namespace
      md.uid = old.metadata.uid
      md.creationTimestamp = old.metadata.creationTimestamp
      for (const f of ['deletionTimestamp', 'deletionGracePeriodSeconds', 'generation']) {
        if (old.metadata[f] === undefined) delete md[f]
        else md[f] = old.metadata[f]
      }
      if (def.statusSubresource) {
        if (old.status === undefined) delete result.status
        else result.status = clone(old.status)
      }
      if (def.generation === 'spec' && !deepEqual(old.spec, result.spec)) {
        md.generation = (old.metadata.generation ?? 0) + 1
      } else if (def.generation === 'nonmeta' && !deepEqual(nonMeta(old), nonMeta(result))) {
        md.generation = (old.metadata.generation ?? 0) + 1
      }
      if (old.metadata.deletionTimestamp !== undefined) {
        const before = new Set(old.metadata.finalizers ?? [])
        const added = (md.finalizers ?? []).filter((f) => !before.has(f))
        if (added.length > 0) {
          throw new ApiError(422, `${qualifiedKind(def)} "${name}" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}`, 'Invalid')
        }
      }
      if (Array.isArray(md.finalizers) && md.finalizers.length === 0) delete md.finalizers
    }
    this.stamp(def, result)
    result.metadata.resourceVersion = old.metadata.resourceVersion
    this.validate(def, result)
    if (deepEqual(result, old)) {
      // A no-op write: no new resourceVersion, no watch event (as the real server).
      return clone(old)
    }
    this.rv++
    result.metadata.resourceVersion = String(this.rv)
    const resKey = resKeyOf(def.group, def.version, def.plural)
    if (result.metadata.deletionTimestamp !== undefined && (result.metadata.finalizers ?? []).length === 0) {
      b.delete(key)
      this.emit({ rv: this.rv, resKey, type: 'DELETED', object: clone(result), old: clone(old) })
      return clone(result)
    }
    b.set(key, result)
    this.emit({ rv: this.rv, resKey, type: 'MODIFIED', object: clone(result), old: clone(old) })
    return clone(result)
  }

  /** DELETE: immediate unless finalizers are present (then deletionTimestamp is set). */
  delete(def: ResourceDef, ns: string | undefined, name: string, preconditions?: { uid?: string; resourceVersion?: string }): KObject {
    const b = this.bucket(def)
    const key = objKey(def.namespaced ? ns : undefined, name)
    const old = b.get(key)
    if (old === undefined) throw this.notFound(def, name)
    if (preconditions?.uid !== undefined && preconditions.uid !== old.metadata.uid) {
      throw this.conflict(def, name, `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${String(old.metadata.uid)}`)
    }
    if (preconditions?.resourceVersion !== undefined && preconditions.resourceVersion !== old.metadata.resourceVersion) {
      throw this.conflict(def, name, `Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${String(old.metadata.resourceVersion)}`)
    }
    const resKey = resKeyOf(def.group, def.version, def.plural)
    if ((old.metadata.finalizers ?? []).length > 0) {
      if (old.metadata.deletionTimestamp !== undefined) return clone(old)
      const next = clone(old)
      next.metadata.deletionTimestamp = nowRfc3339()
      next.metadata.deletionGracePeriodSeconds = 0
      if ((next.metadata.generation ?? 0) > 0) next.metadata.generation = (next.metadata.generation ?? 0) + 1
      this.rv++
      next.metadata.resourceVersion = String(this.rv)
      b.set(key, next)
      this.emit({ rv: this.rv, resKey, type: 'MODIFIED', object: clone(next), old: clone(old) })
      return clone(next)
    }
    return this.removeNow(def, key, old)
  }

  private removeNow(def: ResourceDef, key: string, old: KObject): KObject {
    this.bucket(def).delete(key)
    this.rv++
    const gone = clone(old)
    gone.metadata.resourceVersion = String(this.rv)
    this.emit({ rv: this.rv, resKey: resKeyOf(def.group, def.version, def.plural), type: 'DELETED', object: clone(gone) })
    return gone
  }

  // ---- direct access for test setup (no admission rules, still events) ----

  putDirect(def: ResourceDef, obj: KObject): KObject {
    const o = clone(obj)
    if (o.metadata === undefined) o.metadata = {}
    const md = o.metadata
    if (typeof md.name !== 'string' || md.name === '') throw new Error('fake-apiserver put: metadata.name is required')
    if (def.namespaced && (md.namespace === undefined || md.namespace === '')) md.namespace = 'default'
    if (!def.namespaced) delete md.namespace
    const key = objKey(md.namespace, md.name)
    const b = this.bucket(def)
    const old = b.get(key)
    md.uid ??= old?.metadata.uid ?? randomUUID()
    md.creationTimestamp ??= old?.metadata.creationTimestamp ?? nowRfc3339()
    if (def.generation !== undefined && md.generation === undefined) {
      const oldGen = old?.metadata.generation
      md.generation = oldGen === undefined ? 1 : (old !== undefined && !deepEqual(old.spec, o.spec) ? oldGen + 1 : oldGen)
    }
    this.stamp(def, o)
    this.rv++
    md.resourceVersion = String(this.rv)
    b.set(key, o)
    const resKey = resKeyOf(def.group, def.version, def.plural)
    if (old === undefined) this.emit({ rv: this.rv, resKey, type: 'ADDED', object: clone(o) })
    else this.emit({ rv: this.rv, resKey, type: 'MODIFIED', object: clone(o), old: clone(old) })
    return clone(o)
  }

  removeDirect(def: ResourceDef, ns: string | undefined, name: string): KObject | undefined {
    const key = objKey(def.namespaced ? ns : undefined, name)
    const old = this.bucket(def).get(key)
    if (old === undefined) return undefined
    return this.removeNow(def, key, old)
  }

  // ---- history control ----

  /** Forget all history: any watch from an older resourceVersion gets 410. */
  expireHistory(): void {
    this.history = []
    this.compactedRv = this.rv
  }

  backup(): StoreBackup {
    const objects = new Map<string, Map<string, KObject>>()
    for (const [k, b] of this.objects) objects.set(k, new Map([...b].map(([key, o]) => [key, clone(o)])))
    return { rv: this.rv, objects }
  }

  /** Back to `b`: its objects, its resourceVersion (lower than any issued since), no history. */
  restoreBackup(b: StoreBackup): void {
    this.objects.clear()
    for (const [k, bucket] of b.objects) this.objects.set(k, new Map([...bucket].map(([key, o]) => [key, clone(o)])))
    this.rv = b.rv
    this.expireHistory()
  }

  /** Simulates a fresh apiserver: resourceVersions jump, history is empty. */
  restart(wipe: boolean): void {
    this.rv += 1000
    if (wipe) this.objects.clear()
    this.expireHistory()
  }
}
