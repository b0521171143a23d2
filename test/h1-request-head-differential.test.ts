// Differential fuzz of our request-head recogniser (h1/server/request-head.ts) against node:http's parser
// (llhttp, strict). Every head we answer ourselves must be one llhttp accepts with the same method,
// target, version and headers, and must end where llhttp ends the request: otherwise the two
// servers could disagree about a request, which is how smuggling starts. (We may hand off heads
// llhttp accepts; that only moves them to node:http.)
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { HANDOFF, INCOMPLETE, parseRequestHead } from '../src/dataplane/h1/server/request-head.ts'
import type { RequestHead } from '../src/dataplane/h1/server/request-head.ts'
import { prng } from './helpers/prng.ts'

const LIMITS = { maxHeaderSize: 4096, maxHeadersCount: 20 }
const rand = prng(20261206)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!

// Each list: forms we accept, then forms we hand off. Picks favour the first part, so both outcomes
// are common.
const METHODS = [['GET', 'HEAD', 'OPTIONS', 'DELETE'], ['POST', 'get', 'G ET', 'GET\t']]
const TARGETS = [['/', '/a/b?c=d&e', '/%2e%2e/x', '/a#frag', "/~user/!$&'()*+,;="], ['*', 'http://h/x', '/a b']]
const VERSIONS = [['HTTP/1.1', 'HTTP/1.0'], ['HTTP/1.2', 'HTTP/2.0', 'http/1.1', 'HTTP/1.1 ']]
const NAMES = [['Host', 'X-A', 'accept', 'Connection', 'X_B', 'X.C', 'Cookie', 'TE'], ['Content-Length', 'Transfer-Encoding', 'Upgrade', 'Bad Name']]
const VALUES = [['a', 'close', 'keep-alive', ' spaced ', 'a\tb', 'x, y', '', 'trailers'], ['Upgrade', '0', 'chunked', 'caf\xe9', 'a\x7fb']]
const choose = (lists: string[][]): string => pick(rand() < 0.85 ? lists[0]! : lists[1]!)
/** Bytes that break framing when they land in the wrong place. */
const NOISE = ['\r', '\n', ' ', '\t', ':', '\0', '\x7f', '\x80', '\xff', 'a', '\r\n', '\r\n ']

function randomHead(): string {
  let head = `${choose(METHODS)} ${choose(TARGETS)} ${choose(VERSIONS)}\r\n`
  const n = Math.floor(rand() * 5)
  for (let i = 0; i < n; i++) head += `${choose(NAMES)}:${rand() < 0.7 ? ' ' : ''}${choose(VALUES)}\r\n`
  head += '\r\n'
  // Mutate some: a byte inserted, replaced or dropped somewhere.
  const mutations = rand() < 0.6 ? 0 : 1 + Math.floor(rand() * 2)
  for (let m = 0; m < mutations; m++) {
    const at = Math.floor(rand() * head.length)
    const op = rand()
    if (op < 0.4) head = head.slice(0, at) + pick(NOISE) + head.slice(at)
    else if (op < 0.7) head = head.slice(0, at) + pick(NOISE) + head.slice(at + 1)
    else head = head.slice(0, at) + head.slice(at + 1)
  }
  return head
}

interface Seen {
  method: string
  url: string
  version: string
  rawHeaders: string[]
}

const MARKER = 'GET /marker HTTP/1.1\r\nHost: m\r\n\r\n'

/**
 * What llhttp makes of `head` followed by a marker request: the first request it parsed, if it
 * then parsed the marker as the second (so it ended the first exactly where we do), else 'error'.
 * After a head that closes the connection (HTTP/1.0, Connection: close) the marker may go unread.
 */
async function llhttp(port: number, head: string, keepAlive: boolean, seen: Seen[]): Promise<Seen | 'error'> {
  const want = keepAlive ? 2 : 1
  const before = seen.length
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    let text = ''
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      s.destroy()
      const parsed = seen.length >= before + want && /^HTTP\/1\.1 200/.test(text)
      const framed = !keepAlive || seen[before + 1]?.url === '/marker'
      resolve(parsed && framed ? seen[before]! : 'error')
    }
    const timer = setTimeout(finish, 2000)
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1')
      if (seen.length >= before + want || /HTTP\/1\.1 4/.test(text)) finish()
    })
    s.on('error', () => {})
    s.on('close', finish)
    s.write(Buffer.from(head + MARKER, 'latin1'))
  })
}

t.test('every head we answer ourselves, llhttp parses the same way', async (t) => {
  const seen: Seen[] = []
  const server = http.createServer({ requireHostHeader: false }, (req, res) => {
    seen.push({ method: req.method!, url: req.url!, version: req.httpVersion, rawHeaders: req.rawHeaders })
    res.end('ok')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => new Promise<void>((r) => server.close(() => r())))
  const port = (server.address() as AddressInfo).port

  let ours = 0
  let handedOff = 0
  const disagreements: string[] = []
  for (let i = 0; i < 3000; i++) {
    const head = randomHead()
    const b = Buffer.from(head, 'latin1')
    const v = parseRequestHead(b, 0, b.length, LIMITS)
    if (v === HANDOFF || v === INCOMPLETE) {
      handedOff++
      continue
    }
    ours++
    const h = v as RequestHead
    const theirs = await llhttp(port, head.slice(0, h.end), h.keepAlive, seen)
    const mine: Seen = { method: h.method, url: h.url, version: `1.${h.versionMinor}`, rawHeaders: h.rawHeaders }
    if (theirs === 'error') disagreements.push(`${JSON.stringify(head)}: llhttp refuses it or frames it differently, we accept it`)
    else if (JSON.stringify(theirs) !== JSON.stringify(mine)) disagreements.push(`${JSON.stringify(head)}: llhttp ${JSON.stringify(theirs)}, we ${JSON.stringify(mine)}`)
  }
  t.same(disagreements, [], 'no head we accept is read differently by llhttp')
  // The generator must exercise both sides, or the comparison proves nothing.
  t.ok(ours > 300, `we answered ${ours} heads ourselves`)
  t.ok(handedOff > 300, `we handed off ${handedOff}`)
})
