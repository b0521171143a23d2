// Raw TCP clients for hostile-input tests: normal HTTP clients refuse to send these bytes.
import net from 'node:net'
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface RawAnswer {
  /** Everything the server sent. */
  text: string
  status: number
  headers: Record<string, string>
  body: string
  /** The server closed the connection (within the wait). */
  closed: boolean
  ms: number
}

/** Sends `payload` (string parts are sent with `gapMs` between them) and reads until close or `waitMs`. */
export function raw(port: number, payload: string | Buffer | Array<string | Buffer>, opts: { waitMs?: number; gapMs?: number } = {}): Promise<RawAnswer> {
  const waitMs = opts.waitMs ?? 3000
  const parts = Array.isArray(payload) ? payload : [payload]
  const started = Date.now()
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    let closed = false
    let timer: NodeJS.Timeout | undefined
    const finish = (): void => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks).toString('latin1')
      resolve({ ...parse(text), text, closed, ms: Date.now() - started })
      s.destroy()
    }
    s.on('data', (d) => chunks.push(d))
    s.on('error', () => {})
    s.on('close', () => {
      closed = true
      finish()
    })
    timer = setTimeout(finish, waitMs)
    void (async () => {
      for (let i = 0; i < parts.length; i++) {
        if (s.destroyed) return
        s.write(parts[i]!)
        if (opts.gapMs && i < parts.length - 1) await new Promise((r) => setTimeout(r, opts.gapMs))
      }
    })()
  })
}

function parse(text: string): { status: number; headers: Record<string, string>; body: string } {
  const head = text.indexOf('\r\n\r\n')
  const lines = (head === -1 ? text : text.slice(0, head)).split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')
  const headers: Record<string, string> = {}
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':')
    if (c > 0) headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim()
  }
  return { status: m ? Number(m[1]) : 0, headers, body: head === -1 ? '' : text.slice(head + 4) }
}

/** A backend that records the raw bytes it is sent and which requests it saw complete (body read to the end). */
export interface RecordingBackend {
  port: number
  bytes(): string
  /** Requests whose body ended normally: method, url, body length. */
  completed: Array<{ method: string; url: string; bodyBytes: number; headers: http.IncomingHttpHeaders }>
  /** Requests that started (headers parsed). */
  started: number
  /** Requests whose body was cut off (client or gateway aborted). */
  aborted: number
  close(): Promise<void>
}

export async function startRecordingBackend(onRequest?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean): Promise<RecordingBackend> {
  let bytes: Buffer[] = []
  const b: RecordingBackend = {
    port: 0,
    bytes: () => Buffer.concat(bytes).toString('latin1'),
    completed: [],
    started: 0,
    aborted: 0,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
  const server = http.createServer((req, res) => {
    b.started++
    if (onRequest?.(req, res)) return
    let n = 0
    req.on('data', (c: Buffer) => (n += c.length))
    req.on('aborted', () => b.aborted++)
    req.on('end', () => {
      b.completed.push({ method: req.method ?? '', url: req.url ?? '', bodyBytes: n, headers: req.headers })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ url: req.url, bodyBytes: n, headers: req.headers }))
    })
  })
  server.on('connection', (s) => s.on('data', (d: Buffer) => bytes.push(d)))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  b.port = (server.address() as AddressInfo).port
  void (bytes = [])
  return b
}

/** A WebSocket opening handshake as raw bytes, for tests that want to see the gateway's raw answer. */
export function upgradeRequest(host: string, path = '/'): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`
}

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
  trailers: Record<string, string>
}

/**
 * Splits the raw bytes of one connection into its HTTP/1.1 responses, in order: bodies framed by
 * Content-Length or chunked, or else running to the end. `headOnly` holds the indexes of answers to
 * HEAD requests, which have a head and no body whatever their Content-Length says.
 */
export function responses(text: string, headOnly: ReadonlySet<number> = new Set()): RawResponse[] {
  const out: RawResponse[] = []
  let rest = text
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n')
    if (end < 0) break
    const lines = rest.slice(0, end).split('\r\n')
    const headers = headerLines(lines.slice(1))
    rest = rest.slice(end + 4)
    let body = ''
    let trailers: Record<string, string> = {}
    if (headOnly.has(out.length)) {
      // No body to read.
    } else if (headers['content-length'] !== undefined) {
      body = rest.slice(0, Number(headers['content-length']))
      rest = rest.slice(body.length)
    } else if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const nl = rest.indexOf('\r\n')
        const size = parseInt(rest.slice(0, nl), 16)
        rest = rest.slice(nl + 2)
        if (!(size > 0)) break
        body += rest.slice(0, size)
        rest = rest.slice(size + 2)
      }
      // The trailer section: header lines up to an empty line (just CRLF when there are none).
      const blank = rest.indexOf('\r\n\r\n')
      const tEnd = rest.startsWith('\r\n') ? 0 : blank < 0 ? rest.length : blank + 2
      trailers = headerLines(rest.slice(0, tEnd).split('\r\n').filter((l) => l !== ''))
      rest = rest.slice(tEnd + 2)
    } else {
      body = rest
      rest = ''
    }
    out.push({ status: Number(lines[0]!.split(' ')[1]), headers, body, trailers })
  }
  return out
}

function headerLines(lines: string[]): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim()
  return headers
}
