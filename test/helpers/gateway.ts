// Test fixtures: real backend servers on loopback, manifest directories, and real gateways on
// ephemeral ports. Nothing here fakes the gateway: tests talk to it over sockets.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { stringify } from 'yaml'
import { request as undiciRequest } from 'undici'
import { parseConfig } from '../../src/config.ts'
import type { GatewayConfig } from '../../src/config.ts'
import { startGateway } from '../../src/gateway.ts'
import type { Gateway, StartOptions } from '../../src/gateway.ts'

export interface SeenRequest {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  rawHeaders: string[]
  httpVersion: string
}

export interface Backend {
  name: string
  port: number
  server: http.Server
  seen: SeenRequest[]
  /** Requests in flight right now, and the most ever seen at once. */
  inFlight: number
  maxInFlight: number
  close(): Promise<void>
}

export type BackendHandler = (req: http.IncomingMessage, res: http.ServerResponse, backend: Backend) => void

/** The default app: answers JSON describing the request, like Knative's conformance `runtime` image. */
export const describeRequest: BackendHandler = (req, res, b) => {
  const body = JSON.stringify({ backend: b.name, method: req.method, url: req.url, host: req.headers.host, headers: req.headers })
  res.writeHead(200, { 'content-type': 'application/json', 'x-backend': b.name })
  res.end(body)
}

/** `host`: the loopback address it listens on (`::1` for an IPv6 pod). */
export async function startBackend(name: string, handler: BackendHandler = describeRequest, host = '127.0.0.1'): Promise<Backend> {
  const b: Backend = {
    name,
    port: 0,
    server: undefined as unknown as http.Server,
    seen: [],
    inFlight: 0,
    maxInFlight: 0,
    close: async () => {
      b.server.closeAllConnections()
      await new Promise<void>((r) => b.server.close(() => r()))
    },
  }
  b.server = http.createServer((req, res) => {
    b.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, httpVersion: req.httpVersion })
    b.inFlight++
    b.maxInFlight = Math.max(b.maxInFlight, b.inFlight)
    res.once('close', () => b.inFlight--)
    handler(req, res, b)
  })
  await new Promise<void>((r) => b.server.listen(0, host, () => r()))
  b.port = (b.server.address() as AddressInfo).port
  return b
}

/** Ports free right now, for a child process that needs fixed ports (closed again before returning). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((r) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => r(s)) })),
  )
  const ports = servers.map((s) => (s.address() as AddressInfo).port)
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  return ports
}

export function tempDir(prefix = 'edge-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

/** Writes objects as a multi-document YAML file. */
export function writeManifest(dir: string, file: string, objects: unknown[]): void {
  const text = objects.map((o) => stringify(o)).join('---\n')
  const full = path.join(dir, file)
  fs.mkdirSync(path.dirname(full), { recursive: true })
  fs.writeFileSync(full + '.tmp', text)
  fs.renameSync(full + '.tmp', full) // atomic, as an editor or kubectl would leave it
}

export const silentLog = pino({ level: process.env.EDGE_TEST_LOG ?? 'silent' })

export async function startTestGateway(dir: string, args: string[] = [], env: NodeJS.ProcessEnv = {}, start: Partial<StartOptions> = {}): Promise<Gateway> {
  // Loopback unless the test picks its own addresses (listen addresses add up, as a list does).
  const listen = args.includes('--listen-address') ? [] : ['--listen-address', '127.0.0.1']
  const config: GatewayConfig = parseConfig(
    ['--manifests', dir, '--http-port', '0', '--local-port', '0', '--https-port', '0', '--admin-port', '0', ...listen, ...args],
    env,
  )
  return startGateway(config, { log: silentLog, defaultMetrics: false, ...start })
}

/** Waits until the gateway has compiled a snapshot for which `ok` holds (file watches are async). */
export { waitFor } from './wait.ts'

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  json<T = { backend: string; headers: Record<string, string>; host: string; url: string }>(): T
}

export async function get(port: number, host: string, pathAndQuery = '/', headers: Record<string, string> = {}, method = 'GET', body?: string | Buffer): Promise<Answer> {
  const res = await undiciRequest(`http://127.0.0.1:${port}${pathAndQuery}`, { method: method as 'GET', headers: { host, ...headers }, body })
  const text = await res.body.text()
  return {
    status: res.statusCode,
    headers: res.headers,
    body: text,
    json: () => JSON.parse(text),
  }
}

/** The splits the gateway serves for `host` now (from /debug/routes), e.g. `svc:default/a:80 50`, path by path. */
export async function servedSplits(adminPort: number, host: string): Promise<string[][]> {
  const routes = (await get(adminPort, 'localhost', '/debug/routes')).json<{ hosts: Array<{ host: string; paths: Array<{ splits: Array<{ backend: string; percent: number }> }> }> }>()
  const entry = routes.hosts.find((h) => h.host === host)
  return entry ? entry.paths.map((p) => p.splits.map((s) => `${s.backend} ${s.percent}`)) : []
}

// ---- object builders: the same shapes a cluster holds ----

export function service(name: string, ports: Array<{ name?: string; port: number; appProtocol?: string }>, ns = 'default'): unknown {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { type: 'ClusterIP', ports } }
}

export function externalNameService(name: string, externalName: string, port: number, ns = 'default'): unknown {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { type: 'ExternalName', externalName, ports: [{ name: 'http', port }] } }
}

export function endpointSlice(serviceName: string, ports: Array<{ name?: string; port: number }>, addresses: Array<{ ip: string; ready?: boolean }>, ns = 'default', name?: string): unknown {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: name ?? `${serviceName}-${Math.random().toString(36).slice(2, 7)}`, namespace: ns, labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    endpoints: addresses.map((a) => ({ addresses: [a.ip], conditions: { ready: a.ready ?? true } })),
    ports: ports.map((p) => ({ ...p, protocol: 'TCP' })),
  }
}

/** A Service plus an EndpointSlice pointing at local backends (all on 127.0.0.1, one port each). */
export function serviceFor(name: string, backend: Backend, ns = 'default'): unknown[] {
  return [service(name, [{ name: 'http', port: 80 }], ns), endpointSlice(name, [{ name: 'http', port: backend.port }], [{ ip: '127.0.0.1' }], ns, `${name}-slice`)]
}

/** A Knative revision's pods: the `<rev>-private` EndpointSlice (one local backend). */
export function revisionPods(revision: string, backend: Backend, ns = 'default'): unknown {
  return endpointSlice(`${revision}-private`, [{ name: 'http', port: backend.port }], [{ ip: '127.0.0.1' }], ns, `${revision}-private-slice`)
}

export function revision(name: string, spec: Record<string, unknown> = {}, annotations: Record<string, string> = {}, ns = 'default'): unknown {
  return { apiVersion: 'serving.knative.dev/v1', kind: 'Revision', metadata: { name, namespace: ns, annotations }, spec }
}

export const CLASS = 'edge.ingress.networking.knative.dev'

export function kingress(name: string, spec: unknown, opts: { ns?: string; created?: string; cls?: string | null; generation?: number } = {}): unknown {
  const annotations = opts.cls === null ? {} : { 'networking.knative.dev/ingress.class': opts.cls ?? CLASS }
  return {
    apiVersion: 'networking.internal.knative.dev/v1alpha1',
    kind: 'Ingress',
    metadata: { name, namespace: opts.ns ?? 'default', annotations, creationTimestamp: opts.created, generation: opts.generation ?? 1 },
    spec,
  }
}

/** One rule, one path, splits to Services (`[serviceName, percent, appendHeaders?]`). */
export function simpleIngress(name: string, hosts: string[], splits: Array<[string, number, Record<string, string>?]>, extra: { visibility?: string; ns?: string; created?: string } = {}): unknown {
  return kingress(
    name,
    {
      rules: [
        {
          hosts,
          visibility: extra.visibility ?? 'ExternalIP',
          http: { paths: [{ splits: splits.map(([svc, percent, appendHeaders]) => ({ serviceNamespace: extra.ns ?? 'default', serviceName: svc, servicePort: 80, percent, appendHeaders })) }] },
        },
      ],
    },
    { ns: extra.ns, created: extra.created },
  )
}
