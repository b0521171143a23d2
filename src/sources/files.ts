// The files source: a directory of Kubernetes manifests, watched. Each file is its own source in the
// store, so a bad edit to one file keeps that file's last good objects and touches nothing else.
import fs from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import type { ObjectStore } from './store.ts'
import { isManifestFile, parseManifestText } from './manifests.ts'
import { formatProblem } from '../model/problems.ts'
import { EdgeError } from '../errors.ts'

export interface FilesSourceOptions {
  dir: string
  store: ObjectStore
  log: Logger
  /** Quiet period after a change before re-reading: editors write a file in several steps. */
  debounceMs?: number
}

interface FileState {
  text: string
  good: boolean
}

export class FilesSource {
  private readonly dir: string
  private readonly store: ObjectStore
  private readonly log: Logger
  private readonly debounceMs: number
  private readonly files = new Map<string, FileState>()
  private readonly watchers = new Map<string, fs.FSWatcher>()
  private stopped = false
  private timer: NodeJS.Timeout | undefined
  private scanning = false
  private rescanWanted = false
  /** Scans done (for tests and /debug/routes). */
  scans = 0

  constructor(opts: FilesSourceOptions) {
    this.dir = path.resolve(opts.dir)
    this.store = opts.store
    this.log = opts.log
    this.debounceMs = opts.debounceMs ?? 50
  }

  /** Reads the directory once, then watches it. Throws if the directory cannot be read at all. */
  async start(): Promise<void> {
    const st = await fs.promises.stat(this.dir).catch(() => undefined)
    if (!st?.isDirectory()) throw new EdgeError('EDGE_ERR_MANIFESTS', `${this.dir} is not a readable directory (set --manifests DIR)`)
    await this.scan()
  }

  stop(): void {
    this.stopped = true
    for (const w of this.watchers.values()) w.close()
    this.watchers.clear()
    if (this.timer) clearTimeout(this.timer)
  }

  /**
   * One non-recursive watch per directory. Node's recursive watch on Linux stops reporting a file
   * once it has been replaced by a rename (how editors and kubectl-style tools save), while a
   * directory watch reports every entry created, renamed or removed in it.
   */
  private syncWatches(dirs: readonly string[]): void {
    if (this.stopped) return
    const want = new Set(dirs)
    for (const [d, w] of this.watchers) {
      if (want.has(d)) continue
      w.close()
      this.watchers.delete(d)
    }
    for (const d of want) {
      if (this.watchers.has(d)) continue
      try {
        const w = fs.watch(d, () => this.schedule())
        w.on('error', () => {
          w.close()
          this.watchers.delete(d)
          this.schedule()
        })
        this.watchers.set(d, w)
      } catch (err) {
        this.log.warn({ dir: d, err: (err as Error).message }, 'cannot watch manifest directory; changes there need a restart')
      }
    }
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.scan()
    }, this.debounceMs)
  }

  /** Re-reads every manifest file; applies all changes in one store batch. */
  async scan(): Promise<void> {
    if (this.scanning) {
      this.rescanWanted = true
      return
    }
    this.scanning = true
    try {
      do {
        this.rescanWanted = false
        await this.scanOnce()
      } while (this.rescanWanted)
    } finally {
      this.scanning = false
    }
  }

  private async scanOnce(): Promise<void> {
    const { files: found, dirs } = await listFiles(this.dir)
    this.syncWatches(dirs)
    const texts = new Map<string, string>()
    await Promise.all(
      found.map(async (f) => {
        try {
          texts.set(f, await fs.promises.readFile(f, 'utf8'))
        } catch {
          // Vanished between listing and reading: treated as removed below.
        }
      }),
    )
    this.store.batch(() => {
      for (const [file, text] of texts) {
        const prev = this.files.get(file)
        if (prev && prev.text === text) continue
        const rel = path.relative(process.cwd(), file) || file
        const parsed = parseManifestText(text, rel)
        if (parsed.problems.length > 0) {
          for (const p of parsed.problems) this.log.error({ problem: p }, formatProblem(p))
          this.log.warn({ file: rel, kept: this.store.ownedBy(file).length }, 'manifest rejected; the last good version of this file stays in service')
          this.store.setProblems(file, parsed.problems)
          this.files.set(file, { text, good: false })
          continue
        }
        this.store.replaceSource(file, parsed.objects)
        this.store.setProblems(file, [])
        this.files.set(file, { text, good: true })
        this.log.info({ file: rel, objects: parsed.objects.length }, 'manifest loaded')
      }
      for (const file of [...this.files.keys()]) {
        if (texts.has(file)) continue
        this.files.delete(file)
        this.store.replaceSource(file, [])
        this.store.setProblems(file, [])
        this.log.info({ file }, 'manifest removed')
      }
    })
    this.scans++
  }
}

async function listFiles(dir: string): Promise<{ files: string[]; dirs: string[] }> {
  const out: string[] = []
  const dirs: string[] = []
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 16) return
    dirs.push(d)
    let entries: fs.Dirent[]
    try {
      entries = await fs.promises.readdir(d, { withFileTypes: true })
    } catch {
      return
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue // editor swap files, .git
      const p = path.join(d, e.name)
      if (e.isDirectory()) await walk(p, depth + 1)
      else if (e.isFile() && isManifestFile(e.name)) out.push(p)
    }
  }
  await walk(dir, 0)
  return { files: out.sort(), dirs }
}
