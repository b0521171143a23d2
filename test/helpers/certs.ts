// Certificates for the TLS tests: a test CA, host certificates it signs, the Secret that carries
// one, and what a TLS client is served for a name.
import net from 'node:net'
import tls from 'node:tls'
import { generate } from 'selfsigned'

export interface KeyPair {
  cert: string
  key: string
}

export async function makeCA(): Promise<KeyPair> {
  const ca = await generate([{ name: 'commonName', value: 'edge test CA' }], { keyType: 'ec', algorithm: 'sha256', extensions: [{ name: 'basicConstraints', cA: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true }] })
  return { cert: ca.cert, key: ca.private }
}

export async function makeCert(ca: KeyPair, host: string): Promise<KeyPair> {
  const c = await generate([{ name: 'commonName', value: host }], {
    keyType: 'ec',
    algorithm: 'sha256',
    ca,
    // An IP address is named by an IP SAN (type 7), which is what TLS clients check for one.
    extensions: [{ name: 'subjectAltName', altNames: [net.isIP(host) ? { type: 7, ip: host } : { type: 2, value: host }] }],
  })
  return { cert: c.cert, key: c.private }
}

export function tlsSecret(name: string, c: KeyPair, ns = 'default'): unknown {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from(c.cert).toString('base64'), 'tls.key': Buffer.from(c.key).toString('base64') } }
}

/**
 * The common name of the certificate served for `servername` (signed by `ca`; whether it names
 * `servername` is not checked, so a default certificate can be seen), or the handshake's error.
 */
export function servedCertificate(port: number, servername: string, ca: string): Promise<{ cn: string } | { error: string }> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ca, checkServerIdentity: () => undefined }, () => {
      const cn = String(s.getPeerCertificate().subject?.CN ?? '')
      s.destroy()
      resolve({ cn })
    })
    s.on('error', (err) => resolve({ error: err.message }))
  })
}
