// Writing an HTTP/1.1 head straight into a Buffer, for both sides of our HTTP/1.1 code (the client's
// request head in client/pool.ts, the server's response head in server/response.ts): no intermediate
// strings on the hot path. Callers have checked that every character is one latin1 byte.

/**
 * Up to this length a string is copied by a loop here; longer ones by Buffer#write. A head is
 * mostly short strings, and for those the call into Buffer#write (argument checks, then C++) costs
 * more than the copy: 25 vs 61 ns a header name or value in a micro-run.
 */
const LOOP_MAX = 48

/** Writes the latin1 bytes of `s` at `off`; returns the offset after them. */
export function putLatin1(buf: Buffer, off: number, s: string): number {
  const n = s.length
  if (n > LOOP_MAX) return off + buf.write(s, off, 'latin1')
  // A Uint8Array store keeps the low byte, as a latin1 write does.
  for (let i = 0; i < n; i++) buf[off + i] = s.charCodeAt(i)
  return off + n
}

/** Writes `name: value\r\n` at `off`; returns the offset after it. */
export function putHeaderLine(buf: Buffer, off: number, name: string, value: string): number {
  off = putLatin1(buf, off, name)
  buf[off++] = 58 // :
  buf[off++] = 32
  off = putLatin1(buf, off, value)
  buf[off++] = 13
  buf[off++] = 10
  return off
}
