// The one buffer that every socket read through net's `onread` lands in: our upstream client's
// connections (client/pool.ts) and the client connections of our server side (server/server.ts). Node delivers
// reads one at a time and each callback uses its bytes up before it returns (heads are parsed into
// strings, anything kept is copied out), so one buffer serves them all; no view of it may outlive
// the callback it was handed to.
export const READ_BUFFER = Buffer.allocUnsafeSlow(64 * 1024)

/** `bytes` itself, or a copy of it when it is a view of READ_BUFFER: for bytes kept past the read. */
export function keepable(bytes: Buffer): Buffer {
  return bytes.buffer === READ_BUFFER.buffer ? Buffer.from(bytes) : bytes
}
