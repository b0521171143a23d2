// The lifecycle of our HTTP/1.1 server side's connections (h1/server/server.ts), driven directly over real
// sockets: idle keep-alive expiry, closing for a drain, the hand-off's bytes, and a handler that throws.
import t from 'tap'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { EdgeH1Server } from '../src/dataplane/h1/server/server.ts'
import type { EdgeH1Options } from '../src/dataplane/h1/server/server.ts'
import type { EdgeRequest } from '../src/dataplane/h1/server/request.ts'
import type { EdgeResponse } from '../src/dataplane/h1/server/response.ts'
import { waitFor } from './helpers/wait.ts'

interface Harness {
  port: number
  server: EdgeH1Server
  /** Responses the test holds open (by request path). */
  held: Map<string, EdgeResponse>
  handedOff: Array<{ rest: string }>
  close(): Promise<void>
}

async function start(opts: Partial<EdgeH1Options> = {}): Promise<Harness> {
  const held = new Map<string, EdgeResponse>()
  const handedOff: Array<{ rest: string }> = []
  const server = new EdgeH1Server({
    maxHeaderSize: 8192,
    maxHeadersCount: 50,
    headersTimeoutMs: 10_000,
    keepAliveTimeoutMs: 60_000,
    onRequest: (req: EdgeRequest, res: EdgeResponse) => {
      if (req.url.startsWith('/hold')) {
        held.set(req.url, res)
        return
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(req.url.length) })
      res.end(req.url)
    },
    handOff: (socket, rest) => {
      handedOff.push({ rest: rest?.toString('latin1') ?? '' })
      socket.destroy()
    },
    onHeadersTimeout: (socket) => socket.destroy(),
    ...opts,
  })
  const front = net.createServer({ pauseOnConnect: true }, (s) => server.accept(s, undefined))
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', () => r()))
  return {
    port: (front.address() as AddressInfo).port,
    server,
    held,
    handedOff,
    close: async () => {
      server.closeAll()
      await new Promise<void>((r) => front.close(() => r()))
    },
  }
}

/** A client connection that collects what it receives and notes when the server closes it. */
function client(port: number): { socket: net.Socket; text: () => string; closed: () => boolean } {
  const socket = net.connect(port, '127.0.0.1')
  let text = ''
  let closed = false
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')))
  socket.on('close', () => (closed = true))
  socket.on('error', () => {})
  return { socket, text: () => text, closed: () => closed }
}

const GET = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`

t.test('an idle keep-alive connection is closed after the keep-alive timeout, a fresh one is not', async (t) => {
  const short = await start({ keepAliveTimeoutMs: 300 })
  const long = await start({ keepAliveTimeoutMs: 60_000 })
  t.teardown(async () => {
    await short.close()
    await long.close()
  })
  const a = client(short.port)
  const b = client(long.port)
  a.socket.write(GET('/x'))
  b.socket.write(GET('/x'))
  await waitFor("a.text().endsWith('/x') && b.text().endsWith('/x')", () => a.text().endsWith('/x') && b.text().endsWith('/x'))
  await waitFor('a.closed()', () => a.closed())
  t.ok(a.closed(), 'the short keep-alive connection was closed while idle')
  t.notOk(b.closed(), 'the long one is still open at that point')
  t.equal(short.server.connections.size, 0, 'and forgotten by the server')
})

t.test('close(): idle connections end at once; a response in progress is the last on its connection', async (t) => {
  const h = await start()
  t.teardown(() => h.close())
  const idle = client(h.port)
  const busy = client(h.port)
  idle.socket.write(GET('/first'))
  busy.socket.write(GET('/hold-1'))
  await waitFor("idle.text().endsWith('/first') && h.held.has('/hold-1')", () => idle.text().endsWith('/first') && h.held.has('/hold-1'))
  h.server.close()
  await waitFor('idle.closed()', () => idle.closed())
  t.ok(idle.closed(), 'the idle connection is closed')
  t.notOk(busy.closed(), 'the busy one is not cut')
  const res = h.held.get('/hold-1')!
  res.writeHead(200, { 'content-length': '4' })
  res.end('done')
  await waitFor('busy.closed()', () => busy.closed())
  t.match(busy.text(), /^HTTP\/1\.1 200 OK\r\n/)
  t.match(busy.text(), /connection: close\r\n/, 'its response says the connection closes')
  t.ok(busy.text().endsWith('done'), 'and arrives whole before the close')
})

t.test('a hand-off gets exactly the bytes not yet used, after the answered requests', async (t) => {
  const h = await start()
  t.teardown(() => h.close())
  const c = client(h.port)
  const post = 'POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc'
  c.socket.write(GET('/one') + GET('/two') + post + GET('/three'))
  await waitFor('h.handedOff.length === 1', () => h.handedOff.length === 1)
  t.same(h.handedOff, [{ rest: post + GET('/three') }])
  await waitFor('c.closed()', () => c.closed())
  t.equal(c.text().match(/HTTP\/1\.1 200/g)?.length, 2, 'the two requests before it were answered')
})

t.test('a request that waits behind one in progress is answered after it, in order', async (t) => {
  const h = await start()
  t.teardown(() => h.close())
  const c = client(h.port)
  c.socket.write(GET('/hold-a') + GET('/after'))
  await waitFor("h.held.has('/hold-a')", () => h.held.has('/hold-a'))
  t.equal(c.text(), '', 'nothing is answered while the first is in progress')
  const res = h.held.get('/hold-a')!
  res.writeHead(200, { 'content-length': '1' })
  res.end('A')
  await waitFor("c.text().endsWith('/after')", () => c.text().endsWith('/after'))
  const bodies = c.text().split('\r\n\r\n').slice(1).map((x) => x.split('HTTP/1.1')[0])
  t.same(bodies, ['A', '/after'])
})

t.test('a handler that throws costs its connection, not the process or the next client', async (t) => {
  let calls = 0
  const h = await start({
    onRequest: (req, res) => {
      calls++
      if (req.url === '/boom') throw new Error('bug')
      res.writeHead(200, { 'content-length': '2' })
      res.end('ok')
    },
  })
  t.teardown(() => h.close())
  const bad = client(h.port)
  bad.socket.write(GET('/boom'))
  await waitFor('bad.closed()', () => bad.closed())
  t.ok(bad.closed())
  const good = client(h.port)
  good.socket.write(GET('/fine'))
  await waitFor("good.text().endsWith('ok')", () => good.text().endsWith('ok'))
  t.equal(calls, 2)
})

t.test('a client that goes away while its request is held: the response emits close, unfinished', async (t) => {
  const h = await start()
  t.teardown(() => h.close())
  const c = client(h.port)
  c.socket.write(GET('/hold-gone'))
  await waitFor("h.held.has('/hold-gone')", () => h.held.has('/hold-gone'))
  const res = h.held.get('/hold-gone')!
  let closedUnfinished: boolean | undefined
  res.on('close', () => (closedUnfinished = !res.writableFinished))
  c.socket.destroy()
  await waitFor('closedUnfinished !== undefined', () => closedUnfinished !== undefined)
  t.equal(closedUnfinished, true)
  t.equal(res.destroyed, true)
})
