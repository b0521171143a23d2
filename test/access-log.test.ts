// Access logs as an operator reads them from a gateway process's stdout: one JSON line per request
// with what happened (client after trusted proxies, method, host, path, protocol, status, bytes,
// duration, time to first byte, pod, revision, reason, trace id, user agent, request id), one line per
// WebSocket when it closes, a text line from --access-log-template, and a template field that does
// not exist refused at start with the fields that do.
import t from 'tap'
import crypto from 'node:crypto'
import net from 'node:net'
import { spawnSync } from 'node:child_process'
import { get, kingress, serviceFor, startBackend, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { projectRoot, startGatewayProcess } from './helpers/gateway-process.ts'
import { raw, upgradeRequest } from './helpers/raw.ts'
import type { GatewayProcess } from './helpers/gateway-process.ts'

const pod = await startBackend('pod', (req, res) => {
  let n = 0
  req.on('data', (c: Buffer) => (n += c.length))
  req.on('end', () => res.end(`got ${n}`))
})
const upgraded = new Set<import('node:stream').Duplex>()
pod.server.on('upgrade', (req, socket) => {
  upgraded.add(socket)
  socket.once('close', () => upgraded.delete(socket))
  const accept = crypto.createHash('sha1').update(`${String(req.headers['sec-websocket-key'])}258EAFA5-E914-47DA-95CA-C5AB0DC11B65`).digest('base64')
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
  socket.on('data', (d: Buffer) => socket.write(d))
})
t.teardown(() => {
  for (const s of upgraded) s.destroy()
  return pod.close()
})
const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  ...serviceFor('app', pod),
  kingress('app', { rules: [{ hosts: ['app.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }] }),
])
const MAIN = 'src/main.ts'

function lines(gw: GatewayProcess): Array<Record<string, unknown>> {
  return gw
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{"time"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

t.test('one JSON line per request, with what happened', async (t) => {
  const gw = await startGatewayProcess(t, process.execPath, [MAIN, '--manifests', dir, '--workers', '1', '--access-log', '--trusted-proxies', '127.0.0.0/8', '--log-level', 'warn'], {})
  const trace = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
  const ok = await get(gw.http, 'app.example.com', '/items?x=1', { 'x-forwarded-for': '203.0.113.9', traceparent: trace, 'user-agent': 'tester/1', 'x-request-id': 'req-1' }, 'POST', 'hello world')
  t.equal(ok.body, 'got 11')
  const nf = await get(gw.http, 'nope.example.com', '/x')
  t.equal(nf.status, 404)
  await waitFor('two access lines', () => lines(gw).length >= 2).catch((err: unknown) => { t.comment(gw.output()); throw err })
  const [a, b] = lines(gw) as [Record<string, unknown>, Record<string, unknown>]
  t.match(a, {
    client: '203.0.113.9',
    method: 'POST',
    host: 'app.example.com',
    path: '/items',
    protocol: 'HTTP/1.1',
    status: 200,
    bytesIn: 11,
    bytesOut: 6,
    namespace: 'default',
    traceId: '0af7651916cd43dd8448eb211c80319c',
    userAgent: 'tester/1',
    requestId: 'req-1',
  })
  t.match(a.pod, /^127\.0\.0\.1:\d+$/, 'the pod that answered')
  t.ok(typeof a.durationMs === 'number' && typeof a.ttfbMs === 'number' && (a.ttfbMs as number) <= (a.durationMs as number), 'duration and time to first byte, in ms')
  t.ok(!Number.isNaN(Date.parse(a.time as string)), 'an ISO time')
  t.equal(a.reason, undefined, 'the pod answered: no gateway reason')
  t.match(b, { status: 404, reason: 'host-not-found', host: 'nope.example.com', path: '/x', bytesOut: (nf.body.length) })
  t.ok(typeof b.requestId === 'string' && b.requestId !== '', 'a request without an id gets one')
})

t.test('a WebSocket is logged when it closes, with its bytes both ways', async (t) => {
  const gw = await startGatewayProcess(t, process.execPath, [MAIN, '--manifests', dir, '--workers', '1', '--access-log', '--log-level', 'warn'], {})
  const s = net.connect(gw.http, '127.0.0.1')
  s.write(upgradeRequest('app.example.com', '/ws'))
  let got = ''
  s.on('data', (d) => (got += d))
  await waitFor('the 101', () => got.includes('101 Switching Protocols'))
  s.write('ping-ping')
  await waitFor('the echo', () => got.endsWith('ping-ping'))
  t.equal(lines(gw).length, 0, 'nothing is logged while the WebSocket is open')
  s.end()
  await waitFor('the line at close', () => lines(gw).length === 1)
  t.match(lines(gw)[0], { status: 101, upgrade: true, path: '/ws', bytesIn: 9 })
  t.ok((lines(gw)[0]!.bytesOut as number) > 9, 'the 101 head and the echo went out')
})

t.test('--access-log-template gives text lines; an unknown field is refused at start', async (t) => {
  const gw = await startGatewayProcess(t, process.execPath, [MAIN, '--manifests', dir, '--workers', '1', '--access-log', '--access-log-template', 'ACCESS {method} {host}{path} {status} {reason}', '--log-level', 'warn'], {})
  await get(gw.http, 'app.example.com', '/a')
  await raw(gw.http, 'GET /b HTTP/1.1\r\nHost: nope.example.com\r\nConnection: close\r\n\r\n')
  await waitFor('two lines', () => gw.output().split('\n').filter((l) => l.startsWith('ACCESS ')).length === 2)
  t.same(gw.output().split('\n').filter((l) => l.startsWith('ACCESS ')), ['ACCESS GET app.example.com/a 200 -', 'ACCESS GET nope.example.com/b 404 host-not-found'])
  const bad = spawnSync(process.execPath, [MAIN, '--manifests', dir, '--access-log', '--access-log-template', '{method} {colour}'], { cwd: projectRoot, encoding: 'utf8', timeout: 20_000 })
  t.not(bad.status, 0, 'it does not start')
  t.match(bad.stderr + bad.stdout, /access-log-template.*\{colour\} is not an access-log field; use \{time\}/)
})
