// The gateway's own HTTP/1.1 upstream client (src/dataplane/h1): the response parser fed at every
// split point, and the keep-alive pool against real TCP servers that script a pod's bytes.
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { PassThrough } from 'node:stream'
import crypto from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { ResponseParser, ResponseParseError } from '../src/dataplane/h1/client/response-parser.ts'
import type { ResponseHeaders, ResponseSink } from '../src/dataplane/h1/client/response-parser.ts'
import { H1Pool } from '../src/dataplane/h1/client/pool.ts'
import { closedPort } from './helpers/activator.ts'
import { waitFor } from './helpers/wait.ts'
import { endpointSlice, get, service, simpleIngress, startTestGateway, tempDir, writeManifest } from './helpers/gateway.ts'

// ---- the parser ----

class Events implements ResponseSink {
  log: string[] = []
  onHead(status: number, text: string, headers: ResponseHeaders): void {
    this.log.push(`head ${status} ${text} ${JSON.stringify(headers)}`)
  }
  onBody(chunk: Buffer): void {
    // Adjacent body pieces are merged: how bytes are split across reads must not matter.
    const last = this.log[this.log.length - 1]
    if (last?.startsWith('body ')) this.log[this.log.length - 1] = last + chunk.toString('latin1')
    else this.log.push(`body ${chunk.toString('latin1')}`)
  }
  onEnd(trailers: ResponseHeaders | null): void {
    this.log.push(`end ${JSON.stringify(trailers)}`)
  }
}

/** Parses `wire` given as the pieces in `parts`; returns the events and the offset after the end in the last piece. */
function parse(parts: Buffer[], headRequest = false, eof = false): { log: string[]; rest: number; keepAlive: boolean } {
  const p = new ResponseParser()
  p.reset(headRequest)
  const ev = new Events()
  let rest = -1
  for (const part of parts) {
    if (p.done) break
    rest = p.execute(part, ev)
  }
  if (eof) p.eof(ev)
  return { log: ev.log, rest, keepAlive: p.keepAlive }
}

function splits(wire: string): Buffer[][] {
  const b = Buffer.from(wire, 'latin1')
  const out: Buffer[][] = [[b], [...b].map((x) => Buffer.from([x]))]
  for (let i = 1; i < b.length; i++) out.push([b.subarray(0, i), b.subarray(i)])
  return out
}

const RESPONSES: Array<{ name: string; wire: string; expect: string[]; keepAlive: boolean; head?: boolean; eof?: boolean }> = [
  {
    name: 'Content-Length',
    wire: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello',
    expect: ['head 200 OK {"content-type":"text/plain","content-length":"5","set-cookie":["a=1","b=2"]}', 'body hello', 'end null'],
    keepAlive: true,
  },
  {
    name: 'chunked with an extension and trailers',
    wire: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nGrpc-Status: 0\r\nX-T:  two words \r\n\r\n',
    expect: ['head 200 OK {"transfer-encoding":"chunked"}', 'body hello, world!!!', 'end {"grpc-status":"0","x-t":"two words"}'],
    keepAlive: true,
  },
  {
    name: 'chunked, no trailers',
    wire: 'HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    expect: ['head 201 Created {"transfer-encoding":"chunked"}', 'body abc', 'end null'],
    keepAlive: true,
  },
  {
    name: '100 Continue and 103 Early Hints before the response',
    wire: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n',
    expect: ['head 204 No Content {}', 'end null'],
    keepAlive: true,
  },
  {
    name: 'HEAD: Content-Length but no body',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n',
    expect: ['head 200 OK {"content-length":"1234"}', 'end null'],
    keepAlive: true,
    head: true,
  },
  {
    name: '304 with a Content-Length',
    wire: 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: "x"\r\n\r\n',
    expect: ['head 304 Not Modified {"content-length":"10","etag":"\\"x\\""}', 'end null'],
    keepAlive: true,
  },
  {
    name: 'no framing: the body runs to the close',
    wire: 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end',
    expect: ['head 200 OK {"content-type":"text/plain"}', 'body until the end', 'end null'],
    keepAlive: false,
    eof: true,
  },
  {
    name: 'Connection: close, no reason phrase',
    wire: 'HTTP/1.1 404\r\nConnection: close\r\nContent-Length: 0\r\n\r\n',
    expect: ['head 404  {"connection":"close","content-length":"0"}', 'end null'],
    keepAlive: false,
  },
  {
    name: 'HTTP/1.0 is not kept alive',
    wire: 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok',
    expect: ['head 200 OK {"content-length":"2"}', 'body ok', 'end null'],
    keepAlive: false,
  },
  {
    name: 'header names in any case, common and not, lower-cased',
    wire: 'HTTP/1.1 200 OK\r\nCONTENT-TYPE: a\r\nContent-Typo: b\r\nX-Request-ID: c\r\nSet-Cookie: d=1\r\nset-cookie: e=2\r\nDATe: x\r\nContent-Length: 0\r\n\r\n',
    expect: ['head 200 OK {"content-type":"a","content-typo":"b","x-request-id":"c","set-cookie":["d=1","e=2"],"date":"x","content-length":"0"}', 'end null'],
    keepAlive: true,
  },
  {
    name: 'repeated equal Content-Lengths',
    wire: 'HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok',
    expect: ['head 200 OK {"content-length":["2, 2","2"]}', 'body ok', 'end null'],
    keepAlive: true,
  },
]

for (const r of RESPONSES) {
  t.test(`parser: ${r.name}, at every split point`, async (t) => {
    const wire = Buffer.from(r.wire, 'latin1')
    for (const parts of splits(r.wire)) {
      const out = parse(parts, r.head, r.eof)
      const label = parts.length === wire.length && parts.length > 2 ? 'byte by byte' : `split at ${parts[0]!.length}`
      t.same(out.log, r.expect, label)
      t.equal(out.keepAlive, r.keepAlive, `${label}: keep-alive`)
      if (!r.eof) t.equal(out.rest, parts[parts.length - 1]!.length, `${label}: consumed exactly the response`)
    }
  })
}

t.test('parser: bytes after the end of a response are left unread', async (t) => {
  const out = parse([Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n', 'latin1')])
  t.same(out.log.slice(-1), ['end null'])
  t.equal(out.rest, 40, 'the offset where the unasked bytes start')
})

const MALFORMED: Array<[string, string, RegExp]> = [
  ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n', /line folding/],
  ['Content-Length and Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', /both Content-Length and Transfer-Encoding/],
  ['differing Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', /differ/],
  ['a signed Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc', /invalid Content-Length/],
  ['chunked not last', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', /invalid Transfer-Encoding/],
  ['a bad status line', 'HTTP/1.1 2OO OK\r\n\r\n', /malformed status line/],
  ['HTTP/2 in a status line', 'HTTP/2.0 200 OK\r\n\r\n', /malformed status line/],
  ['a space in a header name', 'HTTP/1.1 200 OK\r\nX A: 1\r\n\r\n', /invalid character in response header name/],
  ['no colon', 'HTTP/1.1 200 OK\r\nnocolon\r\n\r\n', /malformed response header line/],
  ['a bare LF inside a value', 'HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\nContent-Length: 0\r\n\r\n', /control character/],
  ['NUL in a value', 'HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n', /control character/],
  ['101 without an upgrade', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', /did not ask to upgrade/],
  ['a chunk size that is not hex', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', /missing chunk size/],
  ['a chunk size line ending in LF only', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n', /CRLF/],
  ['chunk data longer than its size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n', /missing CRLF after chunk data/],
  ['a chunk size over 2^48', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000\r\n', /too large/],
]

for (const [name, wire, message] of MALFORMED) {
  t.test(`parser refuses ${name}, however the bytes are split`, async (t) => {
    for (const parts of splits(wire)) {
      t.throws(() => parse(parts), { name: 'Error', message }, `split into ${parts.length} pieces starting with ${parts[0]!.length} bytes`)
    }
    let caught: unknown
    try {
      parse([Buffer.from(wire, 'latin1')])
    } catch (err) {
      caught = err
    }
    t.ok(caught instanceof ResponseParseError && caught.code === 'UND_ERR_PROTOCOL', 'a ResponseParseError, code UND_ERR_PROTOCOL')
  })
}

t.test('parser refuses a response head over 64 KiB, and a body cut short by the close', async (t) => {
  const big = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`
  t.throws(() => parse([Buffer.from(big)]), { message: /larger than 65536 bytes/ })
  t.throws(() => parse([Buffer.from(big.slice(0, 40_000)), Buffer.from(big.slice(40_000))]), { message: /larger than 65536 bytes/ })
  t.throws(() => parse([Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc')], false, true), { message: /closed the connection in the middle of a response/ })
})

// ---- the pool, against scripted pods ----

interface Teardown {
  teardown(fn: () => unknown): void
}

interface Seen {
  head: string
  conn: number
}

/** A TCP server that records each request head and answers with `answer(n, head)` (n counts requests). */
async function scriptedPod(t: Teardown, answer: (n: number, head: string, s: net.Socket) => void): Promise<{ port: number; seen: Seen[]; connections: () => number; closes: () => number }> {
  const seen: Seen[] = []
  let conns = 0
  let closes = 0
  const server = net.createServer((s) => {
    const id = ++conns
    let buf = ''
    s.on('close', () => closes++)
    s.on('error', () => {})
    s.on('data', (d) => {
      buf += d.toString('latin1')
      let i: number
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, i)
        buf = buf.slice(i + 4)
        seen.push({ head, conn: id })
        answer(seen.length, head, s)
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  return { port: (server.address() as AddressInfo).port, seen, connections: () => conns, closes: () => closes }
}

interface Outcome {
  status?: number
  statusText?: string
  headers?: Record<string, unknown>
  body: Buffer
  trailers?: Record<string, unknown>
  error?: Error & { code?: string }
  sent: boolean
}

type Controller = { abort(e: Error): void; pause(): void; resume(): void }

/** Dispatches one request and collects what a handler sees. `onData` may pause, resume or abort. */
function request(pool: H1Pool, opts: { method?: string; path?: string; headers?: string[]; body?: PassThrough } = {}, onData?: (c: Controller, chunk: Buffer, total: number) => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let total = 0
    const out: Outcome = { body: Buffer.alloc(0), sent: false }
    pool.dispatch(
      { method: opts.method ?? 'GET', path: opts.path ?? '/', headers: opts.headers ?? ['host', 'app.example.com'], body: opts.body ?? null },
      {
        onRequestSent: () => (out.sent = true),
        onResponseStart: (_c, status, headers, text) => Object.assign(out, { status, headers, statusText: text }),
        onResponseData: (c, chunk) => {
          chunks.push(chunk)
          total += chunk.length
          onData?.(c, chunk, total)
        },
        onResponseEnd: (_c, trailers) => resolve({ ...out, body: Buffer.concat(chunks), trailers: trailers as Record<string, unknown> }),
        onResponseError: (_c, error) => resolve({ ...out, body: Buffer.concat(chunks), error }),
      },
    )
  })
}

function pool(t: Teardown, port: number, keepAliveTimeoutMs = 4000): H1Pool {
  const p = new H1Pool(`http://127.0.0.1:${port}`, { connectTimeoutMs: 2000, keepAliveTimeoutMs })
  t.teardown(() => p.destroy())
  return p
}

const OK = (body: string): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`

t.test('pool: a kept-alive connection carries request after request, heads written as given', async (t) => {
  const pod = await scriptedPod(t, (n, _h, s) => s.write(OK(`answer ${n}`)))
  const p = pool(t, pod.port)
  const a = await request(p, { path: '/a?x=1', headers: ['host', 'app.example.com', 'X-Trace', 'abc', 'accept', 'text/plain'] })
  const b = await request(p, { method: 'DELETE', path: '/b' })
  t.equal(a.body.toString(), 'answer 1')
  t.equal(b.body.toString(), 'answer 2')
  t.equal(a.status, 200)
  t.ok(a.sent && b.sent, 'onRequestSent reported')
  t.equal(pod.seen[0]!.head, 'GET /a?x=1 HTTP/1.1\r\nhost: app.example.com\r\nX-Trace: abc\r\naccept: text/plain')
  t.equal(pod.seen[1]!.head, 'DELETE /b HTTP/1.1\r\nhost: app.example.com')
  t.equal(pod.connections(), 1, 'one connection for both')
  t.equal(p.connections, 1)
})

t.test('pool: without a Host header the origin is sent as Host', async (t) => {
  const pod = await scriptedPod(t, (_n, _h, s) => s.write(OK('x')))
  const p = pool(t, pod.port)
  await request(p, { headers: ['x-a', '1'] })
  t.equal(pod.seen[0]!.head, `GET / HTTP/1.1\r\nx-a: 1\r\nhost: 127.0.0.1:${pod.port}`)
})

t.test('pool: concurrent requests get a connection each, then share the idle ones', async (t) => {
  const pod = await scriptedPod(t, (n, _h, s) => setTimeout(() => s.write(OK(`r${n}`)), 20))
  const p = pool(t, pod.port)
  const first = await Promise.all([request(p), request(p), request(p)])
  t.same(first.map((o) => o.body.toString()).sort(), ['r1', 'r2', 'r3'])
  t.equal(pod.connections(), 3)
  await Promise.all([request(p), request(p)])
  t.equal(pod.connections(), 3, 'no new connection while idle ones exist')
})

t.test('pool: a response that runs to the close, Connection: close and HTTP/1.0 each end their connection', async (t) => {
  const answers = ['HTTP/1.1 200 OK\r\n\r\nto the close', 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok', 'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok', OK('kept')]
  const pod = await scriptedPod(t, (n, _h, s) => {
    s.write(answers[n - 1]!)
    if (n === 1) s.end()
  })
  const p = pool(t, pod.port)
  t.equal((await request(p)).body.toString(), 'to the close')
  t.equal((await request(p)).body.toString(), 'ok')
  t.equal((await request(p)).body.toString(), 'ok')
  t.equal((await request(p)).body.toString(), 'kept')
  t.same(
    pod.seen.map((s) => s.conn),
    [1, 2, 3, 4],
    'each request after a non-reusable response went on a new connection',
  )
})

t.test('pool: HEAD reads no body and keeps the connection', async (t) => {
  const pod = await scriptedPod(t, (n, head, s) => s.write(head.startsWith('HEAD') ? 'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' : OK(`after ${n}`)))
  const p = pool(t, pod.port)
  const h = await request(p, { method: 'HEAD' })
  t.equal(h.status, 200)
  t.equal(h.body.length, 0)
  t.equal((await request(p)).body.toString(), 'after 2')
  t.equal(pod.connections(), 1)
})

t.test('pool: bytes a pod sends after its response, or while idle, never answer the next request', async (t) => {
  const smuggled = 'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsmuggled!'
  const pod = await scriptedPod(t, (n, _h, s) => {
    if (n === 1) s.write(OK('first') + smuggled) // extra response in the same write
    else if (n === 2) {
      s.write(OK('second'))
      setTimeout(() => s.write(smuggled), 30) // and one while the connection is idle
    } else s.write(OK(`real ${n}`))
  })
  const p = pool(t, pod.port)
  t.equal((await request(p)).body.toString(), 'first')
  t.equal((await request(p)).body.toString(), 'second')
  // The pool must drop the connection that spoke while idle (the pod sees it close) before reuse.
  await waitFor('the pool to drop the connection that spoke while idle', () => pod.closes() === 2)
  const third = await request(p)
  t.equal(third.body.toString(), 'real 3')
  t.same(
    pod.seen.map((s) => s.conn),
    [1, 2, 3],
    'the connection that sent unasked bytes was dropped each time',
  )
})

t.test('pool: a refused connection reports ECONNREFUSED and that nothing was sent', async (t) => {
  const out = await request(pool(t, await closedPort()))
  t.equal(out.error?.code, 'ECONNREFUSED')
  t.equal(out.sent, false)
})

t.test('pool: a pod that closes before answering gives UND_ERR_SOCKET after the request was sent', async (t) => {
  const pod = await scriptedPod(t, (_n, _h, s) => s.destroy())
  const out = await request(pool(t, pod.port))
  t.equal(out.error?.code, 'UND_ERR_SOCKET')
  t.equal(out.sent, true)
  t.equal(out.status, undefined)
})

t.test('pool: a malformed response fails that request and closes its connection', async (t) => {
  const pod = await scriptedPod(t, (n, _h, s) => s.write(n === 1 ? 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab' : OK('fine')))
  const p = pool(t, pod.port)
  const bad = await request(p)
  t.equal(bad.error?.code, 'UND_ERR_PROTOCOL')
  t.match(bad.error?.message, /differ/)
  t.equal((await request(p)).body.toString(), 'fine')
  t.same(
    pod.seen.map((s) => s.conn),
    [1, 2],
  )
})

t.test('pool: a header value with CR or LF, or a character that is not one byte, is refused before anything is sent', async (t) => {
  const pod = await scriptedPod(t, (_n, _h, s) => s.write(OK('x')))
  const p = pool(t, pod.port)
  const crlf = await request(p, { headers: ['host', 'a', 'x-evil', 'a\r\nInjected: yes'] })
  t.equal(crlf.error?.code, 'UND_ERR_INVALID_ARG')
  const wide = await request(p, { headers: ['host', 'a', 'x-price', '5 €'] })
  t.equal(wide.error?.code, 'UND_ERR_INVALID_ARG')
  t.match(wide.error?.message, /above U\+00FF/)
  const latin1 = await request(p, { headers: ['host', 'a', 'x-name', 'Jos\u00e9'] })
  t.equal(latin1.body.toString(), 'x', 'a latin1 value still goes through')
  t.equal(pod.seen.length, 1)
  t.equal(pod.seen[0]!.head.split('\r\n')[2], 'x-name: Jos\u00e9')
})

t.test('pool: abort in the middle of a body closes that connection only', async (t) => {
  const pod = await scriptedPod(t, (n, _h, s) => {
    if (n === 1) s.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n' + 'x'.repeat(1000))
    else s.write(OK('next'))
  })
  const p = pool(t, pod.port)
  const reason = new Error('client gone')
  const out = await request(p, {}, (c) => c.abort(reason))
  t.equal(out.error, reason, 'the handler hears its own abort reason')
  await waitFor('the pod to see its connection closed', () => pod.closes() === 1)
  t.equal((await request(p)).body.toString(), 'next')
})

t.test('pool: pause and resume carry a 4 MiB body intact to a slow reader', async (t) => {
  const body = crypto.randomBytes(4 * 1024 * 1024)
  const pod = await scriptedPod(t, (_n, _h, s) => {
    s.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n`)
    for (let i = 0; i < body.length; i += 100_000) {
      const part = body.subarray(i, i + 100_000)
      s.write(`${part.length.toString(16)}\r\n`)
      s.write(part)
      s.write('\r\n')
    }
    s.write('0\r\nx-sum: done\r\n\r\n')
  })
  let pauses = 0
  const out = await request(pool(t, pod.port), {}, (c) => {
    pauses++
    c.pause()
    setTimeout(() => c.resume(), 1)
  })
  t.ok(pauses > 1)
  t.equal(out.body.length, body.length)
  t.ok(out.body.equals(body), 'same bytes in the same order')
  t.same(out.trailers, { 'x-sum': 'done' })
})

// ---- request bodies (Content-Length) ----

/** A node:http pod that answers each request with its body's length and digest, after reading it all. */
async function digestPod(t: Teardown, early?: (req: http.IncomingMessage) => boolean): Promise<{ port: number; connections: () => number; bodies: number[] }> {
  let conns = 0
  const bodies: number[] = []
  const server = http.createServer((req, res) => {
    if (early?.(req)) {
      // Answers on the head alone, as a pod refusing a too-large upload does.
      res.writeHead(413, { 'content-length': '8' }).end('too big\n')
      return
    }
    const h = crypto.createHash('sha256')
    let n = 0
    req.on('data', (d: Buffer) => {
      n += d.length
      h.update(d)
    })
    req.on('end', () => {
      bodies.push(n)
      res.end(`${n} ${h.digest('hex')}`)
    })
  })
  server.on('connection', () => conns++)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  t.teardown(() => server.closeAllConnections())
  return { port: (server.address() as AddressInfo).port, connections: () => conns, bodies }
}

/** A client's body as a stream, written in pieces as a client would send it. */
function streamed(data: Buffer, piece = 16 * 1024): PassThrough {
  const body = new PassThrough()
  let off = 0
  const more = (): void => {
    while (off < data.length) {
      const ok = body.write(data.subarray(off, off + piece))
      off += piece
      if (!ok) return void body.once('drain', more)
    }
    body.end()
  }
  more()
  return body
}

const digest = (b: Buffer): string => `${b.length} ${crypto.createHash('sha256').update(b).digest('hex')}`

t.test('pool: a Content-Length body streams to the pod intact, and the connection is kept for the next request', async (t) => {
  const pod = await digestPod(t)
  const p = pool(t, pod.port)
  for (const size of [5, 4096, 3 * 1024 * 1024]) {
    const data = crypto.randomBytes(size)
    const out = await request(p, { method: 'POST', headers: ['host', 'app.example.com', 'content-length', String(size)], body: streamed(data) })
    t.equal(out.body.toString(), digest(data), `${size} bytes arrived as sent`)
  }
  const after = await request(p)
  t.equal(after.body.toString().split(' ')[0], '0', 'a bodyless request after them is read as bodyless')
  t.equal(pod.connections(), 1, 'all on one connection')
})

t.test('pool: a response that ends before its body is written closes that connection, and the rest of the body is read off the client', async (t) => {
  const pod = await digestPod(t, (req) => req.url === '/early')
  const p = pool(t, pod.port)
  const body = new PassThrough()
  body.write(Buffer.alloc(1024, 1)) // the rest comes only after the answer
  const out = await request(p, { method: 'POST', path: '/early', headers: ['host', 'app.example.com', 'content-length', String(1024 * 1024)], body })
  t.equal(out.status, 413)
  body.end(Buffer.alloc(1024 * 1024 - 1024, 2))
  await waitFor('the client body to be read to its end', () => body.readableEnded)
  const next = await request(p, { method: 'POST', headers: ['host', 'app.example.com', 'content-length', '3'], body: streamed(Buffer.from('abc')) })
  t.equal(next.body.toString(), digest(Buffer.from('abc')), 'the next request is read as itself')
  t.equal(pod.connections(), 2, 'it went on a new connection')
})

t.test('pool: a refused connection has read none of the body, so the request may go elsewhere', async (t) => {
  const body = new PassThrough()
  body.write('payload')
  const out = await request(pool(t, await closedPort()), { method: 'POST', headers: ['host', 'a', 'content-length', '7'], body })
  t.equal(out.error?.code, 'ECONNREFUSED')
  t.equal(out.sent, false)
  t.equal(body.readableDidRead, false, 'nothing of the body was read')
})

t.test('pool: close() lets a busy request finish, then ends its connection', async (t) => {
  const pod = await scriptedPod(t, (_n, _h, s) => setTimeout(() => s.write(OK('late')), 50))
  const p = pool(t, pod.port)
  const pending = request(p)
  await waitFor('the request to reach the pod', () => pod.seen.length === 1)
  const closed = p.close()
  t.equal((await pending).body.toString(), 'late')
  await closed
  t.equal(p.connections, 0)
  const after = await request(p)
  t.equal(after.error?.code, 'UND_ERR_CLOSED')
})

t.test('pool: a connection idle past the pod’s Keep-Alive timeout is closed, not reused', async (t) => {
  const pod = await scriptedPod(t, (n, _h, s) => s.write(`HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: ${`r${n}`.length}\r\n\r\nr${n}`))
  const p = pool(t, pod.port, 60_000)
  t.equal((await request(p)).body.toString(), 'r1')
  t.equal((await request(p)).body.toString(), 'r2', 'reused while fresh')
  // timeout=1 means the pod may close it after 1 s; the pool stops using it by then. The pool's own
  // idle limit is 60 s, so a close within the wait is the pod's Keep-Alive header at work.
  await waitFor('the pool to close the idle connection', () => pod.closes() >= 1, 5000)
  t.equal(pod.closes(), 1, 'the idle sweep closed it')
  t.equal(p.connections, 0)
  t.equal((await request(p)).body.toString(), 'r3')
  t.same(
    pod.seen.map((s) => s.conn),
    [1, 1, 2],
  )
})

t.test('through the gateway: a pod’s malformed response is a 502 upstream-bad-response naming the problem, and the next request is fine', async (t) => {
  const pod = await scriptedPod(t, (n, _h, s) => s.write(n === 1 ? 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' : OK('fine')))
  const dir = tempDir('edge-h1-')
  writeManifest(dir, 'app.yaml', [service('app', [{ name: 'http', port: 80 }]), endpointSlice('app', [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1' }], 'default', 'app-slice'), simpleIngress('app', ['app.example.com'], [['app', 100]])])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  const bad = await get(gw.ports.http, 'app.example.com', '/')
  t.equal(bad.status, 502)
  t.equal(bad.headers['x-edge-reason'], 'upstream-bad-response')
  t.match(bad.body, /sent a malformed response: response has both Content-Length and Transfer-Encoding/)
  const good = await get(gw.ports.http, 'app.example.com', '/')
  t.equal(good.status, 200)
  t.equal(good.body, 'fine')
  t.same(
    pod.seen.map((s) => s.conn),
    [1, 2],
    'the second request went on a new connection',
  )
})

t.test('pool: a late resume() from a finished request does not resume the next request on that connection', async (t) => {
  const pod = await scriptedPod(t, (n, _h, s) => {
    if (n === 1) return void s.write(OK('one'))
    s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst')
    setTimeout(() => s.write('later'), 50)
  })
  const p = pool(t, pod.port)
  let first: Controller | undefined
  const one = await request(p, {}, (c) => {
    first = c
    c.pause() // left paused: the response ends in the same read
  })
  t.equal(one.body.toString(), 'one')
  let second: Controller | undefined
  let pieces = 0
  const two = request(p, {}, (c) => {
    pieces++
    if (pieces === 1) {
      second = c
      c.pause()
      first!.resume() // stale: must not touch the connection, now request 2's
    }
  })
  await new Promise((r) => setTimeout(r, 200))
  t.equal(pieces, 1, 'request 2 stayed paused after the first piece')
  second!.resume()
  t.equal((await two).body.toString(), 'firstlater')
  t.equal(pod.connections(), 1, 'both on one connection')
})
