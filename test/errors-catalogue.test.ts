// docs/errors.md promises every error code and every x-edge-reason an operator can meet. This holds
// it to the source: a code or reason used in src/ but not documented, documented but no longer used,
// or declared in its union but never used, fails here. Source is read with the TypeScript parser, so
// only string and template literals count (a code in a comment is not a use).
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import ts from 'typescript'

const ROOT = path.resolve(import.meta.dirname, '..')
const ERRORS_TS = 'src/errors.ts'
const REPLY_TS = 'src/dataplane/reply.ts'
const DOC = 'docs/errors.md'
const CODE_PATTERN = /EDGE_ERR_[A-Z0-9_]+/g

interface SourceFile {
  rel: string
  ast: ts.SourceFile
}

function sources(): SourceFile[] {
  const dir = path.join(ROOT, 'src')
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .sort()
    .map((f) => {
      const rel = path.posix.join('src', f.split(path.sep).join('/'))
      return { rel, ast: ts.createSourceFile(rel, fs.readFileSync(path.join(dir, f), 'utf8'), ts.ScriptTarget.Latest, true) }
    })
}

function walk(node: ts.Node, visit: (n: ts.Node) => void): void {
  visit(node)
  node.forEachChild((child) => walk(child, visit))
}

/** Every piece of text a file spells out in quotes: string literals and the literal parts of templates. */
function literals(file: SourceFile): string[] {
  const out: string[] = []
  walk(file.ast, (n) => {
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n) || ts.isTemplateHead(n) || ts.isTemplateMiddle(n) || ts.isTemplateTail(n)) out.push(n.text)
  })
  return out
}

/** The string members of `type name = 'a' | 'b' | …` in a file. */
function unionMembers(file: SourceFile, name: string): string[] {
  const out: string[] = []
  walk(file.ast, (n) => {
    if (!ts.isTypeAliasDeclaration(n) || n.name.text !== name) return
    walk(n.type, (m) => {
      if (ts.isLiteralTypeNode(m) && ts.isStringLiteral(m.literal)) out.push(m.literal.text)
    })
  })
  return out
}

/** Reasons set as a literal header outside reply(): `.header('x-edge-reason', 'not-ready')`. */
function headerReasons(file: SourceFile): string[] {
  const out: string[] = []
  walk(file.ast, (n) => {
    if (!ts.isCallExpression(n) || n.arguments.length < 2) return
    const [name, value] = n.arguments
    if (name && value && ts.isStringLiteral(name) && name.text.toLowerCase() === 'x-edge-reason' && ts.isStringLiteral(value)) out.push(value.text)
  })
  return out
}

function missing(want: Iterable<string>, have: ReadonlySet<string>): string[] {
  return [...new Set(want)].filter((x) => !have.has(x)).sort()
}

function duplicated(list: readonly string[]): string[] {
  return [...new Set(list.filter((x, i) => list.indexOf(x) !== i))].sort()
}

/** The part of a markdown page under one `## ` heading, up to the next. */
function section(doc: string, heading: string): string {
  const start = doc.indexOf(`\n## ${heading}\n`)
  if (start < 0) return ''
  const next = doc.indexOf('\n## ', start + 1)
  return doc.slice(start, next < 0 ? undefined : next)
}

const files = sources()
const doc = fs.readFileSync(path.join(ROOT, DOC), 'utf8')
const errorsFile = files.find((f) => f.rel === ERRORS_TS)!
const replyFile = files.find((f) => f.rel === REPLY_TS)!

t.test('error codes: the ErrorCode union, the source and docs/errors.md agree', async (t) => {
  const union = unionMembers(errorsFile, 'ErrorCode')
  t.ok(union.length > 0, `${ERRORS_TS} declares the ErrorCode union`)
  t.strictSame(duplicated(union), [], 'no code is listed twice in the union')
  const declared = new Set(union)

  // Where each code is used: any literal holding an EDGE_ERR_ code, or exactly a member of the union.
  const usedIn = new Map<string, Set<string>>()
  for (const f of files) {
    if (f === errorsFile) continue
    for (const text of literals(f)) {
      const found = [...(text.match(CODE_PATTERN) ?? [])]
      if (declared.has(text)) found.push(text)
      for (const code of found) {
        if (!usedIn.has(code)) usedIn.set(code, new Set())
        usedIn.get(code)!.add(f.rel)
      }
    }
  }
  const used = new Set(usedIn.keys())
  const notDeclared = missing(used, declared).map((c) => `${c} (in ${[...usedIn.get(c)!].join(', ')})`)
  t.strictSame(notDeclared, [], `every code used in src/ is in the ErrorCode union of ${ERRORS_TS}`)
  t.strictSame(missing(declared, used), [], 'every code in the ErrorCode union is used somewhere in src/')

  const headings = [...doc.matchAll(/^### `([^`]+)`$/gm)].map((m) => m[1]!)
  t.strictSame(duplicated(headings), [], `no code has two sections in ${DOC}`)
  const documented = new Set(headings)
  t.strictSame(missing(used, documented), [], `every code used in src/ has a section in ${DOC}`)
  t.strictSame(missing(documented, used), [], `every section of ${DOC} is a code still used in src/`)
  const mentioned = new Set(doc.match(CODE_PATTERN) ?? [])
  t.strictSame(missing(mentioned, used), [], `every EDGE_ERR_ code ${DOC} mentions is one still used in src/`)

  // Each section says what happened, why, and how to fix it.
  const bodies = doc.split(/^### /m).slice(1)
  for (const body of bodies) {
    const code = body.slice(0, body.indexOf('\n'))
    const lacking = ['What happened', 'Why', 'How to fix'].filter((part) => !new RegExp(`^- \\*\\*${part}:\\*\\* \\S`, 'm').test(body))
    t.strictSame(lacking, [], `${code}: the section has what happened, why and how to fix`)
  }
})

t.test('x-edge-reason values: the Reason union, the source and docs/errors.md agree', async (t) => {
  const union = unionMembers(replyFile, 'Reason')
  t.ok(union.length > 0, `${REPLY_TS} declares the Reason union`)
  t.strictSame(duplicated(union), [], 'no reason is listed twice in the union')

  // The data plane is where reasons are chosen: a literal there equal to a reason is a use of it.
  const dataPlaneLiterals = new Set(files.filter((f) => (f.rel.startsWith('src/dataplane/') || f.rel.startsWith('src/policy/')) && f !== replyFile).flatMap(literals))
  t.strictSame(missing(union, dataPlaneLiterals), [], 'every reason in the Reason union is used by the data plane')

  const sent = new Set([...union, ...files.flatMap(headerReasons)])

  const table = section(doc, '`x-edge-reason` values')
  t.ok(table !== '', `${DOC} has a section on x-edge-reason values`)
  // Body rows only: the header row above the |---| line names the columns.
  const body = table.slice(table.indexOf('\n|---'))
  const rows = [...body.matchAll(/^\| `([^`]+)` \| ([^|]+) \| ([^|]+) \|/gm)]
  const listed = rows.map((r) => r[1]!)
  t.strictSame(duplicated(listed), [], 'no reason has two rows')
  t.strictSame(missing(sent, new Set(listed)), [], `every x-edge-reason the gateway sends has a row in ${DOC}`)
  t.strictSame(missing(listed, sent), [], `every row of ${DOC} is a reason the gateway still sends`)
  const withoutStatus = rows.filter((r) => !/\b[1-5]\d\d\b/.test(r[2]!) || r[3]!.trim() === '').map((r) => r[1]!)
  t.strictSame(withoutStatus, [], 'every row gives a status and a meaning')
})
