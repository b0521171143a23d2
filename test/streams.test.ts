// Long streams are not cut by request timeouts: a revision's timeoutSeconds ends a slow request, but an
// event stream that keeps sending outlives it, and a stream that goes silent is cut by its idle limit.
import t from 'tap'
import http from 'node:http'
import { get, kingress, revision, revisionPods, startBackend, startTestGateway, tempDir, writeManifest } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'
import type { Gateway } from '../src/gateway.ts'

let gw: Gateway
let pod: Backend

/** /events: an event every 200 ms, 12 in all (2.4 s); /stall: one event, then silence; /slow: 2.5 s then a body. */
function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.url === '/slow') {
    setTimeout(() => res.end('late'), 2500)
    return
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  let n = 0
  const tick = setInterval(() => {
    res.write(`data: ${n++}\n\n`)
    if (req.url === '/stall' || n === 12) {
      clearInterval(tick)
      if (req.url !== '/stall') res.end()
    }
  }, 200)
  res.on('close', () => clearInterval(tick))
}

t.before(async () => {
  pod = await startBackend('sse', handler)
  const dir = tempDir()
  writeManifest(dir, 'app.yaml', [
    revision('sse-00001', { timeoutSeconds: 1 }),
    revisionPods('sse-00001', pod),
    kingress('sse', { rules: [{ hosts: ['sse.example.com'], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'sse-00001', servicePort: 80, appendHeaders: { 'Knative-Serving-Revision': 'sse-00001', 'Knative-Serving-Namespace': 'default' } }] }] } }] }),
  ])
  gw = await startTestGateway(dir, ['--stream-idle-timeout', '1'])
})
t.teardown(async () => {
  await gw.close()
  await pod.close()
})

function stream(path: string): Promise<{ events: number; complete: boolean }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port: gw.ports.http, path, headers: { host: 'sse.example.com' } }, (res) => {
      let events = 0
      res.setEncoding('utf8')
      res.on('data', (c: string) => (events += c.split('data:').length - 1))
      res.on('end', () => resolve({ events, complete: res.complete }))
      res.on('error', () => resolve({ events, complete: false }))
      res.on('aborted', () => resolve({ events, complete: false }))
    })
    req.on('error', () => resolve({ events: 0, complete: false }))
  })
}

t.test('timeoutSeconds ends a slow request with 504', async (t) => {
  const r = await get(gw.ports.http, 'sse.example.com', '/slow')
  t.equal(r.status, 504)
  t.equal(r.headers['x-edge-reason'], 'request-timeout')
})

t.test('an event stream that keeps sending outlives timeoutSeconds', async (t) => {
  const r = await stream('/events')
  t.equal(r.events, 12, 'every event arrived, past the 1 s request timeout')
  t.ok(r.complete, 'and the stream ended normally')
})

t.test('a stream that goes silent is cut by the stream idle timeout', async (t) => {
  const r = await stream('/stall')
  t.equal(r.events, 1)
  t.notOk(r.complete, 'cut, not completed')
})
