// Reusable memory for large response-body chunks. The h1 client reads every socket into one shared
// buffer, so each body chunk must be copied out before the client's socket may hold it. A fresh
// 64 KiB Buffer per chunk is external memory to V8: streaming 1 MiB responses at ~800 MB/s made V8
// run a full mark-compact 14 times a second (~7.5 ms each, `--trace-gc`), which was the streams'
// tail latency. Large chunks therefore come from a small free list and go back to it once the
// response's write callback says the bytes left (written, or dropped with the response).
//
// Small chunks (a typical response body) stay plain copies from Node's 8 KiB slab: no callback,
// nothing to track on the hot path.

/** Chunks at or under this size are copied the ordinary way. */
const POOLED_ABOVE = 4 * 1024
const CHUNK_BYTES = 64 * 1024
/**
 * Free ArrayBuffers kept for reuse (at most 4 MiB). A stream under backpressure holds about two
 * chunks, so this covers dozens of concurrent streams; beyond it chunks are left to the GC.
 */
const MAX_FREE = 64

const free: ArrayBuffer[] = []
/** The ArrayBuffers this pool handed out, so release() ignores anything else. */
const ours = new WeakSet<ArrayBuffer>()

/** A copy of `chunk` (a view of memory about to be reused); pooled when large. */
export function copyChunk(chunk: Buffer): Buffer {
  const n = chunk.length
  if (n <= POOLED_ABOVE || n > CHUNK_BYTES) return Buffer.from(chunk)
  let ab = free.pop()
  if (ab === undefined) {
    ab = new ArrayBuffer(CHUNK_BYTES)
    ours.add(ab)
  }
  const out = Buffer.from(ab, 0, n)
  chunk.copy(out)
  return out
}

/** Whether `chunk` came from this pool: its writer must call releaseChunk() once the bytes left. */
export function isPooled(chunk: Buffer): boolean {
  return chunk.length > POOLED_ABOVE && ours.has(chunk.buffer as ArrayBuffer)
}

/** Gives a pooled chunk's memory back. Only call once nothing will read `chunk` again. */
export function releaseChunk(chunk: Buffer): void {
  const ab = chunk.buffer as ArrayBuffer
  if (!ours.has(ab) || free.length >= MAX_FREE) return
  free.push(ab)
}
