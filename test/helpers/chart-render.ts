// The chart's templates rendered without helm: a small renderer for the subset of Go templates (plus
// the few Sprig functions) the chart uses: text/trim markers, comments, define/include/template,
// if/else if/else, range over a list (with else; `.` is the element, `$` the top), pipelines with
// parentheses, .Values/.Release/.Chart fields, .Files.Get. Anything else (with, variables, range over
// a map or with variables, an unknown function) throws, so a template that outgrows the subset fails
// loudly rather than slipping through. It is strict where Helm is lenient: printing a missing value
// throws instead of rendering an empty string. Used by test/chart.test.ts (which tests the renderer
// itself) and by tests that run the gateway with what the chart renders (its RBAC).
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml, parseAllDocuments, stringify as toYamlText } from 'yaml'

export const repo = fileURLToPath(new URL('../../', import.meta.url))
export const chartDir = join(repo, 'charts', 'edge-gateway')
export const templatesDir = join(chartDir, 'templates')

// ---------------------------------------------------------------- the template renderer

type Tok =
  | { t: 'field'; root: boolean; path: string[] }
  | { t: 'str'; v: string }
  | { t: 'num'; v: number }
  | { t: 'ident'; v: string }
  | { t: 'lparen' }
  | { t: 'rparen' }
  | { t: 'pipe' }

type Operand =
  | { kind: 'field'; root: boolean; path: string[] }
  | { kind: 'lit'; value: unknown }
  | { kind: 'fn'; name: string }
  | { kind: 'sub'; pipe: Pipeline }
type Command = Operand[]
type Pipeline = Command[]

type TplNode =
  | { kind: 'text'; text: string }
  | { kind: 'print'; pipe: Pipeline }
  | { kind: 'if'; branches: Array<{ cond: Pipeline; body: TplNode[] }>; otherwise: TplNode[] }
  | { kind: 'range'; over: Pipeline; body: TplNode[]; otherwise: TplNode[]; where: string }

type Segment = { kind: 'text'; text: string } | { kind: 'action'; toks: Tok[]; where: string }

const SPACE = /[ \t\r\n]/

function segment(src: string, file: string): Segment[] {
  const out: Segment[] = []
  let i = 0
  let trimNext = false
  const line = (at: number): string => `${file}:${src.slice(0, at).split('\n').length}`
  while (i < src.length) {
    const open = src.indexOf('{{', i)
    let text = src.slice(i, open === -1 ? src.length : open)
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, '')
    trimNext = false
    if (open === -1) {
      out.push({ kind: 'text', text })
      break
    }
    let p = open + 2
    if (src[p] === '-' && SPACE.test(src[p + 1] ?? '')) {
      text = text.replace(/[ \t\r\n]+$/, '')
      p += 1
    }
    out.push({ kind: 'text', text })
    const where = line(open)
    while (SPACE.test(src[p] ?? '')) p++
    if (src.startsWith('/*', p)) {
      const close = src.indexOf('*/', p)
      if (close === -1) throw new Error(`${where}: unclosed comment`)
      p = close + 2
      while (SPACE.test(src[p] ?? '')) p++
      if (src.startsWith('-}}', p)) {
        trimNext = true
        p += 3
      } else if (src.startsWith('}}', p)) p += 2
      else throw new Error(`${where}: comment must end the action`)
      i = p
      continue
    }
    const toks: Tok[] = []
    for (;;) {
      while (SPACE.test(src[p] ?? '')) p++
      if (p >= src.length) throw new Error(`${where}: unclosed action`)
      if (src.startsWith('-}}', p) && SPACE.test(src[p - 1] ?? '')) {
        trimNext = true
        p += 3
        break
      }
      if (src.startsWith('}}', p)) {
        p += 2
        break
      }
      const c = src[p] ?? ''
      const rest = src.slice(p)
      let m: RegExpExecArray | null
      if (c === '(') {
        toks.push({ t: 'lparen' })
        p++
      } else if (c === ')') {
        toks.push({ t: 'rparen' })
        p++
      } else if (c === '|') {
        toks.push({ t: 'pipe' })
        p++
      } else if (c === '"') {
        m = /^"(?:[^"\\\n]|\\.)*"/.exec(rest)
        if (!m) throw new Error(`${where}: bad string`)
        toks.push({ t: 'str', v: JSON.parse(m[0]) as string })
        p += m[0].length
      } else if (c === '`') {
        const close = src.indexOf('`', p + 1)
        if (close === -1) throw new Error(`${where}: bad raw string`)
        toks.push({ t: 'str', v: src.slice(p + 1, close) })
        p = close + 1
      } else if ((m = /^(\$?)((?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)/.exec(rest)) && (m[1] === '$' || c === '.')) {
        const path = m[2] === '.' ? [] : (m[2] ?? '').slice(1).split('.')
        toks.push({ t: 'field', root: m[1] === '$', path })
        p += m[0].length
      } else if (c === '$' && !/^\$[A-Za-z_]/.test(rest)) {
        toks.push({ t: 'field', root: true, path: [] })
        p++
      } else if ((m = /^-?\d+(?:\.\d+)?/.exec(rest))) {
        toks.push({ t: 'num', v: Number(m[0]) })
        p += m[0].length
      } else if ((m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(rest))) {
        toks.push({ t: 'ident', v: m[0] })
        p += m[0].length
      } else {
        throw new Error(`${where}: unsupported template syntax at ${JSON.stringify(rest.slice(0, 20))}`)
      }
    }
    out.push({ kind: 'action', toks, where })
    i = p
  }
  return out.filter((s) => s.kind === 'action' || s.text !== '')
}

function parsePipeline(toks: Tok[], where: string): Pipeline {
  let pos = 0
  const pipeline = (): Pipeline => {
    const cmds: Pipeline = [[]]
    while (pos < toks.length) {
      const tok = toks[pos++]!
      const cmd = cmds[cmds.length - 1]!
      switch (tok.t) {
        case 'pipe':
          if (cmd.length === 0) throw new Error(`${where}: empty command before |`)
          cmds.push([])
          break
        case 'rparen':
          pos--
          return cmds
        case 'lparen': {
          const sub = pipeline()
          if (toks[pos++]?.t !== 'rparen') throw new Error(`${where}: missing )`)
          cmd.push({ kind: 'sub', pipe: sub })
          break
        }
        case 'field':
          cmd.push({ kind: 'field', root: tok.root, path: tok.path })
          break
        case 'str':
        case 'num':
          cmd.push({ kind: 'lit', value: tok.v })
          break
        case 'ident':
          if (tok.v === 'true' || tok.v === 'false') cmd.push({ kind: 'lit', value: tok.v === 'true' })
          else if (tok.v === 'nil') cmd.push({ kind: 'lit', value: null })
          else cmd.push({ kind: 'fn', name: tok.v })
          break
      }
    }
    return cmds
  }
  const result = pipeline()
  if (pos !== toks.length) throw new Error(`${where}: unexpected )`)
  if (result.some((c) => c.length === 0)) throw new Error(`${where}: empty pipeline`)
  return result
}

const CONTROL = new Set(['if', 'else', 'end', 'define', 'range', 'with', 'block', 'break', 'continue'])

export interface TemplateSet {
  defines: Map<string, TplNode[]>
  files: Map<string, TplNode[]>
}

export function parseTemplates(files: Map<string, string>): TemplateSet {
  const set: TemplateSet = { defines: new Map(), files: new Map() }
  for (const [file, src] of files) {
    const segs = segment(src, file)
    let pos = 0
    // Parses nodes until one of the stop keywords; returns the stopping action's tokens.
    const list = (stops: string[]): { nodes: TplNode[]; stop: Tok[] | null; where: string } => {
      const nodes: TplNode[] = []
      while (pos < segs.length) {
        const seg = segs[pos++]!
        if (seg.kind === 'text') {
          nodes.push({ kind: 'text', text: seg.text })
          continue
        }
        const head = seg.toks[0]
        const word = head?.t === 'ident' && CONTROL.has(head.v) ? head.v : null
        if (word === 'else' || word === 'end') {
          if (!stops.includes(word)) throw new Error(`${seg.where}: unexpected ${word}`)
          return { nodes, stop: seg.toks, where: seg.where }
        }
        if (word === 'if') {
          const branches: Array<{ cond: Pipeline; body: TplNode[] }> = []
          let cond = parsePipeline(seg.toks.slice(1), seg.where)
          let otherwise: TplNode[] = []
          for (;;) {
            const r = list(['else', 'end'])
            branches.push({ cond, body: r.nodes })
            if (!r.stop) throw new Error(`${seg.where}: if without end`)
            const w = r.stop[0]
            if (w?.t === 'ident' && w.v === 'end') break
            const next = r.stop[1]
            if (next?.t === 'ident' && next.v === 'if') {
              cond = parsePipeline(r.stop.slice(2), r.where)
              continue
            }
            if (r.stop.length > 1) throw new Error(`${r.where}: unsupported else form`)
            const e = list(['end'])
            if (!e.stop) throw new Error(`${seg.where}: else without end`)
            otherwise = e.nodes
            break
          }
          nodes.push({ kind: 'if', branches, otherwise })
          continue
        }
        if (word === 'range') {
          const over = parsePipeline(seg.toks.slice(1), seg.where)
          const r = list(['else', 'end'])
          if (!r.stop) throw new Error(`${seg.where}: range without end`)
          let otherwise: TplNode[] = []
          if (r.stop[0]?.t === 'ident' && r.stop[0].v === 'else') {
            if (r.stop.length > 1) throw new Error(`${r.where}: unsupported else form in range`)
            const e = list(['end'])
            if (!e.stop) throw new Error(`${seg.where}: range else without end`)
            otherwise = e.nodes
          }
          nodes.push({ kind: 'range', over, body: r.nodes, otherwise, where: seg.where })
          continue
        }
        if (word === 'define') {
          const name = seg.toks[1]
          if (name?.t !== 'str' || seg.toks.length !== 2) throw new Error(`${seg.where}: define needs one name`)
          const r = list(['end'])
          if (!r.stop) throw new Error(`${seg.where}: define without end`)
          set.defines.set(name.v, r.nodes)
          continue
        }
        if (word !== null) throw new Error(`${seg.where}: "${word}" is outside the subset this test renders`)
        if (head?.t === 'ident' && head.v === 'template') {
          // {{ template "x" . }} prints like {{ include "x" . }}
          nodes.push({ kind: 'print', pipe: parsePipeline([{ t: 'ident', v: 'include' }, ...seg.toks.slice(1)], seg.where) })
          continue
        }
        nodes.push({ kind: 'print', pipe: parsePipeline(seg.toks, seg.where) })
      }
      if (stops.length > 0) throw new Error(`${file}: missing {{ end }}`)
      return { nodes, stop: null, where: file }
    }
    set.files.set(file, list([]).nodes)
  }
  return set
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return true
  if (Array.isArray(v)) return v.length === 0
  if (typeof v === 'object') return Object.keys(v).length === 0
  return false
}

function strval(v: unknown): string {
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  if (v === null) return ''
  throw new Error(`cannot turn ${JSON.stringify(v)} into a string`)
}

function str(v: unknown, fn: string): string {
  if (typeof v !== 'string') throw new Error(`${fn}: expected a string, got ${JSON.stringify(v)}`)
  return v
}

function num(v: unknown, fn: string): number {
  if (typeof v !== 'number') throw new Error(`${fn}: expected a number, got ${JSON.stringify(v)}`)
  return v
}

function indent(n: number, s: string): string {
  const pad = ' '.repeat(n)
  return pad + s.replaceAll('\n', '\n' + pad)
}

function printf(format: string, args: unknown[]): string {
  let k = 0
  return format.replace(/%([%sdvq])/g, (_m, verb: string) => {
    if (verb === '%') return '%'
    const a = args[k++]
    if (verb === 'q') return JSON.stringify(strval(a))
    return strval(a)
  })
}

/** `root` is `$`: the top-level context, kept inside a range where `.` is the element. */
export function render(set: TemplateSet, nodes: TplNode[], dot: unknown, root: unknown = dot): string {
  const field = (base: unknown, path: string[], where: string): unknown => {
    let v = base
    for (const [k, key] of path.entries()) {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) {
        throw new Error(`nil pointer evaluating .${path.slice(0, k).join('.')}.${key} (${where})`)
      }
      v = (v as Record<string, unknown>)[key]
    }
    return v
  }
  const funcs: Record<string, (...args: unknown[]) => unknown> = {
    include: (name, ctx) => {
      const body = set.defines.get(str(name, 'include'))
      if (!body) throw new Error(`include: no template named ${String(name)}`)
      return render(set, body, ctx)
    },
    default: (d, v) => (isEmpty(v) ? d : v),
    quote: (...vs) =>
      vs
        .filter((v) => v !== undefined && v !== null)
        .map((v) => JSON.stringify(strval(v)))
        .join(' '),
    toYaml: (v) => toYamlText(v).replace(/\n$/, ''),
    indent: (n, s) => indent(num(n, 'indent'), str(s, 'indent')),
    nindent: (n, s) => '\n' + indent(num(n, 'nindent'), str(s, 'nindent')),
    trunc: (n, s) => str(s, 'trunc').slice(0, num(n, 'trunc')),
    trimSuffix: (suffix, s) => {
      const x = str(s, 'trimSuffix')
      const suf = str(suffix, 'trimSuffix')
      return suf !== '' && x.endsWith(suf) ? x.slice(0, -suf.length) : x
    },
    replace: (from, to, s) => str(s, 'replace').replaceAll(str(from, 'replace'), str(to, 'replace')),
    contains: (sub, s) => str(s, 'contains').includes(str(sub, 'contains')),
    printf: (format, ...args) => printf(str(format, 'printf'), args),
    join: (sep, list) => {
      if (!Array.isArray(list)) throw new Error('join: expected a list')
      return list.map(strval).join(str(sep, 'join'))
    },
    eq: (a, ...bs) => bs.some((b) => a === b),
    // Sprig: `has needle list`, and `dict k1 v1 k2 v2` (a context for include).
    has: (needle, list) => {
      if (!Array.isArray(list)) throw new Error('has: expected a list')
      return list.includes(needle)
    },
    dict: (...kv) => {
      if (kv.length % 2 !== 0) throw new Error('dict: expected key and value pairs')
      const out: Record<string, unknown> = {}
      for (let i = 0; i < kv.length; i += 2) out[str(kv[i], 'dict')] = kv[i + 1]
      return out
    },
    ne: (a, b) => a !== b,
    not: (a) => isEmpty(a),
    and: (...xs) => xs.find((x) => isEmpty(x)) ?? xs[xs.length - 1],
    or: (...xs) => xs.find((x) => !isEmpty(x)) ?? xs[xs.length - 1],
    required: (msg, v) => {
      if (v === undefined || v === null || v === '') throw new Error(str(msg, 'required'))
      return v
    },
  }
  const evalOperand = (op: Operand, where: string): unknown => {
    switch (op.kind) {
      case 'lit':
        return op.value
      case 'field':
        return field(op.root ? root : dot, op.path, where)
      case 'sub':
        return evalPipe(op.pipe, where)
      case 'fn':
        return call(op.name, [], where)
    }
  }
  const call = (name: string, args: unknown[], where: string): unknown => {
    const fn = funcs[name]
    if (!fn) throw new Error(`function "${name}" is outside the subset this test renders (${where})`)
    return fn(...args)
  }
  const evalPipe = (pipe: Pipeline, where: string): unknown => {
    let prev: { value: unknown } | null = null
    for (const cmd of pipe) {
      const [head, ...rest] = cmd
      if (!head) throw new Error('empty command')
      if (head.kind === 'fn') {
        const args = rest.map((op) => evalOperand(op, where))
        if (prev) args.push(prev.value)
        prev = { value: call(head.name, args, where) }
      } else if (head.kind === 'field' && (rest.length > 0 || prev)) {
        // A method call, as Go templates allow on a field that is a method: .Files.Get "path".
        const method = evalOperand(head, where)
        if (typeof method !== 'function') throw new Error(`can't give arguments to a non-function (${where})`)
        const args = rest.map((op) => evalOperand(op, where))
        if (prev) args.push(prev.value)
        prev = { value: (method as (...a: unknown[]) => unknown)(...args) }
      } else {
        if (rest.length > 0 || prev) throw new Error(`can't give arguments to a non-function (${where})`)
        prev = { value: evalOperand(head, where) }
      }
    }
    return prev?.value
  }
  let out = ''
  for (const node of nodes) {
    if (node.kind === 'text') out += node.text
    else if (node.kind === 'print') {
      const v = evalPipe(node.pipe, 'print')
      if (v === undefined) throw new Error('printing a value that does not exist (a .Values key missing from values.yaml?)')
      if (v !== null && typeof v === 'object') throw new Error(`printing a map or list: ${JSON.stringify(v)}`)
      out += strval(v)
    } else if (node.kind === 'range') {
      const list = evalPipe(node.over, node.where)
      if (list !== undefined && list !== null && !Array.isArray(list)) throw new Error(`${node.where}: range over ${JSON.stringify(list)}: only lists are in the subset this test renders`)
      if (isEmpty(list)) out += render(set, node.otherwise, dot, root)
      else for (const item of list as unknown[]) out += render(set, node.body, item, root)
    } else {
      const branch = node.branches.find((b) => !isEmpty(evalPipe(b.cond, 'if')))
      out += render(set, branch ? branch.body : node.otherwise, dot, root)
    }
  }
  return out
}

// ---------------------------------------------------------------- chart loading and helm-like rendering

export type Obj = Record<string, unknown>

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

// Helm's coalescing of user values over chart defaults: maps merge, everything else replaces.
export function mergeValues(base: unknown, over: unknown): unknown {
  if (!isObj(base) || !isObj(over)) return structuredClone(over)
  const out: Obj = structuredClone(base)
  for (const [k, v] of Object.entries(over)) out[k] = mergeValues(out[k], v)
  return out
}

export const chartYaml = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as Obj
export const valuesText = readFileSync(join(chartDir, 'values.yaml'), 'utf8')
export const defaultValues = parseYaml(valuesText) as Obj
export const templateFiles = new Map(
  readdirSync(templatesDir)
    .sort()
    .map((f) => [f, readFileSync(join(templatesDir, f), 'utf8')] as const),
)
export const templateSet = parseTemplates(templateFiles)

// Rendered manifests are deep, loosely shaped trees; the assertions below say what they expect.
export type Loose = any

export interface K8sObject {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  spec?: Loose
  rules?: Loose
  roleRef?: Loose
  subjects?: Loose
}

export interface Rendered {
  objects: K8sObject[]
  notes: string
  byFile: Map<string, string>
}

export function helmTemplate(overrides: Obj = {}, release = { name: 'edge-gateway', namespace: 'knative-serving' }): Rendered {
  const context = {
    Values: mergeValues(defaultValues, overrides),
    Release: { Name: release.name, Namespace: release.namespace, Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: 1 },
    Chart: {
      Name: chartYaml.name,
      Version: chartYaml.version,
      AppVersion: chartYaml.appVersion,
      Description: chartYaml.description,
    },
    // Strict where Helm is lenient: Helm gives "" for a file that is not there.
    Files: { Get: (name: unknown) => readFileSync(join(chartDir, str(name, 'Files.Get')), 'utf8') },
  }
  const objects: K8sObject[] = []
  const byFile = new Map<string, string>()
  let notes = ''
  for (const [file, nodes] of templateSet.files) {
    if (file.startsWith('_')) continue
    const text = render(templateSet, nodes, context)
    byFile.set(file, text)
    if (file === 'NOTES.txt') {
      notes = text
      continue
    }
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length > 0) throw new Error(`${file} renders invalid YAML: ${doc.errors[0]?.message}\n${text}`)
      const obj: unknown = doc.toJS()
      if (obj === null || obj === undefined) continue
      if (!isObj(obj) || typeof obj.kind !== 'string') throw new Error(`${file}: a document without kind`)
      objects.push(obj as unknown as K8sObject)
    }
  }
  return { objects, notes, byFile }
}

export function only(r: Rendered, kind: string, name?: string): K8sObject {
  const found = r.objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name))
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`)
  return found[0]!
}
