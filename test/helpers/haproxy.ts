// A real HAProxy (Debian's package, installed by .ci/run) in front of the gateway, as a load balancer
// that speaks the PROXY protocol. Started in the foreground with a config written for the test, and
// stopped with it.
import type { Test } from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import net from 'node:net'
import { freePorts, waitFor } from './gateway.ts'

export interface HaproxyRoute {
  /** How HAProxy talks to the gateway: `send-proxy` (v1) or `send-proxy-v2`. */
  send: 'send-proxy' | 'send-proxy-v2'
  /** The gateway port HAProxy forwards to (plain or TLS: HAProxy passes TCP through). */
  to: number
}

/** Starts HAProxy with one TCP frontend per route; returns the frontend ports, in order. */
export async function startHaproxy(t: Test, routes: HaproxyRoute[]): Promise<number[]> {
  const bin = spawnSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).stdout.trim()
  if (bin === '') throw new Error('these tests need HAProxy as a PROXY-protocol sender: apt-get install haproxy (.ci/run installs it)')
  const ports = await freePorts(routes.length)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-haproxy-'))
  const cfg = [
    'global',
    '  maxconn 256',
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 30s',
    ...routes.flatMap((r, i) => [
      `frontend fe${i}`,
      `  bind 127.0.0.1:${ports[i]}`,
      `  default_backend be${i}`,
      `backend be${i}`,
      `  server gw 127.0.0.1:${r.to} ${r.send}`,
    ]),
  ].join('\n')
  fs.writeFileSync(path.join(dir, 'haproxy.cfg'), `${cfg}\n`)
  const child = spawn(bin, ['-f', path.join(dir, 'haproxy.cfg'), '-db'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (c) => (out += c))
  child.stderr.on('data', (c) => (out += c))
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  await waitFor(`HAProxy to listen (${out.trim()})`, () => Promise.all(ports.map((p) => canConnect(p))).then((ok) => ok.every(Boolean)))
  return ports
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
  })
}
