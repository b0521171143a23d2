// TLS termination with SNI. Certificates come from the Secrets named in KIngress `tls` (via the
// snapshot) and, in the files source, from every kubernetes.io/tls Secret by the names its certificate
// carries. A secure context is built once per Secret content and rebuilt when the Secret changes, so
// rotation needs no restart. A bad Secret or an unknown name fails that handshake only, with one log
// line, and never the listener.
import tls from 'node:tls'
import { X509Certificate } from 'node:crypto'
import type { Logger } from 'pino'
import type { Secret } from '../model/k8s.ts'
import { keyOf } from '../model/k8s.ts'
import type { Snapshot, TLSCertificate } from '../model/snapshot.ts'

export interface TlsOptions {
  /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are Node's defaults). */
  ciphers?: string
  /** `namespace/name` of a Secret served to names that have no certificate of their own. */
  defaultSecret?: string
}

interface Entry {
  cert: string
  key: string
  context: tls.SecureContext | undefined
  error: string | undefined
  secret: string
}

function secretField(s: Secret, field: string): string | undefined {
  const str = s.stringData?.[field]
  if (str) return str
  const b64 = s.data?.[field]
  return b64 ? Buffer.from(b64, 'base64').toString('utf8') : undefined
}

/** DNS names a certificate is valid for (subjectAltName, else the CN), lower-case. */
export function certificateNames(pem: string): string[] {
  const x = new X509Certificate(pem)
  const names = (x.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase())
  if (names.length > 0) return names
  const cn = /CN=([^\n,]+)/.exec(x.subject)?.[1]
  return cn ? [cn.toLowerCase()] : []
}

export class CertificateStore {
  private readonly log: Logger
  private readonly opts: TlsOptions
  /** Secret → its built context; rebuilt only when the PEM text changes. */
  private readonly contexts = new Map<string, Entry>()
  private byHost = new Map<string, Entry>()
  private readonly warned = new Set<string>()

  constructor(log: Logger, opts: TlsOptions) {
    this.log = log
    this.opts = opts
  }

  /** Recomputes host → certificate from the snapshot and, when given, from TLS Secrets by their names. */
  update(snapshot: Snapshot, secretsByName: readonly Secret[] | undefined): void {
    const next = new Map<string, Entry>()
    const live = new Set<string>()
    const add = (host: string, c: TLSCertificate): void => {
      live.add(c.secret)
      if (!next.has(host)) next.set(host, this.entry(c.secret, c.cert, c.key))
    }
    for (const [host, c] of snapshot.certificates) add(host, c)
    for (const s of secretsByName ?? []) {
      if (s.type !== 'kubernetes.io/tls') continue
      const cert = secretField(s, 'tls.crt')
      const key = secretField(s, 'tls.key')
      if (!cert || !key) continue
      let names: string[]
      try {
        names = certificateNames(cert)
      } catch (err) {
        this.warnOnce(`parse:${keyOf(s.metadata)}`, { secret: keyOf(s.metadata), err: (err as Error).message }, 'EDGE_ERR_TLS_SECRET: tls.crt is not a PEM certificate; the Secret is skipped')
        continue
      }
      for (const n of names) add(n, { secret: keyOf(s.metadata), cert, key })
    }
    if (this.opts.defaultSecret) {
      const s = (secretsByName ?? []).find((x) => keyOf(x.metadata) === this.opts.defaultSecret)
      const cert = s && secretField(s, 'tls.crt')
      const key = s && secretField(s, 'tls.key')
      if (cert && key) {
        live.add(this.opts.defaultSecret)
        next.set('', this.entry(this.opts.defaultSecret, cert, key))
      }
    }
    for (const k of this.contexts.keys()) if (!live.has(k)) this.contexts.delete(k)
    this.byHost = next
  }

  private entry(secret: string, cert: string, key: string): Entry {
    const have = this.contexts.get(secret)
    if (have && have.cert === cert && have.key === key) return have
    const e: Entry = { cert, key, context: undefined, error: undefined, secret }
    try {
      e.context = tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2', ciphers: this.opts.ciphers })
      if (have) this.log.info({ secret }, 'TLS certificate reloaded')
    } catch (err) {
      e.error = (err as Error).message
      this.log.error({ secret, err: e.error }, 'EDGE_ERR_TLS_SECRET: the certificate or key in this Secret cannot be used; hosts using it fail their TLS handshake')
    }
    this.contexts.set(secret, e)
    return e
  }

  private lookup(servername: string): Entry | undefined {
    const name = servername.toLowerCase()
    const exact = this.byHost.get(name)
    if (exact) return exact
    const dot = name.indexOf('.')
    if (dot > 0) {
      const wild = this.byHost.get(`*${name.slice(dot)}`)
      if (wild) return wild
    }
    return this.byHost.get('')
  }

  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
    const e = this.lookup(servername)
    if (e?.context) return cb(null, e.context)
    const why = e ? `the certificate of Secret ${e.secret} is unusable (${e.error})` : 'no certificate for this name (add it to a KIngress tls entry, or set --default-tls-secret)'
    this.warnOnce(`sni:${servername}`, { servername }, `TLS handshake refused for ${servername}: ${why}`)
    cb(new Error(`EDGE_ERR_TLS_SNI: ${servername}: ${why}`))
  }

  /** One log line per distinct problem, not one per handshake. */
  private warnOnce(key: string, obj: object, msg: string): void {
    if (this.warned.has(key)) return
    if (this.warned.size > 10_000) this.warned.clear()
    this.warned.add(key)
    this.log.warn(obj, msg)
  }

  hosts(): string[] {
    return [...this.byHost.keys()]
  }
}
