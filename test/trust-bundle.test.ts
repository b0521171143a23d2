// Which ConfigMap values become trusted CAs for system-internal-tls, and what an operator is told
// about the ones left out (Kourier's rules: label present in knative-serving, every data value,
// only clean PEM certificates).
import t from 'tap'
import { certificatesIn, trustBundleOf } from '../src/dataplane/trust-bundle.ts'
import type { ConfigMap, Secret } from '../src/model/k8s.ts'
import { makeCA, makeCert } from './helpers/certs.ts'

function configMap(name: string, data: Record<string, string>, labels: Record<string, string> = { 'networking.knative.dev/trust-bundle': 'true' }, namespace = 'knative-serving'): ConfigMap {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace, labels }, data }
}

t.test('a value: PEM certificates only, whole', async (t) => {
  const ca = await makeCA()
  const other = await makeCA()
  const leaf = await makeCert(ca, 'kn-routing')
  t.same(certificatesIn(ca.cert), [ca.cert.trim()], 'one certificate')
  t.same(certificatesIn(`\n${ca.cert}\n\n${other.cert}\n`), [ca.cert.trim(), other.cert.trim()], 'two, with blank lines around')
  t.same(certificatesIn(''), [], 'empty: nothing, and no complaint (as Kourier)')
  t.match(certificatesIn(`# our CA\n${ca.cert}`), { reason: /^text outside a PEM block at offset 0/ })
  t.match(certificatesIn(`${ca.cert}trailing`), { reason: /^text after the last PEM block/ })
  t.match(certificatesIn(leaf.key), { reason: /PRIVATE KEY block; a trust bundle holds CA certificates only/ })
  t.match(certificatesIn('not a certificate'), { reason: 'holds no PEM certificate' })
  const broken = ca.cert.replace(/\n[A-Za-z0-9+/]{20}/, '\nAAAAAAAAAAAAAAAAAAAA')
  t.match(certificatesIn(broken), { reason: /^certificate 1 does not parse: / })
})

t.test('the bundle: labelled ConfigMaps of knative-serving, every key, in name and key order; bad values reported, the rest kept', async (t) => {
  const a = await makeCA()
  const b = await makeCA()
  const c = await makeCA()
  const bundle = trustBundleOf([
    configMap('z-last', { 'ca.crt': c.cert }),
    configMap('a-first', { 'second.pem': b.cert, 'first.pem': a.cert, 'broken.pem': 'junk' }),
    configMap('unlabelled', { 'ca.pem': a.cert }, {}),
    configMap('elsewhere', { 'ca.pem': a.cert }, undefined, 'default'),
    configMap('any-value', { 'ca.pem': b.cert }, { 'networking.knative.dev/trust-bundle': '' }),
  ])
  t.same(bundle.sources, [
    'ConfigMap knative-serving/a-first[first.pem]',
    'ConfigMap knative-serving/a-first[second.pem]',
    'ConfigMap knative-serving/any-value[ca.pem]',
    'ConfigMap knative-serving/z-last[ca.crt]',
  ])
  t.same(bundle.certificates, [a.cert, b.cert, b.cert, c.cert].map((p) => p.trim()))
  t.same(bundle.problems, [{ source: 'ConfigMap knative-serving/a-first[broken.pem]', reason: 'holds no PEM certificate' }])
})

t.test("routing-serving-certs' ca.crt comes first, as in Kourier; a Secret without one adds nothing", async (t) => {
  const routing = await makeCA()
  const bundled = await makeCA()
  const secret = (data: Record<string, string>): Secret => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'routing-serving-certs', namespace: 'knative-serving' }, type: 'Opaque', data })
  const b64 = (s: string) => Buffer.from(s).toString('base64')
  const cms = [configMap('bundle', { 'ca.pem': bundled.cert })]
  const both = trustBundleOf(cms, secret({ 'ca.crt': b64(routing.cert) }))
  t.same(both.sources, ['Secret knative-serving/routing-serving-certs[ca.crt]', 'ConfigMap knative-serving/bundle[ca.pem]'])
  t.same(both.certificates, [routing.cert.trim(), bundled.cert.trim()])
  t.same(trustBundleOf(cms, secret({})).sources, ['ConfigMap knative-serving/bundle[ca.pem]'], 'no ca.crt yet (Serving fills it in later)')
  t.same(trustBundleOf(cms, secret({ 'ca.crt': b64('junk') })).problems, [{ source: 'Secret knative-serving/routing-serving-certs[ca.crt]', reason: 'holds no PEM certificate' }])
})
