// Revisions annotated `edge.knative.dev/local-command` run as local processes: the command through
// /bin/sh in the manifest's directory, with PORT set to a free port on 127.0.0.1.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { ANN_LOCAL_COMMAND } from '../model/k8s.ts'
import { freePort, logOutput, whenEnded } from './instance.ts'
import type { ExitListener, InstanceLauncher, LaunchSpec, RunningInstance } from './instance.ts'
import { waitReady } from './readiness.ts'
import { containerEnv, knativeEnv, readinessProbe, servingContainer } from './revision-template.ts'

/** How long a process has between SIGTERM and SIGKILL. */
const STOP_GRACE_MS = 5000

export class ProcessLauncher implements InstanceLauncher {
  readonly hint = `check ${ANN_LOCAL_COMMAND}`
  private readonly live = new Set<ChildProcess>()

  async start(spec: LaunchSpec, onExit: ExitListener): Promise<RunningInstance> {
    const port = await freePort()
    const command = spec.revision.metadata.annotations?.[ANN_LOCAL_COMMAND] ?? ''
    const { env, cmd } = splitCommand(command)
    // exec: the shell becomes the app, so our signals reach the app itself.
    const child = spawn('/bin/sh', ['-c', `exec ${cmd}`], {
      cwd: spec.cwd,
      // The container's env (a Knative template's), then the command's own assignments, then what
      // Knative itself sets.
      env: { ...process.env, ...containerEnv(spec.revision), ...env, ...knativeEnv(spec.revision, port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const log = spec.log.child({ pid: child.pid, port })
    log.info({ command }, 'local revision process starting')
    const output = logOutput(child, log)
    this.live.add(child)
    const inst = new ProcessInstance(child, port, readinessProbe(servingContainer(spec.revision)))
    whenEnded(child, output, (code, signal, lastOutput) => {
      this.live.delete(child)
      inst.exited = true
      onExit(code, signal, lastOutput)
    })
    child.once('error', (err) => log.error({ err: err.message }, 'local revision process failed to start'))
    return inst
  }

  killNow(): void {
    for (const child of this.live) child.kill('SIGKILL')
  }
}

class ProcessInstance implements RunningInstance {
  readonly container = undefined
  exited = false
  private readonly child: ChildProcess
  readonly port: number
  private readonly probe: ReturnType<typeof readinessProbe>

  constructor(child: ChildProcess, port: number, probe: ReturnType<typeof readinessProbe>) {
    this.child = child
    this.port = port
    this.probe = probe
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  ready(timeoutMs: number, gone: () => boolean): Promise<boolean> {
    // The process listens itself: a connection accepted is the app's.
    return waitReady(this.port, this.probe, { timeoutMs, settleMs: 0, gone: () => this.exited || gone() })
  }

  stop(): Promise<void> {
    if (this.exited) return Promise.resolve()
    return new Promise((resolve) => {
      const t = setTimeout(() => this.child.kill('SIGKILL'), STOP_GRACE_MS)
      t.unref()
      this.child.once('exit', () => {
        clearTimeout(t)
        resolve()
      })
      this.child.kill('SIGTERM')
    })
  }
}

/**
 * Splits `A=1 B=2 node app.js` into its leading environment assignments and the command. A leading
 * `node` becomes the gateway's own Node binary, whatever PATH holds.
 */
export function splitCommand(command: string): { env: Record<string, string>; cmd: string } {
  const env: Record<string, string> = {}
  let rest = command.trim()
  for (;;) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s+/.exec(rest)
    if (!m) break
    env[m[1]!] = m[2]!
    rest = rest.slice(m[0].length)
  }
  const cmd = rest.replace(/^node(?=\s|$)/, `"${process.execPath}"`)
  return { env, cmd }
}
