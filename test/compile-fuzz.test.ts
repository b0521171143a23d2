// compileSnapshot must never throw, whatever mix of objects the store holds (validated or not), and
// every problem must name a field; resolve/pickPath/pickSplit must never throw for any host, path or
// headers against the snapshots it builds. Seeded PRNG, so a failure reproduces.
import t from 'tap'
import { compileSnapshot } from '../src/compile/snapshot.ts'
import type { CompileInput } from '../src/compile/snapshot.ts'
import { validateObject } from '../src/compile/validate.ts'
import { lookupHost } from '../src/dataplane/host.ts'
import { pickPath, pickSplit, resolve } from '../src/dataplane/resolve.ts'
import { validSamples } from './fixtures/validate-samples.ts'
import type { Sample } from './fixtures/validate-samples.ts'
import { prng } from './helpers/prng.ts'

const SEED = 0x0c0_ffee
const SNAPSHOTS = 600
const REQUESTS_PER_SNAPSHOT = 20

const rand = prng(SEED)
const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!

const STRINGS = ['', 'a', '/', '/api', 'hello.example.com', 'HELLO.example.com.', '*', 'default', 'other', 'blue', 'green', 'http', 'http2', 'ExternalIP', 'ClusterLocal',
  'Redirected', 'kubernetes.io/tls', 'a b', 'x\r\ny', '\uD800', 'é✓😀', '..', '%2e', '-', '1234', 'a'.repeat(300), 'edge', 'hello-00001', 'hello-00001-private']
const NUMBERS = [0, 1, -1, 50, 100, 101, 80, 65535, 65536, 0.5, NaN, Infinity, Number.MAX_SAFE_INTEGER]
const KEYS = ['spec', 'status', 'metadata', 'name', 'namespace', 'rules', 'http', 'paths', 'path', 'splits', 'percent', 'servicePort', 'serviceName', 'serviceNamespace',
  'headers', 'exact', 'appendHeaders', 'rewriteHost', 'tls', 'hosts', 'ports', 'port', 'endpoints', 'addresses', 'conditions', 'ready', 'data', 'stringData', 'type', 'traffic',
  'revisionName', 'percent', 'tag', 'labels', 'annotations', '__proto__', 'constructor', 'length', '0']

function randomValue(depth: number): unknown {
  const r = rand()
  if (depth <= 0 || r < 0.45) return pick<() => unknown>([() => null, () => undefined, () => pick(NUMBERS), () => pick(STRINGS), () => rand() < 0.5])()
  if (r < 0.7) return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(depth - 1))
  const obj: Record<string, unknown> = {}
  for (let i = Math.floor(rand() * 5); i > 0; i--) Object.defineProperty(obj, pick(KEYS), { value: randomValue(depth - 1), enumerable: true, writable: true, configurable: true })
  return obj
}

function containers(root: unknown): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = []
  const walk = (v: unknown): void => {
    if (typeof v !== 'object' || v === null) return
    out.push(v as Record<string, unknown>)
    for (const c of Object.values(v)) walk(c)
  }
  walk(root)
  return out
}

/** A sample with a few parts replaced, removed or cross-wired. */
function mutated(sample: Sample): Sample {
  const root = structuredClone(sample)
  // Most objects keep the class and names that tie them together, so they reach compile's joins.
  for (let i = Math.floor(rand() * 3); i > 0; i--) {
    const target = pick(containers(root))
    const keys = Object.keys(target)
    const op = rand()
    // Arrays only take index keys (a YAML list has nothing else).
    const key = (): string => (Array.isArray(target) ? String(Math.floor(rand() * (target.length + 1))) : pick(KEYS))
    if (op < 0.5 && keys.length > 0) target[pick(keys)] = randomValue(2)
    // Removing from a list shortens it: YAML and JSON have no holes in lists.
    else if (op < 0.7 && keys.length > 0) Array.isArray(target) ? target.splice(Math.floor(rand() * target.length), 1) : delete target[pick(keys)]
    else Object.defineProperty(target, key(), { value: randomValue(2), enumerable: true, writable: true, configurable: true })
  }
  return root
}

const samples = validSamples()
const KINDS: Array<[keyof CompileInput, string]> = [['ingresses', 'Ingress'], ['routes', 'Route'], ['domainMappings', 'DomainMapping'], ['revisions', 'Revision'], ['services', 'Service'], ['endpointSlices', 'EndpointSlice'], ['secrets', 'Secret']]

/** A store's worth of objects; `raw` skips validation (as a buggy source or a hand-built test might). */
function randomInput(raw: boolean): CompileInput {
  const input: Record<string, unknown[]> = {}
  for (const [field, kind] of KINDS) {
    const list: unknown[] = []
    for (let i = Math.floor(rand() * 4); i > 0; i--) {
      const obj = mutated(samples[kind]!)
      const meta = (obj.metadata ?? {}) as Record<string, unknown>
      if (typeof obj.metadata === 'object' && obj.metadata !== null && rand() < 0.5) meta.name = `${meta.name as string}-${i}`
      if (raw) {
        list.push(obj)
        continue
      }
      const v = validateObject(obj, 'fuzz.yaml', i)
      if ('object' in v) list.push(v.object)
    }
    input[field] = list
  }
  return input as unknown as CompileInput
}

const OPTS = { ingressClass: 'edge', domain: 'example.com', clusterDomain: 'cluster.local', translateServing: true }
const HOSTS = ['hello.example.com', 'HELLO.EXAMPLE.COM.', 'hello.example.com:80', 'hello.default.svc.cluster.local', 'blue-hello.default.example.com', '', '[::1]', '127.0.0.1', 'a b', 'x'.repeat(300), '*', 'é.com', 'hello.default.example.com']
const PATHS = ['/', '/api', '/api/../x', '/%2e%2e/', '', '?', '/?a=/api', '//', 'http://h/p', '*', '/'.repeat(5000)]
const HEADER_SETS = [{}, { 'knative-serving-tag': 'blue' }, { 'knative-serving-tag': ['a', 'b'] }, { 'x-route': 'a' }, { host: 'hello.example.com' }, { 'knative-serving-tag': '' }]

function exercise(snap: ReturnType<typeof compileSnapshot>): string | undefined {
  for (let i = 0; i < REQUESTS_PER_SNAPSHOT; i++) {
    const host = pick([...HOSTS, ...snap.localHosts.keys()])
    const url = pick(PATHS)
    const headers = pick(HEADER_SETS) as Record<string, string>
    try {
      for (const hosts of [snap.publicHosts, snap.localHosts]) {
        const entry = lookupHost(hosts, host)
        if (!entry) continue
        const r = resolve(snap, entry, url, headers)
        const p = pickPath(entry, url, headers)
        if (p) for (const x of [0, 0.5, 0.999999, 1, -1, NaN]) pickSplit(p, x)
        if (!('failure' in r) && !r.split) return `resolve gave no split for ${host}${url}`
      }
    } catch (err) {
      return `resolve threw for ${JSON.stringify(host)} ${JSON.stringify(url)}: ${(err as Error).stack}`
    }
  }
  return undefined
}

for (const raw of [false, true]) {
  t.test(`compileSnapshot over ${SNAPSHOTS} random stores (${raw ? 'objects that skipped validation' : 'validated objects'}) never throws; resolve never throws`, async (t) => {
    const failures: string[] = []
    let problems = 0
    let hosts = 0
    for (let i = 0; i < SNAPSHOTS; i++) {
      const input = randomInput(raw)
      let snap
      try {
        snap = compileSnapshot(input, OPTS, i)
      } catch (err) {
        failures.push(`#${i} threw ${(err as Error).stack?.split('\n').slice(0, 3).join(' | ')}`)
        continue
      }
      problems += snap.problems.length
      hosts += snap.localHosts.size
      const unnamed = snap.problems.find((p) => typeof p.field !== 'string' || (p.field === '' && p.code !== 'EDGE_ERR_PARSE') || !p.reason || !p.code)
      if (unnamed) failures.push(`#${i} problem without a field or reason: ${JSON.stringify(unnamed)}`)
      const bad = exercise(snap)
      if (bad) failures.push(`#${i} ${bad}`)
      if (failures.length > 5) break
    }
    // Objects that skipped validation still break compile (null metadata, non-string hosts): a
    // finding for src/compile, kept visible here as a TODO rather than hidden.
    t.same(failures, [], 'no exception and every problem names a field')
    t.ok(problems > 0, `the inputs produced problems (${problems})`)
    t.ok(hosts > 0, `and some hosts to route (${hosts})`)
  })
}
