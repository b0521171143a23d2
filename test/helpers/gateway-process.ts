// A gateway as a user starts it: a child process on free ports, ready before the test goes on.
import type { Test } from 'tap'
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePorts, get, waitFor } from './gateway.ts'

export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

export interface GatewayProcess {
  readonly child: ChildProcess
  readonly http: number
  readonly local: number
  readonly admin: number
  /** stdout and stderr so far. */
  output(): string
}

/**
 * Starts `command args` with the listener ports added (free ones; the admin port may be given, for
 * something that must know it first), and waits until it is ready.
 * Stopped at the end of the test whatever happened: SIGINT, so that a gateway left running by a
 * failed test still stops its local revision processes.
 */
export async function startGatewayProcess(t: Test, command: string, args: string[], env: NodeJS.ProcessEnv, opts: { adminPort?: number } = {}): Promise<GatewayProcess> {
  const [http, local, free, https] = (await freePorts(4)) as [number, number, number, number]
  const admin = opts.adminPort ?? free
  const ports = ['--http-port', String(http), '--local-port', String(local), '--admin-port', String(admin), '--https-port', String(https)]
  const child: ChildProcess = spawn(command, [...args, ...ports], { cwd: projectRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (c) => (out += c))
  child.stderr!.on('data', (c) => (out += c))
  t.teardown(() => {
    child.kill('SIGINT')
  })
  await waitFor('the gateway to be ready', async () => (await get(admin, 'localhost', '/readyz').catch(() => undefined))?.status === 200, 30_000)
  return { child, http, local, admin, output: () => out }
}
