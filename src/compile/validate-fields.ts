// Building blocks of the manifest validators (validate.ts, validate-serving.ts): a Checker that
// collects problems, and checks that report a field's problem in the same words everywhere.
import type { ErrorCode } from '../errors.ts'

export type Json = Record<string, unknown>

/** Collects problems for one object; `add` fills in source, document and object. */
export interface Checker {
  add(field: string, reason: string, code: ErrorCode): void
}

export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

export function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

// YAML `~` and JSON null decode to Go's zero value, the same as leaving the field out.
export function present(value: unknown): boolean {
  return value !== undefined && value !== null
}

export function isIntIn(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
}

export function key(name: string): string {
  return `[${JSON.stringify(name)}]`
}

export function requireRecord(c: Checker, value: unknown, field: string, code: ErrorCode, what: string): Json | undefined {
  if (isRecord(value)) return value
  c.add(field, present(value) ? `must be a mapping (${what}), got ${describe(value)}` : `is required: ${what}`, code)
  return undefined
}

export function optionalRecord(c: Checker, value: unknown, field: string, code: ErrorCode): Json | undefined {
  if (!present(value)) return undefined
  if (isRecord(value)) return value
  c.add(field, `must be a mapping, got ${describe(value)}; fix or remove it`, code)
  return undefined
}

export function requireList(c: Checker, value: unknown, field: string, code: ErrorCode, what: string): unknown[] | undefined {
  if (Array.isArray(value) && value.length > 0) return value
  c.add(field, Array.isArray(value) || !present(value) ? `is required: ${what}` : `must be a list (${what}), got ${describe(value)}`, code)
  return undefined
}

export function optionalList(c: Checker, value: unknown, field: string, code: ErrorCode): unknown[] | undefined {
  if (!present(value)) return undefined
  if (Array.isArray(value)) return value
  c.add(field, `must be a list, got ${describe(value)}; fix or remove it`, code)
  return undefined
}

/** True when `value` is a non-empty string. */
export function requireString(c: Checker, value: unknown, field: string, code: ErrorCode, what: string): boolean {
  if (typeof value === 'string' && value !== '') return true
  c.add(field, present(value) && value !== '' ? `must be a string (${what}), got ${describe(value)}` : `is required: ${what}`, code)
  return false
}

export function optionalString(c: Checker, value: unknown, field: string, code: ErrorCode): void {
  if (present(value) && typeof value !== 'string') c.add(field, `must be a string, got ${describe(value)}; quote it or remove it`, code)
}

export function checkStringList(c: Checker, value: unknown, field: string, code: ErrorCode, nonEmpty = false): void {
  const list = optionalList(c, value, field, code)
  list?.forEach((item, i) => {
    if (typeof item !== 'string' || (nonEmpty && item === '')) c.add(`${field}[${i}]`, `must be a non-empty string, got ${describe(item)}`, code)
  })
}

/** Labels, annotations, Secret data: string values only (Kubernetes rejects anything else). */
export function checkStringMap(c: Checker, value: unknown, field: string, code: ErrorCode): Json | undefined {
  const map = optionalRecord(c, value, field, code)
  for (const [k, v] of Object.entries(map ?? {})) {
    if (typeof v !== 'string') c.add(`${field}${key(k)}`, `values must be strings, got ${describe(v)}; quote the value`, code)
  }
  return map
}

/** Safe for any input: never calls toString on user objects. */
export function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  switch (typeof value) {
    case 'string': return value.length > 60 ? `${JSON.stringify(value.slice(0, 60))}…` : JSON.stringify(value)
    case 'number': case 'boolean': case 'bigint': return String(value)
    case 'object': return 'a mapping'
    default: return `a ${typeof value}`
  }
}
