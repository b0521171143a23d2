// Fixtures for the KIngress status tests: a store mirrored from the fake apiserver by real
// client-node informers (what the Kubernetes source does in a gateway), a compiled snapshot view of
// it, and a forwarding proxy that tells which replica made which API request.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as k8s from '@kubernetes/client-node'
import { ObjectStore } from '../../src/sources/store.ts'
import { compileSnapshot } from '../../src/compile/snapshot.ts'
import type { Snapshot } from '../../src/model/snapshot.ts'
import type { KubeObject } from '../../src/model/k8s.ts'
import { keyOf } from '../../src/model/k8s.ts'
import type { StatusWriterOptions } from '../../src/status/status-writer.ts'

/** Leader election, probing and retries in a blink: a Lease is taken, renewed and released within a test. */
export const FAST_STATUS_WRITER: StatusWriterOptions = {
  leaderElection: { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 },
  probe: { initialBackoffMs: 20, maxBackoffMs: 150, timeoutMs: 1000 },
  retryInitialMs: 20,
  retryMaxMs: 200,
}

interface Mirrored {
  kind: 'Ingress' | 'EndpointSlice'
  apiVersion: string
  path: string
  group: string
  version: string
  plural: string
}

const MIRRORED: Mirrored[] = [
  { kind: 'Ingress', apiVersion: 'networking.internal.knative.dev/v1alpha1', path: '/apis/networking.internal.knative.dev/v1alpha1/ingresses', group: 'networking.internal.knative.dev', version: 'v1alpha1', plural: 'ingresses' },
  { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', path: '/apis/discovery.k8s.io/v1/endpointslices', group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices' },
]

export interface KubeView {
  store: ObjectStore
  snapshot(): Snapshot
  onSnapshot(cb: (s: Snapshot) => void): () => void
  stop(): Promise<void>
}

/**
 * Mirrors KIngresses and EndpointSlices from the apiserver behind `kc` into a fresh ObjectStore, and
 * compiles the store into snapshots on every change, as a gateway in kubernetes mode would.
 */
export async function kubeView(kc: k8s.KubeConfig, ingressClass: string): Promise<KubeView> {
  const store = new ObjectStore()
  const co = kc.makeApiClient(k8s.CustomObjectsApi)
  const informers: Array<k8s.Informer<k8s.KubernetesObject> & k8s.ObjectCache<k8s.KubernetesObject>> = []
  let stopped = false
  for (const m of MIRRORED) {
    const inf = k8s.makeInformer<k8s.KubernetesObject>(kc, m.path, () =>
      co.listClusterCustomObject({ group: m.group, version: m.version, plural: m.plural }) as Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>)
    // Built-in list items carry no kind: the store files objects by kind.
    const norm = (o: k8s.KubernetesObject): KubeObject => ({ ...(o as unknown as KubeObject), kind: m.kind, apiVersion: m.apiVersion })
    inf.on('add', (o) => store.upsert(norm(o), 'kubernetes'))
    inf.on('update', (o) => store.upsert(norm(o), 'kubernetes'))
    inf.on('delete', (o) => store.remove(m.kind, keyOf(norm(o).metadata), 'kubernetes'))
    inf.on('error', () => {
      if (!stopped) setTimeout(() => void (stopped ? undefined : inf.start()), 50).unref()
    })
    await inf.start()
    informers.push(inf)
  }
  let version = 0
  const compile = (): Snapshot =>
    compileSnapshot(
      { ingresses: store.list('Ingress'), routes: [], domainMappings: [], revisions: [], services: [], endpointSlices: store.list('EndpointSlice'), secrets: [] },
      { ingressClass, domain: 'example.com', clusterDomain: 'cluster.local', translateServing: false },
      ++version,
    )
  let snap = compile()
  const listeners = new Set<(s: Snapshot) => void>()
  store.onChange(() => {
    snap = compile()
    for (const l of listeners) l(snap)
  })
  return {
    store,
    snapshot: () => snap,
    onSnapshot: (cb) => {
      listeners.add(cb)
      return () => listeners.delete(cb)
    },
    stop: async () => {
      stopped = true
      for (const i of informers) await i.stop()
    },
  }
}

export interface TagProxy {
  port: number
  /** Requests that went through this proxy (one replica's view of the API). */
  requests: Array<{ method: string; path: string; time: number }>
  /** Cut this replica off from the apiserver (connections are reset) or reconnect it. */
  setDown(down: boolean): void
  kubeConfig(): k8s.KubeConfig
  close(): Promise<void>
}

/** A forwarding proxy in front of the fake apiserver, one per replica, so tests can tell who wrote what. */
export async function tagProxy(target: { port: number; kubeConfig(): k8s.KubeConfig }): Promise<TagProxy> {
  let down = false
  const requests: TagProxy['requests'] = []
  const server = http.createServer((req, res) => {
    if (down) return void req.socket.destroy()
    requests.push({ method: req.method ?? 'GET', path: (req.url ?? '/').split('?')[0]!, time: Date.now() })
    const up = http.request({ host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers)
      ur.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    requests,
    setDown: (d) => {
      down = d
      if (d) server.closeAllConnections()
    },
    kubeConfig: () => {
      // The fake's own kubeconfig, pointed at this proxy.
      const kc = new k8s.KubeConfig()
      const user = target.kubeConfig().getCurrentUser()
      kc.loadFromOptions({
        clusters: [{ name: 'proxy', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
        users: [{ name: 'u', token: user?.token }],
        contexts: [{ name: 'proxy', cluster: 'proxy', user: 'u' }],
        currentContext: 'proxy',
      })
      return kc
    },
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
