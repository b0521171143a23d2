// One request to a target before its rounds, with Node's own clients: what it answers (a proxy that
// answers fast with an error, a redirect or the wrong body is not a fast proxy), over which
// protocol, and for TLS the version, cipher and how many session tickets the server issued.
import http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import type { TLSSocket } from 'node:tls'

export type ProbeProtocol = 'http/1.1' | 'https/1.1' | 'h2' | 'h2c'

export interface ProbeRequest {
  port: number
  authority: string
  protocol: ProbeProtocol
  path?: string
  method?: string
  body?: Buffer
}

export interface ProbeAnswer {
  status: number
  body: string
  /** ALPN for TLS (`http/1.1` when none was chosen), else what was spoken. */
  protocol: string
  tls?: string
  /** TLS session tickets received within a short wait after the answer. */
  tickets?: number
}

const TIMEOUT_MS = 5000

export function probe(r: ProbeRequest): Promise<ProbeAnswer> {
  const what = `${r.method ?? 'GET'} ${r.protocol}://${r.authority}${r.path ?? '/'} on 127.0.0.1:${r.port}`
  const answer = r.protocol === 'h2' || r.protocol === 'h2c' ? probeH2(r) : probeH1(r)
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS)))
  return Promise.race([answer, timeout])
    .catch((err: unknown) => {
      throw new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`)
    })
    .finally(() => clearTimeout(timer))
}

function probeH1(r: ProbeRequest): Promise<ProbeAnswer> {
  const secure = r.protocol === 'https/1.1'
  return new Promise((resolve, reject) => {
    const opts = { host: '127.0.0.1', port: r.port, path: r.path ?? '/', method: r.method ?? 'GET', headers: { host: r.authority }, agent: false as const }
    const req = secure ? https.request({ ...opts, servername: r.authority, rejectUnauthorized: false }) : http.request(opts)
    let tickets = 0
    req.on('socket', (s) => s.on('session', () => tickets++))
    req.on('error', reject)
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('error', reject)
      res.on('end', () => {
        const sock = res.socket as TLSSocket
        const tls = secure ? `${sock.getProtocol()} ${sock.getCipher().standardName}` : undefined
        // TLS 1.3 tickets arrive after the handshake, usually before the answer; wait a little
        // longer for any that follow it.
        setTimeout(() => {
          res.socket.destroy()
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), protocol: secure ? sock.alpnProtocol || 'http/1.1' : 'http/1.1', tls, tickets: secure ? tickets : undefined })
        }, secure ? 100 : 0)
      })
    })
    req.end(r.body)
  })
}

function probeH2(r: ProbeRequest): Promise<ProbeAnswer> {
  const secure = r.protocol === 'h2'
  return new Promise((resolve, reject) => {
    const session = secure ? http2.connect(`https://127.0.0.1:${r.port}`, { servername: r.authority, rejectUnauthorized: false, ALPNProtocols: ['h2'] }) : http2.connect(`http://127.0.0.1:${r.port}`)
    session.on('error', reject)
    const req = session.request({ ':method': r.method ?? 'GET', ':path': r.path ?? '/', ':authority': r.authority })
    req.on('error', reject)
    let status = 0
    req.on('response', (h) => (status = Number(h[':status'])))
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const sock = session.socket as TLSSocket
      const tls = secure ? `${sock.getProtocol()} ${sock.getCipher().standardName}` : undefined
      session.close()
      resolve({ status, body: Buffer.concat(chunks).toString(), protocol: secure ? session.alpnProtocol ?? 'none' : 'h2c', tls })
    })
    req.end(r.body)
  })
}
