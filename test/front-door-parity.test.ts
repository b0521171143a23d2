// One request, three front doors: a plain HTTP/1.1 request, an HTTP/2 stream (h2c prior knowledge on
// the same public port) and an HTTP/1.1 WebSocket upgrade must get the same answer from the gateway
// (status, x-edge-reason, a body saying why), or all reach the pod. Each case of the table is sent all
// three ways; a case × way that disagrees names the door that drifted.
//
// HTTP/2 has no absolute-form target: `:path` must be origin form, and nghttp2 resets a stream whose
// `:path` is `http://…` (PROTOCOL_ERROR) before the gateway sees it. The authority of the target is
// `:authority` instead, so the HTTP/2 form of "the target names another host than Host" is an
// `:authority` that differs from a `host` field (RFC 9113 §8.3.1: treat it as malformed).
import crypto from 'node:crypto'
import t from 'tap'
import { kingress, serviceFor, startBackend, startTestGateway, tempDir, writeManifest } from './helpers/gateway.ts'
import { raw } from './helpers/raw.ts'
import { h2Request } from './helpers/h2-request.ts'

const HOST = 'parity.example.com'
const MAX_URL_LENGTH = 100
const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC11B65'

// The pod: 200 (the request described as JSON) to a plain request, 101 to an upgrade, then it hangs up
// so the client's connection ends and its answer is complete.
const pod = await startBackend('pod')
const upgrades: Array<{ url: string; host: string | undefined }> = []
pod.server.on('upgrade', (req, socket) => {
  upgrades.push({ url: req.url ?? '', host: req.headers.host })
  const accept = crypto.createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}${WS_GUID}`).digest('base64')
  socket.end(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
})
const reachedPod = (): number => pod.seen.length + upgrades.length

const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  ...serviceFor('app', pod),
  kingress('parity', {
    rules: [{ hosts: [HOST], visibility: 'ExternalIP', http: { paths: [{ path: '/app', splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }],
  }),
])
const gw = await startTestGateway(dir, ['--max-url-length', String(MAX_URL_LENGTH)])
t.teardown(async () => {
  await gw.close()
  await pod.close()
})

type Way = 'HTTP/1.1 request' | 'HTTP/2 stream' | 'WebSocket upgrade'

/** The gateway answers itself, and nothing reaches the pod. */
interface Refused {
  status: number
  reason: string
}

interface Case {
  name: string
  /** HTTP/1.1 request target and Host (undefined: no Host line), for the request and the upgrade. */
  target: string
  host: string | undefined
  /** The same request as HTTP/2 fields, besides :method and :scheme. */
  h2: Array<[string, string]>
  /** Refused, or reaches the pod in origin form with this target (200 to a request, the pod's 101 to an upgrade). */
  expect: Refused | { pod: string }
  /**
   * The HTTP/2 stream is reset (RST_STREAM PROTOCOL_ERROR) by nghttp2 inside node:http2 before it is
   * emitted, so no gateway code runs: nghttp2 requires :authority or host and checks their characters
   * (no space), and node:http2 has no option to turn that off. RFC 9113 §8.1.1 allows a reset for a
   * malformed request; the gateway cannot give the 400 the other two ways get.
   */
  h2ResetByNghttp2?: true
}

const badRequest: Refused = { status: 400, reason: 'bad-request' }
const longTarget = `/app/${'x'.repeat(MAX_URL_LENGTH)}`

const CASES: Case[] = [
  { name: 'malformed Host `bad host!`', target: '/app', host: 'bad host!', h2: [[':path', '/app'], [':authority', 'bad host!']], expect: badRequest, h2ResetByNghttp2: true },
  { name: 'malformed Host `[zz`', target: '/app', host: '[zz', h2: [[':path', '/app'], [':authority', '[zz']], expect: badRequest },
  // HTTP/2: neither :authority nor host (sent with a hand-encoded header block, see h2Request).
  { name: 'missing Host', target: '/app', host: undefined, h2: [[':path', '/app']], expect: badRequest, h2ResetByNghttp2: true },
  { name: 'absolute-form target naming another authority than Host', target: 'http://other.example/app', host: HOST, h2: [[':path', '/app'], [':authority', 'other.example'], ['host', HOST]], expect: badRequest },
  { name: 'absolute-form target naming the Host', target: `http://${HOST}/app/x?q=1`, host: HOST, h2: [[':path', '/app/x?q=1'], [':authority', HOST], ['host', HOST]], expect: { pod: '/app/x?q=1' } },
  { name: `request target longer than --max-url-length ${MAX_URL_LENGTH}`, target: longTarget, host: HOST, h2: [[':path', longTarget], [':authority', HOST]], expect: { status: 414, reason: 'uri-too-long' } },
  { name: 'unknown host', target: '/app', host: 'nobody.example.com', h2: [[':path', '/app'], [':authority', 'nobody.example.com']], expect: { status: 404, reason: 'host-not-found' } },
  { name: 'known host, unknown path', target: '/nope', host: HOST, h2: [[':path', '/nope'], [':authority', HOST]], expect: { status: 404, reason: 'path-not-found' } },
]

interface Answer {
  status: number
  reason: string | undefined
  body: string
  /** HTTP/2 only: the stream's RST_STREAM code. */
  resetCode?: number
  /** HTTP/1.1 only: the connection was closed after the answer (not left hanging). */
  closed?: boolean
}

/** The request head both HTTP/1.1 ways send: identical but for the upgrade's own headers. */
function http1Head(c: Case, upgrade: boolean): string {
  const lines = [`GET ${c.target} HTTP/1.1`]
  if (c.host !== undefined) lines.push(`Host: ${c.host}`)
  if (upgrade) lines.push('Connection: Upgrade', 'Upgrade: websocket', `Sec-WebSocket-Key: ${WS_KEY}`, 'Sec-WebSocket-Version: 13')
  else lines.push('Connection: close')
  return `${lines.join('\r\n')}\r\n\r\n`
}

async function send(c: Case, way: Way): Promise<Answer> {
  if (way === 'HTTP/2 stream') {
    const fields: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'http'], ...c.h2]
    // node:http2's client adds :authority to a request that has neither it nor host: send those exactly.
    const exact = !c.h2.some(([name]) => name === ':authority' || name === 'host')
    const a = await h2Request(gw.ports.http, fields, exact)
    return { status: a.status, reason: a.headers['x-edge-reason'] as string | undefined, body: a.body, resetCode: a.resetCode }
  }
  // The client's head goes out in one write and the gateway (or the pod) closes when it has answered.
  const r = await raw(gw.ports.http, http1Head(c, way === 'WebSocket upgrade'))
  return { status: r.status, reason: r.headers['x-edge-reason'], body: r.body, closed: r.closed }
}

const WAYS: Way[] = ['HTTP/1.1 request', 'HTTP/2 stream', 'WebSocket upgrade']

for (const c of CASES) {
  for (const way of WAYS) {
    t.test(`${c.name} × ${way}`, async (t) => {
      const before = { requests: pod.seen.length, upgrades: upgrades.length }
      const got = await send(c, way)
      if (got.closed !== undefined) t.ok(got.closed, 'the connection closed after the answer')
      const summary = `got ${got.status} ${got.reason ?? '(no x-edge-reason)'}${got.resetCode ? ` (stream reset, code ${got.resetCode})` : ''}`
      if (way === 'HTTP/2 stream' && c.h2ResetByNghttp2) {
        t.equal(got.resetCode, 1, `the stream is reset with PROTOCOL_ERROR before the gateway sees it; ${summary}`)
        t.equal(reachedPod(), before.requests + before.upgrades, 'nothing reached the pod')
        return
      }
      if ('pod' in c.expect) {
        const upgrade = way === 'WebSocket upgrade'
        t.equal(got.status, upgrade ? 101 : 200, `the pod's answer; ${summary}`)
        t.equal(got.reason, undefined, 'no answer of the gateway')
        const seen = upgrade ? upgrades.slice(before.upgrades) : pod.seen.slice(before.requests).map((s) => ({ url: s.url, host: s.headers.host }))
        t.same(seen, [{ url: c.expect.pod, host: HOST }], 'the pod got it once, in origin form, with the Host')
        return
      }
      t.same({ status: got.status, reason: got.reason }, c.expect, summary)
      t.ok(got.body.length > 0, 'a body says why')
      t.equal(reachedPod(), before.requests + before.upgrades, 'nothing reached the pod')
    })
  }
}
