// The request-head recogniser of the gateway's own HTTP/1.1 server (h1/server/request-head.ts): what it
// answers itself, where it waits for more bytes, and everything it leaves to node:http.
import t from 'tap'
import { HANDOFF, INCOMPLETE, parseRequestHead } from '../src/dataplane/h1/server/request-head.ts'
import type { HeadVerdict, RequestHead } from '../src/dataplane/h1/server/request-head.ts'

const LIMITS = { maxHeaderSize: 1024, maxHeadersCount: 8 }
const parse = (text: string, limits = LIMITS): HeadVerdict => {
  const b = Buffer.from(text, 'latin1')
  return parseRequestHead(b, 0, b.length, limits)
}
const head = (v: HeadVerdict): RequestHead => {
  if (typeof v === 'number') throw new Error(`expected a head, got ${v === INCOMPLETE ? 'INCOMPLETE' : 'HANDOFF'}`)
  return v
}

t.test('a plain GET: method, target, headers as sent and lower-cased, where it ends', async (t) => {
  const text = 'GET /a/b?c=d HTTP/1.1\r\nHost: app.example.com\r\nX-Thing:   spaced value \t\r\nAccept: */*\r\n\r\n'
  const h = head(parse(text))
  t.equal(h.method, 'GET')
  t.equal(h.url, '/a/b?c=d')
  t.equal(h.versionMinor, 1)
  t.same(h.rawHeaders, ['Host', 'app.example.com', 'X-Thing', 'spaced value', 'Accept', '*/*'])
  t.same({ ...h.headers }, { host: 'app.example.com', 'x-thing': 'spaced value', accept: '*/*' })
  t.equal(h.keepAlive, true)
  t.equal(h.end, text.length)
})

t.test('pipelined requests: the first head ends where the second starts', async (t) => {
  const first = 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\n'
  const both = first + 'HEAD /2 HTTP/1.1\r\nHost: a\r\n\r\n'
  const b = Buffer.from(both, 'latin1')
  const h1 = head(parseRequestHead(b, 0, b.length, LIMITS))
  t.equal(h1.end, first.length)
  const h2 = head(parseRequestHead(b.subarray(h1.end), 0, b.length - h1.end, LIMITS))
  t.equal(h2.method, 'HEAD')
  t.equal(h2.url, '/2')
})

t.test('every prefix of a valid head waits for more bytes', async (t) => {
  const text = 'OPTIONS /x HTTP/1.0\r\nHost: a.example.com\r\nConnection: keep-alive\r\n\r\n'
  const wrong: number[] = []
  for (let n = 0; n < text.length; n++) if (parse(text.slice(0, n)) !== INCOMPLETE) wrong.push(n)
  t.same(wrong, [], 'no prefix is answered or handed off')
  t.equal(head(parse(text)).end, text.length)
})

t.test('keep-alive follows the version and the Connection header', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['HTTP/1.1 by default', 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', true],
    ['HTTP/1.1 with close', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n', false],
    ['HTTP/1.1 with a token list holding close', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n', false],
    ['HTTP/1.0 by default', 'GET / HTTP/1.0\r\nHost: a\r\n\r\n', false],
    ['HTTP/1.0 with keep-alive', 'GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n', true],
    ['a token that only contains close', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n', true],
  ]
  for (const [name, text, keepAlive] of cases) t.equal(head(parse(text)).keepAlive, keepAlive, name)
})

t.test('DELETE and OPTIONS without a body are ours; the version 1.0 is kept', async (t) => {
  t.equal(head(parse('DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n')).method, 'DELETE')
  t.equal(head(parse('GET / HTTP/1.0\r\n\r\n')).versionMinor, 0)
})

t.test('anything outside the strict bodyless subset goes to node:http', async (t) => {
  const cases: Array<[string, string]> = [
    ['a method with a body by convention', 'POST / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['PUT', 'PUT / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a lower-case method', 'get / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['Content-Length', 'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n'],
    ['Transfer-Encoding', 'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['Upgrade', 'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'],
    ['Connection: upgrade alone', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\r\n'],
    ['Expect', 'GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n'],
    ['HTTP2-Settings', 'GET / HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n'],
    ['a repeated header', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
    ['a header repeated in another case', 'GET / HTTP/1.1\r\nX-A: 1\r\nx-a: 2\r\n\r\n'],
    ['an absolute-form target', 'GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['an asterisk target', 'OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a space inside the target', 'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['a byte above 0x7E in the target', 'GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['HTTP/2.0 over HTTP/1 framing', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n'],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n'],
    ['HTTP/0.9 style (no version)', 'GET /\r\n\r\n'],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n'],
    ['bare LF after the request line', 'GET / HTTP/1.1\nHost: a\r\n\r\n'],
    ['bare LF after a header', 'GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n'],
    ['bare CR in a header value', 'GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n'],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n'],
    ['an empty header name', 'GET / HTTP/1.1\r\n: a\r\n\r\n'],
    ['a NUL in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n'],
    ['a byte above 0x7E in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n'],
    ['two spaces after the method', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['leading CRLF before the request line', '\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n'],
  ]
  for (const [name, text] of cases) t.equal(parse(text), HANDOFF, name)
})

t.test('a head over the size or count limit goes to node:http (which answers 431)', async (t) => {
  const long = `GET / HTTP/1.1\r\nHost: a\r\nX: ${'v'.repeat(2000)}\r\n\r\n`
  t.equal(parse(long), HANDOFF, 'complete but over maxHeaderSize')
  t.equal(parse(long.slice(0, 1500)), HANDOFF, 'still arriving and already over maxHeaderSize')
  t.equal(parse(long.slice(0, 900)), INCOMPLETE, 'still arriving, under the limit')
  const lines = (n: number): string => `GET / HTTP/1.1\r\n${Array.from({ length: n }, (_, i) => `X-${i}: v\r\n`).join('')}\r\n`
  t.type(parse(lines(8)), 'object', 'exactly maxHeadersCount lines')
  t.equal(parse(lines(9)), HANDOFF, 'one line more')
})

t.test('a header named like an Object property is an ordinary header', async (t) => {
  const h = head(parse('GET / HTTP/1.1\r\nHost: a\r\nconstructor: x\r\n__proto__: y\r\n\r\n'))
  t.equal(h.headers.constructor, 'x')
  t.equal(h.headers['__proto__'], 'y')
  t.equal(h.rawHeaders.length, 6)
  t.equal(Object.getPrototypeOf(h.headers), Object.prototype, 'a plain object, as IncomingMessage.headers')
  t.same(Object.keys(h.headers), ['host', 'constructor', '__proto__'])
  t.equal(parse('GET / HTTP/1.1\r\nconstructor: x\r\nConstructor: y\r\n\r\n'), HANDOFF, 'repeated, as any other name')
  t.equal(parse('GET / HTTP/1.1\r\n__proto__: x\r\n__proto__: y\r\n\r\n'), HANDOFF, 'repeated, as any other name')
})
