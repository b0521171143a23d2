// Issue 7 limits: header size and count (431), URL length (414), body size (413, counted as it
// streams), slow headers (408), connections per client IP. None may touch a normal long stream.
import t from 'tap'
import net from 'node:net'
import { request as undiciRequest } from 'undici'
import { endpointSlice, get, simpleIngress, service, startTestGateway, tempDir, writeManifest } from './helpers/gateway.ts'
import { raw, startRecordingBackend, upgradeRequest } from './helpers/raw.ts'
import { parseConfig, UsageError } from '../src/config.ts'

const HOST = 'limits.example.com'
// /slow streams its response for 2.5 s; everything else is the recording backend's echo.
const backend = await startRecordingBackend((req, res) => {
  if (!req.url?.startsWith('/slow')) return false
  res.writeHead(200, { 'content-type': 'text/plain' })
  let n = 0
  const tick = setInterval(() => {
    res.write(`tick ${n}\n`)
    if (++n === 10) {
      clearInterval(tick)
      res.end('done\n')
    }
  }, 250)
  return true
})
const dir = tempDir()
writeManifest(dir, 'all.yaml', [service('app', [{ name: 'http', port: 80 }]), endpointSlice('app', [{ name: 'http', port: backend.port }], [{ ip: '127.0.0.1' }], 'default', 'app-slice'), simpleIngress('limits', [HOST], [['app', 100]])])
const gw = await startTestGateway(dir, ['--header-timeout', '1', '--max-header-size', '4096', '--max-headers', '20', '--max-url-length', '256', '--max-body-size', '1000'])
t.teardown(async () => {
  await gw.close()
  await backend.close()
})

t.test('defaults: safe, and the body and per-IP limits are off', async (t) => {
  const c = parseConfig([], {})
  t.equal(c.headerTimeoutSeconds, 15)
  t.equal(c.maxHeaderBytes, 32 * 1024)
  t.equal(c.maxHeaders, 100)
  t.equal(c.maxUrlLength, 8192)
  t.equal(c.maxBodyBytes, 0)
  t.equal(c.maxConnectionsPerIp, 0)
  t.same(c.trustedProxies, [])
  t.same(parseConfig([], { EDGE_TRUSTED_PROXIES: '10.0.0.0/8, fd00::/8,192.168.1.1' }).trustedProxies, ['10.0.0.0/8', 'fd00::/8', '192.168.1.1'])
  t.throws(() => parseConfig(['--trusted-proxies', '10.0.0.0/33']), UsageError)
  t.throws(() => parseConfig([], { EDGE_TRUSTED_PROXIES: 'example.com' }), UsageError)
  t.throws(() => parseConfig(['--header-timeout', '0']), UsageError)
})

t.test('431: request headers over --max-header-size', async (t) => {
  const r = await raw(gw.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`)
  t.equal(r.status, 431)
  t.equal(r.headers['x-edge-reason'], 'headers-too-large')
  t.ok(r.closed)
  const ok = await get(gw.ports.http, HOST, '/', { 'x-big': 'a'.repeat(3000) })
  t.equal(ok.status, 200, 'just under the limit passes')
})

t.test('431: more header lines than --max-headers', async (t) => {
  const lines = (n: number): string => Array.from({ length: n }, (_, i) => `X-H${i}: ${i}\r\n`).join('')
  const before = backend.started
  const r = await raw(gw.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\n${lines(25)}\r\n`)
  t.equal(r.status, 431)
  t.equal(r.headers['x-edge-reason'], 'headers-too-large')
  t.equal(backend.started, before, 'nothing forwarded')
  const ok = await raw(gw.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n${lines(18)}\r\n`)
  t.equal(ok.status, 200, '20 lines pass')
})

t.test('414: a request target over --max-url-length, before routing', async (t) => {
  const before = backend.started
  const long = await get(gw.ports.http, HOST, `/${'a'.repeat(300)}`)
  t.equal(long.status, 414)
  t.equal(long.headers['x-edge-reason'], 'uri-too-long')
  const unknownHost = await get(gw.ports.http, 'nope.example.com', `/${'a'.repeat(300)}`)
  t.equal(unknownHost.status, 414, 'checked before the host lookup')
  t.equal(backend.started, before)
  t.equal((await get(gw.ports.http, HOST, `/${'a'.repeat(250)}`)).status, 200, '251 characters pass')
  const raw414 = await raw(gw.ports.http, `GET /${'a'.repeat(300)} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`)
  t.equal(raw414.status, 414)
  t.ok(raw414.closed, 'and the connection is closed, as for every refusal of the guard')
})

t.test('414 for a WebSocket upgrade too: the same limit, nothing reaches the backend', async (t) => {
  const before = backend.started
  const long = await raw(gw.ports.http, upgradeRequest(HOST, `/${'a'.repeat(300)}`))
  t.equal(long.status, 414)
  t.equal(long.headers['x-edge-reason'], 'uri-too-long')
  t.ok(long.closed, 'and the connection is closed')
  t.equal(backend.started, before, 'nothing forwarded')
})

t.test('413: a Content-Length over --max-body-size is refused up front', async (t) => {
  const before = backend.started
  const r = await raw(gw.ports.http, `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 2000\r\n\r\n${'x'.repeat(2000)}`)
  t.equal(r.status, 413)
  t.equal(r.headers['x-edge-reason'], 'body-too-large')
  t.ok(r.closed, 'the connection is closed (the body was not read)')
  // With Expect: 100-continue the client is told before it sends the body.
  const e = await raw(gw.ports.http, `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n`)
  t.equal(e.status, 413)
  t.notMatch(e.text, /100 Continue/)
  t.equal(backend.started, before, 'nothing forwarded')
})

t.test('413: a chunked body is counted as it streams; the pod never sees it complete', async (t) => {
  const completed = backend.completed.length
  const chunk = `${(300).toString(16)}\r\n${'y'.repeat(300)}\r\n`
  const r = await raw(gw.ports.http, [`POST / HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n`, chunk, chunk, chunk, chunk, '0\r\n\r\n'], { gapMs: 50 })
  t.equal(r.status, 413)
  t.equal(r.headers['x-edge-reason'], 'body-too-large')
  t.ok(r.closed)
  await new Promise((res) => setTimeout(res, 200))
  t.equal(backend.completed.length, completed, 'the pod saw an aborted request, never a truncated complete one')
})

t.test('bodies within the limit pass, Content-Length or chunked', async (t) => {
  const a = await get(gw.ports.http, HOST, '/cl', {}, 'POST', 'z'.repeat(1000))
  t.equal(a.status, 200)
  t.equal(a.json<{ bodyBytes: number }>().bodyBytes, 1000)
  const r = await raw(gw.ports.http, `POST /chunked HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1f4\r\n${'q'.repeat(500)}\r\n1f4\r\n${'q'.repeat(500)}\r\n0\r\n\r\n`)
  t.equal(r.status, 200)
  t.equal(backend.completed.at(-1)?.bodyBytes, 1000)
})

t.test('408: request headers that do not arrive within --header-timeout', async (t) => {
  const r = await raw(gw.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Slow: `, { waitMs: 6000 })
  t.equal(r.status, 408)
  t.equal(r.headers['x-edge-reason'], 'header-timeout')
  t.ok(r.closed)
  t.ok(r.ms >= 900, `closed no earlier than the timeout (${r.ms} ms)`)
})

t.test('a slow streaming response longer than the header timeout completes', async (t) => {
  const started = Date.now()
  const res = await undiciRequest(`http://127.0.0.1:${gw.ports.http}/slow`, { headers: { host: HOST } })
  const text = await res.body.text()
  t.equal(res.statusCode, 200)
  t.ok(Date.now() - started > 2000, 'it took longer than the header timeout')
  t.match(text, /tick 9\ndone\n$/)
})

t.test('a long upload that sends steadily completes', async (t) => {
  const parts = Array.from({ length: 10 }, () => `5a\r\n${'u'.repeat(90)}\r\n`)
  const r = await raw(gw.ports.http, [`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n`, ...parts, '0\r\n\r\n'], { gapMs: 250, waitMs: 8000 })
  t.equal(r.status, 200)
  t.ok(r.ms > 2000, `it took longer than the header timeout (${r.ms} ms)`)
  t.equal(backend.completed.at(-1)?.bodyBytes, 900)
})

t.test('--max-connections-per-ip: connections beyond the limit are closed at once', async (t) => {
  const gw2 = await startTestGateway(dir, ['--max-connections-per-ip', '2'])
  t.teardown(() => gw2.close())
  const open = (): Promise<net.Socket> => new Promise((r) => { const s = net.connect(gw2.ports.http, '127.0.0.1', () => r(s)); s.on('error', () => {}) })
  const a = await open()
  const b = await open()
  const c = await open()
  const closed = await new Promise<boolean>((r) => { c.once('close', () => r(true)); setTimeout(() => r(false), 2000) })
  t.ok(closed, 'the third connection from one IP is closed')
  t.notOk(a.destroyed || b.destroyed, 'the first two stay open')
  const r = await raw(gw2.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`, { waitMs: 500 })
  t.equal(r.status, 0, 'still refused while two are open')
  // a closes its side and waits for the gateway's FIN. The gateway forgets a connection in the loop
  // turn that sends that FIN (the socket's close callback), and a can only read it on a later turn
  // (both run in this process), so once a has closed the gateway counts one open connection.
  await new Promise<void>((res) => {
    a.once('close', () => res())
    a.end()
  })
  const ok = await raw(gw2.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`)
  t.equal(ok.status, 200, 'one closed: a new connection is served')
  b.destroy()
  const metrics = (await get(gw2.ports.admin, 'localhost', '/metrics')).body
  t.match(metrics, /edge_connections_refused_total\{reason="per-ip-limit"\} 2\n/, 'both refused connections are counted')
})

t.test('answers the gateway gives before routing are counted in edge_requests_total (no host label, with their reason)', async (t) => {
  const REASONS: Record<number, string> = { 400: 'bad-request', 413: 'body-too-large', 414: 'uri-too-long', 431: 'headers-too-large', 505: 'bad-request' }
  const count = async (code: number): Promise<number> => {
    const m = new RegExp(`edge_requests_total\\{host="",namespace="",revision="",code="${code}",reason="${REASONS[code]}"\\} (\\d+)`).exec((await get(gw.ports.admin, 'localhost', '/metrics')).body)
    return Number(m?.[1] ?? 0)
  }
  const before = { 400: await count(400), 413: await count(413), 414: await count(414), 431: await count(431), 505: await count(505) }
  t.equal((await raw(gw.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nHost: other.example.com\r\n\r\n`)).status, 400, 'two Host headers (the guard)')
  t.equal((await raw(gw.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: x\r\n\r\n`)).status, 400, 'a malformed request (the parser)')
  t.equal((await raw(gw.ports.http, `GET / HTTP/2.0\r\nHost: ${HOST}\r\n\r\n`)).status, 505)
  t.equal((await raw(gw.ports.http, `POST / HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 2000\r\n\r\n`)).status, 413)
  t.equal((await raw(gw.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`)).status, 431)
  t.equal((await raw(gw.ports.http, upgradeRequest(HOST, `/${'a'.repeat(300)}`))).status, 414, 'an upgrade over the URL limit')
  t.equal((await raw(gw.ports.http, `GET / HTTP/1.1\r\nHost: ${HOST}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`)).status, 400, 'an upgrade with two Hosts')
  t.same(
    { 400: (await count(400)) - before[400], 413: (await count(413)) - before[413], 414: (await count(414)) - before[414], 431: (await count(431)) - before[431], 505: (await count(505)) - before[505] },
    { 400: 3, 413: 1, 414: 1, 431: 1, 505: 1 },
  )
})
