// Hand-written protobuf codec for Knative's `WireStatMessages`, the payload of every binary frame
// the activator sends to the autoscaler (reference: activator-autoscaler.md §2.2). Written by hand
// so the gateway has no runtime protobuf dependency; the tests check the bytes against protobufjs.
//
//   message Stat { string pod_name = 1; double average_concurrent_requests = 2;
//                  double average_proxied_concurrent_requests = 3; double request_count = 4;
//                  double proxied_request_count = 5; double process_uptime = 6; int64 timestamp = 7; }
//   message WireStatMessage  { string namespace = 1; string name = 2; Stat stat = 3; }
//   message WireStatMessages { repeated WireStatMessage messages = 1; }
//
// Encoding matches the gogo marshaller the autoscaler was built with: fields in number order, proto3
// zero scalars omitted, and field 3 always present because the server drops entries without it.

export interface StatEntry {
  namespace: string
  /** Revision name. */
  name: string
  podName: string
  averageConcurrentRequests: number
  averageProxiedConcurrentRequests?: number
  requestCount: number
  proxiedRequestCount?: number
  /** Seconds. */
  processUptime?: number
  /** Unix seconds; 0/absent lets the autoscaler stamp the receive time. */
  timestamp?: number
}

const WIRE_VARINT = 0
const WIRE_FIXED64 = 1
const WIRE_LEN = 2
const WIRE_FIXED32 = 5

// Tag bytes (field << 3 | wire type); every field number here is < 16, so each tag is one byte.
const TAG_LIST_MESSAGES = 0x0a
const TAG_MSG_NAMESPACE = 0x0a
const TAG_MSG_NAME = 0x12
const TAG_MSG_STAT = 0x1a
const TAG_STAT_POD_NAME = 0x0a
const TAG_STAT_TIMESTAMP = 0x38
// Stat fields 2..6 are all doubles, in this order.
const STAT_DOUBLE_TAGS = [0x11, 0x19, 0x21, 0x29, 0x31] as const

function statDoubles(e: StatEntry): [number, number, number, number, number] {
  return [
    e.averageConcurrentRequests,
    e.averageProxiedConcurrentRequests ?? 0,
    e.requestCount,
    e.proxiedRequestCount ?? 0,
    e.processUptime ?? 0,
  ]
}

// ---------------------------------------------------------------------------------------------
// Encoding: measure everything first, then write into one exactly sized Buffer.

function varintSize(v: number): number {
  let n = 1
  while (v >= 0x80) {
    v = Math.floor(v / 0x80)
    n++
  }
  return n
}

/** int64 as proto varint: negative values are 64-bit two's complement, always 10 bytes. */
function int64Size(v: number): number {
  return v < 0 ? 10 : varintSize(v)
}

function checkTimestamp(ts: number): number {
  if (!Number.isSafeInteger(ts)) {
    throw new RangeError(`stat timestamp must be a safe integer, got ${ts}`)
  }
  return ts
}

interface Sized {
  entry: StatEntry
  nsBytes: number
  nameBytes: number
  podBytes: number
  statLen: number
  msgLen: number
}

function measure(entry: StatEntry): Sized {
  const nsBytes = Buffer.byteLength(entry.namespace, 'utf8')
  const nameBytes = Buffer.byteLength(entry.name, 'utf8')
  const podBytes = Buffer.byteLength(entry.podName, 'utf8')

  let statLen = 0
  if (podBytes > 0) statLen += 1 + varintSize(podBytes) + podBytes
  for (const v of statDoubles(entry)) if (v !== 0) statLen += 9
  const ts = checkTimestamp(entry.timestamp ?? 0)
  if (ts !== 0) statLen += 1 + int64Size(ts)

  let msgLen = 0
  if (nsBytes > 0) msgLen += 1 + varintSize(nsBytes) + nsBytes
  if (nameBytes > 0) msgLen += 1 + varintSize(nameBytes) + nameBytes
  msgLen += 1 + varintSize(statLen) + statLen // always present, even as `1A 00`
  return { entry, nsBytes, nameBytes, podBytes, statLen, msgLen }
}

function writeVarint(buf: Buffer, pos: number, v: number): number {
  while (v >= 0x80) {
    buf[pos++] = (v % 0x80) | 0x80
    v = Math.floor(v / 0x80)
  }
  buf[pos++] = v
  return pos
}

function writeInt64(buf: Buffer, pos: number, v: number): number {
  if (v >= 0) return writeVarint(buf, pos, v)
  let u = BigInt.asUintN(64, BigInt(v))
  while (u >= 0x80n) {
    buf[pos++] = Number(u & 0x7fn) | 0x80
    u >>= 7n
  }
  buf[pos++] = Number(u)
  return pos
}

function writeString(buf: Buffer, pos: number, tag: number, s: string, bytes: number): number {
  if (bytes === 0) return pos
  buf[pos++] = tag
  pos = writeVarint(buf, pos, bytes)
  return pos + buf.write(s, pos, bytes, 'utf8')
}

export function encodeWireStatMessages(entries: StatEntry[]): Buffer {
  const sized = entries.map(measure)
  let total = 0
  for (const s of sized) total += 1 + varintSize(s.msgLen) + s.msgLen
  const buf = Buffer.allocUnsafe(total)

  let pos = 0
  for (const s of sized) {
    const e = s.entry
    buf[pos++] = TAG_LIST_MESSAGES
    pos = writeVarint(buf, pos, s.msgLen)
    pos = writeString(buf, pos, TAG_MSG_NAMESPACE, e.namespace, s.nsBytes)
    pos = writeString(buf, pos, TAG_MSG_NAME, e.name, s.nameBytes)
    buf[pos++] = TAG_MSG_STAT
    pos = writeVarint(buf, pos, s.statLen)
    pos = writeString(buf, pos, TAG_STAT_POD_NAME, e.podName, s.podBytes)
    const doubles = statDoubles(e)
    for (let i = 0; i < doubles.length; i++) {
      const v = doubles[i]!
      if (v === 0) continue
      buf[pos++] = STAT_DOUBLE_TAGS[i]!
      pos = buf.writeDoubleLE(v, pos)
    }
    const ts = e.timestamp ?? 0
    if (ts !== 0) {
      buf[pos++] = TAG_STAT_TIMESTAMP
      pos = writeInt64(buf, pos, ts)
    }
  }
  if (pos !== total) throw new Error(`stat encoder size mismatch: wrote ${pos} of ${total} bytes`)
  return buf
}

// ---------------------------------------------------------------------------------------------
// Decoding: for tests and the fake autoscaler. Accepts any field order, merges repeated embedded
// messages (proto3 semantics), skips unknown fields by wire type, and throws on truncated input.

class Reader {
  pos: number
  readonly buf: Buffer
  readonly end: number

  constructor(buf: Buffer, start: number, end: number) {
    this.buf = buf
    this.pos = start
    this.end = end
  }

  get done(): boolean {
    return this.pos >= this.end
  }

  /** Unsigned varint as a bigint (up to 64 bits). */
  varint(): bigint {
    let result = 0n
    let shift = 0n
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new RangeError('truncated varint')
      const b = this.buf[this.pos++]!
      result |= BigInt(b & 0x7f) << shift
      if (b < 0x80) return BigInt.asUintN(64, result)
      shift += 7n
    }
    throw new RangeError('varint longer than 10 bytes')
  }

  /** A varint that must fit a safe non-negative number (tags and lengths). */
  smallVarint(): number {
    const v = this.varint()
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('varint too large')
    return Number(v)
  }

  take(n: number): number {
    if (n > this.end - this.pos) throw new RangeError('truncated field')
    const at = this.pos
    this.pos += n
    return at
  }

  double(): number {
    return this.buf.readDoubleLE(this.take(8))
  }

  /** Returns [start, end) of a length-delimited field. */
  bytes(): [number, number] {
    const len = this.smallVarint()
    const at = this.take(len)
    return [at, at + len]
  }

  string(): string {
    const [s, e] = this.bytes()
    return this.buf.toString('utf8', s, e)
  }

  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint()
        return
      case WIRE_FIXED64:
        this.take(8)
        return
      case WIRE_LEN:
        this.bytes()
        return
      case WIRE_FIXED32:
        this.take(4)
        return
      default:
        throw new RangeError(`unsupported wire type ${wireType}`)
    }
  }
}

function decodeStatInto(r: Reader, e: StatEntry): void {
  while (!r.done) {
    const tag = r.smallVarint()
    const field = Math.floor(tag / 8)
    const wire = tag & 7
    if (field === 1 && wire === WIRE_LEN) e.podName = r.string()
    else if (field === 2 && wire === WIRE_FIXED64) e.averageConcurrentRequests = r.double()
    else if (field === 3 && wire === WIRE_FIXED64) e.averageProxiedConcurrentRequests = r.double()
    else if (field === 4 && wire === WIRE_FIXED64) e.requestCount = r.double()
    else if (field === 5 && wire === WIRE_FIXED64) e.proxiedRequestCount = r.double()
    else if (field === 6 && wire === WIRE_FIXED64) e.processUptime = r.double()
    else if (field === 7 && wire === WIRE_VARINT) e.timestamp = Number(BigInt.asIntN(64, r.varint()))
    else r.skip(wire)
  }
}

function emptyEntry(): StatEntry {
  return {
    namespace: '',
    name: '',
    podName: '',
    averageConcurrentRequests: 0,
    averageProxiedConcurrentRequests: 0,
    requestCount: 0,
    proxiedRequestCount: 0,
    processUptime: 0,
    timestamp: 0,
  }
}

/**
 * Decodes a `WireStatMessages`. Every returned entry has all fields set (absent = proto3 zero).
 * Like the real autoscaler, entries without a `stat` field are dropped.
 */
export function decodeWireStatMessages(buf: Buffer): StatEntry[] {
  const out: StatEntry[] = []
  const top = new Reader(buf, 0, buf.length)
  while (!top.done) {
    const tag = top.smallVarint()
    if (tag !== TAG_LIST_MESSAGES) {
      top.skip(tag & 7)
      continue
    }
    const [start, end] = top.bytes()
    const msg = new Reader(buf, start, end)
    const entry = emptyEntry()
    let hasStat = false
    while (!msg.done) {
      const t = msg.smallVarint()
      if (t === TAG_MSG_NAMESPACE) entry.namespace = msg.string()
      else if (t === TAG_MSG_NAME) entry.name = msg.string()
      else if (t === TAG_MSG_STAT) {
        const [s, e] = msg.bytes()
        decodeStatInto(new Reader(buf, s, e), entry)
        hasStat = true
      } else msg.skip(t & 7)
    }
    if (hasStat) out.push(entry)
  }
  return out
}
