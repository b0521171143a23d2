// Forwarding: streaming bodies both ways, WebSocket upgrades, upstream failures, no retries.
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import { createHash } from 'node:crypto'
import { WebSocket, WebSocketServer } from 'ws'
import { get, kingress, revision, revisionPods, serviceFor, simpleIngress, startBackend, startTestGateway, tempDir, writeManifest, service, endpointSlice } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import type { Gateway } from '../src/gateway.ts'
import { closedPort as freeClosedPort } from './helpers/activator.ts'

let gw: Gateway
const closers: Array<() => Promise<void>> = []
let echo: Backend
let flaky: Backend
let wsBackend: Backend
let slow: Backend
let closedPort: number

t.before(async () => {
  // Echo: streams the request body back, hashing what it saw.
  echo = await startBackend('echo', (req, res) => {
    if (req.url?.startsWith('/pattern/')) {
      // PATTERN_BYTES of content that differs per response and per chunk, with backpressure.
      const seed = Number(req.url.slice('/pattern/'.length))
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': PATTERN_BYTES })
      let i = 0
      const pump = (): void => {
        while (i < PATTERN_BYTES / PATTERN_CHUNK) {
          if (!res.write(patternChunk(seed, i++))) return void res.once('drain', pump)
        }
        res.end()
      }
      pump()
      return
    }
    if (req.url === '/big') {
      // 8 MiB response written in 64 KiB chunks, respecting backpressure.
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      const chunk = Buffer.alloc(64 * 1024, 7)
      let left = 128
      const pump = (): void => {
        while (left > 0) {
          left--
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
        res.end()
      }
      pump()
      return
    }
    const hash = createHash('sha256')
    let n = 0
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    req.on('data', (c: Buffer) => {
      hash.update(c)
      n += c.length
      res.write(c)
    })
    req.on('end', () => res.end())
    res.addTrailers?.({})
    void n
  })
  flaky = await startBackend('flaky', (_req, res) => {
    res.writeHead(503, { 'content-type': 'text/plain' })
    res.end('app says no')
  })
  slow = await startBackend('slow', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('partial')
    // Dies mid-response.
    setTimeout(() => res.socket?.destroy(), 50)
  })
  wsBackend = await startBackend('ws')
  const wss = new WebSocketServer({ server: wsBackend.server })
  wss.on('connection', (ws, req) => ws.on('message', (m) => ws.send(`${req.headers.host} ${m}`)))
  // Not a port from the ephemeral range: under load another test's outgoing connection could take it.
  closedPort = await freeClosedPort()

  const dir = tempDir()
  writeManifest(dir, 'all.yaml', [
    ...serviceFor('echo', echo),
    ...serviceFor('flaky', flaky),
    ...serviceFor('slow', slow),
    ...serviceFor('ws', wsBackend),
    service('down', [{ name: 'http', port: 80 }]),
    endpointSlice('down', [{ name: 'http', port: closedPort }], [{ ip: '127.0.0.1' }], 'default', 'down-slice'),
    service('empty', [{ name: 'http', port: 80 }]),
    simpleIngress('echo', ['echo.example.com'], [['echo', 100]]),
    simpleIngress('flaky', ['flaky.example.com'], [['flaky', 100]]),
    simpleIngress('slow', ['slow.example.com'], [['slow', 100]]),
    simpleIngress('ws', ['ws.example.com'], [['ws', 100]]),
    simpleIngress('down', ['down.example.com'], [['down', 100]]),
    simpleIngress('empty', ['empty.example.com'], [['empty', 100]]),
    simpleIngress('missing', ['missing.example.com'], [['no-such-service', 100]]),
    revision('wsrev-00001'),
    revisionPods('wsrev-00001', wsBackend),
    {
      apiVersion: 'serving.knative.dev/v1',
      kind: 'Route',
      metadata: { name: 'wsrev', namespace: 'default' },
      status: { traffic: [{ revisionName: 'wsrev-00001', percent: 100 }] },
    },
    { apiVersion: 'serving.knative.dev/v1beta1', kind: 'DomainMapping', metadata: { name: 'chat.example.org', namespace: 'default' }, spec: { ref: { kind: 'Route', name: 'wsrev' } } },
    kingress('ws-rewrite', {
      rules: [{ hosts: ['ws-rewrite.example.com'], http: { paths: [{ rewriteHost: 'wsrev.default.svc.cluster.local', splits: [{ serviceNamespace: 'default', serviceName: 'wsrev', servicePort: 80 }] }] } }],
    }),
  ])
  gw = await startTestGateway(dir)
})

t.teardown(async () => {
  await gw?.close()
  for (const b of [echo, flaky, slow, wsBackend]) await b?.close()
  for (const c of closers) await c()
})

const PATTERN_CHUNK = 48 * 1024
/** 96 chunks: 4.5 MiB. */
const PATTERN_BYTES = 96 * PATTERN_CHUNK
/** Chunk `i` of response `seed`: bytes that differ from every other chunk of every other response. */
function patternChunk(seed: number, i: number): Buffer {
  const b = Buffer.allocUnsafe(PATTERN_CHUNK)
  for (let k = 0; k < PATTERN_CHUNK; k += 4) b.writeUInt32LE((seed * 2654435761 + i * 40503 + k) >>> 0, k)
  return b
}
function patternHash(seed: number): string {
  const h = createHash('sha256')
  for (let i = 0; i < PATTERN_BYTES / PATTERN_CHUNK; i++) h.update(patternChunk(seed, i))
  return h.digest('hex')
}

function rawRequest(port: number, opts: http.RequestOptions, body?: AsyncIterable<Buffer> | Buffer): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer; firstByteBeforeUploadDone: boolean }> {
  return new Promise((resolve, reject) => {
    let uploadDone = false
    let firstByteBeforeUploadDone = false
    const req = http.request({ host: '127.0.0.1', port, ...opts }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => {
        if (chunks.length === 0 && !uploadDone) firstByteBeforeUploadDone = true
        chunks.push(c)
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), firstByteBeforeUploadDone }))
      res.on('error', reject)
    })
    req.on('error', reject)
    if (Buffer.isBuffer(body)) {
      req.end(body)
      uploadDone = true
    } else if (body) {
      void (async () => {
        for await (const c of body) {
          if (!req.write(c)) await new Promise((r) => req.once('drain', r))
        }
        uploadDone = true
        req.end()
      })()
    } else req.end()
  })
}

t.test('request and response bodies stream both ways without buffering', async (t) => {
  const total = 16 * 1024 * 1024
  const sent = createHash('sha256')
  let responseStarted = false
  async function* upload(): AsyncGenerator<Buffer> {
    const chunk = Buffer.alloc(256 * 1024)
    for (let i = 0; i < total / chunk.length; i++) {
      chunk.fill(i % 251)
      sent.update(chunk)
      yield Buffer.from(chunk)
      // Give the echo a chance to answer before the upload ends: proves nothing is buffered whole.
      if (i === 8) await new Promise((r) => setTimeout(r, 100))
    }
  }
  const r = await rawRequest(gw.ports.http, { method: 'POST', path: '/', headers: { host: 'echo.example.com', 'transfer-encoding': 'chunked' } }, upload())
  responseStarted = r.firstByteBeforeUploadDone
  t.equal(r.status, 200)
  t.equal(r.body.length, total, 'every byte came back')
  t.equal(createHash('sha256').update(r.body).digest('hex'), sent.digest('hex'), 'and in order')
  t.ok(responseStarted, 'the echoed response began before the upload finished')
  const big = await rawRequest(gw.ports.http, { method: 'GET', path: '/big', headers: { host: 'echo.example.com' } })
  t.equal(big.body.length, 8 * 1024 * 1024, '8 MiB streamed response arrived whole')
})

t.test('a 503 from the app reaches the client as that 503, sent once (no retries)', async (t) => {
  const before = flaky.seen.length
  const r = await get(gw.ports.http, 'flaky.example.com')
  t.equal(r.status, 503)
  t.equal(r.body, 'app says no')
  t.equal(r.headers['x-edge-reason'], undefined, "an app's response carries no gateway reason")
  t.equal(flaky.seen.length - before, 1, 'the app saw exactly one request')
  const post = await get(gw.ports.http, 'flaky.example.com', '/', { 'content-type': 'text/plain' }, 'POST', 'x')
  t.equal(post.status, 503)
  t.equal(flaky.seen.length - before, 2)
})

t.test('upstream connect failure is a 502 from the gateway with a reason', async (t) => {
  const r = await get(gw.ports.http, 'down.example.com')
  t.equal(r.status, 502)
  t.equal(r.headers['x-edge-reason'], 'upstream-connect-failed')
  t.match(r.body, new RegExp(`127\\.0\\.0\\.1:${closedPort}`))
})

t.test('a Service with no ready endpoints, or none at all, is a 503 with a reason', async (t) => {
  const r = await get(gw.ports.http, 'empty.example.com')
  t.equal(r.status, 503)
  t.equal(r.headers['x-edge-reason'], 'no-backend')
  const m = await get(gw.ports.http, 'missing.example.com')
  t.equal(m.status, 503)
  t.match(m.body, /no-such-service not found/)
})

t.test('a backend dying mid-response cuts only that response', async (t) => {
  const failed = await rawRequest(gw.ports.http, { path: '/', headers: { host: 'slow.example.com' } }).then(
    (r) => r.body.toString() !== 'partial' && r.body.length > 100,
    () => true,
  )
  t.ok(failed, 'the client saw an incomplete response')
  t.equal((await get(gw.ports.http, 'echo.example.com', '/', {}, 'POST', 'hi')).body, 'hi', 'other traffic is unaffected')
})

t.test('hop-by-hop headers are not forwarded', async (t) => {
  // node:http, not undici: undici refuses to send these headers at all.
  await rawRequest(gw.ports.http, { method: 'POST', path: '/', headers: { host: 'echo.example.com', 'keep-alive': 'timeout=5', 'x-drop-me': 'secret', connection: 'keep-alive, x-drop-me' } }, Buffer.from('x'))
  const seen = echo.seen[echo.seen.length - 1]!
  t.equal(seen.headers['keep-alive'], undefined)
  t.equal(seen.headers['x-drop-me'], undefined, 'headers named in Connection are hop-by-hop')
})

function wsEcho(port: number, host: string, messages: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/chat`, { headers: { host } })
    const got: string[] = []
    ws.on('open', () => ws.send(messages[0]!))
    ws.on('message', (m) => {
      got.push(m.toString())
      if (got.length === messages.length) {
        ws.close()
        resolve(got)
      } else ws.send(messages[got.length]!)
    })
    ws.on('error', reject)
    ws.on('unexpected-response', (_req, res) => reject(new Error(`unexpected ${res.statusCode} ${res.headers['x-edge-reason']}`)))
  })
}

t.test('WebSocket: 100 echoes on one connection through a KIngress', async (t) => {
  const msgs = Array.from({ length: 100 }, (_, i) => `m${i}`)
  const got = await wsEcho(gw.ports.http, 'ws.example.com', msgs)
  t.same(got, msgs.map((m) => `ws.example.com ${m}`))
})

t.test('WebSocket through a DomainMapping and through rewriteHost to a served host', async (t) => {
  const got = await wsEcho(gw.ports.http, 'chat.example.org', ['hello'])
  t.same(got, ['wsrev.default.svc.cluster.local hello'], 'the upgrade crossed the in-process hop to the revision')
  const got2 = await wsEcho(gw.ports.http, 'ws-rewrite.example.com', ['x'])
  t.same(got2, ['wsrev.default.svc.cluster.local x'])
})

t.test('WebSocket to a dead upstream gets an HTTP error, never a 101', async (t) => {
  const err = await wsEcho(gw.ports.http, 'down.example.com', ['x']).then(
    () => 'opened',
    (e: Error) => e.message,
  )
  t.match(err, /unexpected 502 upstream-connect-failed/)
})

t.test('large streamed responses arrive intact, many at once, with slow readers (pooled chunk memory is never reused early)', async (t) => {
  // Readers that stop for a while make the gateway's writes to them back up, so chunks wait in its
  // buffers while the pod keeps sending: a chunk's memory reused before it was written would show.
  const read = (seed: number, slow: boolean): Promise<{ status: number; hash: string; bytes: number }> =>
    new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: gw.ports.http, path: `/pattern/${seed}`, headers: { host: 'echo.example.com' } }, (res) => {
        const h = createHash('sha256')
        let bytes = 0
        let n = 0
        res.on('data', (c: Buffer) => {
          h.update(c)
          bytes += c.length
          if (slow && ++n % 8 === 0) {
            res.pause()
            setTimeout(() => res.resume(), 20)
          }
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, hash: h.digest('hex'), bytes }))
        res.on('error', reject)
      })
      req.on('error', reject)
    })
  const seeds = [1, 2, 3, 4, 5, 6, 7, 8]
  const got = await Promise.all(seeds.map((seed) => read(seed, seed % 2 === 0)))
  t.same(
    got.map((g, i) => ({ status: g.status, bytes: g.bytes, intact: g.hash === patternHash(seeds[i]!) })),
    seeds.map(() => ({ status: 200, bytes: PATTERN_BYTES, intact: true })),
    'every response byte-exact',
  )
  // And over HTTP/2 (h2c) to the gateway, whose writes complete differently.
  const session = http2.connect(`http://127.0.0.1:${gw.ports.http}`)
  t.teardown(() => session.close())
  const h2read = (seed: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const st = session.request({ ':path': `/pattern/${seed}`, ':authority': 'echo.example.com' })
      const h = createHash('sha256')
      let n = 0
      st.on('data', (c: Buffer) => {
        h.update(c)
        if (++n % 8 === 0) {
          st.pause()
          setTimeout(() => st.resume(), 20)
        }
      })
      st.on('end', () => resolve(h.digest('hex')))
      st.on('error', reject)
    })
  const h2 = await Promise.all([11, 12, 13].map((seed) => h2read(seed)))
  t.same(h2, [11, 12, 13].map((seed) => patternHash(seed)), 'over h2c too')
})
