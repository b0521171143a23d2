// WebSocket upgrades are held, timed and re-routed like requests: a pod that never answers the
// handshake gets the revision's timeouts (504), an established connection is not cut by
// timeoutSeconds but is closed after idleTimeoutSeconds of silence, a held upgrade follows the Route
// when its traffic moves, and one still held when the gateway stops waiting gets 503 draining.
// Real sockets and a real WebSocket client and server; assertions are about answers and order.
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import t from 'tap'
import { WebSocket, WebSocketServer } from 'ws'
import { endpointSlice, get, revision, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import { closedPort, NS, revisionState, waitForQueued, within } from './helpers/activator.ts'
import { raw, upgradeRequest } from './helpers/raw.ts'
import type { Gateway } from '../src/gateway.ts'

const host = (route: string): string => `${route}.${NS}.example.com`

function route(name: string, rev: string): unknown {
  return { apiVersion: 'serving.knative.dev/v1', kind: 'Route', metadata: { name, namespace: NS }, status: { url: `http://${host(name)}`, traffic: [{ revisionName: rev, percent: 100 }] } }
}

function pods(rev: string, port: number): unknown {
  return endpointSlice(`${rev}-private`, [{ name: 'http', port }], [{ ip: '127.0.0.1' }], NS, `${rev}-private-0`)
}

/** A pod that accepts connections and then does `onConnection` (never answer, or hang up). */
async function tcpPod(onConnection: (s: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    onConnection(s)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise<void>((r) => server.close(() => r()))
    },
  }
}

/** A WebSocket echo pod that answers `<name>: <message>`. */
async function echoPod(name: string): Promise<Backend & { wss: WebSocketServer }> {
  const b = await startBackend(name)
  const wss = new WebSocketServer({ server: b.server })
  wss.on('connection', (sock) => sock.on('message', (m) => sock.send(`${name}: ${String(m)}`)))
  return Object.assign(b, { wss })
}

let gw: Gateway
let dir: string
let silent: Awaited<ReturnType<typeof tcpPod>>
let hangUp: Awaited<ReturnType<typeof tcpPod>>
let piecemeal: Awaited<ReturnType<typeof tcpPod>>
let cutShort: Awaited<ReturnType<typeof tcpPod>>
let idle: Awaited<ReturnType<typeof echoPod>>
let next: Awaited<ReturnType<typeof echoPod>>
/** A pod listed ready whose server is not listening yet (the scale-from-zero race). */
let latePort: number

t.before(async () => {
  silent = await tcpPod((s) => s.resume())
  hangUp = await tcpPod((s) => s.once('data', () => s.destroy()))
  // Its 101 in two writes 50 ms apart, so the gateway reads the status line in two pieces.
  piecemeal = await tcpPod((s) =>
    s.once('data', () => {
      s.write('HTTP/1.1 1')
      setTimeout(() => s.end('01 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'), 50)
    }),
  )
  cutShort = await tcpPod((s) => s.once('data', () => s.end('HTTP/1')))
  idle = await echoPod('idle')
  next = await echoPod('next')
  latePort = await closedPort()
  dir = tempDir('edge-ws-')
  writeManifest(dir, 'revisions.yaml', [
    revision('slow-00001', { timeoutSeconds: 1 }),
    revision('start-00001', { timeoutSeconds: 60, responseStartTimeoutSeconds: 1 }),
    revision('hangup-00001'),
    revision('idle-00001', { timeoutSeconds: 1, idleTimeoutSeconds: 1 }),
    revision('cold-00001'),
    revision('drain-00001'),
    revision('next-00001'),
    revision('early-00001'),
    revision('piecemeal-00001'),
    revision('short-00001'),
  ])
  writeManifest(dir, 'pods.yaml', [pods('slow-00001', silent.port), pods('start-00001', silent.port), pods('hangup-00001', hangUp.port), pods('idle-00001', idle.port), pods('next-00001', next.port), pods('early-00001', latePort), pods('piecemeal-00001', piecemeal.port), pods('short-00001', cutShort.port)])
  writeManifest(dir, 'routes.yaml', [route('slow', 'slow-00001'), route('start', 'start-00001'), route('hangup', 'hangup-00001'), route('idle', 'idle-00001'), route('cold', 'cold-00001'), route('drain', 'drain-00001'), route('early', 'early-00001'), route('piecemeal', 'piecemeal-00001'), route('short', 'short-00001')])
  gw = await startTestGateway(dir)
  await waitFor('routes loaded', () => gw.plane.snapshot.backends.has(`rev:${NS}/idle-00001`) && gw.plane.snapshot.backends.has(`rev:${NS}/cold-00001`))
})

t.teardown(async () => {
  await gw.close()
  for (const p of [silent, hangUp, piecemeal, cutShort, idle, next]) await p.close()
  fs.rmSync(dir, { recursive: true, force: true })
})

t.test('a pod that accepts the connection but never answers the handshake: 504 after the revision timeoutSeconds, pod slot released', async (t) => {
  const a = await raw(gw.ports.http, upgradeRequest(host('slow'), '/ws'), { waitMs: 15_000 })
  t.equal(a.status, 504)
  t.equal(a.headers['x-edge-reason'], 'request-timeout')
  t.match(a.body, /revision default\/slow-00001 did not finish within its timeoutSeconds \(1s\)/)
  t.ok(a.closed, 'the client connection is closed')
  await waitFor('the pod slot to be released', async () => (await revisionState(gw, 'slow-00001'))?.endpoints[0]?.inFlight === 0)
})

t.test('responseStartTimeoutSeconds applies to the handshake too: 504 response-start-timeout', async (t) => {
  const a = await raw(gw.ports.http, upgradeRequest(host('start'), '/ws'), { waitMs: 15_000 })
  t.equal(a.status, 504)
  t.equal(a.headers['x-edge-reason'], 'response-start-timeout')
})

t.test('a pod that hangs up before answering the handshake: 502 upstream-reset, not a silent close', async (t) => {
  const a = await raw(gw.ports.http, upgradeRequest(host('hangup'), '/ws'), { waitMs: 15_000 })
  t.equal(a.status, 502)
  t.equal(a.headers['x-edge-reason'], 'upstream-reset')
  t.match(a.body, /closed the connection before responding/)
})

t.test('an established WebSocket outlives timeoutSeconds while it talks, and is closed after idleTimeoutSeconds of silence', async (t) => {
  const client = new WebSocket(`ws://127.0.0.1:${gw.ports.http}/ws`, { headers: { host: host('idle') } })
  t.teardown(() => client.terminate())
  await within(new Promise<void>((resolve, reject) => (client.once('open', () => resolve()), client.once('error', reject))), 'the WebSocket to open')
  let closed = false
  const closing = new Promise<number>((r) => client.once('close', (code) => ((closed = true), r(code))))
  // Twelve messages 200 ms apart: 2.4 s, past the revision's timeoutSeconds (1) and past its
  // idleTimeoutSeconds (1), never silent for as long as the idle limit.
  const replies: string[] = []
  for (let i = 0; i < 12; i++) {
    const reply = new Promise<string>((r) => client.once('message', (m) => r(String(m))))
    client.send(`m${i}`)
    replies.push(await within(reply, `reply ${i}`))
    await new Promise((r) => setTimeout(r, 200))
  }
  t.same(replies, Array.from({ length: 12 }, (_, i) => `idle: m${i}`), 'every message echoed while it talked')
  t.notOk(closed, 'not cut by timeoutSeconds')
  const code = await within(closing, 'the gateway to close the silent connection')
  t.equal(code, 1006, 'closed under it (no close frame): the gateway cut it, not the pod')
  await waitFor('the pod slot to be released', async () => (await revisionState(gw, 'idle-00001'))?.endpoints[0]?.inFlight === 0)
})

t.test('a held upgrade follows the Route when its traffic moves to another revision', async (t) => {
  const client = new WebSocket(`ws://127.0.0.1:${gw.ports.http}/ws`, { headers: { host: host('cold') } })
  t.teardown(() => client.terminate())
  const opened = new Promise<void>((resolve, reject) => (client.once('open', () => resolve()), client.once('error', reject)))
  opened.catch(() => undefined)
  await waitForQueued(gw, 'cold-00001', 1)
  writeManifest(dir, 'routes.yaml', [route('slow', 'slow-00001'), route('start', 'start-00001'), route('hangup', 'hangup-00001'), route('idle', 'idle-00001'), route('cold', 'next-00001'), route('drain', 'drain-00001'), route('early', 'early-00001'), route('piecemeal', 'piecemeal-00001'), route('short', 'short-00001')])
  await within(opened, 'the held upgrade to open on the new revision')
  const reply = new Promise<string>((r) => client.once('message', (m) => r(String(m))))
  client.send('hi')
  t.equal(await within(reply, 'the echo'), 'next: hi', 'served by the revision the traffic moved to')
})

t.test('a pod whose 101 arrives in pieces: the client gets it whole, and it is counted as 101 (a cut-short one as 502)', async (t) => {
  const a = await raw(gw.ports.http, upgradeRequest(host('piecemeal'), '/ws'), { waitMs: 15_000 })
  t.equal(a.status, 101)
  t.equal(a.headers['upgrade'], 'websocket')
  const b = await raw(gw.ports.http, upgradeRequest(host('short'), '/ws'), { waitMs: 15_000 })
  t.equal(b.text, 'HTTP/1', 'what the pod sent, as it sent it')
  const m = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  const count = (route: string, code: number): number => Number(new RegExp(`edge_requests_total\\{host="${host(route)}",namespace="default",revision="${route}-00001",code="${code}"\\} (\\d+)`).exec(m)?.[1] ?? 0)
  t.equal(count('piecemeal', 101), 1)
  t.equal(count('piecemeal', 502), 0)
  t.equal(count('short', 502), 1)
})

t.test('upgrades are counted in edge_requests_total by their handshake answer, the pod\'s or the gateway\'s', async (t) => {
  const m = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  // The gateway's own answers carry its reason; the pod's carry none.
  const count = (host: string, rev: string, code: number, reason?: string): number =>
    Number(new RegExp(`edge_requests_total\\{host="${host}",namespace="default",revision="${rev}",code="${code}"${reason ? `,reason="${reason}"` : ''}\\} (\\d+)`).exec(m)?.[1] ?? 0)
  t.equal(count(host('idle'), 'idle-00001', 101), 1, 'the WebSocket that opened: 101 from the pod')
  t.equal(count(host('slow'), 'slow-00001', 504, 'request-timeout'), 1, "the handshake the pod never answered: the gateway's 504")
  t.equal(count(host('hangup'), 'hangup-00001', 502, 'upstream-reset'), 1)
})

t.test('an upgrade still held when the gateway stops waiting (end of a drain) gets 503 draining', async (t) => {
  const answer = raw(gw.ports.http, upgradeRequest(host('drain'), '/ws'), { waitMs: 15_000 })
  await waitForQueued(gw, 'drain-00001', 1)
  gw.plane.rejectHeld()
  const a = await answer
  t.equal(a.status, 503)
  t.equal(a.headers['x-edge-reason'], 'draining')
  t.equal(a.headers['retry-after'], '1')
  await waitFor('the queue to be empty', async () => (await revisionState(gw, 'drain-00001'))?.queued === 0)
})

t.test('a pod listed ready before it listens: the refused upgrade is retried, and reaches the pod once it listens', async (t) => {
  const client = new WebSocket(`ws://127.0.0.1:${gw.ports.http}/ws`, { headers: { host: host('early') } })
  t.teardown(() => client.terminate())
  const opened = new Promise<void>((resolve, reject) => (client.once('open', () => resolve()), client.once('error', reject)))
  opened.catch(() => undefined)
  const retries = async (): Promise<number> => Number(/edge_upstream_retries_total\{namespace="default",revision="early-00001"\} (\d+)/.exec((await get(gw.ports.admin, 'localhost', '/metrics')).body)?.[1] ?? 0)
  await waitFor('the refused connection to be retried', async () => (await retries()) > 0)
  const late = http.createServer()
  const wss = new WebSocketServer({ server: late })
  wss.on('connection', (sock) => sock.on('message', (m) => sock.send(`late: ${String(m)}`)))
  await new Promise<void>((r) => late.listen(latePort, '127.0.0.1', () => r()))
  t.teardown(async () => {
    client.terminate() // first: the WebSocketServer's close waits for its clients
    await new Promise<void>((r) => wss.close(() => r()))
    late.closeAllConnections()
    await new Promise<void>((r) => late.close(() => r()))
  })
  await within(opened, 'the upgrade to open once the pod listens')
  const reply = new Promise<string>((r) => client.once('message', (m) => r(String(m))))
  client.send('hi')
  t.equal(await within(reply, 'the echo'), 'late: hi')
})
