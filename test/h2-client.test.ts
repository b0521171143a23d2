// The gateway's HTTP/2 client to h2c pods (src/dataplane/h2/client.ts) against real node:http2
// servers: what the Exchange is told, in order, for answers, trailers, bodies, refusals, resets,
// a GOAWAY and an abort.
import t from 'tap'
import http2 from 'node:http2'
import { PassThrough } from 'node:stream'
import type { AddressInfo } from 'node:net'
import type { Dispatcher } from 'undici'
import { H2Client } from '../src/dataplane/h2/client.ts'
import { closedPort } from './helpers/activator.ts'
import { waitFor } from './helpers/wait.ts'

type Controller = Parameters<NonNullable<Dispatcher.DispatchHandler['onRequestStart']>>[0]

/** Records what a dispatch reports, and resolves when it ends one way or the other. */
class Recorder implements Dispatcher.DispatchHandler {
  log: string[] = []
  status = 0
  headers: Record<string, unknown> = {}
  body = ''
  trailers: Record<string, unknown> = {}
  error: (Error & { code?: string }) | undefined
  controller: Controller | undefined
  private finish!: () => void
  readonly ended = new Promise<void>((resolve) => (this.finish = resolve))
  onResponseDataHook: ((c: Controller) => void) | undefined

  onRequestStart(c: Controller): void {
    this.controller = c
    this.log.push('start')
  }
  onRequestSent(): void {
    this.log.push('sent')
  }
  onResponseStart(_c: Controller, status: number, headers: Record<string, unknown>): void {
    this.log.push('response')
    this.status = status
    this.headers = headers
  }
  onResponseData(c: Controller, chunk: Buffer): void {
    if (!this.log.includes('data')) this.log.push('data')
    this.body += chunk.toString()
    this.onResponseDataHook?.(c)
  }
  onResponseEnd(_c: Controller, trailers: Record<string, unknown>): void {
    this.log.push('end')
    this.trailers = trailers
    this.finish()
  }
  onResponseError(_c: Controller, err: Error): void {
    this.log.push('error')
    this.error = err
    this.finish()
  }
}

interface H2Server {
  origin: string
  server: http2.Http2Server
  /** Sessions the server has seen, and the ones still open. */
  sessions: number
  open: Set<http2.ServerHttp2Session>
}

async function h2server(handler: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void): Promise<H2Server> {
  const server = http2.createServer()
  const out: H2Server = { origin: '', server, sessions: 0, open: new Set() }
  server.on('session', (session) => {
    out.sessions++
    out.open.add(session)
    session.once('close', () => out.open.delete(session))
  })
  server.on('stream', handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  out.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return out
}

function closeServer(server: http2.Http2Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

const OPTS = { connectTimeoutMs: 2000 }

t.test('a request: pseudo-headers from the request line and Host, headers, body and trailers back', async (t) => {
  let seen: http2.IncomingHttpHeaders = {}
  let received = ''
  const s = await h2server((stream, headers) => {
    seen = headers
    stream.setEncoding('utf8')
    stream.on('data', (d: string) => (received += d))
    stream.on('end', () => {
      stream.respond({ ':status': 201, 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' }, { waitForTrailers: true })
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
      stream.end(`got ${received}`)
    })
  })
  t.teardown(() => closeServer(s.server))
  const client = new H2Client(s.origin, OPTS)
  t.teardown(() => client.destroy())
  const body = new PassThrough()
  const r = new Recorder()
  client.dispatch({ method: 'POST', path: '/p?q=1', headers: ['Host', 'app.example.com', 'X-Two', 'a', 'x-two', 'b', 'te', 'trailers'], body }, r)
  body.end('hello')
  await r.ended
  t.same(r.log, ['start', 'sent', 'response', 'data', 'end'])
  t.equal(seen[':method'], 'POST')
  t.equal(seen[':path'], '/p?q=1')
  t.equal(seen[':authority'], 'app.example.com', 'Host becomes :authority')
  t.equal(seen[':scheme'], 'http')
  t.equal(seen['x-two'], 'a, b', 'repeated headers both arrive')
  t.equal(seen.te, 'trailers')
  t.equal(r.status, 201)
  t.same(r.headers['set-cookie'], ['a=1', 'b=2'])
  t.notOk(Object.keys(r.headers).some((k) => k.startsWith(':')), 'no pseudo-headers in the response headers')
  t.equal(r.body, 'got hello')
  t.same(r.trailers, { 'grpc-status': '0' })
})

t.test('requests share one session; a GOAWAY makes the next request open a new one', async (t) => {
  const s = await h2server((stream) => {
    stream.respond({ ':status': 200 })
    stream.end('ok')
  })
  t.teardown(() => closeServer(s.server))
  const client = new H2Client(s.origin, OPTS)
  t.teardown(() => client.destroy())
  const run = async (): Promise<Recorder> => {
    const r = new Recorder()
    client.dispatch({ method: 'GET', path: '/', headers: ['host', 'a'] }, r)
    await r.ended
    return r
  }
  const first = await Promise.all([run(), run(), run()])
  t.same(first.map((r) => r.body), ['ok', 'ok', 'ok'])
  t.equal(s.sessions, 1, 'three requests, one session')
  // The pod's session goes away (as a pod shutting down does); the client lets it go once it is
  // done (none of its streams is open), rather than keeping its socket.
  t.equal(client.openSessions, 1)
  const [old] = [...s.open]
  old!.goaway()
  await waitFor('the client to close the session the pod sent a GOAWAY on', () => client.openSessions === 0)
  const after = await run()
  t.equal(after.body, 'ok', 'the request after the GOAWAY is served')
  t.equal(s.sessions, 2, 'on a new session')
})

t.test('a refused connection is an error before anything was sent (safe to retry)', async (t) => {
  const port = await closedPort()
  const client = new H2Client(`http://127.0.0.1:${port}`, OPTS)
  t.teardown(() => client.destroy())
  const r = new Recorder()
  client.dispatch({ method: 'GET', path: '/', headers: ['host', 'a'] }, r)
  await r.ended
  t.same(r.log, ['start', 'error'])
  t.equal(r.error?.code, 'ECONNREFUSED')
})

t.test('a stream the pod resets before answering is an UND_ERR_SOCKET error', async (t) => {
  const s = await h2server((stream) => {
    stream.on('error', () => {}) // the server's side of the reset is reported to it as an error too
    stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
  })
  t.teardown(() => closeServer(s.server))
  const client = new H2Client(s.origin, OPTS)
  t.teardown(() => client.destroy())
  const r = new Recorder()
  client.dispatch({ method: 'GET', path: '/', headers: ['host', 'a'] }, r)
  await r.ended
  t.same(r.log, ['start', 'sent', 'error'])
  t.equal(r.error?.code, 'UND_ERR_SOCKET')
})

t.test('an abort mid-response cancels the stream at the pod and reports the reason once', async (t) => {
  let cancelled: (code: number) => void
  const serverSaw = new Promise<number>((resolve) => (cancelled = resolve))
  const s = await h2server((stream) => {
    stream.respond({ ':status': 200 })
    stream.write('first')
    stream.on('close', () => cancelled(stream.rstCode))
  })
  t.teardown(() => closeServer(s.server))
  const client = new H2Client(s.origin, OPTS)
  t.teardown(() => client.destroy())
  const r = new Recorder()
  const reason = new Error('the client left')
  r.onResponseDataHook = (c) => c.abort(reason)
  client.dispatch({ method: 'GET', path: '/', headers: ['host', 'a'] }, r)
  await r.ended
  t.same(r.log, ['start', 'sent', 'response', 'data', 'error'])
  t.equal(r.error, reason)
  t.ok(r.controller?.aborted)
  t.equal(await serverSaw, http2.constants.NGHTTP2_CANCEL, 'the pod saw the stream cancelled')
})

t.test('headers HTTP/2 forbids are refused with UND_ERR_INVALID_ARG, and the session stays usable', async (t) => {
  const s = await h2server((stream) => {
    stream.respond({ ':status': 204 })
    stream.end()
  })
  t.teardown(() => closeServer(s.server))
  const client = new H2Client(s.origin, OPTS)
  t.teardown(() => client.destroy())
  const bad = new Recorder()
  client.dispatch({ method: 'GET', path: '/', headers: ['host', 'a', 'connection', 'keep-alive'] }, bad)
  await bad.ended
  t.same(bad.log, ['start', 'error'])
  t.equal(bad.error?.code, 'UND_ERR_INVALID_ARG')
  const good = new Recorder()
  client.dispatch({ method: 'GET', path: '/', headers: ['host', 'a'] }, good)
  await good.ended
  t.equal(good.status, 204)
})

t.test('close() lets a stream in flight finish, and refuses new requests', async (t) => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  const s = await h2server((stream) => {
    stream.respond({ ':status': 200 })
    gate.then(() => stream.end('late'))
  })
  t.teardown(() => closeServer(s.server))
  const client = new H2Client(s.origin, OPTS)
  const r = new Recorder()
  client.dispatch({ method: 'GET', path: '/', headers: ['host', 'a'] }, r)
  await new Promise<void>((resolve) => {
    const check = (): void => (r.log.includes('response') ? resolve() : void setImmediate(check))
    check()
  })
  const closed = client.close()
  const refused = new Recorder()
  client.dispatch({ method: 'GET', path: '/', headers: ['host', 'a'] }, refused)
  await refused.ended
  t.equal(refused.error?.code, 'UND_ERR_CLOSED')
  release()
  await r.ended
  await closed
  t.equal(r.body, 'late', 'the stream in flight finished')
})
