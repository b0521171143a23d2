// Revisions with an image (and no local command) run as containers: `podman run` (or docker's) with
// the template's command, args, env and working directory, PORT as Knative sets it, the serving port
// published on 127.0.0.1, and --init so that an app running as PID 1 (Node, say) still stops on
// SIGTERM. Each container is labelled with its revision and its gateway, and named after the
// gateway's process, so that whatever a gateway leaves behind (killed with SIGKILL) can be found and
// removed by the next one on the same manifests.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import type { Logger } from 'pino'
import type { Revision } from '../model/k8s.ts'
import type { ContainerEngine } from './container-engine.ts'
import { freePort, logOutput, whenEnded } from './instance.ts'
import type { ExitListener, InstanceLauncher, LaunchSpec, RunningInstance } from './instance.ts'
import { waitReady } from './readiness.ts'
import type { ReadinessProbe } from './readiness.ts'
import { containerPort, knativeEnv, readinessProbe, servingContainer } from './revision-template.ts'

export const LABEL_CONTAINER_REVISION = 'edge.knative.dev/revision'
export const LABEL_CONTAINER_GATEWAY = 'edge.knative.dev/gateway'

/** What podman and docker say when an image is not there and cannot be pulled. */
const IMAGE_FAILURE = /pull|initializing source|manifest unknown|image not known|no such image|repository does not exist|not found: manifest|unauthorized|no such host/i
/** What the init process (--init) says when the container's command is not in the image. */
const INIT_EXEC_FAILURE = /failed to exec pid1|exec .* failed: no such file/i

/** Between SIGTERM and `rm -f`, as the kubelet's grace period (shorter: this is a laptop). */
const STOP_GRACE_MS = 5000
/** A connection through a port forwarder must stay open this long to count (see readiness.ts). */
const FORWARDER_SETTLE_MS = 25

export class ContainerLauncher implements InstanceLauncher {
  readonly hint = 'check the image, its command and that it listens on $PORT'
  readonly engine: ContainerEngine
  /** Which gateway's containers these are: the same for every gateway serving the same manifests. */
  readonly scope: string
  /** Containers started and not known to be gone. */
  private readonly live = new Set<string>()

  constructor(engine: ContainerEngine, scope: string) {
    this.engine = engine
    this.scope = scope
  }

  async start(spec: LaunchSpec, onExit: ExitListener): Promise<RunningInstance> {
    const hostPort = await freePort()
    const name = `edge-${this.scope}-${process.pid}-${spec.namespace}-${spec.name}-${spec.id}`
    const args = runArgs(spec.revision, { name, hostPort, scope: this.scope })
    const child = spawn(this.engine.command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const log = spec.log.child({ container: name, port: hostPort })
    log.info({ engine: this.engine.command, image: servingContainer(spec.revision)?.image }, 'revision container starting')
    const output = logOutput(child, log)
    this.live.add(name)
    const inst = new ContainerInstance(this.engine, child, name, hostPort, readinessProbe(servingContainer(spec.revision)))
    whenEnded(child, output, (code, signal, lastOutput) => {
      // `run --rm` removed it, unless `run` itself was killed: stop() and killNow() see to that.
      if (code !== null) this.live.delete(name)
      inst.exited = true
      onExit(code, signal, lastOutput)
    })
    child.once('error', (err) => log.error({ err: err.message }, `'${this.engine.command} run' failed to start`))
    return inst
  }

  /**
   * `podman run` and `docker run` exit 125 when the engine itself failed (the image could not be
   * pulled or found, a bad option), 126 when the container's command cannot be run and 127 when the
   * image has no such command: the engine's last "Error:" line says the rest. With --init, a
   * command the image lacks is reported by the init process instead (catatonit under podman, tini
   * under docker), with its own exit code.
   */
  explainExit(revision: Revision, code: number | null, lastOutput: readonly string[]): string | undefined {
    const c = servingContainer(revision)
    const image = c?.image ?? ''
    const command = c?.command?.[0] !== undefined ? `command ${c.command[0]}` : 'command (the image\'s entrypoint)'
    const error = [...lastOutput].reverse().find((l) => /^Error\b|docker: Error|catatonit|tini/i.test(l)) ?? lastOutput[lastOutput.length - 1] ?? ''
    const said = error ? `: ${error}` : ''
    if (code === 125 && IMAGE_FAILURE.test(error)) return `cannot start: its image ${image} could not be pulled or found${said}; check the image's name and tag, and that its registry is reachable (try '${this.engine.command} pull ${image}')`
    if (code === 125) return `cannot start: '${this.engine.command} run' failed${said}; check the Revision's container (image ${image}, ports, env)`
    if (code === 126) return `cannot start: the container's ${command} cannot be run in image ${image}${said}; check its command and that the file is executable`
    if (code === 127 || INIT_EXEC_FAILURE.test(error)) return `cannot start: the container's ${command} was not found in image ${image}${said}; check its command and args`
    return undefined
  }

  killNow(): void {
    this.engine.removeNow([...this.live])
    this.live.clear()
  }

  /**
   * Removes the containers of this scope whose gateway process is gone: a gateway killed before it
   * could stop them. Containers of a gateway still running on the same manifests are left alone.
   */
  async sweep(log: Logger): Promise<void> {
    const names = await this.engine.namesWithLabel(LABEL_CONTAINER_GATEWAY, this.scope)
    const prefix = `edge-${this.scope}-`
    const orphans = names.filter((n) => {
      const pid = n.startsWith(prefix) ? Number.parseInt(n.slice(prefix.length), 10) : NaN
      return Number.isInteger(pid) && pid !== process.pid && !alive(pid)
    })
    if (orphans.length === 0) return
    log.info({ containers: orphans }, 'removing containers left behind by a gateway that was killed')
    await this.engine.remove(orphans)
  }
}

class ContainerInstance implements RunningInstance {
  readonly pid = undefined
  exited = false
  readonly port: number
  readonly container: string
  private readonly engine: ContainerEngine
  private readonly child: ChildProcess
  private readonly probe: ReadinessProbe | undefined

  constructor(engine: ContainerEngine, child: ChildProcess, name: string, port: number, probe: ReadinessProbe | undefined) {
    this.engine = engine
    this.child = child
    this.container = name
    this.port = port
    this.probe = probe
  }

  ready(timeoutMs: number, gone: () => boolean): Promise<boolean> {
    return waitReady(this.port, this.probe, { timeoutMs, settleMs: FORWARDER_SETTLE_MS, gone: () => this.exited || gone() })
  }

  async stop(): Promise<void> {
    if (!this.exited) {
      await new Promise<void>((resolve) => {
        // `run` passes SIGTERM to the container's init; after the grace period the container is
        // removed by force, and `run` (which ends with it) is killed only if even that hangs.
        const force = setTimeout(() => void this.engine.remove([this.container]), STOP_GRACE_MS)
        const kill = setTimeout(() => this.child.kill('SIGKILL'), 3 * STOP_GRACE_MS)
        force.unref()
        kill.unref()
        this.child.once('exit', () => {
          clearTimeout(force)
          clearTimeout(kill)
          resolve()
        })
        this.child.kill('SIGTERM')
      })
    }
    // A SIGTERM that reached `run` before its container existed, or a killed `run`, can leave the
    // container behind: remove it whatever happened (a name already gone is no error).
    await this.engine.remove([this.container])
  }
}

/** The `run` command line for a revision's serving container (Kubernetes' command/args semantics). */
export function runArgs(rev: Revision, o: { name: string; hostPort: number; scope: string }): string[] {
  const c = servingContainer(rev)
  const port = containerPort(c)
  const ns = rev.metadata.namespace ?? 'default'
  const args = ['run', '--rm', '--init', '--name', o.name]
  args.push('--label', `${LABEL_CONTAINER_REVISION}=${ns}/${rev.metadata.name}`, '--label', `${LABEL_CONTAINER_GATEWAY}=${o.scope}`)
  args.push('--publish', `127.0.0.1:${o.hostPort}:${port}`)
  // Entries with valueFrom cannot be resolved without a cluster: reported as a problem, left out here.
  for (const e of c?.env ?? []) if (e.value !== undefined || e.valueFrom === undefined) args.push('--env', `${e.name}=${e.value ?? ''}`)
  for (const [k, v] of Object.entries(knativeEnv(rev, port))) args.push('--env', `${k}=${v}`)
  if (c?.workingDir) args.push('--workdir', c.workingDir)
  // Kubernetes: `command` replaces the image's entrypoint (and its default arguments), `args`
  // replaces the default arguments. `--entrypoint` takes one word, so the rest of `command` leads
  // the arguments.
  const command = c?.command ?? []
  if (command.length > 0) args.push('--entrypoint', command[0]!)
  args.push(c?.image ?? '', ...command.slice(1), ...(c?.args ?? []))
  return args
}

/** Whether a process exists (one of another user counts: it answers EPERM). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
