// The activator's early probe: a revision pod Kubernetes has not marked Ready yet is probed the way
// the activator probes queue-proxy, and used as soon as it answers, so a held request does not wait
// for the kubelet.
import t from 'tap'
import type http from 'node:http'
import { endpointSlice, get, kingress, revision, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import type { Backend } from './helpers/gateway.ts'

/** A pod whose queue-proxy answers the activator's probe (`queue`) once `up` is true. */
async function queueProxyPod(name: string): Promise<Backend & { up: boolean; probes: http.IncomingHttpHeaders[] }> {
  const pod = (await startBackend(name, (req, res, b) => {
    const self = b as Backend & { up: boolean; probes: http.IncomingHttpHeaders[] }
    if (req.url === '/healthz' && req.headers['k-network-probe'] === 'queue') {
      self.probes.push(req.headers)
      if (self.up) res.end('queue')
      else {
        res.statusCode = 503
        res.end('not yet')
      }
      return
    }
    res.end(JSON.stringify({ backend: b.name, url: req.url }))
  })) as Backend & { up: boolean; probes: http.IncomingHttpHeaders[] }
  pod.up = false
  pod.probes = []
  return pod
}

function route(name: string, rev: string): unknown {
  return kingress(name, {
    rules: [{ hosts: [`${name}.example.com`], http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: rev, servicePort: 80, appendHeaders: { 'Knative-Serving-Revision': rev, 'Knative-Serving-Namespace': 'default' } }] }] } }],
  })
}

/** Requests the gateway holds for `revision` (in namespace default) now. */
async function queued(adminPort: number, revision: string): Promise<number> {
  const metrics = (await get(adminPort, 'localhost', '/metrics')).body
  return Number(new RegExp(`edge_revision_requests_queued\\{namespace="default",revision="${revision}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0)
}

function notReadySlice(rev: string, pod: Backend): unknown {
  return endpointSlice(`${rev}-private`, [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1', ready: false }], 'default', `${rev}-private-slice`)
}

t.test('a not-yet-Ready pod that passes the queue-proxy probe serves the held request', async (t) => {
  const pod = await queueProxyPod('early')
  t.teardown(() => pod.close())
  const dir = tempDir()
  writeManifest(dir, 'app.yaml', [revision('early-00001'), notReadySlice('early-00001', pod), route('early', 'early-00001')])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())

  const held = get(gw.ports.http, 'early.example.com', '/first')
  await waitFor('the gateway to probe the starting pod', () => pod.probes.length >= 2)
  t.equal(pod.seen.filter((s) => s.url === '/first').length, 0, 'nothing is sent to a pod that has not answered the probe')
  pod.up = true
  const r = await held
  t.equal(r.status, 200, 'served although Kubernetes still lists the pod as not ready')
  t.equal(r.json().backend, 'early')
  t.ok(r.headers['x-edge-cold-start-ms'] !== undefined, 'it was held for the cold start')
  t.equal(pod.probes[0]?.['user-agent'], 'Knative-Activator-Probe', "the probe carries the activator's User-Agent")
  t.equal(pod.seen.filter((s) => s.url === '/first').length, 1, 'the request reached the pod once')
})

t.test('a revision with a startup probe is not probed early: requests wait for Kubernetes', async (t) => {
  const pod = await queueProxyPod('careful')
  pod.up = true
  t.teardown(() => pod.close())
  const dir = tempDir()
  const rev = revision('careful-00001', { containers: [{ image: 'app', startupProbe: { httpGet: { path: '/' } } }] })
  writeManifest(dir, 'app.yaml', [rev, notReadySlice('careful-00001', pod), route('careful', 'careful-00001')])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  const held = get(gw.ports.http, 'careful.example.com', '/x')
  // An early probe would start when the request is queued for the revision, and this pod is up, so
  // it would pass and let the request through: wait until it is queued, then check nothing got by.
  await waitFor('the request held for careful-00001', async () => (await queued(gw.ports.admin, 'careful-00001')) === 1)
  t.equal(pod.probes.length, 0, 'no early probe')
  t.equal(pod.seen.filter((s) => s.url === '/x').length, 0, 'still held')
  writeManifest(dir, 'app.yaml', [rev, endpointSlice('careful-00001-private', [{ name: 'http', port: pod.port }], [{ ip: '127.0.0.1' }], 'default', 'careful-00001-private-slice'), route('careful', 'careful-00001')])
  t.equal((await held).status, 200, 'served once Kubernetes marks the pod ready')
  t.same(pod.seen.map((s) => s.url), ['/x'], 'the pod saw the request and nothing before it: no probe while it was held')
})
