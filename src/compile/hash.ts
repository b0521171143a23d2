// The KIngress config-version hash (K-Network-Hash). The hash prober compares what a gateway
// returns with hex(sha256(json.Marshal(spec) + namespace + name)) computed by Go, so the JSON here
// must be byte-for-byte what Go's encoding/json writes for the networking v1alpha1 IngressSpec
// struct (kingress-contract.md §1.6): struct field order, omitempty, sorted map keys, HTML escaping.
import { createHash } from 'node:crypto'
import type { HTTPIngressPath, IngressBackendSplit, IngressRule, IngressSpec, IngressTLS } from '../model/k8s.ts'

/**
 * A defaulted deep copy of `spec`, as Knative's IngressSpec.SetDefaults leaves it: rule visibility
 * defaults to ExternalIP, and a path's only split with percent 0/omitted gets 100. Both Kourier and
 * the generic reconciler default before hashing, so the hash has to see the same values.
 */
export function setIngressDefaults(spec: IngressSpec): IngressSpec {
  const copy = structuredClone(spec)
  for (const rule of asArray(copy.rules)) {
    if (!isObject(rule)) continue
    if (rule.visibility === undefined || rule.visibility === ('' as string)) rule.visibility = 'ExternalIP'
    const paths = isObject(rule.http) ? asArray(rule.http.paths) : []
    for (const path of paths) {
      if (!isObject(path) || !Array.isArray(path.splits) || path.splits.length !== 1) continue
      const only = path.splits[0]
      if (isObject(only) && (only.percent === undefined || only.percent === null || only.percent === 0)) only.percent = 100
    }
  }
  return copy
}

/**
 * Go `json.Marshal(IngressSpec)` output. Values the Go decoder would have turned into zero values
 * (absent, null) are written as those zero values; fields the Go struct does not have are dropped.
 */
export function goJsonIngressSpec(spec: IngressSpec): string {
  const fields: string[] = []
  pushSlice(fields, 'tls', spec.tls, encodeTLS)
  pushSlice(fields, 'rules', spec.rules, encodeRule)
  pushString(fields, 'httpOption', spec.httpOption)
  return `{${fields.join(',')}}`
}

/** Go's ingress.ComputeHash: the spec exactly as given, no defaulting. */
export function computeSpecHash(namespace: string, name: string, spec: IngressSpec): string {
  return createHash('sha256').update(goJsonIngressSpec(spec) + namespace + name, 'utf8').digest('hex')
}

/** The K-Network-Hash a Knative prober expects for this Ingress: computed on the defaulted spec. */
export function ingressHash(namespace: string, name: string, spec: IngressSpec): string {
  return computeSpecHash(namespace, name, setIngressDefaults(spec))
}

// ---- struct encoders, one per Go type, fields in Go declaration order ----

function encodeTLS(tls: IngressTLS): string {
  const fields: string[] = []
  pushSlice(fields, 'hosts', tls.hosts, goString)
  pushString(fields, 'secretName', tls.secretName)
  pushString(fields, 'secretNamespace', tls.secretNamespace)
  return `{${fields.join(',')}}`
}

function encodeRule(rule: IngressRule): string {
  const fields: string[] = []
  pushSlice(fields, 'hosts', rule.hosts, goString)
  pushString(fields, 'visibility', rule.visibility)
  // `http` is a pointer with omitempty: only nil is dropped; an empty struct still has `paths`.
  if (isObject(rule.http)) fields.push(`"http":{"paths":${encodeSlice(rule.http.paths, encodePath)}}`)
  return `{${fields.join(',')}}`
}

function encodePath(path: HTTPIngressPath): string {
  const fields: string[] = []
  pushString(fields, 'path', path.path)
  pushString(fields, 'rewriteHost', path.rewriteHost)
  pushMap(fields, 'headers', path.headers, (match) => `{"exact":${goString(isObject(match) ? match.exact : undefined)}}`)
  fields.push(`"splits":${encodeSlice(path.splits, encodeSplit)}`)
  pushMap(fields, 'appendHeaders', path.appendHeaders, goString)
  return `{${fields.join(',')}}`
}

function encodeSplit(split: IngressBackendSplit): string {
  // IngressBackend is embedded inline and its three fields are not omitempty.
  const fields = [
    `"serviceNamespace":${goString(split.serviceNamespace)}`,
    `"serviceName":${goString(split.serviceName)}`,
    `"servicePort":${encodeIntOrString(split.servicePort)}`,
  ]
  const percent = goInt(split.percent)
  if (percent !== 0) fields.push(`"percent":${percent}`)
  pushMap(fields, 'appendHeaders', split.appendHeaders, goString)
  return `{${fields.join(',')}}`
}

// intstr.IntOrString: a JSON string decodes to the string form, anything else to the int form
// (null and absent leave the zero value, int 0).
function encodeIntOrString(value: unknown): string {
  return typeof value === 'string' ? goString(value) : String(goInt(value))
}

// ---- field helpers implementing omitempty ----

function pushString(fields: string[], key: string, value: unknown): void {
  if (typeof value === 'string' && value !== '') fields.push(`"${key}":${goString(value)}`)
}

function pushSlice<T>(fields: string[], key: string, value: T[] | undefined, encode: (item: T) => string): void {
  if (Array.isArray(value) && value.length > 0) fields.push(`"${key}":${encodeSlice(value, encode)}`)
}

function pushMap<T>(fields: string[], key: string, value: Record<string, T> | undefined, encode: (item: T) => string): void {
  if (!isObject(value)) return
  const keys = Object.keys(value)
  if (keys.length === 0) return
  keys.sort(compareUtf8)
  fields.push(`"${key}":{${keys.map((k) => `${goString(k)}:${encode(value[k] as T)}`).join(',')}}`)
}

// A non-omitempty slice: nil (absent) is `null`, an empty slice is `[]`.
function encodeSlice<T>(value: T[] | undefined, encode: (item: T) => string): string {
  if (!Array.isArray(value)) return 'null'
  return `[${value.map((item) => encode((item ?? {}) as T)).join(',')}]`
}

function goInt(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? Math.trunc(value) : 0
}

// ---- strings ----

const HEX = '0123456789abcdef'

/**
 * A JSON string literal exactly as Go's encoding/json writes it with HTML escaping on (the json.Marshal
 * default). Since Go 1.22 `\b` and `\f` use their short escapes; other C0 controls are `\u00XX`.
 * U+2028/U+2029 are always escaped. A lone UTF-16 surrogate becomes U+FFFD written as the character
 * itself: that is what Go's decoder stores for an unpaired `\uD8xx` escape, and a valid rune is written
 * unescaped (Go writes the `\ufffd` escape only for invalid UTF-8 bytes, which a JS string cannot hold).
 */
export function goString(value: unknown): string {
  const s = typeof value === 'string' ? value : ''
  let out = '"'
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdfff) {
      const next = s.charCodeAt(i + 1)
      if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        out += s[i]! + s[i + 1]!
        i++
      } else {
        out += '\ufffd'
      }
      continue
    }
    out += escapeCodeUnit(c) ?? s[i]!
  }
  return out + '"'
}

function escapeCodeUnit(c: number): string | undefined {
  switch (c) {
    case 0x22: return '\\"'
    case 0x5c: return '\\\\'
    case 0x08: return '\\b'
    case 0x0c: return '\\f'
    case 0x0a: return '\\n'
    case 0x0d: return '\\r'
    case 0x09: return '\\t'
    case 0x3c: case 0x3e: case 0x26: case 0x2028: case 0x2029:
      return unicodeEscape(c)
  }
  return c < 0x20 ? unicodeEscape(c) : undefined
}

function unicodeEscape(c: number): string {
  return '\\u' + HEX[(c >> 12) & 0xf] + HEX[(c >> 8) & 0xf] + HEX[(c >> 4) & 0xf] + HEX[c & 0xf]
}

/**
 * Go sorts map keys as byte strings, i.e. by UTF-8 bytes, which is code point order. JS `<` compares
 * UTF-16 code units and disagrees for astral characters against U+E000..U+FFFF.
 */
export function compareUtf8(a: string, b: string): number {
  const ca = codePoints(a)
  const cb = codePoints(b)
  const n = Math.min(ca.length, cb.length)
  for (let i = 0; i < n; i++) {
    if (ca[i] !== cb[i]) return ca[i]! - cb[i]!
  }
  return ca.length - cb.length
}

function codePoints(s: string): number[] {
  const out: number[] = []
  for (const ch of s) {
    const cp = ch.codePointAt(0)!
    // Lone surrogates are U+FFFD by the time Go sees them.
    out.push(cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp)
  }
  return out
}

// ---- tolerant access: the spec may come straight from YAML and not match its type ----

function isObject<T>(value: T): value is T & object {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function asArray<T>(value: T[] | undefined): T[] {
  return Array.isArray(value) ? value : []
}
