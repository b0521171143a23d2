// Label and field selectors, parsed the way the apiserver accepts them in query strings.
import { ApiError } from './errors.ts'
import type { KObject, ResourceDef } from './types.ts'

type LabelReq =
  | { op: 'eq'; key: string; value: string }
  | { op: 'neq'; key: string; value: string }
  | { op: 'exists'; key: string }
  | { op: 'notexists'; key: string }
  | { op: 'in'; key: string; values: string[] }
  | { op: 'notin'; key: string; values: string[] }

export type LabelSelector = (labels: Record<string, string>) => boolean
export type FieldSelector = (obj: KObject) => boolean

const KEY_RE = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/
const VALUE_RE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/

/** Split on commas that are not inside parentheses. */
function splitTop(s: string): string[] {
  const out: string[] = []
  let depth = 0
  let cur = ''
  for (const ch of s) {
    if (ch === '(') depth++
    if (ch === ')') depth--
    if (ch === ',' && depth === 0) {
      out.push(cur)
      cur = ''
    } else {
      cur += ch
    }
  }
  out.push(cur)
  return out
}

function bad(sel: string, why: string): ApiError {
  return new ApiError(400, `unable to parse requirement: ${why} (selector "${sel}")`, 'BadRequest')
}

function checkKey(sel: string, key: string): string {
  if (!KEY_RE.test(key)) throw bad(sel, `invalid label key "${key}"`)
  return key
}
function checkValue(sel: string, v: string): string {
  if (!VALUE_RE.test(v) || v.length > 63) throw bad(sel, `invalid label value: "${v}"`)
  return v
}

export function parseLabelSelector(sel: string | null | undefined): LabelSelector {
  if (sel === null || sel === undefined || sel.trim() === '') return () => true
  const reqs: LabelReq[] = []
  for (const rawPart of splitTop(sel)) {
    const part = rawPart.trim()
    if (part === '') throw bad(sel, 'empty requirement')
    let m: RegExpMatchArray | null
    if ((m = part.match(/^(\S+)\s+(in|notin)\s*\(([^)]*)\)$/))) {
      const values = (m[3] ?? '').split(',').map((v) => checkValue(sel, v.trim()))
      const key = checkKey(sel, m[1] ?? '')
      reqs.push(m[2] === 'in' ? { op: 'in', key, values } : { op: 'notin', key, values })
    } else if ((m = part.match(/^([^=!\s]+)\s*!=\s*(\S*)$/))) {
      reqs.push({ op: 'neq', key: checkKey(sel, m[1] ?? ''), value: checkValue(sel, m[2] ?? '') })
    } else if ((m = part.match(/^([^=!\s]+)\s*==?\s*(\S*)$/))) {
      reqs.push({ op: 'eq', key: checkKey(sel, m[1] ?? ''), value: checkValue(sel, m[2] ?? '') })
    } else if ((m = part.match(/^!\s*(\S+)$/))) {
      reqs.push({ op: 'notexists', key: checkKey(sel, m[1] ?? '') })
    } else if (/^\S+$/.test(part)) {
      reqs.push({ op: 'exists', key: checkKey(sel, part) })
    } else {
      throw bad(sel, `cannot parse "${part}"`)
    }
  }
  return (labels) => {
    for (const r of reqs) {
      const has = Object.prototype.hasOwnProperty.call(labels, r.key)
      const v = labels[r.key]
      switch (r.op) {
        case 'eq':
          if (!has || v !== r.value) return false
          break
        case 'neq':
          if (has && v === r.value) return false
          break
        case 'exists':
          if (!has) return false
          break
        case 'notexists':
          if (has) return false
          break
        case 'in':
          if (!has || !r.values.includes(v ?? '')) return false
          break
        case 'notin':
          if (has && r.values.includes(v ?? '')) return false
          break
      }
    }
    return true
  }
}

const METADATA_FIELDS: Record<string, (o: KObject) => string> = {
  'metadata.name': (o) => o.metadata.name ?? '',
  'metadata.namespace': (o) => o.metadata.namespace ?? '',
}

/** A top-level string field such as a Secret's `type` ('' when absent, as the real field set has it). */
function topLevel(field: string): (o: KObject) => string {
  return (o) => {
    const v = o[field]
    return typeof v === 'string' ? v : ''
  }
}

/**
 * Field selectors as the real server checks them: every resource supports metadata.name and
 * metadata.namespace (custom resources: only if namespaced), and a built-in type also the fields its
 * field label conversion lists (`fieldLabels` in types.ts, e.g. `type` for Secrets). Any other field
 * is a 400 "field label not supported: <field>", as the conversion functions word it.
 */
export function parseFieldSelector(sel: string | null | undefined, def?: ResourceDef): FieldSelector {
  if (sel === null || sel === undefined || sel.trim() === '') return () => true
  const reqs: Array<{ get: (o: KObject) => string; neg: boolean; value: string }> = []
  for (const rawPart of sel.split(',')) {
    const part = rawPart.trim()
    const m = part.match(/^([^=!]+?)\s*(==|=|!=)\s*(.*)$/)
    if (!m) throw new ApiError(400, `invalid field selector: "${part}"`, 'BadRequest')
    const field = m[1] ?? ''
    // A cluster-scoped custom resource has no metadata.namespace field label.
    const clusterScopedCustom = def !== undefined && !def.builtin && !def.namespaced
    const get = (clusterScopedCustom && field === 'metadata.namespace' ? undefined : METADATA_FIELDS[field]) ??
      (def?.fieldLabels?.includes(field) ? topLevel(field) : undefined)
    if (get === undefined) throw new ApiError(400, `field label not supported: ${field}`, 'BadRequest')
    reqs.push({ get, neg: m[2] === '!=', value: m[3] ?? '' })
  }
  return (o) => reqs.every((r) => (r.get(o) === r.value) !== r.neg)
}
