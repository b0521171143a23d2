// The primary's slot broker (--workers) on its own: what it tells a worker about a request held for
// a CC > 0 revision that leaves the configuration. It must not refuse it: the worker drops the
// backend from its own snapshot and re-routes the request, and a refusal could beat that snapshot
// to the worker (a 503 instead of the new revision's answer). The worker here is a recording stand-in
// for the IPC peer: the broker only calls its `send`.
import t from 'tap'
import type { Worker } from 'node:cluster'
import { SlotBroker } from '../src/cluster/slot-broker.ts'
import type { BackendSpec, Snapshot } from '../src/model/snapshot.ts'
import type { ToWorker } from '../src/cluster/protocol.ts'

const KEY = 'rev:default/app-00001'

function snapshotWith(endpoints: Array<{ host: string; port: number }>): Snapshot {
  const b: BackendSpec = {
    key: KEY,
    kind: 'pods',
    namespace: 'default',
    serviceName: 'app-00001',
    protocol: 'http1',
    endpoints: endpoints.map((e) => ({ ...e, address: `${e.host}:${e.port}`, origin: `http://${e.host}:${e.port}` })),
    revision: { namespace: 'default', name: 'app-00001', key: 'default/app-00001', containerConcurrency: 1, timeoutSeconds: undefined, responseStartTimeoutSeconds: undefined, idleTimeoutSeconds: undefined, known: true },
  }
  return { backends: new Map([[KEY, b]]) } as unknown as Snapshot
}
const empty = { backends: new Map() } as unknown as Snapshot

t.test('a held request whose revision leaves the configuration is left to its worker, not refused', async (t) => {
  const sent: ToWorker[] = []
  const worker = { id: 7, isConnected: () => true, send: (m: ToWorker) => sent.push(m) } as unknown as Worker
  const broker = new SlotBroker({ maxQueuedPerRevision: 10, holds: { requests: 100, requestsPerNamespace: 0, bodyBytes: 0, bodyBytesPerNamespace: 0 } })
  t.teardown(() => broker.close())
  broker.setSnapshot(snapshotWith([]))
  broker.acquire(worker, 1, KEY, 0)
  broker.acquire(worker, 2, KEY, 0)
  t.same(sent, [], 'no pod: both held')
  t.equal(broker.describe()[KEY]?.queued, 2)

  broker.setSnapshot(empty)
  t.same(sent, [], 'the revision left: nothing is sent to the worker')
  t.same(broker.describe(), {}, 'and the broker holds nothing for it')
  // The worker's own snapshot drops the backend: it withdraws both (and re-routes them itself).
  broker.cancel(worker, 1)
  broker.cancel(worker, 2)

  // The same revision back, with a pod: a new request gets it, and the old waiters count for nothing.
  broker.setSnapshot(snapshotWith([{ host: '127.0.0.1', port: 9 }]))
  broker.acquire(worker, 3, KEY, 0)
  t.same(sent, [{ t: 'grant', id: 3, key: KEY, address: '127.0.0.1:9', waited: false }])
  t.same(broker.describe()[KEY], { inFlight: 1, queued: 0, pods: 1 })
  broker.cancel(worker, 1) // a late cancel of a dropped waiter changes nothing
  t.same(broker.describe()[KEY], { inFlight: 1, queued: 0, pods: 1 })
})
