// Moves an accepted connection into a socket whose reads land in one shared buffer (net's `onread`
// option), as our upstream client's sockets already do (client/pool.ts).
//
// Why: a socket read through the stream machinery gets a new ArrayBuffer, with its own malloc'd
// backing store, for every read. At the fixed rate that is one per request, and V8 sweeps them in the
// scavenge pause: 0.45-0.64 ms of each ~1 ms scavenge (--trace-gc-nvp, sweep_array_buffers), against
// 0.03 ms with this (docs/hot-path.md). Reads also skip the Readable push and its nextTick per read.
//
// Node offers `onread` only for sockets it creates (net.connect / new net.Socket), not for the ones a
// net.Server accepts, so the native handle is moved into a new Socket made with `onread`. That uses
// three of net.Socket's internal fields (`_handle`, `_server`, `server`) and its undocumented `handle`
// option, which is how net.Server itself builds accepted sockets. The Node version is pinned
// (package.json), the tests drive every path through it, and where the fields are not as expected
// the connection simply stays on its stream reads.
import net from 'node:net'
import { Readable } from 'node:stream'
import { copyClaimedAddress } from '../../proxy-front.ts'

/** What a read delivers: bytes [0, n) of the shared buffer, valid only during the call. false stops reading. */
export type SharedRead = (n: number, shared: Buffer) => boolean

interface Internal {
  _handle: object | null
  _server: net.Server | null
  server: net.Server | null
}

/**
 * A socket on `socket`'s connection that reads into `shared`, paused, or undefined when that cannot
 * be done (then `socket` is untouched). `buffered` holds bytes `socket` had already read and not yet
 * handed out. `socket`'s 'close' listeners move to the new socket and run once, at the real end of
 * the connection; `socket` itself is not used again.
 */
export function adoptWithSharedBuffer(socket: net.Socket, shared: Buffer, onRead: SharedRead): { socket: net.Socket; buffered: Buffer | undefined } | undefined {
  const old = socket as unknown as Internal
  const handle = old._handle
  if (handle === null || typeof handle !== 'object' || socket.destroyed || socket.connecting || !('_server' in old)) return undefined
  socket.pause()
  // Bytes the stream read ahead (a paused socket keeps reading up to its high-water mark).
  let buffered: Buffer | undefined
  if (socket.readableLength > 0) {
    const chunk: unknown = socket.read()
    if (Buffer.isBuffer(chunk)) buffered = chunk
  }
  const server = old._server
  old._handle = null
  old._server = null
  old.server = null
  const fresh = new net.Socket({ handle, onread: { buffer: shared, callback: onRead }, readable: true, writable: true, pauseOnCreate: true } as net.SocketConstructorOpts)
  const adopted = fresh as unknown as Internal
  // The server counts the connection until this socket closes (its close() waits for that).
  adopted._server = server
  adopted.server = server
  // Whoever waits for the connection to close (the per-IP connection count) now waits on the new
  // socket; the old one holds nothing and is left to the garbage collector, so a held connection
  // costs one socket object, not two.
  // A client address a PROXY header gave the old socket is the new one's too.
  copyClaimedAddress(socket, fresh)
  for (const listener of socket.rawListeners('close')) fresh.once('close', ((listener as { listener?: unknown }).listener ?? listener) as (hadError: boolean) => void)
  socket.removeAllListeners('close')
  return { socket: fresh, buffered }
}

/**
 * Gives a socket from adoptWithSharedBuffer back the pause() of an ordinary socket, for when it is
 * handed to node:http. A user-buffer socket's pause() stops native reads at once; an ordinary one
 * keeps reading to its high-water mark, so a paused socket still sees the peer's FIN and ends. Code
 * written for ordinary sockets relies on that: a socket piped to a WebSocket's pod is paused when the
 * pod's side closes (Readable.unpipe), and must still end when the client's FIN arrives.
 */
export function pauseAsStream(socket: net.Socket): void {
  socket.pause = Readable.prototype.pause as net.Socket['pause']
}
