// Parsing one manifest file: YAML (multi-document) or JSON, `List` objects flattened, each document
// validated. A file is accepted whole or not at all, so a half-edited file never half-applies.
import { Composer, LineCounter, Parser } from 'yaml'
import type { KubeObject } from '../model/k8s.ts'
import type { ConfigProblem } from '../model/problems.ts'
import { validateObject } from '../compile/validate.ts'

export interface ParsedFile {
  objects: KubeObject[]
  problems: ConfigProblem[]
  /** Documents skipped on purpose (unknown kinds), for the debug view. */
}

export const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json']

export function isManifestFile(path: string): boolean {
  const lower = path.toLowerCase()
  return MANIFEST_EXTENSIONS.some((e) => lower.endsWith(e))
}

/** The document each parsed object came from (objects are stored as parsed, so the identity holds). */
const DOCUMENTS = new WeakMap<object, number>()

/** Which YAML document of its file an object was read from, for problems found after parsing. */
export function documentOf(obj: object): number | undefined {
  return DOCUMENTS.get(obj)
}

export function parseManifestText(text: string, source: string): ParsedFile {
  const out: ParsedFile = { objects: [], problems: [] }
  let docs: unknown[]
  if (source.toLowerCase().endsWith('.json')) {
    try {
      docs = [JSON.parse(text)]
    } catch (err) {
      out.problems.push({ source, document: 0, field: '', reason: `not valid JSON${jsonErrorWhere(text, err as Error)}: check quotes, commas and brackets`, code: 'EDGE_ERR_PARSE' })
      return out
    }
  } else {
    docs = []
    // One document at a time: each parse tree is dropped as soon as its plain object exists, so a
    // file of 10,000 KIngress leaves its garbage in the young generation instead of the old one
    // (parseAllDocuments keeps every tree alive until the whole file is parsed).
    const lines = new LineCounter()
    const composer = new Composer()
    let i = 0
    for (const doc of composer.compose(new Parser(lines.addNewLine).parse(text))) {
      const err = doc.errors[0]
      if (err) {
        const at = lines.linePos(err.pos[0])
        out.problems.push({ source, document: i, field: '', reason: `not valid YAML: ${err.message.split('\n')[0]} at line ${at.line}, column ${at.col}`, code: 'EDGE_ERR_PARSE' })
        docs.push(undefined)
      } else docs.push(doc.toJS({ maxAliasCount: 100 }))
      i++
    }
    if (out.problems.length > 0) return out
  }
  docs.forEach((doc, i) => {
    // An empty document (`---` at the end of a file) is allowed.
    if (doc === null || doc === undefined) return
    const items = isList(doc) ? (doc as { items: unknown[] }).items : [doc]
    for (const item of items) {
      const r = validateObject(item, source, i)
      if ('problems' in r) out.problems.push(...r.problems)
      else {
        DOCUMENTS.set(r.object, i)
        out.objects.push(r.object as KubeObject)
      }
    }
  })
  return out
}

function isList(doc: unknown): boolean {
  if (typeof doc !== 'object' || doc === null) return false
  const d = doc as { kind?: unknown; items?: unknown }
  return typeof d.kind === 'string' && d.kind.endsWith('List') && Array.isArray(d.items)
}

/**
 * Where a JSON parse failed, without V8's message: that quotes a slice of the file, which may be a
 * Secret's value, and problems end up in logs and /debug/routes.
 */
function jsonErrorWhere(text: string, err: Error): string {
  const lc = /line (\d+) column (\d+)/.exec(err.message)
  if (lc) return ` at line ${lc[1]}, column ${lc[2]}`
  const pos = /position (\d+)/.exec(err.message)
  if (!pos) return ''
  const upTo = text.slice(0, Number(pos[1]))
  const line = upTo.split('\n').length
  return ` at line ${line}, column ${Number(pos[1]) - upTo.lastIndexOf('\n')}`
}
