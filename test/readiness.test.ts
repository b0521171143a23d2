// When the local runner counts an instance ready (src/autoscaler/readiness.ts), against real
// sockets: a port forwarder that accepts and hangs up is not an app, and an httpGet probe waits for
// a 2xx or 3xx.
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { waitReady } from '../src/autoscaler/readiness.ts'
import { waitFor } from './helpers/wait.ts'

/** Resolves to the value, or to 'pending' if it has not settled by the next macrotask. */
async function state<T>(p: Promise<T>): Promise<T | 'pending'> {
  return Promise.race([p, new Promise<'pending'>((r) => setImmediate(() => r('pending')))])
}

t.test('TCP: a forwarder that accepts and hangs up is not ready; the app behind it answering is', async (t) => {
  let appUp = false
  let hungUp = 0
  const open = new Set<net.Socket>()
  // Like docker-proxy or rootless podman's forwarder: accepts at once, hangs up while nothing listens behind it.
  const forwarder = net.createServer((s) => {
    if (!appUp) {
      hungUp++
      s.destroy()
      return
    }
    open.add(s)
    s.on('close', () => open.delete(s))
  })
  await new Promise<void>((r) => forwarder.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => {
    for (const s of open) s.destroy()
    forwarder.close()
  })
  const port = (forwarder.address() as AddressInfo).port
  const ready = waitReady(port, undefined, { timeoutMs: 10_000, settleMs: 25, gone: () => false })
  await waitFor('three connections hung up on', () => hungUp >= 3)
  t.equal(await state(ready), 'pending', 'accepted connections that were hung up on do not count')
  appUp = true
  t.equal(await ready, true, 'ready once a connection stays open')
})

t.test('TCP without a settle time (a process listening itself): the first accepted connection counts', async (t) => {
  const server = net.createServer((s) => s.destroy())
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => server.close())
  t.equal(await waitReady((server.address() as AddressInfo).port, undefined, { timeoutMs: 10_000, settleMs: 0, gone: () => false }), true)
})

t.test('httpGet: waits for a 2xx or 3xx on the path, with the probe headers', async (t) => {
  let status = 503
  const seen: Array<{ url?: string; header?: string | string[] }> = []
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, header: req.headers['x-probe'] })
    res.writeHead(status)
    res.end()
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => server.close())
  const port = (server.address() as AddressInfo).port
  const probe = { httpGet: { path: 'healthz', httpHeaders: [{ name: 'x-probe', value: 'yes' }] } }
  const ready = waitReady(port, probe, { timeoutMs: 10_000, settleMs: 25, gone: () => false })
  await waitFor('two probes answered 503', () => seen.length >= 2)
  t.equal(await state(ready), 'pending', 'a 503 is not ready')
  status = 302
  t.equal(await ready, true, 'a 3xx is')
  t.strictSame(new Set(seen.map((s) => `${s.url} ${s.header}`)), new Set(['/healthz yes']), 'every probe asked for /healthz with its header')
})

t.test('gone() ends the wait with false', async (t) => {
  const port = await new Promise<number>((r) => {
    const s = net.createServer()
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port
      s.close(() => r(p))
    })
  })
  let gone = false
  const ready = waitReady(port, undefined, { timeoutMs: 10_000, settleMs: 0, gone: () => gone })
  gone = true
  t.equal(await ready, false)
})
