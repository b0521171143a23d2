// What the local runner runs for a revision, behind one small interface: a local process
// (process-launcher.ts, the `edge.knative.dev/local-command` annotation) or a container
// (container-launcher.ts, the revision's image). The runner (local-runner.ts) scales instances and
// publishes them as endpoints without asking which kind they are.
import type { ChildProcess } from 'node:child_process'
import net from 'node:net'
import type { Logger } from 'pino'
import type { Revision } from '../model/k8s.ts'

export interface LaunchSpec {
  readonly revision: Revision
  readonly namespace: string
  readonly name: string
  /** A number unique in this gateway, for names. */
  readonly id: number
  /** The directory of the manifest that holds the Revision: relative paths in a command start there. */
  readonly cwd: string
  readonly log: Logger
}

export interface RunningInstance {
  /** The port on 127.0.0.1 where it takes requests. */
  readonly port: number
  /** What /debug/routes shows of it. */
  readonly pid: number | undefined
  readonly container: string | undefined
  /**
   * Resolves true once it takes requests, false when it exits first, `gone()` turns true, or
   * `timeoutMs` passes.
   */
  ready(timeoutMs: number, gone: () => boolean): Promise<boolean>
  /** Asks it to stop (SIGTERM, and harder after a grace period); resolves once it has exited. */
  stop(): Promise<void>
}

/** `lastOutput`: the instance's last few lines of output, which say why it exited before it was ready. */
export type ExitListener = (code: number | null, signal: NodeJS.Signals | null, lastOutput: readonly string[]) => void

export interface InstanceLauncher {
  /** What to check when instances keep dying before they are ready (for the log). */
  readonly hint: string
  /**
   * Why an instance that exited before it was ready did, when the launcher can tell better than its
   * exit code (a container engine's own failure, such as an image it could not pull).
   */
  explainExit?(revision: LaunchSpec['revision'], code: number | null, lastOutput: readonly string[]): string | undefined
  /** Starts one instance. `onExit` is called once when it ends, however it ends. */
  start(spec: LaunchSpec, onExit: ExitListener): Promise<RunningInstance>
  /**
   * The gateway is exiting without close() (a second Ctrl-C, a fatal error): end every instance
   * still running, synchronously, since nothing else would.
   */
  killNow(): void
}

/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.unref()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

/**
 * Calls `fn` once when the child has ended: on 'exit', or on 'error' when it never started (a
 * missing binary), after which Node may send no 'exit' at all.
 */
export function whenEnded(child: ChildProcess, output: () => readonly string[], fn: ExitListener): void {
  let done = false
  const end = (code: number | null, signal: NodeJS.Signals | null): void => {
    if (done) return
    done = true
    fn(code, signal, output())
  }
  // 'close', not 'exit': its output has been read to the end by then (the lines that say why).
  child.once('close', end)
  child.once('error', () => {
    if (child.pid === undefined) end(null, null)
  })
}

/** Lines of output kept per instance, to say why one that exited early did. */
const TAIL_LINES = 5

/**
 * Each line an instance writes goes to the gateway's log, tagged with the instance; the last few
 * are kept, for when it exits before it is ready.
 */
export function logOutput(child: ChildProcess, log: Logger): () => string[] {
  const tail: string[] = []
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8')
    stream?.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) {
        if (!line.trim()) continue
        log.info({ app: line.trimEnd() }, 'app output')
        tail.push(line.trimEnd().slice(0, 300))
        if (tail.length > TAIL_LINES) tail.shift()
      }
    })
  }
  return () => tail
}
