// The certificate both proxies serve in the TLS scenarios, made once per run: self-signed, ECDSA
// P-256 (a full handshake then costs the server one P-256 signature; with RSA 2048 the signature
// would dwarf the proxies' own work), naming the bench's hosts and 127.0.0.1.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { generate } from 'selfsigned'

export interface BenchCert {
  /** Certificate then key, one file: what HAProxy's `crt` reads. */
  pemFile: string
  /** The same pair as a kubernetes.io/tls Secret for the gateway's manifests. */
  secret: unknown
  secretRef: string
  /**
   * An OpenSSL configuration for the proxies' processes (OPENSSL_CONF) under which a server issues
   * no TLS 1.3 session tickets, so no client can resume a session: every new connection is a full
   * handshake, for both proxies alike. (wrk resumes every other connection and h2load every one
   * when the server issues tickets; which share a run got would otherwise be unknown.)
   */
  noTicketsConf: string
}

export async function makeBenchCert(hosts: string[]): Promise<BenchCert> {
  const pair = await generate([{ name: 'commonName', value: hosts[0]! }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 7 * 24 * 3600 * 1000),
    extensions: [{ name: 'subjectAltName', altNames: [...hosts.map((h) => ({ type: 2 as const, value: h })), { type: 7 as const, ip: '127.0.0.1' }] }],
  })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-tls-'))
  const pemFile = path.join(dir, 'bench.pem')
  fs.writeFileSync(pemFile, pair.cert.trimEnd() + '\n' + pair.private.trimEnd() + '\n')
  const noTicketsConf = path.join(dir, 'no-tickets.cnf')
  // openssl_conf for HAProxy (and any OpenSSL program), nodejs_conf for Node.
  fs.writeFileSync(
    noTicketsConf,
    `openssl_conf = bench_conf
nodejs_conf = bench_conf
[bench_conf]
ssl_conf = bench_ssl
[bench_ssl]
system_default = bench_tls
[bench_tls]
NumTickets = 0
`,
  )
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'bench-tls', namespace: 'default' },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': Buffer.from(pair.cert).toString('base64'), 'tls.key': Buffer.from(pair.private).toString('base64') },
  }
  return { pemFile, secret, secretRef: 'default/bench-tls', noTicketsConf }
}
