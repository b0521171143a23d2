// The reverse proxies compared in one run, each configured as an equivalent one-worker proxy with
// keep-alive to the same backend: HAProxy (one thread), nginx (one worker), and edge-gateway (one
// process). Each returns a stop function.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { stringify } from 'yaml'
import type { ChildProcess } from 'node:child_process'
import { pinned, stop, waitPort, which } from './procs.ts'
import { NODE_FLAGS } from '../../src/runtime-flags.ts'
import { CURRENT_BUILD } from './baseline.ts'
import type { GatewayBuild } from './baseline.ts'

export interface Running {
  name: string
  port: number
  child: ChildProcess
  stop(): Promise<void>
}

function tmp(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

/**
 * HAProxy with one thread: a frontend on `port` to the backend, plus `more.sections` (further
 * frontends and backends, listening on `more.ports`) in the same process.
 */
export async function startHaproxy(port: number, backendPort: number, cpu: number | undefined, more: { sections?: string; ports?: number[]; env?: NodeJS.ProcessEnv } = {}): Promise<Running | string> {
  const bin = which('haproxy')
  if (!bin) return 'haproxy not installed (apt-get install haproxy)'
  const dir = tmp('haproxy-')
  const cfg = path.join(dir, 'haproxy.cfg')
  fs.writeFileSync(
    cfg,
    `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  server s1 127.0.0.1:${backendPort}
${more.sections ?? ''}`,
  )
  const child = pinned(cpu, bin, ['-f', cfg, '-db'], { env: more.env })
  for (const p of [port, ...(more.ports ?? [])]) await waitPort(p)
  return { name: 'haproxy', port, child, stop: () => stop(child) }
}

export async function startNginx(port: number, backendPort: number, cpu: number | undefined): Promise<Running | string> {
  const bin = which('nginx')
  if (!bin) return 'nginx not installed (apt-get install nginx-light)'
  const dir = tmp('nginx-')
  const cfg = path.join(dir, 'nginx.conf')
  fs.writeFileSync(
    cfg,
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream be { server 127.0.0.1:${backendPort}; keepalive 128; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_buffering off;
    }
  }
}
`,
  )
  const child = pinned(cpu, bin, ['-c', cfg, '-p', dir])
  await waitPort(port)
  return { name: 'nginx', port, child, stop: () => stop(child) }
}

/**
 * A manifest directory routing `bench.example.com` (and 90/10 `split.example.com` with a tag) to the
 * backend, with `extraIngresses` more KIngress and any `extraDocs` (Secrets, Services...).
 */
export function gatewayManifests(backendPort: number, extraIngresses = 0, extraDocs: unknown[] = []): string {
  const dir = tmp('edge-bench-')
  const docs: unknown[] = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'app', namespace: 'default' }, spec: { ports: [{ name: 'http', port: 80 }] } },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'app-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'app' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
      ports: [{ name: 'http', port: backendPort }],
    },
    ...['hello-00001', 'hello-00002'].flatMap((rev) => [
      { apiVersion: 'serving.knative.dev/v1', kind: 'Revision', metadata: { name: rev, namespace: 'default' }, spec: { containerConcurrency: 0 } },
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `${rev}-private-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': `${rev}-private` } },
        addressType: 'IPv4',
        endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready: true } }],
        ports: [{ name: 'http', port: backendPort }],
      },
    ]),
    {
      apiVersion: 'serving.knative.dev/v1',
      kind: 'Route',
      metadata: { name: 'split', namespace: 'default' },
      status: { url: 'http://split.example.com', traffic: [{ revisionName: 'hello-00001', percent: 90 }, { revisionName: 'hello-00002', percent: 10, tag: 'candidate' }] },
    },
    ingress('bench', ['bench.example.com']),
  ]
  for (let i = 0; i < extraIngresses; i++) docs.push(ingress(`filler-${i}`, [`filler-${i}.example.com`, `www.filler-${i}.example.com`]))
  docs.push(...extraDocs)
  fs.writeFileSync(path.join(dir, 'bench.yaml'), docs.map((d) => stringify(d)).join('---\n'))
  return dir
}

export function ingress(name: string, hosts: string[], serviceName = 'app'): unknown {
  return {
    apiVersion: 'networking.internal.knative.dev/v1alpha1',
    kind: 'Ingress',
    metadata: { name, namespace: 'default', annotations: { 'networking.knative.dev/ingress.class': 'edge.ingress.networking.knative.dev' }, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { rules: [{ hosts, visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName, servicePort: 80, percent: 100 }] }] } }] },
  }
}

/** Starts `build` (this checkout's dist/ unless told otherwise: `--baseline` starts another commit's the same way). */
export async function startGatewayProc(port: number, adminPort: number, manifests: string, cpu: number | undefined, workers = 1, extraArgs: string[] = [], build: GatewayBuild = CURRENT_BUILD, env: NodeJS.ProcessEnv = {}): Promise<Running> {
  if (!fs.existsSync(build.mainJs)) throw new Error(`${build.mainJs} missing: run npm run build first`)
  const child = pinned(cpu, process.execPath, [...NODE_FLAGS, build.mainJs, '--manifests', manifests, '--http-port', String(port), '--local-port', String(port + 1), '--https-port', String(port + 2), '--admin-port', String(adminPort), '--listen-address', '127.0.0.1', '--workers', String(workers), '--log-level', 'warn', ...extraArgs], { env })
  await waitPort(port, 30_000)
  await waitPort(adminPort, 30_000)
  return { name: `${build.name}${workers > 1 ? ` x${workers}` : ''}`, port, child, stop: () => stop(child) }
}
