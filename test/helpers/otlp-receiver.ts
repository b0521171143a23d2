// A stand-in OpenTelemetry collector: a real HTTP server on loopback that takes OTLP/HTTP protobuf
// posts at /v1/traces and decodes them with protobufjs from the OTLP trace schema below (the part of
// opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto that spans use), so the test
// reads what a collector would, independently of the gateway's encoder.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import protobuf from 'protobufjs'
import { waitFor } from './wait.ts'

const OTLP_TRACE_PROTO = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  SpanKind kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  repeated Event events = 11;
  uint32 dropped_events_count = 12;
  repeated Link links = 13;
  uint32 dropped_links_count = 14;
  Status status = 15;
  message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
  message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; uint32 dropped_attributes_count = 5; fixed32 flags = 6; }
  enum SpanKind { SPAN_KIND_UNSPECIFIED = 0; SPAN_KIND_INTERNAL = 1; SPAN_KIND_SERVER = 2; SPAN_KIND_CLIENT = 3; SPAN_KIND_PRODUCER = 4; SPAN_KIND_CONSUMER = 5; }
}
message Status { string message = 2; StatusCode code = 3; enum StatusCode { STATUS_CODE_UNSET = 0; STATUS_CODE_OK = 1; STATUS_CODE_ERROR = 2; } }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7; }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`

const ExportTraceServiceRequest = protobuf.parse(OTLP_TRACE_PROTO, { keepCase: true }).root.lookupType('otlp.ExportTraceServiceRequest')

type Scalar = string | number | boolean

/** One exported span, flattened: ids in hex, attributes by key, event names. */
export interface ReceivedSpan {
  traceId: string
  spanId: string
  /** '' for a root span. */
  parentSpanId: string
  name: string
  kind: 'internal' | 'server' | 'client' | 'unspecified'
  startNs: bigint
  endNs: bigint
  attributes: Record<string, Scalar>
  events: string[]
  status: { code: 'unset' | 'ok' | 'error'; message: string }
  resource: Record<string, Scalar>
}

export interface OtlpReceiver {
  /** The collector's base URL (what --tracing-endpoint takes). */
  url: string
  spans: ReceivedSpan[]
  /** Posts received, and what each said about itself. */
  posts: Array<{ path: string; contentType: string | undefined }>
  /**
   * The spans of one request's trace, once its server span is in: the gateway ends that one last and
   * exports spans in the order they end, so by then every other span of the request is in too.
   */
  trace(traceId: string, timeoutMs?: number): Promise<ReceivedSpan[]>
  close(): Promise<void>
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = []
  const posts: OtlpReceiver['posts'] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      posts.push({ path: req.url ?? '', contentType: req.headers['content-type'] })
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end()
        return
      }
      spans.push(...decode(Buffer.concat(chunks)))
      // An empty ExportTraceServiceResponse: all accepted.
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    posts,
    trace: async (traceId, timeoutMs) => {
      const of = (): ReceivedSpan[] => spans.filter((s) => s.traceId === traceId)
      await waitFor(`the server span of trace ${traceId}`, () => of().some((s) => s.kind === 'server'), timeoutMs)
      return of()
    },
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

interface RawKeyValue {
  key: string
  value?: Record<string, unknown>
}

function decode(body: Buffer): ReceivedSpan[] {
  const msg = ExportTraceServiceRequest.toObject(ExportTraceServiceRequest.decode(body), { longs: String, enums: String, bytes: Buffer, oneofs: true }) as {
    resource_spans?: Array<{ resource?: { attributes?: RawKeyValue[] }; scope_spans?: Array<{ spans?: Array<Record<string, unknown>> }> }>
  }
  const out: ReceivedSpan[] = []
  for (const rs of msg.resource_spans ?? []) {
    const resource = attributes(rs.resource?.attributes)
    for (const ss of rs.scope_spans ?? []) {
      for (const s of ss.spans ?? []) {
        const status = s.status as { code: string; message: string } | undefined
        out.push({
          traceId: (s.trace_id as Buffer).toString('hex'),
          spanId: (s.span_id as Buffer).toString('hex'),
          parentSpanId: ((s.parent_span_id as Buffer | undefined) ?? Buffer.alloc(0)).toString('hex'),
          name: s.name as string,
          kind: String(s.kind ?? 'SPAN_KIND_UNSPECIFIED').replace('SPAN_KIND_', '').toLowerCase() as ReceivedSpan['kind'],
          startNs: BigInt(s.start_time_unix_nano as string),
          endNs: BigInt(s.end_time_unix_nano as string),
          attributes: attributes(s.attributes as RawKeyValue[] | undefined),
          events: ((s.events as Array<{ name: string }> | undefined) ?? []).map((e) => e.name),
          status: { code: String(status?.code ?? 'STATUS_CODE_UNSET').replace('STATUS_CODE_', '').toLowerCase() as ReceivedSpan['status']['code'], message: status?.message ?? '' },
          resource,
        })
      }
    }
  }
  return out
}

function attributes(kvs: RawKeyValue[] | undefined): Record<string, Scalar> {
  const out: Record<string, Scalar> = {}
  // `oneofs: true` names the member that is set in `value`.
  for (const kv of kvs ?? []) {
    const v = kv.value ?? {}
    const which = v.value as string
    out[kv.key] = which === 'int_value' ? Number(v.int_value) : (v[which] as Scalar)
  }
  return out
}
