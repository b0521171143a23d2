// What an ingress must carry besides plain HTTP/1.1, with real clients and servers: HTTP/2 prior
// knowledge, h2c upstreams, gRPC (unary, bidi streams, trailers, deadlines, cancellation),
// WebSocket splits, TLS with SNI, and per-ingress HTTPS redirects.
import t from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import tls from 'node:tls'
import fs from 'node:fs'
import path from 'node:path'
import * as grpc from '@grpc/grpc-js'
import { WebSocket, WebSocketServer } from 'ws'
import { endpointSlice, get, kingress, service, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import { makeCA, makeCert, tlsSecret } from './helpers/certs.ts'
import { responses } from './helpers/raw.ts'
import type { Gateway } from '../src/gateway.ts'

const closers: Array<() => unknown> = []
t.teardown(async () => {
  for (const c of closers.reverse()) await c()
})

// ---- backends ----

/** An h2c server that reports the protocol version it saw. */
async function startH2cBackend(name: string): Promise<{ port: number; versions: string[] }> {
  const versions: string[] = []
  const server = http2.createServer((req, res) => {
    versions.push(req.httpVersion)
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ backend: name, httpVersion: req.httpVersion, host: req.headers[':authority'] }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  closers.push(() => new Promise((r) => server.close(r)))
  return { port: (server.address() as import('node:net').AddressInfo).port, versions }
}

const passthrough = (b: Buffer): Buffer => b
const echoDef = {
  unary: { path: '/test.Echo/Unary', requestStream: false, responseStream: false, requestSerialize: passthrough, requestDeserialize: passthrough, responseSerialize: passthrough, responseDeserialize: passthrough },
  chat: { path: '/test.Echo/Chat', requestStream: true, responseStream: true, requestSerialize: passthrough, requestDeserialize: passthrough, responseSerialize: passthrough, responseDeserialize: passthrough },
  fail: { path: '/test.Echo/Fail', requestStream: false, responseStream: false, requestSerialize: passthrough, requestDeserialize: passthrough, responseSerialize: passthrough, responseDeserialize: passthrough },
  slow: { path: '/test.Echo/Slow', requestStream: false, responseStream: false, requestSerialize: passthrough, requestDeserialize: passthrough, responseSerialize: passthrough, responseDeserialize: passthrough },
} as const

interface GrpcBackend {
  port: number
  deadlines: number[]
  cancelled: number
}

async function startGrpcBackend(name: string): Promise<GrpcBackend> {
  const state: GrpcBackend = { port: 0, deadlines: [], cancelled: 0 }
  const server = new grpc.Server()
  server.addService(echoDef as unknown as grpc.ServiceDefinition, {
    unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(`${call.request.toString()}-${name}`)),
    chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (d: Buffer) => call.write(Buffer.from(`${d.toString()}-${name}`)))
      call.on('end', () => call.end())
    },
    fail: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb({ code: grpc.status.FAILED_PRECONDITION, details: `no ${name}` }),
    slow: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      const d = call.getDeadline()
      state.deadlines.push(d instanceof Date ? d.getTime() : Number(d))
      const timer = setTimeout(() => cb(null, Buffer.from('late')), 5000)
      call.on('cancelled', () => {
        state.cancelled++
        clearTimeout(timer)
      })
    },
  })
  state.port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))))
  closers.push(() => server.forceShutdown())
  return state
}

function grpcClient(port: number, authority: string): grpc.Client & Record<string, Function> {
  const Ctor = grpc.makeGenericClientConstructor(echoDef as unknown as grpc.ServiceDefinition, 'Echo')
  const c = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': authority }) as grpc.Client & Record<string, Function>
  closers.push(() => c.close())
  return c
}

function unary(c: grpc.Client & Record<string, Function>, method: 'unary' | 'fail' | 'slow', msg: string, opts: grpc.CallOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => c[method]!(Buffer.from(msg), new grpc.Metadata(), opts, (err: grpc.ServiceError | null, res: Buffer) => (err ? reject(err) : resolve(res.toString()))))
}

function httpsGet(port: number, host: string, ca: string, servername = host): Promise<{ status: number; body: string; peerCN: string; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, path: '/', servername, headers: { host }, ca, agent: false }, (res) => {
      const sock = res.socket as tls.TLSSocket
      const peer = sock.getPeerCertificate()
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, peerCN: String(peer.subject?.CN ?? ''), alpn: sock.alpnProtocol }))
    })
    req.on('error', reject)
    req.end()
  })
}

// ---- the gateway ----

let gw: Gateway
let dir: string
let h1: Backend
let h2c: { port: number; versions: string[] }
let grpcBlue: GrpcBackend
let grpcGreen: GrpcBackend
let wsBlue: Backend
let wsGreen: Backend
/** Answers with the request body it read. */
let echo: Backend
let ca: { cert: string; key: string }

function wsServer(b: Backend, name: string): void {
  const wss = new WebSocketServer({ server: b.server })
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`${m} - ${name}`)))
}

t.before(async () => {
  h1 = await startBackend('h1')
  closers.push(() => h1.close())
  h2c = await startH2cBackend('h2c')
  grpcBlue = await startGrpcBackend('blue')
  grpcGreen = await startGrpcBackend('green')
  wsBlue = await startBackend('ws-blue')
  wsGreen = await startBackend('ws-green')
  echo = await startBackend('body-echo', (req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (d: string) => (body += d))
    req.on('end', () => res.end(`echo: ${body}`))
  })
  closers.push(() => echo.close())
  closers.push(() => wsBlue.close(), () => wsGreen.close())
  wsServer(wsBlue, 'blue')
  wsServer(wsGreen, 'green')
  ca = await makeCA()

  const svc = (name: string, port: number, portName: string, appProtocol?: string): unknown[] => [
    service(name, [{ name: portName, port: 80, ...(appProtocol ? { appProtocol } : {}) }]),
    endpointSlice(name, [{ name: portName, port }], [{ ip: '127.0.0.1' }], 'default', `${name}-slice`),
  ]
  const rule = (host: string, splits: Array<[string, number]>, extra: Record<string, unknown> = {}): unknown => ({
    hosts: [host],
    visibility: 'ExternalIP',
    http: { paths: [{ splits: splits.map(([s, p]) => ({ serviceNamespace: 'default', serviceName: s, servicePort: 80, percent: p })), ...extra }] },
  })
  dir = tempDir()
  writeManifest(dir, 'svc.yaml', [
    ...svc('h1', h1.port, 'http'),
    ...svc('body-echo', echo.port, 'http'),
    ...svc('h2c', h2c.port, 'http2'),
    ...svc('h2c-app', h2c.port, 'web', 'kubernetes.io/h2c'),
    ...svc('grpc-blue', grpcBlue.port, 'http2', 'kubernetes.io/h2c'),
    ...svc('grpc-green', grpcGreen.port, 'http2', 'kubernetes.io/h2c'),
    ...svc('ws-blue', wsBlue.port, 'http'),
    ...svc('ws-green', wsGreen.port, 'http'),
    // A WebSocket app behind an h2c-named port: the upgrade must still travel over HTTP/1.1.
    ...svc('ws-h2', wsBlue.port, 'http2'),
  ])
  writeManifest(dir, 'ingress.yaml', [
    kingress('protocols', {
      rules: [
        rule('h1.example.com', [['h1', 100]]),
        rule('body-echo.example.com', [['body-echo', 100]]),
        rule('h2c.example.com', [['h2c', 100]]),
        rule('h2c-app.example.com', [['h2c-app', 100]]),
        rule('grpc.example.com', [['grpc-blue', 100]]),
        rule('grpc-split.example.com', [['grpc-blue', 50], ['grpc-green', 50]]),
        rule('ws-split.example.com', [['ws-blue', 50], ['ws-green', 50]]),
        rule('ws-h2.example.com', [['ws-h2', 100]]),
      ],
    }),
  ])
  const secure = await makeCert(ca, 'secure.example.com')
  const other = await makeCert(ca, 'other.example.com')
  writeManifest(dir, 'tls.yaml', [
    tlsSecret('secure-cert', secure),
    tlsSecret('other-cert', other),
    kingress('secure', { httpOption: 'Redirected', tls: [{ hosts: ['secure.example.com'], secretName: 'secure-cert', secretNamespace: 'default' }], rules: [rule('secure.example.com', [['h1', 100]])] }),
    kingress('other', { httpOption: 'Enabled', tls: [{ hosts: ['other.example.com'], secretName: 'other-cert', secretNamespace: 'default' }], rules: [rule('other.example.com', [['h1', 100]])] }),
  ])
  gw = await startTestGateway(dir)
  closers.push(() => gw.close())
})

t.test('HTTP/2 prior knowledge (h2c) on the public port, to HTTP/1.1 and h2c backends', async (t) => {
  const session = http2.connect(`http://127.0.0.1:${gw.ports.http}`)
  t.teardown(() => session.close())
  const call = (authority: string): Promise<{ status: number; body: Record<string, string> }> =>
    new Promise((resolve, reject) => {
      const s = session.request({ ':path': '/x', ':authority': authority })
      let status = 0
      let body = ''
      s.on('response', (h) => (status = Number(h[':status'])))
      s.on('data', (c) => (body += c))
      s.on('end', () => resolve({ status, body: JSON.parse(body) }))
      s.on('error', reject)
    })
  const a = await call('h1.example.com')
  t.equal(a.status, 200)
  t.equal(a.body.backend, 'h1', 'an h2c client reaches an HTTP/1.1 backend')
  const b = await call('h2c.example.com')
  t.equal(b.body.httpVersion, '2.0', 'a port named http2 is spoken to in h2c')
  const c = await call('h2c-app.example.com')
  t.equal(c.body.httpVersion, '2.0', 'appProtocol kubernetes.io/h2c is spoken to in h2c')
})

t.test('HTTP/2 Expect: 100-continue: 100 once the request may go on, then the body reaches the pod; a refused request gets its answer and no 100', async (t) => {
  const session = http2.connect(`http://127.0.0.1:${gw.ports.http}`)
  t.teardown(() => session.close())
  const call = (authority: string): Promise<{ events: string[]; status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const s = session.request({ ':method': 'POST', ':path': '/up', ':authority': authority, expect: '100-continue', 'content-length': '5' })
      const events: string[] = []
      let status = 0
      let body = ''
      s.setEncoding('utf8')
      // The body is sent only when the gateway says go on, as a client waiting for 100 does.
      s.on('continue', () => {
        events.push('100')
        s.end('hello')
      })
      s.on('response', (h) => {
        status = Number(h[':status'])
        events.push(String(status))
      })
      s.on('data', (c: string) => (body += c))
      s.on('end', () => resolve({ events, status, body }))
      s.on('error', reject)
    })
  const ok = await call('body-echo.example.com')
  t.same(ok.events, ['100', '200'], '100 Continue, then the answer')
  t.equal(ok.body, 'echo: hello', 'the body sent after the 100 reached the pod')
  const refused = await call('nowhere.example.com')
  t.same(refused.events, ['404'], 'no 100 for a request that goes nowhere')
  t.match(refused.body, /nowhere\.example\.com/)
})

t.test('an HTTP/1.1 client reaches an h2c backend over HTTP/2 (Knative basics/http2)', async (t) => {
  const r = await get(gw.ports.http, 'h2c.example.com')
  t.equal(r.status, 200)
  t.equal(r.json<{ httpVersion: string }>().httpVersion, '2.0')
  t.equal(r.json<{ host: string }>().host, 'h2c.example.com', 'the :authority is the client host')
})

t.test('gRPC unary through the gateway, and error trailers reach the client', async (t) => {
  const c = grpcClient(gw.ports.http, 'grpc.example.com')
  t.equal(await unary(c, 'unary', 'ping'), 'ping-blue')
  const err = await unary(c, 'fail', 'x').then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  )
  t.equal(err?.code, grpc.status.FAILED_PRECONDITION, 'grpc-status from the trailers')
  t.equal(err?.details, 'no blue', 'grpc-message from the trailers')
})

t.test('gRPC bidirectional stream: 100 round trips on one stream', async (t) => {
  const c = grpcClient(gw.ports.http, 'grpc.example.com')
  const stream = c.chat!() as grpc.ClientDuplexStream<Buffer, Buffer>
  const got: string[] = []
  await new Promise<void>((resolve, reject) => {
    let i = 0
    stream.on('data', (d: Buffer) => {
      got.push(d.toString())
      if (++i === 100) stream.end()
      else stream.write(Buffer.from(`m${i}`))
    })
    stream.on('end', () => resolve())
    stream.on('error', reject)
    stream.write(Buffer.from('m0'))
  })
  t.same(got, Array.from({ length: 100 }, (_, i) => `m${i}-blue`))
})

t.test('gRPC 50/50 split: both seen across new streams, each stream pinned to one backend', async (t) => {
  const c = grpcClient(gw.ports.http, 'grpc-split.example.com')
  const seen = new Set<string>()
  for (let n = 0; n < 30; n++) {
    const stream = c.chat!() as grpc.ClientDuplexStream<Buffer, Buffer>
    const replies: string[] = []
    await new Promise<void>((resolve, reject) => {
      let i = 0
      stream.on('data', (d: Buffer) => {
        replies.push(d.toString())
        if (++i === 10) stream.end()
        else stream.write(Buffer.from(`s${i}`))
      })
      stream.on('end', () => resolve())
      stream.on('error', reject)
      stream.write(Buffer.from('s0'))
    })
    const backends = new Set(replies.map((r) => r.split('-').pop()))
    t.equal(backends.size, 1, `stream ${n} stayed on one backend`)
    seen.add([...backends][0]!)
  }
  t.same([...seen].sort(), ['blue', 'green'], 'both sides of the split were used')
})

t.test('gRPC deadlines reach the backend, and a cancelled call is cancelled upstream', async (t) => {
  const c = grpcClient(gw.ports.http, 'grpc.example.com')
  const err = await unary(c, 'slow', 'x', { deadline: Date.now() + 300 }).then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  )
  t.equal(err?.code, grpc.status.DEADLINE_EXCEEDED)
  t.equal(grpcBlue.deadlines.length, 1, 'the backend saw the call')
  t.ok(Number.isFinite(grpcBlue.deadlines[0]!), 'with a deadline (grpc-timeout passed through)')
  await waitFor('the backend to see the cancellation', () => grpcBlue.cancelled >= 1)
  t.pass('cancelled upstream')
})

t.test('WebSocket: a 50/50 split across connections, each pinned to its backend', async (t) => {
  const seen = new Set<string>()
  for (let n = 0; n < 40; n++) {
    const replies = await new Promise<string[]>((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${gw.ports.http}/`, { headers: { host: 'ws-split.example.com' } })
      const got: string[] = []
      ws.on('open', () => ws.send('0'))
      ws.on('message', (m) => {
        got.push(m.toString())
        if (got.length === 5) {
          ws.close()
          resolve(got)
        } else ws.send(String(got.length))
      })
      ws.on('error', reject)
    })
    const sides = new Set(replies.map((r) => r.split(' - ')[1]))
    t.equal(sides.size, 1, `connection ${n} stayed on one backend`)
    seen.add([...sides][0]!)
  }
  t.same([...seen].sort(), ['blue', 'green'])
})

t.test('WebSocket to a backend whose port is h2c-named still upgrades over HTTP/1.1', async (t) => {
  const reply = await new Promise<string>((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.ports.http}/`, { headers: { host: 'ws-h2.example.com' } })
    ws.on('open', () => ws.send('hi'))
    ws.on('message', (m) => {
      resolve(m.toString())
      ws.close()
    })
    ws.on('error', reject)
  })
  t.equal(reply, 'hi - blue')
})

t.test('TLS: SNI picks each host its own certificate, verified against the test CA; ALPN offers h2', async (t) => {
  const a = await httpsGet(gw.ports.https, 'secure.example.com', ca.cert)
  t.equal(a.status, 200)
  t.equal(a.peerCN, 'secure.example.com')
  t.equal(JSON.parse(a.body).backend, 'h1')
  const b = await httpsGet(gw.ports.https, 'other.example.com', ca.cert)
  t.equal(b.peerCN, 'other.example.com')
  const session = http2.connect(`https://127.0.0.1:${gw.ports.https}`, { ca: ca.cert, servername: 'secure.example.com' })
  t.teardown(() => session.close())
  const status = await new Promise<number>((resolve, reject) => {
    const s = session.request({ ':path': '/', ':authority': 'secure.example.com' })
    s.on('response', (h) => resolve(Number(h[':status'])))
    s.on('error', reject)
    s.resume()
  })
  t.equal(status, 200, 'HTTP/2 over TLS (ALPN h2)')
  t.equal(session.alpnProtocol, 'h2')
})

t.test('HTTP/1.1 over TLS (ALPN http/1.1 or none): pipelined requests, a body, keep-alive and wss, in order', async (t) => {
  // An app that echoes what it got, and how the gateway says it was reached.
  const echo = await startBackend('echo', (req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => res.end(`${req.method} ${req.url} [${body}] ${req.headers['x-forwarded-proto']}`))
  })
  t.teardown(() => echo.close())
  writeManifest(dir, 'tls-echo.yaml', [
    service('echo', [{ name: 'http', port: 80 }]),
    endpointSlice('echo', [{ name: 'http', port: echo.port }], [{ ip: '127.0.0.1' }], 'default', 'echo-slice'),
    kingress('echo', { rules: [{ hosts: ['echo.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'echo', servicePort: 80, percent: 100 }] }] } }] }),
  ])
  await waitFor('echo.example.com served', async () => (await get(gw.ports.http, 'echo.example.com')).status === 200)
  for (const alpn of [['http/1.1'], undefined]) {
    const text = await new Promise<string>((resolve, reject) => {
      // SNI other.example.com picks a certificate; the Host header picks the route.
      const s = tls.connect({ host: '127.0.0.1', port: gw.ports.https, servername: 'other.example.com', ca: ca.cert, ALPNProtocols: alpn }, () => {
        t.equal(s.alpnProtocol, alpn ? 'http/1.1' : false, `ALPN ${alpn ? 'http/1.1' : 'none'}`)
        s.write('GET /one HTTP/1.1\r\nHost: echo.example.com\r\n\r\nPOST /two HTTP/1.1\r\nHost: echo.example.com\r\nContent-Length: 5\r\n\r\nhello')
        s.write('GET /three HTTP/1.1\r\nHost: echo.example.com\r\nConnection: close\r\n\r\n')
      })
      let out = ''
      s.setEncoding('latin1')
      s.on('data', (d: string) => (out += d))
      s.on('end', () => resolve(out))
      s.on('error', reject)
    })
    t.same(responses(text).map((r) => [r.status, r.body]), [
      [200, 'GET /one [] https'],
      [200, 'POST /two [hello] https'],
      [200, 'GET /three [] https'],
    ], 'three answers on one connection, in order, each its own; the pod is told https')
  }
  // ws hands its options to tls.connect, servername (SNI) included, though its types do not list it.
  const wsOptions = { headers: { host: 'ws-split.example.com' }, servername: 'other.example.com', ca: ca.cert }
  const ws = new WebSocket(`wss://127.0.0.1:${gw.ports.https}/`, wsOptions)
  const reply = await new Promise<string>((resolve, reject) => {
    ws.on('open', () => ws.send('hi'))
    ws.on('message', (m) => {
      resolve(m.toString())
      ws.close()
    })
    ws.on('error', reject)
  })
  t.match(reply, /^hi - (blue|green)$/, 'a WebSocket over TLS')
})

t.test('TLS: an unknown SNI name fails only its handshake; the listener keeps serving', async (t) => {
  const err = await httpsGet(gw.ports.https, 'unknown.example.com', ca.cert).then(
    () => undefined,
    (e: Error) => e,
  )
  t.ok(err, 'the handshake for an unknown name fails')
  t.equal((await httpsGet(gw.ports.https, 'secure.example.com', ca.cert)).status, 200, 'others still served')
})

t.test('TLS: a changed Secret is served without a restart', async (t) => {
  const renewed = await makeCert(ca, 'other.example.com')
  const before = await new Promise<string>((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: gw.ports.https, servername: 'other.example.com', ca: ca.cert }, () => {
      resolve(s.getPeerCertificate().fingerprint256)
      s.end()
    })
    s.on('error', reject)
  })
  const text = fs.readFileSync(path.join(dir, 'tls.yaml'), 'utf8')
  const oldB64 = /name: other-cert[\s\S]*?tls.crt: (\S+)/.exec(text)
  t.ok(oldB64, 'found the secret in the manifest')
  writeManifest(dir, 'tls-renewed.yaml', [])
  fs.writeFileSync(
    path.join(dir, 'tls.yaml'),
    text
      .replace(/(name: other-cert[\s\S]*?tls.crt: )\S+/, `$1${Buffer.from(renewed.cert).toString('base64')}`)
      .replace(/(name: other-cert[\s\S]*?tls.key: )\S+/, `$1${Buffer.from(renewed.key).toString('base64')}`),
  )
  await waitFor('the renewed certificate to be served', async () => {
    const fp = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: gw.ports.https, servername: 'other.example.com', ca: ca.cert }, () => {
        resolve(s.getPeerCertificate().fingerprint256)
        s.end()
      })
      s.on('error', () => resolve(before))
    })
    return fp !== before
  })
  t.equal((await httpsGet(gw.ports.https, 'other.example.com', ca.cert)).status, 200)
})

t.test('httpOption: Redirected answers plain HTTP with 301 to https; Enabled serves both', async (t) => {
  const r = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: gw.ports.http, path: '/a?b=c', headers: { host: 'secure.example.com' } }, resolve).on('error', reject)
  })
  r.resume()
  t.equal(r.statusCode, 301)
  t.equal(r.headers.location, 'https://secure.example.com/a?b=c')
  t.equal(r.headers['x-edge-reason'], 'https-redirect')
  t.equal((await get(gw.ports.http, 'other.example.com')).status, 200, 'Enabled: plain HTTP is served')
  t.equal((await get(gw.ports.local, 'secure.example.com')).status, 200, 'the cluster-local listener never redirects')
})
