// The container engine the local runner uses for revisions with an image: podman or docker, by their
// command lines (the two take the same `run`, `ps` and `rm` options used here). A binary on PATH is
// not enough: the docker CLI is often installed without a daemon, so an engine counts only once its
// `info` succeeds.
import { spawn, spawnSync } from 'node:child_process'

export type EngineChoice = 'auto' | 'podman' | 'docker' | 'none'
export const ENGINE_CHOICES: readonly EngineChoice[] = ['auto', 'podman', 'docker', 'none']

export type Detected = { engine: ContainerEngine; why?: undefined } | { engine?: undefined; why: string }

/** How long `info` may take before the engine is given up on (a first podman run sets up its storage). */
const INFO_TIMEOUT_MS = 30_000

/** Finds a working engine: the one chosen, or with `auto` podman then docker. `why` says why none. */
export async function detectEngine(choice: EngineChoice): Promise<Detected> {
  if (choice === 'none') return { why: '--container-engine is none' }
  const failures: string[] = []
  for (const command of choice === 'auto' ? (['podman', 'docker'] as const) : [choice]) {
    const r = await run(command, ['info'], INFO_TIMEOUT_MS)
    if (r.code === 0) return { engine: new ContainerEngine(command) }
    failures.push(`${command}: ${r.spawnError === 'ENOENT' ? 'not found on PATH' : `'${command} info' failed: ${lastLine(r.stderr) || `exit ${r.code}`}`}`)
  }
  return { why: failures.join('; ') }
}

export class ContainerEngine {
  readonly command: 'podman' | 'docker'

  constructor(command: 'podman' | 'docker') {
    this.command = command
  }

  /** Names of the containers (running or not) that carry `label=value`. */
  async namesWithLabel(label: string, value: string): Promise<string[]> {
    const r = await run(this.command, ['ps', '-a', '--filter', `label=${label}=${value}`, '--format', '{{.Names}}'], 30_000)
    if (r.code !== 0) throw new Error(`'${this.command} ps' failed: ${lastLine(r.stderr) || `exit ${r.code}`}`)
    return r.stdout.split('\n').map((s) => s.trim()).filter(Boolean)
  }

  /** Removes containers, killing them if they run; a name already gone is no error. */
  async remove(names: readonly string[]): Promise<void> {
    if (names.length > 0) await run(this.command, ['rm', '-f', ...names], 30_000)
  }

  /** remove(), synchronously: for the process's 'exit' event, where nothing asynchronous runs. */
  removeNow(names: readonly string[]): void {
    if (names.length > 0) spawnSync(this.command, ['rm', '-f', ...names], { stdio: 'ignore', timeout: 15_000 })
  }
}

interface RunResult {
  code: number | null
  stdout: string
  stderr: string
  spawnError?: string
}

function run(command: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
    child.once('error', (err: NodeJS.ErrnoException) => resolve({ code: null, stdout, stderr, spawnError: err.code ?? err.message }))
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n')
  return (lines[lines.length - 1] ?? '').trim().slice(0, 300)
}
