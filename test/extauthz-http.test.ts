// External authorization with a real HTTP authorizer (--extauthz-protocol http), as Envoy's
// http_service with Kourier's settings: the client's method to <authorizer><prefix><path>, with Host,
// Authorization, Content-Length and the body, Kourier's `client` header and the headers allowed by
// option; 200 allows (allowed upstream headers go to the pod), 5xx is no decision, anything else is
// the client's answer.
import t from 'tap'
import fs from 'node:fs'
import http2 from 'node:http2'
import path from 'node:path'
import { get, kingress, serviceFor, startBackend, startTestGateway, tempDir, writeManifest } from './helpers/gateway.ts'
import { startHttpAuthorizer } from './helpers/authorizers.ts'
import { closedPort } from './helpers/activator.ts'
import { parseConfig } from '../src/config.ts'
import { makeCA, makeCert } from './helpers/certs.ts'

const pod = await startBackend('pod')
const authz = await startHttpAuthorizer()
t.teardown(async () => {
  await authz.close()
  await pod.close()
})
const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  ...serviceFor('app', pod),
  kingress('app', { rules: [{ hosts: ['app.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }] }),
])
const gw = await startTestGateway(dir, [
  '--extauthz-host', `127.0.0.1:${authz.port}`,
  '--extauthz-protocol', 'http',
  '--extauthz-path-prefix', '/check',
  '--extauthz-allowed-headers', 'Cookie',
  '--extauthz-allowed-upstream-headers', 'x-user',
])
t.teardown(() => gw.close())

t.test('allowed: the authorizer got the request\'s method, path and allowed headers; the pod gets the allowed answer headers', async (t) => {
  const r = await get(gw.ports.http, 'app.example.com', '/orders?id=7', { authorization: 'Basic dTpw', cookie: 'session=1', 'x-secret': 'not for the authorizer' })
  t.equal(r.status, 200)
  const asked = authz.seen.at(-1)!
  t.equal(asked.method, 'GET')
  t.equal(asked.url, '/check/orders?id=7', 'the path prefix, then the original target')
  t.match(asked.headers, { host: 'app.example.com', authorization: 'Basic dTpw', cookie: 'session=1', client: 'edge-gateway' })
  t.equal(asked.headers['x-secret'], undefined, 'only the allowed headers go to an HTTP authorizer')
  const seenByPod = r.json().headers
  t.equal(seenByPod['x-user'], 'bob', 'an allowed upstream header')
  t.equal(seenByPod['x-other'], undefined, 'a header not allowed upstream stays with the authorizer')
  t.equal(seenByPod.authorization, undefined, 'x-envoy-auth-headers-to-remove took the credentials off')
  t.equal(seenByPod.cookie, 'session=1')
})

t.test('a body goes to the authorizer with its length', async (t) => {
  const r = await get(gw.ports.http, 'app.example.com', '/upload', { 'content-type': 'text/plain' }, 'POST', 'hello')
  t.equal(r.status, 200)
  t.match(authz.seen.at(-1)!, { method: 'POST', url: '/check/upload', body: 'hello', headers: { 'content-length': '5' } })
})

t.test('denied: the authorizer\'s status, headers and body are the answer', async (t) => {
  const before = pod.seen.length
  const r = await get(gw.ports.http, 'app.example.com', '/deny')
  t.equal(r.status, 403)
  t.equal(r.headers['content-type'], 'application/json')
  t.equal(r.headers['www-authenticate'], 'Basic realm="test"')
  t.same(r.headers['set-cookie'], ['a=1', 'b=2'])
  t.equal(r.headers['x-edge-reason'], 'extauthz-denied')
  t.equal(r.body, '{"error":"forbidden"}')
  t.equal(pod.seen.length, before)
})

t.test('a denial the authorizer sent chunked on a kept-alive connection reaches HTTP/1.1 and HTTP/2 clients with one framing of its own', async (t) => {
  const r = await get(gw.ports.http, 'app.example.com', '/deny-chunked')
  t.equal(r.status, 401)
  t.equal(r.body, 'no entry')
  t.equal(r.headers['transfer-encoding'], undefined, "the authorizer's chunked framing is not relayed")
  t.equal(r.headers['content-length'], '8', 'the answer has its own length')
  t.not(r.headers.connection, 'keep-alive, keep-alive', 'the authorizer connection header is not relayed')
  const session = http2.connect(`http://127.0.0.1:${gw.ports.http}`)
  t.teardown(() => session.close())
  const h2 = await new Promise<{ status: number; body: string; reset: number }>((resolve) => {
    const s = session.request({ ':path': '/deny-chunked', ':authority': 'app.example.com' })
    let status = 0
    let body = ''
    s.setEncoding('utf8')
    s.on('response', (h) => (status = Number(h[':status'])))
    s.on('data', (d: string) => (body += d))
    s.on('error', () => {})
    s.on('close', () => resolve({ status, body, reset: s.rstCode ?? 0 }))
  })
  t.same(h2, { status: 401, body: 'no entry', reset: 0 }, 'over HTTP/2 too: the answer, not a reset stream')
})

t.test('a 5xx from the authorizer is no decision: 403 extauthz-unavailable', async (t) => {
  const r = await get(gw.ports.http, 'app.example.com', '/fail')
  t.equal(r.status, 403)
  t.equal(r.headers['x-edge-reason'], 'extauthz-unavailable')
  t.match(r.body, /could not decide on this request \(the authorizer answered 503\)/)
})

t.test('an HTTP authorizer that is slow or down is no decision: 403 at the timeout, or at once', async (t) => {
  const started = Date.now()
  const slow = await get(gw.ports.http, 'app.example.com', '/hang')
  t.ok(Date.now() - started < 5000, `answered at the 2000 ms timeout, not held (${Date.now() - started} ms)`)
  t.equal(slow.status, 403)
  t.match(slow.body, /could not decide on this request \(no answer within 2000 ms\)/)
  const down = await startTestGateway(dir, ['--extauthz-host', `127.0.0.1:${await closedPort()}`, '--extauthz-protocol', 'http'])
  t.teardown(() => down.close())
  const r = await get(down.ports.http, 'app.example.com', '/')
  t.equal(r.status, 403)
  t.equal(r.headers['x-edge-reason'], 'extauthz-unavailable')
  t.match(r.body, /ECONNREFUSED/)
})

t.test('bad external authorization options name the option and say how to fix it', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--extauthz-host', 'authz'], /--extauthz-host: 'authz' is not HOST:PORT/],
    [['--extauthz-host', 'authz:70000'], /port 70000 is not between 1 and 65535/],
    [['--extauthz-protocol', 'grcp'], /--extauthz-protocol: expected one of grpc, http, https, got "grcp"/],
    [['--extauthz-timeout', '0'], /--extauthz-timeout: 0 is below the minimum 1/],
    [['--extauthz-path-prefix', 'auth'], /--extauthz-path-prefix: 'auth' is not a path prefix: start it with \//],
    [['--extauthz-host', 'a:1', '--extauthz-protocol', 'http', '--extauthz-pack-as-bytes'], /--extauthz-pack-as-bytes is for a grpc authorizer/],
    [['--extauthz-host', 'a:1', '--extauthz-path-prefix', '/auth'], /--extauthz-path-prefix is for an http or https authorizer/],
    [['--extauthz-allowed-headers', 'bad header'], /'bad header' is not a header name/],
  ]
  for (const [argv, message] of cases) t.throws(() => parseConfig(argv, {}), message, argv.join(' '))
  t.throws(() => parseConfig([], { EDGE_EXTAUTHZ_PROTOCOL: 'tcp' }), /EDGE_EXTAUTHZ_PROTOCOL: expected one of grpc, http, https/)
  t.match(parseConfig(['--extauthz-host', '[fd00::5]:9000'], {}), { extAuthzHost: '[fd00::5]:9000', extAuthzProtocol: 'grpc', extAuthzTimeoutMs: 2000, extAuthzMaxRequestBodyBytes: 8192, extAuthzFailureModeAllow: false }, "Kourier's defaults")
})

t.test('an https authorizer with a private CA: --extauthz-ca-file makes it trusted; without it, no decision', async (t) => {
  const ca = await makeCA()
  const secure = await startHttpAuthorizer(await makeCert(ca, '127.0.0.1'))
  t.teardown(() => secure.close())
  const files = tempDir()
  const caFile = path.join(files, 'ca.crt')
  fs.writeFileSync(caFile, ca.cert)
  const args = ['--extauthz-host', `127.0.0.1:${secure.port}`, '--extauthz-protocol', 'https']
  const twoHosts = tempDir()
  writeManifest(twoHosts, 'all.yaml', [
    ...serviceFor('app', pod),
    kingress('app', { rules: [{ hosts: ['app.example.com', 'other.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }] }),
  ])
  const trusting = await startTestGateway(twoHosts, [...args, '--extauthz-ca-file', caFile])
  t.teardown(() => trusting.close())
  const allowed = await get(trusting.ports.http, 'app.example.com', '/over-tls')
  t.equal(allowed.status, 200, `allowed by the authorizer, over TLS to a certificate of the given CA (${allowed.body.trim()})`)
  t.equal(secure.seen.at(-1)?.url, '/over-tls')
  // The authorizer is asked with each client's Host; its certificate and connection are its own.
  for (const host of ['other.example.com', 'app.example.com', 'other.example.com']) t.equal((await get(trusting.ports.http, host, '/again')).status, 200, `${host} allowed`)
  t.same([secure.seen.length, secure.connections], [4, 1], "four checks on one TLS connection, whatever the client's Host")

  const seen = secure.seen.length
  const untrusting = await startTestGateway(dir, args)
  t.teardown(() => untrusting.close())
  const refused = await get(untrusting.ports.http, 'app.example.com', '/no-ca')
  t.same([refused.status, refused.headers['x-edge-reason']], [403, 'extauthz-unavailable'], "without the CA the authorizer's certificate is not trusted: no decision")
  t.equal(secure.seen.length, seen, 'and nothing reached it')

  fs.writeFileSync(path.join(files, 'empty.pem'), 'not a certificate\n')
  t.throws(() => parseConfig([...args, '--extauthz-ca-file', path.join(files, 'missing.crt')]), /--extauthz-ca-file.*cannot read '.*missing\.crt' \(ENOENT\); give the path of a PEM file of CA certificates/)
  t.throws(() => parseConfig([...args, '--extauthz-ca-file', path.join(files, 'empty.pem')]), /holds no PEM certificate/)
  t.throws(() => parseConfig(['--extauthz-host', 'a:1', '--extauthz-protocol', 'http', '--extauthz-ca-file', caFile]), /--extauthz-ca-file is for an https authorizer; with --extauthz-protocol http the connection is not TLS/)
})
