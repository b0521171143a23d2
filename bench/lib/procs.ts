// Starting and stopping the processes a benchmark run needs, pinned to a core with taskset so each
// proxy gets exactly one core and the load generator another.
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'

export const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0

/**
 * The processes pinned() started that have not exited yet: the bench stops them when it exits
 * early (an error, Ctrl-C), so that no proxy or backend is left running pinned to a core.
 */
const live = new Set<ChildProcess>()

/**
 * SIGINT to every process pinned() started that is still running; synchronous, for 'exit' handlers.
 * SIGINT, not SIGTERM: on SIGTERM the gateway keeps serving for its 30 s drain, which would outlive
 * the bench; HAProxy, nginx and the node backends stop at once on either.
 */
export function interruptLive(): void {
  for (const child of live) child.kill('SIGINT')
}

export function pinned(cpu: number | undefined, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ChildProcess {
  const [file, argv] = cpu !== undefined && hasTaskset ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]
  const child = spawn(file, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...opts.env }, cwd: opts.cwd })
  live.add(child)
  let err = ''
  child.stderr?.on('data', (c) => (err = (err + c).slice(-4000)))
  child.on('exit', (code, signal) => {
    live.delete(child)
    if (code && code !== 0 && signal === null) process.stderr.write(`${cmd} exited ${code}: ${err}\n`)
  })
  return child
}

export async function waitPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => (s.destroy(), r(true)))
      s.once('error', () => r(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`nothing listening on ${port} after ${timeoutMs} ms`)
}

export async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return
  await new Promise<void>((r) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 3000)
    child.once('exit', () => (clearTimeout(t), r()))
    child.kill('SIGTERM')
  })
}

export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : undefined
}

export function rssMb(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  const r = spawnSync('ps', ['-o', 'rss=', '-p', String(pid)], { encoding: 'utf8' })
  const kb = Number(r.stdout.trim())
  return Number.isFinite(kb) && kb > 0 ? kb / 1024 : undefined
}

/**
 * Resident MB of the process's brk heap (the `[heap]` mapping): glibc's main malloc arena, where
 * Buffers, native parsers and V8's own malloc'd structures live (V8's JS heap is in other mappings).
 * It shows native memory the allocator keeps after it is freed. Undefined without /proc.
 */
export function mallocHeapMb(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    const smaps = fs.readFileSync(`/proc/${pid}/smaps`, 'utf8')
    const at = smaps.search(/ \[heap\]\n/)
    if (at < 0) return 0
    const kb = /\nRss:\s+(\d+) kB/.exec(smaps.slice(at))
    return kb ? Number(kb[1]) / 1024 : undefined
  } catch {
    return undefined
  }
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100

/** utime + stime of one process from /proc, in clock ticks; 0 if it is gone. */
function ticksOf(pid: number): number {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return 0
  }
}

/**
 * CPU time (ms) a process and its direct children have used so far: nginx's worker is its master's
 * child. Undefined without /proc. Resolution is one clock tick (10 ms): read it over whole rounds.
 */
export function cpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined || !fs.existsSync(`/proc/${pid}/stat`)) return undefined
  let ticks = ticksOf(pid)
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const ppid = Number(fs.readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]!.split(' ')[1])
      if (ppid === pid) ticks += ticksOf(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return (ticks * 1000) / CLOCK_TICKS
}

/**
 * Runs a load generator to its end, pinned like pinned() does, and gives back what it printed. One
 * that has not ended after `timeoutMs` is killed and the run fails (h2load 1.52 can hang forever).
 */
export function pinnedOutput(cpu: number | undefined, cmd: string, args: string[], timeoutMs: number): Promise<string> {
  const [file, argv] = cpu !== undefined && hasTaskset ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]
  return new Promise<string>((resolve, reject) => {
    const p = spawn(file, argv)
    live.add(p)
    let s = ''
    let timedOut = false
    const timer = setTimeout(() => ((timedOut = true), p.kill('SIGKILL')), timeoutMs)
    p.stdout.on('data', (c) => (s += c))
    p.stderr.on('data', (c) => (s += c))
    p.on('error', reject)
    p.on('exit', (code) => {
      clearTimeout(timer)
      live.delete(p)
      if (code === 0) resolve(s)
      else reject(new Error(`${cmd} ${args.join(' ')} ${timedOut ? `had not ended after ${timeoutMs / 1000} s and was killed` : `failed (exit ${code})`}: ${s.slice(-2000)}`))
    })
  })
}
