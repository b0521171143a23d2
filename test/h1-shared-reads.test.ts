// Client connections on the gateway's own HTTP/1.1 server side read into one buffer that every
// connection shares (h1/server/user-buffer-socket.ts). What a client must never see: bytes of one connection
// in another's request, a connection that outlives its client, or a per-IP slot that is never given
// back.
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'
import { endpointSlice, kingress, service, startBackend, startTestGateway, tempDir, writeManifest } from './helpers/gateway.ts'
import { raw } from './helpers/raw.ts'

const HOST = 'shared.example.com'
const WS_HOST = 'ws.example.com'

// The pod echoes the path and one header: a byte from another connection would show in either.
const pod = await startBackend('pod', (req, res) => {
  const body = `${req.url} ${String(req.headers['x-who'])}`
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) })
  res.end(body)
})
const wsPod = http.createServer()
const wss = new WebSocketServer({ server: wsPod })
wss.on('connection', (s) => s.on('message', (m) => s.send(`echo ${String(m)}`)))
await new Promise<void>((r) => wsPod.listen(0, '127.0.0.1', () => r()))
const wsPort = (wsPod.address() as net.AddressInfo).port

const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  service('app', [{ name: 'http', port: 80 }]),
  endpointSlice('app', [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1' }], 'default', 'app-slice'),
  service('ws', [{ name: 'http', port: 80 }]),
  endpointSlice('ws', [{ name: 'http', port: wsPort }], [{ ip: '127.0.0.1' }], 'default', 'ws-slice'),
  kingress('shared', {
    rules: [
      { hosts: [HOST], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } },
      { hosts: [WS_HOST], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'ws', servicePort: 80, percent: 100 }] }] } },
    ],
  }),
])
const gw = await startTestGateway(dir, ['--max-connections-per-ip', '2'])
t.teardown(async () => {
  await gw.close()
  await pod.close()
  wss.close()
  wsPod.closeAllConnections()
  await new Promise((r) => wsPod.close(r))
})

function connect(): Promise<{ socket: net.Socket; text: () => string; closed: Promise<void> }> {
  return new Promise((resolve) => {
    const socket = net.connect(gw.ports.http, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (d) => chunks.push(d))
    socket.on('error', () => {})
    const closed = new Promise<void>((r) => socket.once('close', () => r()))
    socket.once('connect', () => resolve({ socket, text: () => Buffer.concat(chunks).toString('latin1'), closed }))
  })
}

const tick = (ms = 30): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * A connection past its first request: the first bytes of a connection are read before it reaches
 * our server side (sniff.ts), so only later reads land in the shared buffer.
 */
async function warm(who: string): Promise<Awaited<ReturnType<typeof connect>>> {
  const c = await connect()
  c.socket.write(`GET /warm HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: ${who}\r\n\r\n`)
  while (!c.text().endsWith(`/warm ${who}`)) await tick(5)
  return c
}

t.test('heads that arrive in pieces on two connections, interleaved, each reach the pod whole', async (t) => {
  const a = await warm('a')
  const b = await warm('b')
  // a: one whole request and the start of a second in one write; b then fills the shared buffer
  // with its own bytes (twice) before a's second request is finished.
  a.socket.write(`GET /a1 HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: aaaa\r\n\r\nGET /a2 HTTP/1.1\r\nHost: ${HOST}\r\nX-W`)
  await tick()
  b.socket.write(`GET /b1 HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n`)
  await tick()
  b.socket.write(`GET /b2 HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\r\nConnection: close\r\n\r\n`)
  await b.closed
  a.socket.write(`ho: aaaa-second\r\nConnection: close\r\n\r\n`)
  await a.closed
  t.match(a.text(), /\/a1 aaaa[\s\S]*\/a2 aaaa-second$/, 'a: both answers, with its own bytes')
  t.match(b.text(), /\/b1 b{48}[\s\S]*\/b2 B{48}$/, 'b: both answers, with its own bytes')
})

t.test('a request with a body behind a partial read moves to node:http with its own bytes', async (t) => {
  const a = await warm('a')
  const b = await warm('b')
  a.socket.write(`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: a-post\r\nContent-Len`)
  await tick()
  b.socket.write(`GET /b HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: b-get-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\nConnection: close\r\n\r\n`)
  await b.closed
  a.socket.write(`gth: 3\r\nConnection: close\r\n\r\nabc`)
  await a.closed
  t.match(a.text(), /^HTTP\/1\.1 200[\s\S]*\/upload a-post$/)
  t.match(b.text(), /^HTTP\/1\.1 200[\s\S]*\/b b-get-x{38}$/)
})

t.test('a read that moves its connection to node:http at once gives node:http its own bytes', async (t) => {
  const a = await warm('a')
  const b = await warm('b')
  // The POST is the first request of a read: the hand-off happens while the read is being parsed.
  a.socket.write(`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: a-post-at-once\r\nContent-Length: 3\r\nConnection: close\r\n\r\nab`)
  b.socket.write(`GET /b HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: b-${'y'.repeat(90)}\r\nConnection: close\r\n\r\n`)
  await b.closed
  a.socket.write('c')
  await a.closed
  t.match(a.text(), /\/upload a-post-at-once$/)
  t.match(b.text(), /\/b b-y{90}$/)
})

t.test('served connections give their per-IP slot back when they close', async (t) => {
  // --max-connections-per-ip 2: five connections one after another, each closed by the client after
  // its answer. A slot that were never given back would refuse the third.
  for (let i = 0; i < 5; i++) {
    const c = await connect()
    c.socket.write(`GET /n${i} HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: seq\r\n\r\n`)
    while (!c.text().endsWith(`/n${i} seq`)) await tick(5)
    c.socket.end()
    await c.closed
    await tick()
  }
  const last = await raw(gw.ports.http, `GET /last HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: end\r\nConnection: close\r\n\r\n`)
  t.equal(last.body, '/last end', 'still served after five')
})

t.test('a WebSocket closed with a close handshake ends its connection at the gateway too', async (t) => {
  // After the pod's side closes, node:http's socket is paused (unpipe); it must still read the
  // client's FIN and close. One that stayed half-open would keep its per-IP slot (limit 2) forever.
  for (let i = 0; i < 4; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.ports.http}/`, { headers: { host: WS_HOST } })
    await new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)))
    const reply = new Promise<string>((r) => ws.once('message', (m) => r(String(m))))
    ws.send(`m${i}`)
    t.equal(await reply, `echo m${i}`)
    const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)))
    ws.close(1000)
    t.equal(await closed, 1000, `WebSocket ${i} closed cleanly`)
    await tick(50)
  }
  const last = await raw(gw.ports.http, `GET /after HTTP/1.1\r\nHost: ${HOST}\r\nX-Who: ws\r\nConnection: close\r\n\r\n`)
  t.equal(last.body, '/after ws', 'a new connection is still accepted')
})
