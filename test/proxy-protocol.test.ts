// --proxy-protocol: behind a load balancer that says who the client is. The parser on its own (v1 and
// v2, every family, TLVs, LOCAL, truncated and malformed headers), then a real HAProxy sending v1 and
// v2 in front of the plain and the TLS listener, with the client on another loopback address than
// HAProxy so the two can be told apart, and raw sockets for what a broken sender does.
import t from 'tap'
import net from 'node:net'
import tls from 'node:tls'
import { INCOMPLETE, parseProxyHeader } from '../src/dataplane/proxy-protocol.ts'
import { get, kingress, serviceFor, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { makeCA, makeCert, tlsSecret } from './helpers/certs.ts'
import { responses } from './helpers/raw.ts'
import { startHaproxy } from './helpers/haproxy.ts'

function v2(family: number, addresses: Buffer, tlvs: Buffer = Buffer.alloc(0), command = 1): Buffer {
  const body = Buffer.concat([addresses, tlvs])
  const head = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20 | command, family, 0, 0])
  head.writeUInt16BE(body.length, 14)
  return Buffer.concat([head, body])
}
const inet4 = Buffer.from([198, 51, 100, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x00, 0x50]) // 198.51.100.7:8080 → 10.0.0.1:80
const inet6 = Buffer.concat([Buffer.from('20010db8000000000000000000000042', 'hex'), Buffer.alloc(16), Buffer.from([0x04, 0xd2, 0x01, 0xbb])])
const tlv = Buffer.from([0x05, 0x00, 0x03, 0x61, 0x62, 0x63]) // PP2_TYPE_UNIQUE_ID "abc"

t.test('the header parser', async (t) => {
  const cases: Array<[string, Buffer | string, unknown]> = [
    ['v1 TCP4', 'PROXY TCP4 198.51.100.7 10.0.0.1 8080 80\r\nGET', { version: 1, source: { address: '198.51.100.7', port: 8080 }, length: 'PROXY TCP4 198.51.100.7 10.0.0.1 8080 80\r\n'.length }],
    ['v1 TCP6', 'PROXY TCP6 2001:db8::42 ::1 1234 443\r\n', { version: 1, source: { address: '2001:db8::42', port: 1234 }, length: 'PROXY TCP6 2001:db8::42 ::1 1234 443\r\n'.length }],
    ['v1 UNKNOWN', 'PROXY UNKNOWN\r\n', { version: 1, source: undefined, length: 15 }],
    ['v1 partial', 'PROXY TCP4 198.51', INCOMPLETE],
    ['v1 a prefix only', 'PRO', INCOMPLETE],
    ['v1 bad address', 'PROXY TCP4 198.51.100.999 10.0.0.1 1 2\r\n', 'malformed-v1'],
    ['v1 family mismatch', 'PROXY TCP4 2001:db8::42 10.0.0.1 1 2\r\n', 'malformed-v1'],
    ['v1 bad port', 'PROXY TCP4 198.51.100.7 10.0.0.1 70000 2\r\n', 'malformed-v1'],
    ['v1 no CRLF within 107 bytes', `PROXY TCP4 ${'1'.repeat(120)}`, 'malformed-v1'],
    ['v2 INET with a TLV', v2(0x11, inet4, tlv), { version: 2, source: { address: '198.51.100.7', port: 8080 }, length: 16 + 12 + 6 }],
    ['v2 INET6', v2(0x21, inet6), { version: 2, source: { address: '2001:db8::42', port: 1234 }, length: 16 + 36 }],
    ['v2 LOCAL (a health check)', v2(0x00, Buffer.alloc(0), Buffer.alloc(0), 0), { version: 2, source: undefined, length: 16 }],
    ['v2 UNSPEC', v2(0x00, Buffer.alloc(0)), { version: 2, source: undefined, length: 16 }],
    ['v2 truncated', v2(0x11, inet4).subarray(0, 20), INCOMPLETE],
    ['v2 short address block', v2(0x11, inet4.subarray(0, 8)), 'malformed-v2'],
    ['v2 UDP', v2(0x12, inet4), 'unsupported-v2'],
    ['v2 version 3', Buffer.concat([v2(0x11, inet4).subarray(0, 12), Buffer.from([0x31]), v2(0x11, inet4).subarray(13)]), 'malformed-v2'],
    ['plain HTTP', 'GET / HTTP/1.1\r\n', 'not-proxy-protocol'],
  ]
  for (const [name, input, want] of cases) t.same(parseProxyHeader(Buffer.isBuffer(input) ? input : Buffer.from(input, 'latin1')), want, name)
})

const pod = await startBackend('pod')
t.teardown(() => pod.close())
const ca = await makeCA()
const dir = tempDir()
writeManifest(dir, 'all.yaml', [
  ...serviceFor('app', pod),
  tlsSecret('app-cert', await makeCert(ca, 'app.example.com')),
  kingress('app', {
    tls: [{ hosts: ['app.example.com'], secretName: 'app-cert', secretNamespace: 'default' }],
    rules: [{ hosts: ['app.example.com'], visibility: 'ExternalIP', http: { paths: [{ splits: [{ serviceNamespace: 'default', serviceName: 'app', servicePort: 80, percent: 100 }] }] } }],
  }),
])
const gw = await startTestGateway(dir, ['--proxy-protocol', '--header-timeout', '1', '--max-connections-per-ip', '1', '--access-log-template', '{client}'])
t.teardown(() => gw.close())

/** One request from the client at 127.0.0.2 through `port` (HAProxy's), as HTTP/1.1 or over TLS. */
function requestFrom127002(port: number, secure: boolean): Promise<{ status: number; forwardedFor: string | undefined }> {
  return new Promise((resolve, reject) => {
    const onConnect = (s: net.Socket): void => {
      s.write('GET /who HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n')
      let text = ''
      s.setEncoding('latin1')
      s.on('data', (d: string) => (text += d))
      s.on('end', () => {
        const r = responses(text)[0]
        if (!r) return reject(new Error(`no response: ${text}`))
        resolve({ status: r.status, forwardedFor: (JSON.parse(r.body) as { headers: Record<string, string> }).headers['x-forwarded-for'] })
      })
      s.on('error', reject)
    }
    const raw = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' })
    if (!secure) raw.once('connect', () => onConnect(raw))
    else {
      const s = tls.connect({ socket: raw, servername: 'app.example.com', ca: ca.cert, ALPNProtocols: ['http/1.1'] })
      s.once('secureConnect', () => onConnect(s))
      s.once('error', reject)
    }
    raw.once('error', reject)
  })
}

t.test('a real HAProxy sending v1 and v2, in front of the plain and the TLS listener: the pod is told the client', async (t) => {
  const [v1Plain, v2Plain, v1Tls, v2Tls] = await startHaproxy(t, [
    { send: 'send-proxy', to: gw.ports.http },
    { send: 'send-proxy-v2', to: gw.ports.http },
    { send: 'send-proxy', to: gw.ports.https },
    { send: 'send-proxy-v2', to: gw.ports.https },
  ])
  for (const [name, port, secure] of [['v1, plain', v1Plain, false], ['v2, plain', v2Plain, false], ['v1, TLS', v1Tls, true], ['v2, TLS', v2Tls, true]] as const) {
    const r = await requestFrom127002(port!, secure)
    t.equal(r.status, 200, name)
    t.equal(r.forwardedFor, '127.0.0.2', `${name}: X-Forwarded-For is the client, not HAProxy (127.0.0.1)`)
  }
})

/** Sends raw bytes straight to the gateway's plain port; the answer and whether it closed. */
function rawTo(port: number, bytes: Buffer | string, waitMs = 3000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => {
      s.destroy()
      resolve({ text, closed: false })
    }, waitMs)
    s.setEncoding('latin1')
    s.on('data', (d: string) => (text += d))
    s.on('close', () => {
      clearTimeout(timer)
      resolve({ text, closed: true })
    })
    s.on('error', () => {})
    s.write(bytes)
  })
}

async function refusedCount(reason: string): Promise<number> {
  const m = (await get(gw.ports.admin, 'localhost', '/metrics')).body
  return Number(new RegExp(`edge_connections_refused_total\\{reason="proxy-protocol-${reason}"\\} (\\d+)`).exec(m)?.[1] ?? 0)
}

t.test('without a valid header a connection is closed unanswered, and counted by reason', async (t) => {
  for (const [reason, bytes] of [
    ['not-proxy-protocol', 'GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n'],
    ['malformed-v1', 'PROXY TCP4 nonsense\r\nGET / HTTP/1.1\r\n\r\n'],
    ['unsupported-v2', Buffer.concat([v2(0x12, inet4), Buffer.from('GET / HTTP/1.1\r\n\r\n')])],
    ['timeout', 'PROXY TCP4 198.51.100.7 10.0.0.1 8080 80'], // truncated, then silence past --header-timeout
  ] as const) {
    const before = await refusedCount(reason)
    const r = await rawTo(gw.ports.http, bytes)
    t.same(r, { text: '', closed: true }, `${reason}: closed with nothing said`)
    await waitFor(`the ${reason} count`, async () => (await refusedCount(reason)) === before + 1)
  }
})

t.test('v2 LOCAL (a health check) is served as the load balancer itself; TLVs are skipped', async (t) => {
  const local = await rawTo(gw.ports.http, Buffer.concat([v2(0x00, Buffer.alloc(0), Buffer.alloc(0), 0), Buffer.from('GET /hc HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n')]))
  const hc = responses(local.text)[0]!
  t.equal(hc.status, 200)
  t.equal((JSON.parse(hc.body) as { headers: Record<string, string> }).headers['x-forwarded-for'], '127.0.0.1', 'the real peer')
  const withTlv = await rawTo(gw.ports.http, Buffer.concat([v2(0x11, inet4, tlv), Buffer.from('GET /t HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n')]))
  t.equal((JSON.parse(responses(withTlv.text)[0]!.body) as { headers: Record<string, string> }).headers['x-forwarded-for'], '198.51.100.7')
})

t.test('the per-IP connection limit counts the client the header names', async (t) => {
  const header = (ip: string): string => `PROXY TCP4 ${ip} 10.0.0.1 5555 80\r\n`
  const first = net.connect(gw.ports.http, '127.0.0.1')
  first.write(`${header('198.51.100.20')}GET /slow HTTP/1.1\r\nHost: app.example.com\r\n\r\n`)
  await waitFor('the first connection served', () => pod.seen.some((s) => s.url === '/slow'))
  const second = await rawTo(gw.ports.http, `${header('198.51.100.20')}GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n`)
  t.same(second, { text: '', closed: true }, 'a second connection from the same client is closed')
  const other = await rawTo(gw.ports.http, `${header('198.51.100.21')}GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n`)
  t.equal(responses(other.text)[0]?.status, 200, 'another client, through the same load balancer address, is served')
  first.destroy()
})
