// Issue 7, request side: smuggling attempts, odd Host headers and odd paths, sent as raw bytes.
// Each hostile request must be answered by the gateway (400-class, x-edge-reason, connection closed)
// and nothing ambiguous may reach a pod: the backends record raw bytes and completed requests.
import t from 'tap'
import { endpointSlice, get, kingress, service, startBackend, startTestGateway, tempDir, writeManifest } from './helpers/gateway.ts'
import { raw, responses, startRecordingBackend } from './helpers/raw.ts'
import type { RecordingBackend } from './helpers/raw.ts'

const HOST = 'smug.example.com'
const BODY_HOST = 'body.example.com'
const backend = await startRecordingBackend()
const admin = await startRecordingBackend()
/** Every request the body pod read to its end, with its body as received. */
const bodies: Array<{ method: string; url: string; body: string }> = []
const bodyPod = await startBackend('body', (req, res) => {
  let body = ''
  req.setEncoding('latin1')
  req.on('data', (c: string) => (body += c))
  req.on('end', () => {
    bodies.push({ method: req.method ?? '', url: req.url ?? '', body })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ method: req.method, url: req.url, body }))
  })
})
const dir = tempDir()
const slice = (name: string, b: RecordingBackend): unknown[] => [service(name, [{ name: 'http', port: 80 }]), endpointSlice(name, [{ name: 'http', port: b.port }], [{ ip: '127.0.0.1' }], 'default', `${name}-slice`)]
const split = (svc: string) => [{ serviceNamespace: 'default', serviceName: svc, servicePort: 80, percent: 100 }]
writeManifest(dir, 'all.yaml', [
  ...slice('app', backend),
  ...slice('admin', admin),
  service('body', [{ name: 'http', port: 80 }]),
  endpointSlice('body', [{ name: 'http', port: bodyPod.port }], [{ ip: '127.0.0.1' }], 'default', 'body-slice'),
  kingress('smug', {
    rules: [
      { hosts: [HOST, 'xn--bcher-kva.example.com'], visibility: 'ExternalIP', http: { paths: [{ path: '/admin', splits: split('admin') }, { path: '/public', splits: split('app') }] } },
      { hosts: ['any.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: split('app') }] } },
      { hosts: [BODY_HOST], visibility: 'ExternalIP', http: { paths: [{ splits: split('body') }] } },
    ],
  }),
])
const gw = await startTestGateway(dir)
t.teardown(async () => {
  await gw.close()
  await backend.close()
  await admin.close()
  await bodyPod.close()
})

const reached = (): number => backend.started + admin.started

// ---- smuggling -----------------------------------------------------------------------------------

const SMUGGLING: Array<[string, string, number]> = [
  ['Content-Length with Transfer-Encoding', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, 400],
  ['Transfer-Encoding with Content-Length', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nX: y\r\n\r\n`, 400],
  ['two different Content-Lengths', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde`, 400],
  ['two equal Content-Lengths', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd`, 400],
  ['a Content-Length list', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 4, 4\r\n\r\nabcd`, 400],
  ['a signed Content-Length', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: +4\r\n\r\nabcd`, 400],
  ['an obs-fold header line', `GET /public HTTP/1.1\r\nHost: ${HOST}\r\nX-A: b\r\n  Transfer-Encoding: chunked\r\n\r\n`, 400],
  ['a bad chunk size', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, 400],
  ['an overflowing chunk size', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n`, 400],
  ['chunk data longer than its size', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n`, 400],
  ['a space in a header name', `GET /public HTTP/1.1\r\nHost: ${HOST}\r\nX A: b\r\n\r\n`, 400],
  ['a space before the colon', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n`, 400],
  ['a NUL in a header value', `GET /public HTTP/1.1\r\nHost: ${HOST}\r\nX: a\0b\r\n\r\n`, 400],
  ['bare LF line ends', `GET /public HTTP/1.1\nHost: ${HOST}\n\n`, 400],
  ['a bare LF inside the headers', `GET /public HTTP/1.1\r\nHost: ${HOST}\nX: y\r\n\r\n`, 400],
  ['a bare CR inside the headers', `GET /public HTTP/1.1\r\nHost: ${HOST}\rX: y\r\n\r\n`, 400],
  ['bare LF after a chunk size', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n`, 400],
  ['chunked not last', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`, 400],
  ['an unknown transfer coding (refused by the gateway before llhttp reads a body)', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`, 501],
  ['two Transfer-Encoding lines', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  // llhttp accepts these; the gateway refuses them (guard.ts).
  ['gzip before chunked (llhttp accepts)', `POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501],
  ['Transfer-Encoding in HTTP/1.0 (llhttp accepts)', `POST /public HTTP/1.0\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`, 400],
  ['two Host headers (llhttp accepts)', `GET /public HTTP/1.1\r\nHost: ${HOST}\r\nHost: any.example.com\r\n\r\n`, 400],
  ['HTTP/2.0 over HTTP/1 framing (llhttp accepts)', `GET /public HTTP/2.0\r\nHost: ${HOST}\r\n\r\n`, 505],
  ['an absolute-form target naming another host', `GET http://any.example.com/public HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, 400],
  ['an invalid version', `GET /public HTTP/1.2\r\nHost: ${HOST}\r\n\r\n`, 400],
  ['a space in the target', `GET /pub lic HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, 400],
]

for (const [name, payload, status] of SMUGGLING) {
  t.test(`smuggling: ${name} → ${status}, connection closed, nothing forwarded`, async (t) => {
    const before = reached()
    const bytesBefore = backend.bytes().length + admin.bytes().length
    const r = await raw(gw.ports.http, payload)
    t.equal(r.status, status, r.text.split('\r\n')[0] ?? '')
    t.ok(r.headers['x-edge-reason'], 'the gateway says why')
    t.ok(r.closed, 'the connection is closed')
    t.equal((r.text.match(/HTTP\/1\.1 /g) ?? []).length, 1, 'exactly one response: nothing smuggled behind it')
    t.equal(reached(), before, 'no request reached a pod')
    t.equal(backend.bytes().length + admin.bytes().length, bytesBefore, 'no byte reached a pod')
  })
}

t.test('smuggling: a bad chunk after a good one never completes a request at the pod', async (t) => {
  const completed = backend.completed.length
  const r = await raw(gw.ports.http, [`POST /public HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`, 'zz\r\n0\r\n\r\n'], { gapMs: 200 })
  t.ok(r.status === 400 || r.status === 0, `400 or a cut connection (${r.status})`)
  t.ok(r.closed, 'the connection is closed')
  await new Promise((res) => setTimeout(res, 200))
  t.equal(backend.completed.length, completed, 'the pod never saw the request end: it was aborted, not cut short')
})

t.test('a pipelined request after a complete one is a separate request, parsed the same way at the pod', async (t) => {
  const completed = backend.completed.length
  const r = await raw(gw.ports.http, `POST /public/a HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\n\r\nhelloGET /public/b HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`)
  t.equal((r.text.match(/HTTP\/1\.1 200/g) ?? []).length, 2)
  // The two are forwarded concurrently, so the pod may finish them in either order.
  const seen = backend.completed.slice(completed).map((c) => `${c.method} ${c.url} ${c.bodyBytes}`).sort()
  t.same(seen, ['GET /public/b 0', 'POST /public/a 5'])
})

// ---- bodies on methods that usually have none ---------------------------------------------------
// The gateway's own HTTP/1.1 server answers bodyless GET/HEAD/OPTIONS/DELETE itself and hands any
// request with Content-Length or Transfer-Encoding to node:http (request-head.ts). If it ever took
// one of these as bodyless, the body would be read as the next request on the connection: here the
// body is itself a request head, so a desync shows as a pod seeing /smuggled or as answers out of step.

const SMUGGLED = `GET /smuggled HTTP/1.1\r\nHost: ${BODY_HOST}\r\n\r\n`
const FRAMINGS: Array<[string, string]> = [
  ['a Content-Length body', `Content-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`],
  ['a chunked body', `Transfer-Encoding: chunked\r\n\r\n${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`],
]

/** The pod's JSON answer, or the text as it came when it is not JSON (so a failure shows it). */
const asJson = (text: string | undefined): unknown => {
  try {
    return JSON.parse(text ?? '')
  } catch {
    return text
  }
}

for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS']) {
  for (const [framing, rest] of FRAMINGS) {
    t.test(`${method} with ${framing}, then a second request on the connection: the pod gets the body exactly, no desync`, async (t) => {
      const seen = bodies.length
      const first = `${method} /first HTTP/1.1\r\nHost: ${BODY_HOST}\r\n${rest}`
      const second = `GET /second HTTP/1.1\r\nHost: ${BODY_HOST}\r\nConnection: close\r\n\r\n`
      const r = await raw(gw.ports.http, first + second)
      const rs = responses(r.text, new Set(method === 'HEAD' ? [0] : []))
      t.same(rs.map((x) => x.status), [200, 200], 'two answers, one per request')
      if (method !== 'HEAD') t.same(asJson(rs[0]?.body), { method, url: '/first', body: SMUGGLED }, 'the first answer is the first request\'s')
      t.same(asJson(rs[1]?.body), { method: 'GET', url: '/second', body: '' }, 'the second answer is the second request\'s')
      t.ok(r.closed, 'closed after the Connection: close request')
      t.same(
        bodies.slice(seen).sort((a, b) => (a.url < b.url ? -1 : 1)),
        [
          { method, url: '/first', body: SMUGGLED },
          { method: 'GET', url: '/second', body: '' },
        ],
        'the pod saw both requests, the first with its body byte for byte, and nothing else',
      )
      t.notOk(bodyPod.seen.some((x) => x.url === '/smuggled'), 'the body never reached the pod as a request')
    })
  }
}

// ---- Host header ---------------------------------------------------------------------------------

const HOSTS: Array<[string, string | undefined, number, string]> = [
  ['missing', undefined, 400, 'bad-request'],
  ['empty', '', 400, 'bad-request'],
  ['a space inside', 'smug example.com', 400, 'bad-request'],
  ['a slash inside', 'smug.example.com/admin', 400, 'bad-request'],
  ['userinfo', 'user@smug.example.com', 400, 'bad-request'],
  ['a non-numeric port', 'smug.example.com:http', 400, 'bad-request'],
  ['raw UTF-8 bytes', 'b\u00c3\u00bccher.example.com', 400, 'bad-request'],
  ['an unclosed IPv6 literal', '[::1', 400, 'bad-request'],
  ['letters in an IPv6 literal', '[zz::1]', 400, 'bad-request'],
  ['256 characters', `${'x'.repeat(252)}.com`, 400, 'bad-request'],
  ['an IPv4 literal', '127.0.0.1', 404, 'host-not-found'],
  ['an IPv4 literal with port', '127.0.0.1:8080', 404, 'host-not-found'],
  ['an IPv6 literal', '[::1]', 404, 'host-not-found'],
  ['an IPv6 literal with port', '[::1]:8080', 404, 'host-not-found'],
  ['255 characters, unknown', `${'x'.repeat(251)}.com`, 404, 'host-not-found'],
  ['a lone dot', '.', 400, 'bad-request'],
  ['a port out of range', 'smug.example.com:1234567', 400, 'bad-request'],
]

for (const [name, host, status, reason] of HOSTS) {
  t.test(`Host: ${name} → ${status} ${reason}, no pod reached`, async (t) => {
    const before = reached()
    const hostLine = host === undefined ? '' : `Host: ${host}\r\n`
    const r = await raw(gw.ports.http, Buffer.from(`GET /public HTTP/1.1\r\n${hostLine}Connection: close\r\n\r\n`, 'latin1'))
    t.equal(r.status, status, r.text.split('\r\n')[0] ?? '')
    t.equal(r.headers['x-edge-reason'], reason)
    t.ok(r.body.length > 0, 'a text body says why')
    t.equal(reached(), before)
  })
}

t.test('Host: a trailing dot, upper case and a port still route; punycode is a plain host', async (t) => {
  for (const host of [`${HOST}.`, 'SMUG.Example.COM', `${HOST}:8080`, `${HOST}.:80`, 'xn--bcher-kva.example.com', 'XN--BCHER-KVA.example.com.']) {
    const r = await get(gw.ports.http, host, '/public/x')
    t.equal(r.status, 200, host)
    t.equal(r.json<{ headers: Record<string, string> }>().headers.host, host, 'the Host is forwarded as sent')
  }
})

// ---- paths: forwarded byte for byte, matched by literal prefix -----------------------------------

const PATHS: Array<[string, 'app' | 'admin' | 404]> = [
  ['/public/../admin', 'app'],
  ['/public/%2e%2e/admin', 'app'],
  ['/public%2F..%2Fadmin', 'app'],
  ['/public/..%2fadmin?x=/admin', 'app'],
  ['/public/./../../admin', 'app'],
  ['/admin/../public', 'admin'],
  ['/%61dmin', 404],
  ['/./admin', 404],
  ['//admin', 404],
  ['/Admin', 404],
  ['/x/../admin', 404],
]

for (const [path, want] of PATHS) {
  t.test(`path ${path} → ${want}, forwarded exactly as sent`, async (t) => {
    const counts = [backend.completed.length, admin.completed.length]
    const r = await raw(gw.ports.http, `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`)
    if (want === 404) {
      t.equal(r.status, 404)
      t.equal(r.headers['x-edge-reason'], 'path-not-found')
      t.same([backend.completed.length, admin.completed.length], counts, 'no pod reached')
      return
    }
    t.equal(r.status, 200)
    const b = want === 'app' ? backend : admin
    const other = want === 'app' ? admin : backend
    t.equal(b.completed.at(-1)?.url, path, 'the pod received the path byte for byte')
    t.equal(other.completed.length, counts[want === 'app' ? 1 : 0], 'the other route was not reached')
  })
}

t.test('an absolute-form target is routed by the same host and forwarded in origin form, path untouched', async (t) => {
  const r = await raw(gw.ports.http, `GET http://${HOST}/public/../admin?q=1 HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`)
  t.equal(r.status, 200)
  t.equal(backend.completed.at(-1)?.url, '/public/../admin?q=1')
  t.notMatch(backend.bytes(), /GET http:\/\//, 'no absolute-form target reached the pod')
})

// ---- admin isolation -----------------------------------------------------------------------------

t.test('admin endpoints are not served on the public or cluster-local listeners', async (t) => {
  for (const port of [gw.ports.http, gw.ports.local]) {
    for (const p of ['/metrics', '/debug/routes', '/healthz', '/readyz']) {
      for (const host of ['localhost', '127.0.0.1', `127.0.0.1:${gw.ports.admin}`]) {
        const r = await get(port, host, p)
        t.equal(r.status, 404, `${port} ${host}${p}`)
        t.equal(r.headers['x-edge-reason'], 'host-not-found')
        t.notMatch(r.body, /edge_|"hosts"|^ok|^ready/, 'no admin content')
      }
      // On a served host the path is the application's: proxied, never the gateway's own.
      const before = backend.completed.length
      const r = await get(port, 'any.example.com', p)
      t.equal(r.status, 200)
      t.equal(backend.completed.length, before + 1, `${p} proxied to the app`)
      t.equal(r.json<{ url: string }>().url, p)
    }
  }
})
