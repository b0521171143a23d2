// The gateway's own HTTP/1.1 server side (h1/server/server.ts): what a client sees from it, as raw bytes on
// one connection. Bodyless requests are answered by it; a connection whose next request is anything
// else moves to node:http with the bytes already read, mid-connection included, and loses nothing.
import t from 'tap'
import net from 'node:net'
import { endpointSlice, kingress, service, startBackend, startTestGateway, tempDir, writeManifest } from './helpers/gateway.ts'
import { raw, responses } from './helpers/raw.ts'

const HOST = 'h1.example.com'

/** A pod whose answer depends on the path: framing the gateway must carry to the client as it is meant. */
const pod = await startBackend('pod', (req, res) => {
  const url = req.url ?? '/'
  if (url.startsWith('/chunked')) {
    // No length: the pod streams, then trailers.
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-sum' })
    res.write('part1-')
    res.write('part2')
    res.addTrailers({ 'x-sum': '42' })
    res.end()
    return
  }
  if (url.startsWith('/echo-header')) {
    // Back: the request's x-long, and a value with bytes above 0x7F (obs-text).
    res.writeHead(200, { 'x-back': String(req.headers['x-long']), 'x-latin': 'caf\xe9', 'content-length': '2' })
    res.end('ok')
    return
  }
  if (url.startsWith('/post')) {
    let body = ''
    req.setEncoding('latin1')
    req.on('data', (c: string) => (body += c))
    req.on('end', () => res.end(`got ${req.method} ${body}`))
    return
  }
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(`path ${url}`.length) })
  res.end(req.method === 'HEAD' ? undefined : `path ${url}`)
})

const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  service('app', [{ name: 'http', port: 80 }]),
  endpointSlice('app', [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1' }], 'default', 'app-slice'),
  kingress('h1', { rules: [{ hosts: [HOST], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }] }),
])
const gw = await startTestGateway(dir, ['--header-timeout', '1'])
t.teardown(async () => {
  await gw.close()
  await pod.close()
})

const getReq = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: ${HOST}\r\n${extra}\r\n`

t.test('pipelined requests in one write are answered in order, on one connection', async (t) => {
  const a = await raw(gw.ports.http, getReq('/1') + getReq('/2') + getReq('/3', 'Connection: close\r\n'))
  const rs = responses(a.text)
  t.same(rs.map((r) => r.body), ['path /1', 'path /2', 'path /3'])
  t.same(rs.map((r) => r.headers.connection), ['keep-alive', 'keep-alive', 'close'])
  t.ok(rs[0]!.headers.date, 'a Date header, as node:http sends')
  t.ok(a.closed, 'closed after the response to Connection: close')
})

t.test('a head sent a few bytes at a time is answered once complete', async (t) => {
  const text = getReq('/slow', 'Connection: close\r\n')
  const parts: string[] = []
  for (let i = 0; i < text.length; i += 7) parts.push(text.slice(i, i + 7))
  const a = await raw(gw.ports.http, parts, { gapMs: 5 })
  t.equal(a.status, 200)
  t.equal(a.body, 'path /slow')
})

t.test('a request with a body after bodyless ones on the same connection reaches the pod whole', async (t) => {
  const post = `POST /post HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 5\r\n\r\nhello`
  const a = await raw(gw.ports.http, [getReq('/before'), post, getReq('/after', 'Connection: close\r\n')], { gapMs: 50 })
  t.same(responses(a.text).map((r) => [r.status, r.body]), [
    [200, 'path /before'],
    [200, 'got POST hello'],
    [200, 'path /after'],
  ])
})

t.test('the same, all in one write: nothing read ahead is lost in the move to node:http', async (t) => {
  const post = `POST /post HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`
  const a = await raw(gw.ports.http, getReq('/one') + post + getReq('/two', 'Connection: close\r\n'))
  t.same(responses(a.text).map((r) => [r.status, r.body]), [
    [200, 'path /one'],
    [200, 'got POST abc'],
    [200, 'path /two'],
  ])
})

t.test('a malformed request after a good one gets the gateway 400, and the good answer stays whole', async (t) => {
  const a = await raw(gw.ports.http, getReq('/good') + `GET /bad HTTP/1.1\r\nHost: ${HOST}\r\nX: a\r\n b\r\n\r\n`)
  const rs = responses(a.text)
  t.same(rs.map((r) => r.status), [200, 400])
  t.equal(rs[0]!.body, 'path /good')
  t.equal(rs[1]!.headers['x-edge-reason'], 'bad-request')
  t.ok(a.closed)
})

t.test('a pod that streams without a length: chunked to HTTP/1.1 with its trailers, close-delimited to HTTP/1.0', async (t) => {
  const a = await raw(gw.ports.http, getReq('/chunked', 'TE: trailers\r\nConnection: close\r\n'))
  const [r] = responses(a.text)
  t.equal(r!.headers['transfer-encoding'], 'chunked')
  t.equal(r!.body, 'part1-part2')
  t.same(r!.trailers, { 'x-sum': '42' })

  const b = await raw(gw.ports.http, `GET /chunked HTTP/1.0\r\nHost: ${HOST}\r\n\r\n`)
  t.equal(b.status, 200)
  t.notOk(b.headers['transfer-encoding'], 'HTTP/1.0 has no chunked coding')
  t.equal(b.headers.connection, 'close')
  t.equal(b.body, 'part1-part2', 'the body ends where the connection does')
  t.ok(b.closed)
})

t.test('HTTP/1.0 with keep-alive keeps the connection for a length-framed answer', async (t) => {
  const ka = `GET /a HTTP/1.0\r\nHost: ${HOST}\r\nConnection: keep-alive\r\n\r\n`
  const a = await raw(gw.ports.http, [ka, `GET /b HTTP/1.0\r\nHost: ${HOST}\r\n\r\n`], { gapMs: 50 })
  const rs = responses(a.text)
  t.same(rs.map((r) => r.body), ['path /a', 'path /b'])
  t.equal(rs[0]!.headers.connection, 'keep-alive')
  t.equal(rs[1]!.headers.connection, 'close')
  t.ok(a.closed)
})

t.test('HEAD gets the head only, then the next request on the connection is read correctly', async (t) => {
  const a = await raw(gw.ports.http, `HEAD /h HTTP/1.1\r\nHost: ${HOST}\r\n\r\n` + getReq('/next', 'Connection: close\r\n'))
  const end = a.text.indexOf('\r\n\r\n')
  t.match(a.text.slice(0, end), /content-length: 7/i, "the pod's length, for a body not sent")
  const next = a.text.slice(end + 4)
  t.match(next, /^HTTP\/1\.1 200 OK\r\n/, 'the next response follows the head at once')
  t.match(next, /path \/next$/)
})

t.test('a head that stops arriving gets 408 header-timeout after --header-timeout', async (t) => {
  const a = await raw(gw.ports.http, `GET /x HTTP/1.1\r\nHost: ${HOST}\r\n`, { waitMs: 5000 })
  t.equal(a.status, 408)
  t.equal(a.headers['x-edge-reason'], 'header-timeout')
  t.ok(a.closed)
})

t.test('a request with a header value node:http accepts but our subset does not is still served', async (t) => {
  const a = await raw(gw.ports.http, getReq('/latin', 'X-Name: caf\xe9\r\nConnection: close\r\n'))
  t.equal(a.status, 200)
  t.equal(a.body, 'path /latin')
})

t.test('header values, short and long, and a byte above 0x7F, cross both heads byte for byte', async (t) => {
  const long = 'v'.repeat(47) + '-' + 'w'.repeat(150)
  const a = await raw(gw.ports.http, getReq('/echo-header', `X-Long: ${long}\r\nConnection: close\r\n`))
  t.equal(a.status, 200)
  t.equal(a.headers['x-back'], long, 'the request head to the pod, then the response head back')
  t.equal(a.headers['x-latin'], Buffer.from('caf\xe9', 'utf8').toString('latin1'), "the pod's bytes as they were (node:http sends a header value as UTF-8: two bytes above 0x7F)")
  t.match(a.text, /^HTTP\/1\.1 200 OK\r\n/)
})

t.test('a client that goes away mid-response does not disturb the next client', async (t) => {
  const s = net.connect(gw.ports.http, '127.0.0.1')
  s.write(getReq('/gone'))
  s.destroy()
  const a = await raw(gw.ports.http, getReq('/after-gone', 'Connection: close\r\n'))
  t.equal(a.body, 'path /after-gone')
})

t.test("with --http1-server node, node:http serves every request and the client sees the same answers", async (t) => {
  const other = await startTestGateway(dir, ['--http1-server', 'node'])
  t.teardown(() => other.close())
  const viaNode = responses((await raw(other.ports.http, getReq('/1') + getReq('/chunked', 'TE: trailers\r\nConnection: close\r\n'))).text)
  const viaEdge = responses((await raw(gw.ports.http, getReq('/1') + getReq('/chunked', 'TE: trailers\r\nConnection: close\r\n'))).text)
  const shape = (rs: typeof viaNode) => rs.map((r) => ({ status: r.status, body: r.body, trailers: r.trailers, te: r.headers['transfer-encoding'], ct: r.headers['content-type'], connection: r.headers.connection }))
  t.same(shape(viaEdge), shape(viaNode))
  t.same(viaNode.map((r) => r.body), ['path /1', 'part1-part2'], "node:http's answers are whole too (a chunked body written in one tick once lost its second chunk)")
})

t.test('a gateway-made answer is identical through either server', async (t) => {
  const other = await startTestGateway(dir, ['--http1-server', 'node'])
  t.teardown(() => other.close())
  const ask = (port: number) => raw(port, `GET / HTTP/1.1\r\nHost: nowhere.example.com\r\nConnection: close\r\n\r\n`)
  const [e, n] = [await ask(gw.ports.http), await ask(other.ports.http)]
  t.equal(e.status, 404)
  t.same([e.status, e.headers['x-edge-reason'], e.headers['content-type'], e.headers['cache-control'], e.body], [n.status, n.headers['x-edge-reason'], n.headers['content-type'], n.headers['cache-control'], n.body])
})
