// The snapshot publisher: every subscriber hears of each new snapshot in the documented order
// (data plane first, KIngress status after it), whatever order they subscribed in; EndpointSlice
// changes arrive on their own fast path, each compiled once.
import t from 'tap'
import pino from 'pino'
import { ObjectStore } from '../src/sources/store.ts'
import { SUBSCRIBER_ORDER, SnapshotPublisher } from '../src/compose/snapshot-publisher.ts'
import type { Publication, SubscriberName } from '../src/compose/snapshot-publisher.ts'
import type { KubeObject } from '../src/model/k8s.ts'

const log = pino({ level: 'silent' })
const OPTS = { ingressClass: 'edge.ingress.networking.knative.dev', domain: 'example.com', clusterDomain: 'cluster.local', translateServing: true }

function ingress(host: string): KubeObject {
  return {
    apiVersion: 'networking.internal.knative.dev/v1alpha1',
    kind: 'Ingress',
    metadata: { name: host.split('.')[0], namespace: 'default', annotations: { 'networking.knative.dev/ingress.class': OPTS.ingressClass }, creationTimestamp: '2026-01-01T00:00:00Z', generation: 1 },
    spec: { rules: [{ hosts: [host], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }] },
  } as unknown as KubeObject
}

function slice(ip: string): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'app-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'app' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip], conditions: { ready: true } }],
    ports: [{ port: 80 }],
  } as unknown as KubeObject
}

const SERVICE = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'app', namespace: 'default' }, spec: { ports: [{ port: 80 }] } } as unknown as KubeObject

/** Resolves with the next publication each named subscriber hears, recording the order they heard it in. */
function recorder(p: SnapshotPublisher, names: readonly SubscriberName[]): { heard: Array<{ name: SubscriberName; pub: Publication }>; next(): Promise<void> } {
  const heard: Array<{ name: SubscriberName; pub: Publication }> = []
  let wake: (() => void) | undefined
  for (const name of names) {
    p.subscribe(name, (pub) => {
      heard.push({ name, pub })
      if (heard.length % names.length === 0) wake?.()
    })
  }
  return { heard, next: () => new Promise<void>((r) => (wake = r)) }
}

t.test('subscribers hear of a new snapshot in SUBSCRIBER_ORDER, not in the order they subscribed', async (t) => {
  const store = new ObjectStore()
  const p = new SnapshotPublisher(store, OPTS, { log })
  const rec = recorder(p, [...SUBSCRIBER_ORDER].reverse())
  const published = rec.next()
  store.upsert(ingress('a.example.com'), 'test')
  await published
  t.same(rec.heard.map((h) => h.name), SUBSCRIBER_ORDER, 'cold-starts, data-plane, certificates, slot-broker, status-writer, replica-share')
  const snap = rec.heard[0]!.pub.snapshot
  t.ok(snap.publicHosts.get('a.example.com'), 'the published snapshot serves the new host')
  t.ok(rec.heard.every((h) => h.pub.snapshot === snap), 'every subscriber got the same snapshot')
  t.equal(p.snapshot, snap, 'and it is the current one')
})

t.test('EndpointSlice changes take the fast path and are compiled once', async (t) => {
  const store = new ObjectStore()
  const compiled: boolean[] = []
  const p = new SnapshotPublisher(store, OPTS, { log, onCompiled: (ok) => compiled.push(ok) })
  const rec = recorder(p, ['data-plane'])
  let published = rec.next()
  store.batch(() => {
    store.upsert(SERVICE, 'test')
    store.upsert(ingress('b.example.com'), 'test')
  })
  await published
  const before = compiled.length
  published = rec.next()
  store.upsert(slice('10.0.0.7'), 'test')
  await published
  const last = rec.heard.at(-1)!.pub
  t.equal(last.endpointsOnly, true, 'published from the EndpointSlice path')
  t.same([...(last.changedBackends ?? [])], ['svc:default/app:80'], 'only the backend whose pods changed')
  t.same(last.snapshot.backends.get('svc:default/app:80')?.endpoints.map((e) => e.origin), ['http://10.0.0.7:80'], 'the pod, with its pool origin')
  // A later grouped change proves the grouped turn for the slice has passed: it did not compile again.
  published = rec.next()
  store.upsert(ingress('c.example.com'), 'test')
  await published
  t.equal(compiled.length - before, 2, 'one compile for the slice, one for the ingress')
  t.equal(rec.heard.at(-1)!.pub.endpointsOnly, false)
})

t.test('a name has one subscriber', async (t) => {
  const p = new SnapshotPublisher(new ObjectStore(), OPTS, { log })
  p.subscribe('certificates', () => {})
  t.throws(() => p.subscribe('certificates', () => {}), /a certificates subscriber is already registered/)
})
