// JSON Merge Patch (RFC 7386) and JSON Patch (RFC 6902), written from the RFCs.
import { ApiError } from './errors.ts'

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

export function clone<T>(v: T): T {
  return structuredClone(v)
}

/** RFC 7386 §2 MergePatch(Target, Patch). */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObj(patch)) return clone(patch)
  const out: Record<string, unknown> = isObj(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]))
  }
  const ao = a as Record<string, unknown>
  const bo = b as Record<string, unknown>
  const ak = Object.keys(ao).filter((k) => ao[k] !== undefined)
  const bk = Object.keys(bo).filter((k) => bo[k] !== undefined)
  return ak.length === bk.length && ak.every((k) => Object.prototype.hasOwnProperty.call(bo, k) && deepEqual(ao[k], bo[k]))
}

function invalid(msg: string): ApiError {
  return new ApiError(422, `the server rejected our request due to an error in our request: ${msg}`, 'Invalid')
}

function parsePointer(p: unknown): string[] {
  if (typeof p !== 'string') throw invalid('path must be a string')
  if (p === '') return []
  if (!p.startsWith('/')) throw invalid(`invalid JSON pointer "${p}"`)
  return p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
}

interface Loc {
  parent: Record<string, Json> | Json[]
  key: string
}

/** Walk to the parent container of the pointer's last token. */
function locate(doc: Json, tokens: string[], path: string): Loc {
  let cur: Json = doc
  for (let i = 0; i < tokens.length - 1; i++) {
    const t = tokens[i] ?? ''
    if (Array.isArray(cur)) {
      const idx = arrayIndex(t, cur.length - 1, path)
      cur = cur[idx] as Json
    } else if (isObj(cur) && Object.prototype.hasOwnProperty.call(cur, t)) {
      cur = (cur as Record<string, Json>)[t] as Json
    } else {
      throw invalid(`doc is missing path: "${path}"`)
    }
  }
  if (!Array.isArray(cur) && !isObj(cur)) throw invalid(`doc is missing path: "${path}"`)
  return { parent: cur as Record<string, Json> | Json[], key: tokens[tokens.length - 1] ?? '' }
}

function arrayIndex(t: string, max: number, path: string): number {
  if (!/^(0|[1-9][0-9]*)$/.test(t)) throw invalid(`invalid array index in "${path}"`)
  const n = Number(t)
  if (n > max) throw invalid(`array index out of bounds in "${path}"`)
  return n
}

function getAt(doc: Json, path: string): Json {
  const tokens = parsePointer(path)
  if (tokens.length === 0) return doc
  const { parent, key } = locate(doc, tokens, path)
  if (Array.isArray(parent)) return parent[arrayIndex(key, parent.length - 1, path)] as Json
  if (!Object.prototype.hasOwnProperty.call(parent, key)) throw invalid(`doc is missing key: "${path}"`)
  return parent[key] as Json
}

function removeAt(doc: Json, path: string): Json {
  const tokens = parsePointer(path)
  if (tokens.length === 0) throw invalid('cannot remove the whole document')
  const { parent, key } = locate(doc, tokens, path)
  if (Array.isArray(parent)) {
    const i = arrayIndex(key, parent.length - 1, path)
    return parent.splice(i, 1)[0] as Json
  }
  if (!Object.prototype.hasOwnProperty.call(parent, key)) throw invalid(`unable to remove nonexistent key: "${path}"`)
  const v = parent[key] as Json
  delete parent[key]
  return v
}

function addAt(doc: Json, path: string, value: Json): Json {
  const tokens = parsePointer(path)
  if (tokens.length === 0) return value
  const { parent, key } = locate(doc, tokens, path)
  if (Array.isArray(parent)) {
    const i = key === '-' ? parent.length : arrayIndex(key, parent.length, path)
    parent.splice(i, 0, value)
  } else {
    parent[key] = value
  }
  return doc
}

function replaceAt(doc: Json, path: string, value: Json): Json {
  const tokens = parsePointer(path)
  if (tokens.length === 0) return value
  const { parent, key } = locate(doc, tokens, path)
  if (Array.isArray(parent)) {
    parent[arrayIndex(key, parent.length - 1, path)] = value
  } else {
    if (!Object.prototype.hasOwnProperty.call(parent, key)) throw invalid(`replace operation does not apply: doc is missing key: ${path}`)
    parent[key] = value
  }
  return doc
}

/** RFC 6902: add, remove, replace, move, copy, test. Operates on a copy. */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new ApiError(400, 'json patch must be an array of operations', 'BadRequest')
  let doc = clone(target) as Json
  for (const op of ops) {
    if (!isObj(op)) throw invalid('json patch operation must be an object')
    const path = op['path']
    if (typeof path !== 'string') throw invalid(`operation missing "path"`)
    switch (op['op']) {
      case 'add':
        if (!('value' in op)) throw invalid('add operation missing "value"')
        doc = addAt(doc, path, clone(op['value']) as Json)
        break
      case 'remove':
        removeAt(doc, path)
        break
      case 'replace':
        if (!('value' in op)) throw invalid('replace operation missing "value"')
        doc = replaceAt(doc, path, clone(op['value']) as Json)
        break
      case 'move': {
        const from = op['from']
        if (typeof from !== 'string') throw invalid('move operation missing "from"')
        if (path.startsWith(from + '/')) throw invalid('cannot move a value into one of its children')
        const v = removeAt(doc, from)
        doc = addAt(doc, path, v)
        break
      }
      case 'copy': {
        const from = op['from']
        if (typeof from !== 'string') throw invalid('copy operation missing "from"')
        doc = addAt(doc, path, clone(getAt(doc, from)))
        break
      }
      case 'test': {
        let actual: Json
        try {
          actual = getAt(doc, path)
        } catch {
          throw invalid(`testing value ${path} failed: path not found`)
        }
        if (!deepEqual(actual, op['value'])) throw invalid(`testing value ${path} failed`)
        break
      }
      default:
        throw invalid(`unexpected kind of patch operation: ${String(op['op'])}`)
    }
  }
  return doc
}
