// Lines to a file descriptor (stdout) without ever making a request wait: lines are gathered in memory
// and written asynchronously, one write per batch. Each write holds whole lines and at most PIPE_BUF
// (4096) bytes, so lines from several processes on one pipe (--workers, a container's stdout) never
// interleave mid-line. If the descriptor cannot keep up, lines beyond a bound are dropped and
// counted, rather than growing memory or slowing requests.
import fs from 'node:fs'

/** POSIX guarantees writes of at most this many bytes to a pipe are atomic. */
const ATOMIC_WRITE = 4096

export interface LineWriterOptions {
  fd: number
  /** Bytes held before new lines are dropped (default 8 MiB). */
  maxPendingBytes?: number
  /** Told each time lines are dropped, with how many. */
  onDrop?: (lines: number) => void
}

export class LineWriter {
  private readonly fd: number
  private readonly maxPending: number
  private readonly onDrop: ((lines: number) => void) | undefined
  private pending: string[] = []
  /** Each pending line's size in bytes (UTF-8, with its newline). */
  private sizes: number[] = []
  private pendingBytes = 0
  private writing = false
  private scheduled = false
  /** Lines dropped since the start (the descriptor could not keep up). */
  dropped = 0

  constructor(opts: LineWriterOptions) {
    this.fd = opts.fd
    this.maxPending = opts.maxPendingBytes ?? 8 * 1024 * 1024
    this.onDrop = opts.onDrop
  }

  /** Queues one line (without its newline). */
  write(line: string): void {
    const bytes = Buffer.byteLength(line) + 1
    if (this.pendingBytes + bytes > this.maxPending) {
      this.dropped++
      this.onDrop?.(1)
      return
    }
    this.pending.push(line)
    this.sizes.push(bytes)
    this.pendingBytes += bytes
    if (!this.writing && !this.scheduled) {
      // Lines of the same turn leave together.
      this.scheduled = true
      setImmediate(flushSoon, this)
    }
  }

  /** Writes what is pending now, synchronously (at exit). */
  flushSync(): void {
    while (this.pending.length > 0) {
      const chunk = this.take()
      try {
        fs.writeSync(this.fd, chunk)
      } catch {
        return
      }
    }
  }

  flush(): void {
    this.scheduled = false
    if (this.writing || this.pending.length === 0) return
    this.writing = true
    const chunk = this.take()
    fs.write(this.fd, chunk, (err) => {
      this.writing = false
      if (err) {
        // A closed stdout (EPIPE): nothing more can be written; drop what waits.
        this.dropped += this.pending.length
        this.onDrop?.(this.pending.length)
        this.pending = []
        this.sizes = []
        this.pendingBytes = 0
        return
      }
      this.flush()
    })
  }

  /** Whole lines from the front, up to ATOMIC_WRITE bytes (a longer single line goes alone). */
  private take(): string {
    let out = ''
    let bytes = 0
    let n = 0
    while (n < this.pending.length) {
      const size = this.sizes[n]!
      if (n > 0 && bytes + size > ATOMIC_WRITE) break
      out += `${this.pending[n]}\n`
      bytes += size
      n++
    }
    this.pending.splice(0, n)
    this.sizes.splice(0, n)
    this.pendingBytes -= bytes
    return out
  }
}

function flushSoon(w: LineWriter): void {
  w.flush()
}
