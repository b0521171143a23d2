// Writing an HTTP/1.1 head straight into a Buffer, for both sides of our HTTP/1.1 code (the client's
// request head in h1-pool.ts, the server's response head in server-response.ts): no intermediate
// strings on the hot path. Callers have checked that every character is one latin1 byte.

/** Writes `name: value\r\n` at `off`; returns the offset after it. */
export function putHeaderLine(buf: Buffer, off: number, name: string, value: string): number {
  off += buf.write(name, off, 'latin1')
  buf[off++] = 58 // :
  buf[off++] = 32
  off += buf.write(value, off, 'latin1')
  buf[off++] = 13
  buf[off++] = 10
  return off
}
