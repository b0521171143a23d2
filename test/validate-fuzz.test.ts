// validateObject must never throw, whatever a YAML file or the API server hands it, and every problem
// it reports must say where and why. Inputs: valid samples with random parts replaced, removed or
// duplicated, plus wholly random values. Seeded, so a failure reproduces.
import t from 'tap'
import { validateObject } from '../src/compile/validate.ts'
import { ingressHash } from '../src/compile/hash.ts'
import { routeToIngress } from '../src/translate/route.ts'
import { domainMappingToIngress } from '../src/translate/domain-mapping.ts'
import { ConfigError } from '../src/model/problems.ts'
import type { ValidObject } from '../src/compile/validate.ts'
import { validSamples } from './fixtures/validate-samples.ts'
import { prng } from './helpers/prng.ts'

const SEED = 0x5eed_2024
const MUTATED = 4000
const RANDOM = 1000


const rand = prng(SEED)
const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!

const STRINGS = ['', 'a', '/', 'api', 'ExternalIP', 'ClusterLocal', 'Enabled', 'default', 'kubernetes.io/tls', 'ExternalName', 'Service', 'Route',
  'v1', 'serving.knative.dev/v1', 'UPPER', 'a b', 'x\r\ny', '\uD800', '\u2028', '<&>', 'é✓😀', '-', '.', '1234', 'a'.repeat(300)]
const KEYS = ['spec', 'status', 'metadata', 'name', 'namespace', 'rules', 'http', 'paths', 'splits', 'percent', 'servicePort', 'serviceName',
  'serviceNamespace', 'headers', 'exact', 'appendHeaders', 'tls', 'hosts', 'ports', 'port', 'endpoints', 'addresses', 'data', 'type', 'ref',
  'traffic', 'labels', '__proto__', 'constructor', 'toString', 'valueOf', 'hasOwnProperty', 'length', '0']
const NUMBERS = [0, 1, -1, 100, 101, 80, 65535, 65536, 0.5, -0, NaN, Infinity, -Infinity, Number.MAX_SAFE_INTEGER, 1e300]

// Keys such as __proto__ become own properties, as JSON.parse and YAML parsers make them.
// Arrays only take index keys (a YAML list has nothing else).
function setOwn(obj: object, key: string, value: unknown): void {
  if (Array.isArray(obj)) {
    obj[Math.floor(rand() * (obj.length + 1))] = value
    return
  }
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
}

function randomValue(depth: number): unknown {
  const r = rand()
  if (depth <= 0 || r < 0.45) {
    return pick<() => unknown>([() => null, () => undefined, () => pick(NUMBERS), () => pick(STRINGS), () => rand() < 0.5, () => 10n])()
  }
  if (r < 0.7) return Array.from({ length: Math.floor(rand() * 4) }, () => randomValue(depth - 1))
  const obj: Record<string, unknown> = rand() < 0.1 ? Object.create(null) : {}
  const n = Math.floor(rand() * 5)
  for (let i = 0; i < n; i++) setOwn(obj, pick(KEYS), randomValue(depth - 1))
  return obj
}

/** Every container (object or array) inside `root`, with the root itself. */
function containers(root: unknown): Array<Record<string, unknown> | unknown[]> {
  const out: Array<Record<string, unknown> | unknown[]> = []
  const walk = (v: unknown) => {
    if (typeof v !== 'object' || v === null) return
    out.push(v as Record<string, unknown>)
    for (const child of Object.values(v)) walk(child)
  }
  walk(root)
  return out
}

function mutate(root: Record<string, unknown>): void {
  const edits = 1 + Math.floor(rand() * 3)
  for (let i = 0; i < edits; i++) {
    const target = pick(containers(root))
    const keys = Object.keys(target)
    const op = rand()
    if (op < 0.4 && keys.length > 0) setOwn(target, pick(keys), randomValue(3))
    else if (op < 0.6 && keys.length > 0) delete (target as Record<string, unknown>)[pick(keys)]
    else if (op < 0.8 && keys.length > 0) {
      const from = pick(containers(root))
      setOwn(target, pick(keys), from === root ? {} : structuredClone(from))
    } else setOwn(target, pick(KEYS), randomValue(2))
  }
}

function inputs(): unknown[] {
  const samples = Object.values(validSamples())
  const out: unknown[] = []
  for (let i = 0; i < MUTATED; i++) {
    const obj = structuredClone(pick(samples))
    mutate(obj)
    out.push(obj)
  }
  for (let i = 0; i < RANDOM; i++) {
    const obj = randomValue(4)
    // Half of the random ones get a real apiVersion/kind so they reach the per-kind checks.
    if (typeof obj === 'object' && obj !== null && !Array.isArray(obj) && rand() < 0.5) {
      const sample = pick(samples)
      setOwn(obj, 'apiVersion', sample.apiVersion)
      setOwn(obj, 'kind', sample.kind)
    }
    out.push(obj)
  }
  return out
}

const opts = { ingressClass: 'edge', domain: 'example.com', clusterDomain: 'cluster.local' }

/** What validation lets through, translation and hashing must handle: a ConfigError at worst. */
function useDownstream(valid: ValidObject): string | undefined {
  try {
    if (valid.kind === 'Route') routeToIngress(valid.object, opts)
    if (valid.kind === 'DomainMapping') domainMappingToIngress(valid.object, opts)
    if (valid.kind === 'Ingress') {
      const hash = ingressHash(valid.object.metadata.namespace ?? '', valid.object.metadata.name, valid.object.spec)
      if (!/^[0-9a-f]{64}$/.test(hash)) return `hashed to ${hash}`
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      const bad = err.problems.find((p) => !p.field || !p.reason || !p.code.startsWith('EDGE_ERR_'))
      return bad ? `translation reported ${JSON.stringify(bad)}` : undefined
    }
    return `threw ${(err as Error).stack}`
  }
  return undefined
}

t.test('validateObject never throws and every problem is explained', async (t) => {
  const failures: string[] = []
  const outcomes = { valid: 0, problems: 0 }
  for (const [i, input] of inputs().entries()) {
    let result
    try {
      result = validateObject(input, 'fuzz.yaml', i)
    } catch (err) {
      failures.push(`#${i} threw ${(err as Error).stack}`)
      continue
    }
    if ('problems' in result) {
      outcomes.problems++
      if (result.problems.length === 0) failures.push(`#${i}: empty problem list`)
      for (const p of result.problems) {
        const ok = typeof p.field === 'string' && typeof p.reason === 'string' && p.reason.trim().length > 0 &&
          /^EDGE_ERR_[A-Z_]+$/.test(p.code) && p.source === 'fuzz.yaml' && p.document === i
        if (!ok) failures.push(`#${i}: bad problem ${JSON.stringify(p)}`)
      }
    } else {
      outcomes.valid++
      const ns = result.object.metadata.namespace
      if (typeof ns !== 'string' || ns === '') failures.push(`#${i}: valid object without a namespace`)
      const downstream = useDownstream(result)
      if (downstream) failures.push(`#${i}: ${result.kind} passed validation but then ${downstream}`)
    }
  }
  t.strictSame(failures.slice(0, 5), [], `no failures among ${MUTATED + RANDOM} inputs`)
  // The inputs must exercise every outcome, or this test proves little.
  t.ok(outcomes.valid > 50, `valid: ${outcomes.valid}`)
  t.ok(outcomes.problems > 1000, `problems: ${outcomes.problems}`)
})
