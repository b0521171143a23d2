import t from 'tap'
import protobuf from 'protobufjs'
import { decodeWireStatMessages, encodeWireStatMessages } from '../src/autoscaler/stat-encoding.ts'
import type { StatEntry } from '../src/autoscaler/stat-encoding.ts'

// The schema of knative/serving pkg/autoscaler/metrics (stat.proto + field 7 from stat.pb.go),
// built with protobufjs reflection so the reference encoder is independent of ours.
const { Root, Type, Field } = protobuf
const StatType = new Type('Stat')
  .add(new Field('podName', 1, 'string'))
  .add(new Field('averageConcurrentRequests', 2, 'double'))
  .add(new Field('averageProxiedConcurrentRequests', 3, 'double'))
  .add(new Field('requestCount', 4, 'double'))
  .add(new Field('proxiedRequestCount', 5, 'double'))
  .add(new Field('processUptime', 6, 'double'))
  .add(new Field('timestamp', 7, 'int64'))
const WireStatMessageType = new Type('WireStatMessage')
  .add(new Field('namespace', 1, 'string'))
  .add(new Field('name', 2, 'string'))
  .add(new Field('stat', 3, 'Stat'))
const WireStatMessagesType = new Type('WireStatMessages').add(
  new Field('messages', 1, 'WireStatMessage', 'repeated'),
)
new Root().define('metrics').add(StatType).add(WireStatMessageType).add(WireStatMessagesType)

const STAT_KEYS = [
  'podName',
  'averageConcurrentRequests',
  'averageProxiedConcurrentRequests',
  'requestCount',
  'proxiedRequestCount',
  'processUptime',
  'timestamp',
] as const

// protobufjs writes every field that is set, zeros included; gogo (and our encoder) omit proto3
// zeros. So the reference message only sets non-zero fields: that is the canonical encoding.
function toProtobufjs(entries: StatEntry[]): object {
  return {
    messages: entries.map((e) => {
      const stat: Record<string, unknown> = {}
      for (const k of STAT_KEYS) {
        const v = e[k]
        if (v !== undefined && v !== 0 && v !== '') stat[k] = v
      }
      const msg: Record<string, unknown> = { stat }
      if (e.namespace !== '') msg.namespace = e.namespace
      if (e.name !== '') msg.name = e.name
      return msg
    }),
  }
}

function referenceEncode(entries: StatEntry[]): Buffer {
  return Buffer.from(WireStatMessagesType.encode(toProtobufjs(entries)).finish())
}

interface PbStat {
  podName: string
  averageConcurrentRequests: number
  averageProxiedConcurrentRequests: number
  requestCount: number
  proxiedRequestCount: number
  processUptime: number
  timestamp: number | { toNumber(): number }
}

function referenceDecode(buf: Buffer): StatEntry[] {
  const decoded = WireStatMessagesType.toObject(WireStatMessagesType.decode(buf), {
    defaults: true,
    longs: Number,
  }) as { messages: Array<{ namespace: string; name: string; stat: PbStat }> }
  return decoded.messages.map((m) => ({
    namespace: m.namespace,
    name: m.name,
    ...m.stat,
    timestamp: typeof m.stat.timestamp === 'number' ? m.stat.timestamp : m.stat.timestamp.toNumber(),
  }))
}

/** What our decoder returns for an entry: every field present, proto3 zeros for absent ones. */
function normalized(e: StatEntry): StatEntry {
  return {
    namespace: e.namespace,
    name: e.name,
    podName: e.podName,
    averageConcurrentRequests: e.averageConcurrentRequests,
    averageProxiedConcurrentRequests: e.averageProxiedConcurrentRequests ?? 0,
    requestCount: e.requestCount,
    proxiedRequestCount: e.proxiedRequestCount ?? 0,
    processUptime: e.processUptime ?? 0,
    timestamp: e.timestamp ?? 0,
  }
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

t.test('the 50-byte vector from the reference (§2.2)', async (t) => {
  const entry: StatEntry = {
    namespace: 'default',
    name: 'hello-00001',
    podName: 'gw-0',
    averageConcurrentRequests: 1,
    requestCount: 1,
  }
  const expected = hex(`
    0a 30 0a 07 64 65 66 61 75 6c 74 12 0b 68 65 6c 6c 6f 2d 30 30 30 30 31
    1a 18 0a 04 67 77 2d 30 11 00 00 00 00 00 00 f0 3f 21 00 00 00 00 00 00 f0 3f`)
  const got = encodeWireStatMessages([entry])
  t.equal(got.length, 50)
  t.equal(got.toString('hex'), expected.toString('hex'))
  t.same(decodeWireStatMessages(got), [normalized(entry)])
})

t.test('field 3 is emitted even for an all-zero stat', async (t) => {
  const got = encodeWireStatMessages([
    { namespace: 'a', name: 'b', podName: '', averageConcurrentRequests: 0, requestCount: 0 },
  ])
  t.equal(got.toString('hex'), '0a080a01611201621a00')
  t.equal(decodeWireStatMessages(got).length, 1, 'the entry survives decoding')
})

t.test('an empty batch encodes to zero bytes', async (t) => {
  t.equal(encodeWireStatMessages([]).length, 0)
  t.same(decodeWireStatMessages(Buffer.alloc(0)), [])
})

const cases: Array<{ name: string; entries: StatEntry[] }> = [
  {
    name: 'activator tick',
    entries: [{ namespace: 'default', name: 'hello-00001', podName: 'gw-0', averageConcurrentRequests: 0.5, requestCount: 3 }],
  },
  {
    name: 'unicode names',
    entries: [
      { namespace: 'ünïcödé', name: 'rév-日本語-🚀', podName: 'gw-ß-0', averageConcurrentRequests: 2.25, requestCount: 7 },
    ],
  },
  {
    name: 'zero values everywhere',
    entries: [
      {
        namespace: '',
        name: '',
        podName: '',
        averageConcurrentRequests: 0,
        averageProxiedConcurrentRequests: 0,
        requestCount: 0,
        proxiedRequestCount: 0,
        processUptime: 0,
        timestamp: 0,
      },
    ],
  },
  {
    name: 'negative zero is a zero',
    entries: [{ namespace: 'n', name: 'r', podName: 'p', averageConcurrentRequests: -0, requestCount: 1 }],
  },
  {
    name: 'multiple entries',
    entries: [
      { namespace: 'ns1', name: 'a-00001', podName: 'gw-1', averageConcurrentRequests: 1, requestCount: 1 },
      { namespace: 'ns1', name: 'b-00002', podName: 'gw-1', averageConcurrentRequests: 0, requestCount: 0 },
      { namespace: 'ns2', name: 'c-00003', podName: 'gw-1', averageConcurrentRequests: 0.001, requestCount: 12 },
    ],
  },
  {
    name: 'large request counts and every field',
    entries: [
      {
        namespace: 'load',
        name: 'big-00001',
        podName: 'gw-7',
        averageConcurrentRequests: 123456.789,
        averageProxiedConcurrentRequests: 17.5,
        requestCount: 2 ** 40,
        proxiedRequestCount: 9_007_199_254_740_991,
        processUptime: 86400.25,
        timestamp: 1_767_225_600,
      },
    ],
  },
  {
    name: 'timestamp at 2^53 - 1 and long strings (multi-byte lengths)',
    entries: [
      {
        namespace: 'x'.repeat(200),
        name: 'y'.repeat(20000),
        podName: 'z'.repeat(130),
        averageConcurrentRequests: 1e-9,
        requestCount: 1,
        timestamp: Number.MAX_SAFE_INTEGER,
      },
    ],
  },
  {
    name: 'negative timestamp (int64 two’s complement)',
    entries: [{ namespace: 'n', name: 'r', podName: 'p', averageConcurrentRequests: 1, requestCount: 1, timestamp: -5 }],
  },
  {
    name: 'many entries (batch length beyond one varint byte)',
    entries: Array.from({ length: 50 }, (_, i) => ({
      namespace: `ns-${i % 3}`,
      name: `rev-${i}`,
      podName: 'gw-0',
      averageConcurrentRequests: i / 3,
      requestCount: i * 1000,
    })),
  },
]

for (const c of cases) {
  t.test(`matches protobufjs: ${c.name}`, async (t) => {
    const ours = encodeWireStatMessages(c.entries)
    t.equal(ours.toString('hex'), referenceEncode(c.entries).toString('hex'), 'same bytes as protobufjs')
    t.same(referenceDecode(ours), c.entries.map(normalized), 'protobufjs decodes ours')
    t.same(decodeWireStatMessages(ours), c.entries.map(normalized), 'round trip through our decoder')
  })
}

t.test('decoder tolerates field order and unknown fields of every wire type', async (t) => {
  // Stat: timestamp first, then an unknown varint (8), fixed32 (9), fixed64 (10) and bytes (11),
  // then request_count, pod_name. The message puts stat before name and namespace and adds an
  // unknown field 15; the top level has an unknown field 2 before the message.
  const stat = Buffer.concat([
    hex('38 2a'), // timestamp 42
    hex('40 96 01'), // field 8 varint 150
    hex('4d 01 02 03 04'), // field 9 fixed32
    hex('51 00 00 00 00 00 00 00 00'), // field 10 fixed64
    hex('5a 03 61 62 63'), // field 11 bytes "abc"
    hex('21 00 00 00 00 00 00 08 40'), // request_count 3
    hex('0a 01 70'), // pod_name "p"
  ])
  const msg = Buffer.concat([
    hex('1a'), Buffer.from([stat.length]), stat,
    hex('12 01 72'), // name "r"
    hex('78 01'), // field 15 varint
    hex('0a 01 6e'), // namespace "n"
  ])
  const buf = Buffer.concat([hex('10 05'), hex('0a'), Buffer.from([msg.length]), msg])
  t.same(decodeWireStatMessages(buf), [
    normalized({ namespace: 'n', name: 'r', podName: 'p', averageConcurrentRequests: 0, requestCount: 3, timestamp: 42 }),
  ])
})

t.test('decoder drops messages without a stat, like the autoscaler', async (t) => {
  t.same(decodeWireStatMessages(hex('0a 06 0a 01 6e 12 01 72')), [])
})

t.test('decoder rejects truncated input', async (t) => {
  const good = encodeWireStatMessages([
    { namespace: 'default', name: 'hello-00001', podName: 'gw-0', averageConcurrentRequests: 1, requestCount: 1 },
  ])
  for (const cut of [1, 10, 30, 49]) {
    t.throws(() => decodeWireStatMessages(good.subarray(0, cut)), RangeError, `cut at ${cut}`)
  }
})

t.test('encoder rejects a timestamp that is not a safe integer', async (t) => {
  const base = { namespace: 'n', name: 'r', podName: 'p', averageConcurrentRequests: 1, requestCount: 1 }
  t.throws(() => encodeWireStatMessages([{ ...base, timestamp: 1.5 }]), RangeError)
  t.throws(() => encodeWireStatMessages([{ ...base, timestamp: 2 ** 60 }]), RangeError)
})
