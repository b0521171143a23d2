// Cluster-mode fixtures: a fake API server with a kubeconfig on disk, gateways started with
// `--kubernetes --kubeconfig PATH`, and object writes that go through the fake's store (they are not
// requests from the gateway, so `server.writes()` only ever shows the gateway's own writes).
import fs from 'node:fs'
import { FakeApiServer } from '../fake-apiserver/server.ts'
import type { FakeApiServerOptions, KObject } from '../fake-apiserver/server.ts'
import type { Gateway } from '../../src/gateway.ts'
import type { KubernetesSourceTuning } from '../../src/sources/kubernetes.ts'
import { get, startTestGateway, tempDir, waitFor } from './gateway.ts'

export interface KubeEnv {
  api: FakeApiServer
  kubeconfig: string
  /** An empty manifests directory (the files source must not start in cluster mode anyway). */
  dir: string
}

interface Teardown {
  teardown(fn: () => unknown): void
}

export async function startKubeEnv(t: Teardown, opts: FakeApiServerOptions = {}): Promise<KubeEnv> {
  const api = await FakeApiServer.start(opts)
  const dir = tempDir('edge-kube-')
  const kubeconfig = api.writeKubeconfig(dir)
  t.teardown(async () => {
    await api.stop()
    fs.rmSync(dir, { recursive: true, force: true })
  })
  return { api, kubeconfig, dir }
}

/**
 * A gateway in cluster mode against the fake, with the KIngress status writer off: these tests are
 * about what the source reads (test/status.test.ts covers what the writer writes). With `tuning` the
 * informer backoff/watchdog are shortened.
 */
export async function startKubeGateway(t: Teardown, env: KubeEnv, args: string[] = [], tuning?: KubernetesSourceTuning): Promise<Gateway> {
  const kubeArgs = ['--kubernetes', '--kubeconfig', env.kubeconfig, ...args]
  const gw: Gateway = await startTestGateway(env.dir, kubeArgs, {}, { statusWriter: false, ...(tuning ? { kubernetes: tuning } : {}) })
  // Registered after the env's teardown, so it runs first (tap runs teardowns in reverse order).
  t.teardown(() => gw.close())
  return gw
}

const PLURALS: Record<string, string> = {
  'v1/Service': 'services',
  'v1/Secret': 'secrets',
  'v1/ConfigMap': 'configmaps',
  'discovery.k8s.io/v1/EndpointSlice': 'endpointslices',
  'networking.internal.knative.dev/v1alpha1/Ingress': 'ingresses',
  'serving.knative.dev/v1/Revision': 'revisions',
  'serving.knative.dev/v1/Route': 'routes',
  'serving.knative.dev/v1beta1/DomainMapping': 'domainmappings',
  'serving.knative.dev/v1/Service': 'services',
  'serving.knative.dev/v1/Configuration': 'configurations',
}

function resourceOf(obj: unknown): [string, string, string] {
  const o = obj as { apiVersion: string; kind: string }
  const plural = PLURALS[`${o.apiVersion}/${o.kind}`]
  if (!plural) throw new Error(`test helper: no resource for ${o.apiVersion} ${o.kind}`)
  const slash = o.apiVersion.lastIndexOf('/')
  return slash === -1 ? ['', o.apiVersion, plural] : [o.apiVersion.slice(0, slash), o.apiVersion.slice(slash + 1), plural]
}

/** Creates or replaces objects in the fake cluster (builders from helpers/gateway.ts). */
export function apply(api: FakeApiServer, ...objs: unknown[]): KObject[] {
  return objs.flat().map((o) => {
    const [group, version, plural] = resourceOf(o)
    return api.put(group, version, plural, o as object)
  })
}

/** Deletes an object from the fake cluster. */
export function del(api: FakeApiServer, obj: unknown): void {
  const [group, version, plural] = resourceOf(obj)
  const md = (obj as { metadata: { name: string; namespace?: string } }).metadata
  api.remove(group, version, plural, md.namespace ?? 'default', md.name)
}

export async function readyz(gw: Gateway): Promise<{ status: number; body: string }> {
  const r = await get(gw.ports.admin, 'localhost', '/readyz')
  return { status: r.status, body: r.body }
}

export async function waitReady(gw: Gateway, timeoutMs = 15_000): Promise<void> {
  await waitFor('/readyz 200 (Kubernetes source synced)', async () => (await readyz(gw)).status === 200, timeoutMs)
}

/** The kubernetes section of /debug/routes. */
export async function kubeDebug(gw: Gateway): Promise<KubeDebug> {
  const r = await get(gw.ports.admin, 'localhost', '/debug/routes')
  return (JSON.parse(r.body) as { sources: { kubernetes: KubeDebug } }).sources.kubernetes
}

export interface KubeDebug {
  synced: boolean
  healthy: boolean
  objects: number
  namespaces: string[] | 'all'
  serverReturn: { probes: number; answered: number; wakes: number }
  informers: Record<string, { path: string; synced: boolean; healthy: boolean; restarts: number; watchdogRestarts: number; errors: number; fieldSelector?: string; lastError?: { message: string }; retryInMs?: number; bookmarks: number }>
}

/** Which backend answered (the default app names itself), or the gateway's reason, or the status. */
export async function who(port: number, host: string, path = '/'): Promise<string> {
  const r = await get(port, host, path)
  if (r.status === 200) return r.json().backend
  return `${r.status} ${String(r.headers['x-edge-reason'] ?? '')}`.trim()
}

/** Polls until `host` is answered by `expected` (a backend name or `404 host-not-found`...). */
export async function waitServed(port: number, host: string, expected: string, timeoutMs = 15_000): Promise<void> {
  let last = ''
  try {
    await waitFor(`${host} answered by ${expected}`, async () => (last = await who(port, host)) === expected, timeoutMs)
  } catch (err) {
    throw new Error(`${(err as Error).message} (last answer: ${last})`)
  }
}
