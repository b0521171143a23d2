// node bench/heap-diff.ts EARLY.heapsnapshot LATE.heapsnapshot [--top 30] [--retainers Name]
// Compares two V8 heap snapshots of the same process (e.g. from `npm run soak -- --heap-snapshots
// 2,7`) by what grew between them: objects counted and their own sizes per constructor (or per kind
// for strings, arrays, code), largest growth first. With --retainers, lists for the late snapshot
// what points at objects of that constructor (the holder's constructor and the edge's name), which
// is usually enough to name the Map or array that keeps them. Not part of CI.
import fs from 'node:fs'

const args = process.argv.slice(2)
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : undefined
}
const files = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1]!.startsWith('--')))
if (files.length !== 2) throw new Error('usage: node bench/heap-diff.ts EARLY.heapsnapshot LATE.heapsnapshot [--top 30] [--retainers Name]')
const TOP = Number(opt('top') ?? 30)
const RETAINERS = opt('retainers')

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } }
  nodes: number[]
  edges: number[]
  strings: string[]
}

/** The heap's view of one node: kinds whose names are contents (strings, code) are grouped by kind. */
function groupOf(type: string, name: string): string {
  if (type === 'object' || type === 'native') return name
  if (type === 'closure') return `(closure) ${name}`
  if (type === 'array' || type === 'hidden' || type === 'object shape') return `(${type}) ${name.slice(0, 40)}`
  return `(${type})`
}

function load(file: string): Snapshot {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Snapshot
}

function groups(s: Snapshot): Map<string, { count: number; size: number }> {
  const f = s.snapshot.meta.node_fields
  const width = f.length
  const [typeAt, nameAt, sizeAt] = [f.indexOf('type'), f.indexOf('name'), f.indexOf('self_size')]
  const types = s.snapshot.meta.node_types[0]
  const out = new Map<string, { count: number; size: number }>()
  for (let i = 0; i < s.nodes.length; i += width) {
    const key = groupOf(types[s.nodes[i + typeAt]!]!, s.strings[s.nodes[i + nameAt]!]!)
    const g = out.get(key) ?? { count: 0, size: 0 }
    g.count++
    g.size += s.nodes[i + sizeAt]!
    out.set(key, g)
  }
  return out
}

function retainersOf(s: Snapshot, target: string): Map<string, number> {
  const nf = s.snapshot.meta.node_fields
  const ef = s.snapshot.meta.edge_fields
  const width = nf.length
  const [typeAt, nameAt, edgeCountAt] = [nf.indexOf('type'), nf.indexOf('name'), nf.indexOf('edge_count')]
  const [eTypeAt, eNameAt, eToAt] = [ef.indexOf('type'), ef.indexOf('name_or_index'), ef.indexOf('to_node')]
  const types = s.snapshot.meta.node_types[0]
  const edgeTypes = s.snapshot.meta.edge_types[0]
  const nodeName = (i: number): string => groupOf(types[s.nodes[i + typeAt]!]!, s.strings[s.nodes[i + nameAt]!]!)
  const out = new Map<string, number>()
  let e = 0
  for (let i = 0; i < s.nodes.length; i += width) {
    const holder = nodeName(i)
    for (let k = 0; k < s.nodes[i + edgeCountAt]!; k++, e += ef.length) {
      if (nodeName(s.edges[e + eToAt]!) !== target) continue
      const edgeType = edgeTypes[s.edges[e + eTypeAt]!]!
      if (edgeType === 'weak') continue
      // Element and hidden edges are numbered; property and internal edges are named.
      const edgeName = edgeType === 'element' || edgeType === 'hidden' ? `[${edgeType}]` : s.strings[s.edges[e + eNameAt]!]!
      const key = `${holder} --${edgeName}-->`
      out.set(key, (out.get(key) ?? 0) + 1)
    }
  }
  return out
}

const kb = (n: number): string => `${(n / 1024).toFixed(0)} KB`
const early = groups(load(files[0]!))
const lateSnap = load(files[1]!)
const late = groups(lateSnap)
const rows = [...new Set([...early.keys(), ...late.keys()])].map((key) => {
  const a = early.get(key) ?? { count: 0, size: 0 }
  const b = late.get(key) ?? { count: 0, size: 0 }
  return { key, count: b.count - a.count, size: b.size - a.size, lateCount: b.count }
})
const total = (m: Map<string, { size: number }>): number => [...m.values()].reduce((n, g) => n + g.size, 0)
console.log(`heap (self sizes): ${kb(total(early))} → ${kb(total(late))}`)
console.log('grew most, by own size:')
for (const r of rows.sort((x, y) => y.size - x.size).slice(0, TOP)) console.log(`  ${kb(r.size).padStart(9)}  ${String(r.count).padStart(8)} objects (now ${r.lateCount})  ${r.key}`)
console.log('grew most, by count:')
for (const r of rows.sort((x, y) => y.count - x.count).slice(0, TOP)) console.log(`  ${String(r.count).padStart(8)} objects (now ${r.lateCount})  ${kb(r.size).padStart(9)}  ${r.key}`)
if (RETAINERS) {
  console.log(`what holds ${RETAINERS} in ${files[1]}:`)
  for (const [k, n] of [...retainersOf(lateSnap, RETAINERS)].sort((x, y) => y[1] - x[1]).slice(0, TOP)) console.log(`  ${String(n).padStart(8)}  ${k}`)
}
