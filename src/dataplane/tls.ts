// TLS termination with SNI. Certificates come from the Secrets named in KIngress `tls` (via the
// snapshot), in the files source also from every kubernetes.io/tls Secret by the names its
// certificate carries, and from --default-tls-secret for any other name. A secure context is built
// once per Secret content and rebuilt when the Secret changes, so rotation needs no restart. A bad
// Secret or an unknown name fails that handshake only, with one log line, and never the listener.
import tls from 'node:tls'
import { X509Certificate } from 'node:crypto'
import type { Logger } from 'pino'
import type { Secret } from '../model/k8s.ts'
import { keyOf } from '../model/k8s.ts'
import type { Snapshot, TLSCertificate } from '../model/snapshot.ts'
import { EdgeError, coded } from '../errors.ts'

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

/** A Secret's value as text, from `stringData` (files) or base64 `data`. */
export function secretField(s: Secret, field: string): string | undefined {
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
  private opts: TlsOptions
  /** Secret → its built context; rebuilt only when the PEM text changes. */
  private readonly contexts = new Map<string, Entry>()
  private byHost = new Map<string, Entry>()
  private readonly warned = new Set<string>()
  /** The inputs of the last update, to skip the ones that change nothing. */
  private last: { certificates: Snapshot['certificates'] | undefined; byNames: number; defaultSecret: Secret | undefined } = { certificates: undefined, byNames: 0, defaultSecret: undefined }
  /** Why `--default-tls-secret` is not being served, for the handshake error. */
  private defaultProblem: string | undefined

  constructor(log: Logger, opts: TlsOptions) {
    this.log = log
    this.opts = opts
  }

  /**
   * Recomputes host → certificate: first the snapshot's (the Secrets KIngress `tls` entries name),
   * then each of `byCertificateNames` for the DNS names its certificate carries (the files source
   * passes every TLS Secret; the cluster passes none, so a Secret no KIngress names is never served),
   * then `defaultSecret` (the object of `--default-tls-secret`, undefined if it is not there) for
   * every other name.
   */
  update(snapshot: Snapshot, byCertificateNames: readonly Secret[], defaultSecret: Secret | undefined): void {
    // The store calls this on every change (EndpointSlices too): nothing to do unless an input moved.
    if (snapshot.certificates === this.last.certificates && byCertificateNames.length === 0 && this.last.byNames === 0 && defaultSecret === this.last.defaultSecret) return
    this.last = { certificates: snapshot.certificates, byNames: byCertificateNames.length, defaultSecret }
    const next = new Map<string, Entry>()
    const live = new Set<string>()
    const add = (host: string, c: TLSCertificate): void => {
      live.add(c.secret)
      if (!next.has(host)) next.set(host, this.entry(c.secret, c.cert, c.key))
    }
    for (const [host, c] of snapshot.certificates) add(host, c)
    for (const s of byCertificateNames) {
      if (s.type !== 'kubernetes.io/tls') continue
      const cert = secretField(s, 'tls.crt')
      const key = secretField(s, 'tls.key')
      if (!cert || !key) continue
      let names: string[]
      try {
        names = certificateNames(cert)
      } catch (err) {
        this.warnOnce(`parse:${keyOf(s.metadata)}`, { secret: keyOf(s.metadata), err: (err as Error).message }, coded('EDGE_ERR_TLS_SECRET', 'tls.crt is not a PEM certificate; the Secret is skipped'))
        continue
      }
      for (const n of names) add(n, { secret: keyOf(s.metadata), cert, key })
    }
    this.defaultProblem = undefined
    const name = this.opts.defaultSecret
    if (name) {
      const cert = defaultSecret?.type === 'kubernetes.io/tls' ? secretField(defaultSecret, 'tls.crt') : undefined
      const key = cert && defaultSecret ? secretField(defaultSecret, 'tls.key') : undefined
      if (cert && key) {
        live.add(name)
        next.set('', this.entry(name, cert, key))
      } else {
        this.defaultProblem = `the --default-tls-secret ${name} ${defaultSecret ? 'is not a kubernetes.io/tls Secret with tls.crt and tls.key' : 'does not exist (or is not readable)'}`
        this.warnOnce(`default:${this.defaultProblem}`, { secret: name }, coded('EDGE_ERR_TLS_SECRET', `${this.defaultProblem}; names without a certificate of their own fail their TLS handshake until it is fixed`))
      }
    }
    for (const k of this.contexts.keys()) if (!live.has(k)) this.contexts.delete(k)
    this.byHost = next
  }

  /**
   * New ciphers or default certificate (config-edge-gateway): every context is built again by the
   * next update(), which the caller makes with the inputs it has now.
   */
  configure(opts: TlsOptions): void {
    this.opts = opts
    this.contexts.clear()
    this.last = { certificates: undefined, byNames: 0, defaultSecret: undefined }
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
      this.log.error({ secret, err: e.error }, coded('EDGE_ERR_TLS_SECRET', 'the certificate or key in this Secret cannot be used; hosts using it fail their TLS handshake'))
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
    const why = e ? `the certificate of Secret ${e.secret} is unusable (${e.error})` : (this.defaultProblem ?? 'no certificate for this name (add it to a KIngress tls entry, or set --default-tls-secret)')
    this.warnOnce(`sni:${servername}`, { servername }, `TLS handshake refused for ${servername}: ${why}`)
    cb(new EdgeError('EDGE_ERR_TLS_SNI', `${servername}: ${why}`))
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
