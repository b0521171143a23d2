// Issue 23: the bytes of held request bodies are bounded per namespace and per process. A real
// gateway on a manifest directory, two namespaces with revisions at zero, real HTTP/1.1 and HTTP/2
// clients: one namespace floods with bodies past its byte bound and gets 503 queue-full at once,
// while its bodyless requests and the other namespace's bodies are still held and served whole.
import http2 from 'node:http2'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { parseConfig } from '../src/config.ts'
import { H1_READ_AHEAD, H2_READ_AHEAD, heldBodyBytes } from '../src/dataplane/held-body.ts'
import type { ClientRequest } from '../src/dataplane/client.ts'
import { get, revision, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { podsSlice, revisionIngress, waitForQueued } from './helpers/activator.ts'

const KI = 1024
const BODY = 64 * KI

interface Holds {
  requests: number
  bodyBytes: number
  namespaces: Record<string, { requests: number; bodyBytes: number }>
}

async function holds(adminPort: number): Promise<Holds> {
  return (await get(adminPort, 'localhost', '/debug/routes')).json<{ holds: Holds }>().holds
}

/** A pod that reads the whole body and answers with its length and a checksum of its bytes. */
function measureBody(req: IncomingMessage, res: ServerResponse): void {
  let n = 0
  let sum = 0
  req.on('data', (c: Buffer) => {
    n += c.length
    for (const b of c) sum = (sum + b) % 65_521
  })
  req.on('end', () => res.end(`${n} ${sum}`))
}

function body(seed: number, n = BODY): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff
  return b
}

function checksum(b: Buffer): number {
  let sum = 0
  for (const x of b) sum = (sum + x) % 65_521
  return sum
}

t.test('the held-body rule: a Content-Length up to the read-ahead, the read-ahead when unknown, nothing without a body', async (t) => {
  const h1 = (headers: Record<string, string>): ClientRequest => Object.assign(new Readable({ read() {} }), { headers, rawHeaders: [], httpVersion: '1.1', httpVersionMajor: 1, httpVersionMinor: 1, socket: null }) as unknown as ClientRequest
  const h2 = (headers: Record<string, string>, endAfterHeaders: boolean): ClientRequest => ({ headers, rawHeaders: [], httpVersion: '2.0', httpVersionMajor: 2, httpVersionMinor: 0, socket: null, readableDidRead: false, stream: Object.assign(new Readable({ read() {} }), { endAfterHeaders }) }) as unknown as ClientRequest
  const ownServer = { headers: {}, rawHeaders: [], httpVersion: '1.1', httpVersionMajor: 1, httpVersionMinor: 1, socket: null, readableDidRead: false } as unknown as ClientRequest
  t.equal(heldBodyBytes(h1({ 'content-length': '4096' })), 4096, 'a small body: its length')
  t.equal(heldBodyBytes(h1({ 'content-length': String(10 * 1024 * KI) })), H1_READ_AHEAD, 'a 10 MiB body: what node:http reads before it stops')
  t.equal(heldBodyBytes(h1({ 'transfer-encoding': 'chunked' })), H1_READ_AHEAD, 'chunked: the read-ahead')
  t.equal(heldBodyBytes(h1({})), 0, 'no body')
  t.equal(heldBodyBytes(ownServer), 0, "our own server's requests have no body")
  t.equal(heldBodyBytes(h2({ 'content-length': '100' }, false)), 100, 'HTTP/2 with a length')
  t.equal(heldBodyBytes(h2({ 'content-length': String(1024 * KI) }, false)), H2_READ_AHEAD, 'HTTP/2: at most the stream window')
  t.equal(heldBodyBytes(h2({}, false)), H2_READ_AHEAD, 'HTTP/2 without a length: the stream window')
  t.equal(heldBodyBytes(h2({}, true)), 0, 'HTTP/2 whose HEADERS ended the stream')
})

t.test('byte options take Kubernetes quantities; anything else is refused, naming the option and the fix', async (t) => {
  const c = parseConfig([], {})
  t.same([c.maxHeldBodyBytes, c.maxHeldBodyBytesPerNamespace], [256 * 1024 * KI, 128 * 1024 * KI], 'defaults: 256Mi in the process, 128Mi per namespace')
  t.equal(parseConfig(['--max-held-body-bytes', '1Gi']).maxHeldBodyBytes, 1024 * 1024 * KI)
  t.equal(parseConfig([], { EDGE_MAX_HELD_BODY_BYTES_PER_NAMESPACE: '64Ki' }).maxHeldBodyBytesPerNamespace, 64 * KI)
  t.equal(parseConfig(['--max-body-size', '10M']).maxBodyBytes, 10_000_000, '--max-body-size takes them too')
  t.equal(parseConfig(['--max-held-body-bytes', '0']).maxHeldBodyBytes, 0, '0: no bound')
  t.throws(() => parseConfig(['--max-held-body-bytes', '64MB']), /--max-held-body-bytes.*'64MB' is not a size in bytes \(a whole number, or with Ki, Mi or Gi as in 64Mi\)/)
  t.throws(() => parseConfig([], { EDGE_MAX_HELD_BODY_BYTES_PER_NAMESPACE: '-1' }), /EDGE_MAX_HELD_BODY_BYTES_PER_NAMESPACE.*not a size in bytes/)
})

t.test('one namespace flooding bodies past its byte bound gets 503 queue-full; the other is held and served whole', async (t) => {
  const dir = tempDir('edge-held-bytes-')
  writeManifest(dir, 'ingress.yaml', [revisionIngress('flood', 'flood.example.com', 'flood-00001', 'flood'), revisionIngress('calm', 'calm.example.com', 'calm-00001', 'calm')])
  writeManifest(dir, 'revision.yaml', [revision('flood-00001', {}, {}, 'flood'), revision('calm-00001', {}, {}, 'calm')])
  // Three 64 KiB bodies per namespace, five in the process.
  const gw = await startTestGateway(dir, ['--max-held-body-bytes-per-namespace', '192Ki', '--max-held-body-bytes', '320Ki'])
  const ctl = new AbortController()
  t.teardown(async () => {
    ctl.abort() // the flood's held requests must not keep the gateway open
    await gw.close()
  })
  const post = (host: string, path: string, payload: Buffer, signal?: AbortSignal) =>
    request(`http://127.0.0.1:${gw.ports.http}${path}`, { method: 'POST', headers: { host }, body: payload, signal }).then(async (r) => ({ status: r.statusCode, headers: r.headers, text: await r.body.text() }))

  const flood = [1, 2, 3].map((i) => post('flood.example.com', `/f/${i}`, body(i), ctl.signal).catch(() => undefined))
  await waitForQueued(gw, 'flood-00001', 3, 10_000, 'flood')
  t.same((await holds(gw.ports.admin)).namespaces.flood, { requests: 3, bodyBytes: 3 * BODY }, '/debug/routes shows the bytes held')
  t.match((await get(gw.ports.admin, 'localhost', '/metrics')).body, new RegExp(`^edge_held_body_bytes\\{namespace="flood"\\} ${3 * BODY}$`, 'm'), 'and /metrics')

  const over = await post('flood.example.com', '/f/4', body(4))
  t.same([over.status, over.headers['x-edge-reason']], [503, 'queue-full'], 'a fourth body is refused at once')
  t.match(over.text, /too many request bodies held for namespace flood \(this one would add 65536 bytes over --max-held-body-bytes-per-namespace\); retry in \d+s/)
  t.match(over.headers['retry-after'], /^\d+$/)

  const chunked = await request(`http://127.0.0.1:${gw.ports.http}/f/5`, { method: 'POST', headers: { host: 'flood.example.com' }, body: Readable.from([body(5, 100)]) })
  t.same([chunked.statusCode, chunked.headers['x-edge-reason']], [503, 'queue-full'], 'a chunked body counts its read-ahead, and is refused too')
  await chunked.body.text()

  const h2 = http2.connect(`http://127.0.0.1:${gw.ports.http}`)
  t.teardown(() => h2.destroy())
  const h2Post = await new Promise<{ status: number; reason: string }>((resolve, reject) => {
    const s = h2.request({ ':method': 'POST', ':path': '/f/6', ':authority': 'flood.example.com' })
    s.on('response', (h) => resolve({ status: Number(h[':status']), reason: String(h['x-edge-reason']) }))
    s.on('error', reject)
    s.write(body(6, 10)) // no content-length, stream left open: it counts the stream window
  })
  t.same(h2Post, { status: 503, reason: 'queue-full' }, 'an HTTP/2 stream with a body of unknown length is refused too')

  const bodyless = request(`http://127.0.0.1:${gw.ports.http}/f/7`, { headers: { host: 'flood.example.com' }, signal: ctl.signal }).catch(() => undefined)
  await waitForQueued(gw, 'flood-00001', 4, 10_000, 'flood')
  t.pass("a bodyless request to the flooding namespace is still held: it holds no body")

  const calm = [1, 2].map((i) => post('calm.example.com', `/c/${i}`, body(10 + i)))
  await waitForQueued(gw, 'calm-00001', 2, 10_000, 'calm')
  t.same(await holds(gw.ports.admin), { requests: 6, bodyBytes: 5 * BODY, namespaces: { flood: { requests: 4, bodyBytes: 3 * BODY }, calm: { requests: 2, bodyBytes: 2 * BODY } } }, "the other namespace's bodies are held")

  const overProcess = await post('calm.example.com', '/c/3', body(13, 1))
  t.same([overProcess.status, overProcess.headers['x-edge-reason']], [503, 'queue-full'], 'one byte past the process bound is refused')
  t.match(overProcess.text, /too many request bodies held by the gateway \(this one would add 1 bytes over --max-held-body-bytes\)/)

  // The bounds follow config-edge-gateway: raised, the flood's next body is held; a bad value keeps them.
  const settings = (data: Record<string, string>): void => writeManifest(dir, 'settings.yaml', [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'config-edge-gateway', namespace: 'knative-serving' }, data }])
  settings({ 'max-held-body-bytes-per-namespace': '256Ki', 'max-held-body-bytes': '1Mi' })
  await waitFor('the raised bounds to apply', () => gw.settings.current.maxHeldBodyBytesPerNamespace === 256 * KI)
  const raised = post('flood.example.com', '/f/8', body(8), ctl.signal).catch(() => undefined)
  await waitForQueued(gw, 'flood-00001', 5, 10_000, 'flood')
  t.same((await holds(gw.ports.admin)).namespaces.flood, { requests: 5, bodyBytes: 4 * BODY }, 'raised live: a fourth body is held')
  settings({ 'max-held-body-bytes-per-namespace': '64MB', 'max-held-body-bytes': '1Mi' })
  await waitFor('the bad value to be reported', async () => (await get(gw.ports.admin, 'localhost', '/debug/routes')).body.includes("'64MB' is not a size in bytes"))
  t.equal(gw.settings.current.maxHeldBodyBytesPerNamespace, 256 * KI, 'a bad value keeps the last good one')

  const pod = await startBackend('pod-calm', measureBody)
  t.teardown(() => pod.close())
  writeManifest(dir, 'pods.yaml', podsSlice('calm-00001', [pod.port], 'calm'))
  const served = await Promise.all(calm)
  t.same(served.map((r) => [r.status, r.text]), [1, 2].map((i) => [200, `${BODY} ${checksum(body(10 + i))}`]), 'and served with every byte of their bodies when their pod comes')
  t.same(pod.seen.map((s) => s.url).sort(), ['/c/1', '/c/2'], 'nothing refused reached the pod')
  await waitFor('the served bodies leave the budget', async () => (await holds(gw.ports.admin)).bodyBytes === 4 * BODY)
  void flood
  void raised
  void bodyless
})
