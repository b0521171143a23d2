// Issue 22: settings from ConfigMaps, live. config-edge-gateway's keys are options by their flag
// names over the flags and environment; a bad value keeps the last good one and is reported with the
// ConfigMap, key and reason; Knative's config-network and config-domain change how Routes are named.
// Files source (the ConfigMaps in the manifest directory) and Kubernetes source (the fake API server).
import path from 'node:path'
import tls from 'node:tls'
import t from 'tap'
import type { Test } from 'tap'
import type { Gateway } from '../src/gateway.ts'
import { get, revision, revisionPods, startBackend, startTestGateway, tempDir, waitFor, writeManifest } from './helpers/gateway.ts'
import { raw } from './helpers/raw.ts'
import { apply, startKubeEnv, startKubeGateway } from './helpers/kube.ts'
import { makeCA, makeCert, servedCertificate, tlsSecret } from './helpers/certs.ts'
import { projectRoot, startGatewayProcess } from './helpers/gateway-process.ts'
import { startHttpAuthorizer } from './helpers/authorizers.ts'

interface Problem {
  source: string
  object?: string
  field: string
  reason: string
  code: string
}

function configMap(name: string, data: Record<string, string>, namespace = 'knative-serving'): unknown {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data }
}

/** The status of a GET with a path of `length` characters (the screen answers 414 before routing). */
async function statusForPath(port: number, length: number): Promise<number> {
  const path = '/' + 'a'.repeat(length - 1)
  return (await raw(port, `GET ${path} HTTP/1.1\r\nHost: nowhere.example.com\r\nConnection: close\r\n\r\n`)).status
}

async function problems(gw: Gateway): Promise<Problem[]> {
  return (await get(gw.ports.admin, 'localhost', '/debug/routes')).json<{ problems: Problem[] }>().problems
}

const settingsProblems = async (gw: Gateway): Promise<Problem[]> => (await problems(gw)).filter((p) => p.object?.startsWith('ConfigMap '))

t.test('files source: config-edge-gateway changes max-url-length live; a bad value keeps the last good one', async (t) => {
  const dir = tempDir()
  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'max-url-length': '100', _example: 'max-url-length: "8192"' })])
  const gw = await startTestGateway(dir, ['--max-url-length', '300'])
  t.teardown(() => gw.close())
  t.equal(await statusForPath(gw.ports.http, 150), 414, 'the ConfigMap value (100) is in effect from the start, over the flag (300)')
  t.equal(await statusForPath(gw.ports.http, 100), 404, 'a target of exactly 100 passes the screen')
  t.same(await settingsProblems(gw), [], 'the _example key is not read')

  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'max-url-length': '200' })])
  await waitFor('max-url-length 200 to apply', async () => (await statusForPath(gw.ports.http, 150)) === 404)
  t.equal(await statusForPath(gw.ports.http, 201), 414, 'and 201 is over it')

  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'max-url-length': 'twelve', 'no-such-option': '1', 'http-port': '80', 'domain-template': '{{.Name}}.{{.Domain}}' })])
  await waitFor('the problems to be listed', async () => (await settingsProblems(gw)).length === 4)
  const listed = await settingsProblems(gw)
  const byField = new Map(listed.map((p) => [p.field, p]))
  t.match(byField.get('data["max-url-length"]'), { object: 'ConfigMap knative-serving/config-edge-gateway', code: 'EDGE_ERR_CONFIGMAP_VALUE', reason: /'twelve' is not a whole number; the last good value 200 stays in effect/ })
  t.ok(byField.get('data["max-url-length"]')!.source.endsWith('settings.yaml'), 'the problem names the file')
  t.match(byField.get('data["no-such-option"]'), { code: 'EDGE_ERR_CONFIGMAP_KEY', reason: /not an option of the gateway/ })
  t.match(byField.get('data["http-port"]'), { code: 'EDGE_ERR_CONFIGMAP_RESTART', reason: /read only at start: set --http-port or EDGE_HTTP_PORT/ })
  t.match(byField.get('data["domain-template"]'), { code: 'EDGE_ERR_CONFIGMAP_RESTART', reason: /set it in config-network in namespace knative-serving/ })
  t.equal(await statusForPath(gw.ports.http, 150), 404, 'the last good value (200) stays')
  t.equal(await statusForPath(gw.ports.http, 201), 414, 'the last good value (200) stays')

  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', {})])
  await waitFor('the flag (300) to apply again', async () => (await statusForPath(gw.ports.http, 250)) === 404)
  t.equal(await statusForPath(gw.ports.http, 301), 414, 'a key removed falls back to the flag')
  t.same(await settingsProblems(gw), [], 'the problems are gone with the keys')
})

/** A gateway on a manifest directory with Route `hello` (default/hello-00001, one pod), serving. */
async function startRouteGateway(t: Test): Promise<{ gw: Gateway; dir: string }> {
  const pod = await startBackend('pod')
  t.teardown(() => pod.close())
  const dir = tempDir()
  const route = { apiVersion: 'serving.knative.dev/v1', kind: 'Route', metadata: { name: 'hello', namespace: 'default' }, spec: { traffic: [{ revisionName: 'hello-00001', percent: 100 }] } }
  writeManifest(dir, 'app.yaml', [revision('hello-00001'), revisionPods('hello-00001', pod), route])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  await waitFor('the Route to serve', async () => (await get(gw.ports.http, 'hello.default.example.com')).status === 200)
  return { gw, dir }
}

t.test('files source: rate limit, body size and queue bounds follow the ConfigMap; a misplaced ConfigMap is reported', async (t) => {
  const { gw, dir } = await startRouteGateway(t)
  const host = 'hello.default.example.com'

  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'rate-limit-per-client': '1/m', 'max-body-size': '10', 'max-queued-per-revision': '7' })])
  await waitFor('the body limit to apply', async () => (await get(gw.ports.http, host, '/', {}, 'POST', 'x'.repeat(11))).status === 413)
  const limited = await get(gw.ports.http, host)
  const again = await get(gw.ports.http, host)
  t.equal(again.status, 429, `one request a minute per client (then ${limited.status}, ${again.status})`)
  t.equal(again.headers['x-edge-reason'], 'rate-limited')
  t.equal(gw.settings.current.maxQueuedPerRevision, 7, 'the queue bound is the ConfigMap value')

  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', {})])
  await waitFor('the limits to be lifted', async () => (await get(gw.ports.http, host, '/', {}, 'POST', 'x'.repeat(11))).status === 200)
  t.equal((await get(gw.ports.http, host)).status, 200, 'no rate limit once the key is gone')

  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'max-url-length': '100' }, 'default')])
  await waitFor('the misplaced ConfigMap to be reported', async () => (await settingsProblems(gw)).length === 1)
  t.match((await settingsProblems(gw))[0], { object: 'ConfigMap default/config-edge-gateway', field: 'metadata.namespace', code: 'EDGE_ERR_CONFIGMAP_NAMESPACE', reason: /read from namespace knative-serving \(--pod-namespace\), not default/ })
  t.equal(await statusForPath(gw.ports.http, 150), 404, 'and not applied')
})

t.test("files source: config-domain and config-network's templates rename Routes live", async (t) => {
  const { gw, dir } = await startRouteGateway(t)

  writeManifest(dir, 'knative.yaml', [configMap('config-domain', { 'apps.test': '', _example: 'ignored' }), configMap('config-network', { 'domain-template': '{{.Name}}-{{.Namespace}}.{{.Domain}}', 'system-internal-tls': 'Enabled', 'ingress-class': 'someone-else' })])
  await waitFor('the new host to serve', async () => (await get(gw.ports.http, 'hello-default.apps.test')).status === 200)
  t.equal((await get(gw.ports.http, 'hello.default.example.com')).status, 404, 'the old host is gone')
  t.equal(gw.settings.current.systemInternalTls, true, "config-network's system-internal-tls is the systemInternalTls setting")
  t.same(await settingsProblems(gw), [], "config-network's other keys belong to other components: not reported")

  writeManifest(dir, 'knative.yaml', [configMap('config-domain', { 'apps.test': '' }), configMap('config-network', { 'domain-template': '{{.Nope}}', 'system-internal-tls': 'maybe' })])
  await waitFor('the problems to be listed', async () => (await settingsProblems(gw)).length === 2)
  const listed = new Map((await settingsProblems(gw)).map((p) => [p.field, p]))
  t.match(listed.get('data["domain-template"]'), { object: 'ConfigMap knative-serving/config-network', code: 'EDGE_ERR_CONFIGMAP_VALUE', reason: /the last good value .* stays in effect/ })
  t.match(listed.get('data["system-internal-tls"]'), { code: 'EDGE_ERR_CONFIGMAP_VALUE', reason: /expected "enabled" or "disabled", got "maybe"; the last good value true stays in effect/ })
  t.equal((await get(gw.ports.http, 'hello-default.apps.test')).status, 200, 'the last good template stays')

  // cluster-local-domain-tls needs a cluster-local TLS listener, which this gateway was not started with.
  writeManifest(dir, 'knative.yaml', [configMap('config-domain', { 'apps.test': '' }), configMap('config-network', { 'cluster-local-domain-tls': 'Enabled' })])
  await waitFor('the listener problem to be listed', async () => (await settingsProblems(gw)).some((p) => p.field === 'data["cluster-local-domain-tls"]'))
  t.match(await settingsProblems(gw), [{ code: 'EDGE_ERR_CONFIGMAP_RESTART', reason: /no cluster-local TLS listener.*--local-https-port/ }])
  writeManifest(dir, 'knative.yaml', [configMap('config-domain', { 'apps.test': '' }), configMap('config-network', { 'cluster-local-domain-tls': 'disabled' })])
  await waitFor('the problem to clear', async () => (await settingsProblems(gw)).length === 0)
})

t.test('files source: cluster-local-domain-tls with a cluster-local TLS listener is taken as it is', async (t) => {
  const dir = tempDir()
  writeManifest(dir, 'knative.yaml', [configMap('config-network', { 'cluster-local-domain-tls': 'enabled' })])
  const gw = await startTestGateway(dir, ['--local-https-port', '0'])
  t.teardown(() => gw.close())
  await waitFor('the ConfigMap to be read', () => gw.store.list('ConfigMap').length === 1)
  t.same(await settingsProblems(gw), [], 'nothing to report: the listener is there')
})

t.test('files source: external authorization turned on, changed and off by the ConfigMap; a combination the flags refuse keeps the one in place', async (t) => {
  const { gw, dir } = await startRouteGateway(t)
  const host = 'hello.default.example.com'
  const authz = await startHttpAuthorizer()
  t.teardown(() => authz.close())
  t.equal((await get(gw.ports.http, host, '/deny')).status, 200, 'no authorizer at start')

  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'extauthz-host': `127.0.0.1:${authz.port}`, 'extauthz-protocol': 'http', 'extauthz-path-prefix': '/check' })])
  await waitFor('the authorizer to be asked', async () => (await get(gw.ports.http, host, '/deny')).status === 403)
  const denied = await get(gw.ports.http, host, '/deny')
  t.equal(denied.headers['x-edge-reason'], 'extauthz-denied', "the authorizer's answer")
  t.equal(authz.seen.at(-1)!.url, '/check/deny', 'with the path prefix from the ConfigMap')
  t.equal((await get(gw.ports.http, host, '/fine')).status, 200, 'an allowed request is served')

  // pack-as-bytes is for a grpc authorizer: refused with http, as the flags would refuse it.
  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'extauthz-host': `127.0.0.1:${authz.port}`, 'extauthz-protocol': 'http', 'extauthz-pack-as-bytes': 'true' })])
  await waitFor('the settings to be read', () => gw.settings.current.extAuthzPackAsBytes)
  const asked = authz.seen.length
  t.equal((await get(gw.ports.http, host, '/deny')).status, 403, 'the authorizer in place still decides')
  t.equal(authz.seen.at(-1)!.url, '/check/deny', 'the one with the path prefix')
  t.equal(authz.seen.length, asked + 1)

  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', {})])
  await waitFor('external authorization to be off', async () => (await get(gw.ports.http, host, '/deny')).status === 200)
  const after = authz.seen.length
  t.equal((await get(gw.ports.http, host, '/deny')).status, 200)
  t.equal(authz.seen.length, after, 'the authorizer is no longer asked')
})

t.test('files source: proxy-protocol turned on and off by the ConfigMap, for new connections', async (t) => {
  const dir = tempDir()
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  const plain = `GET / HTTP/1.1\r\nHost: nowhere.example.com\r\nConnection: close\r\n\r\n`
  const proxied = `PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n${plain}`
  t.equal((await raw(gw.ports.http, plain)).status, 404, 'off: a plain request is answered')
  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'proxy-protocol': 'true' })])
  await waitFor('PROXY protocol to be required', async () => (await raw(gw.ports.http, plain)).status === 0)
  const refused = await raw(gw.ports.http, plain)
  t.same([refused.status, refused.closed], [0, true], 'on: a connection without the header is closed unanswered')
  t.equal((await raw(gw.ports.http, proxied)).status, 404, 'on: a connection with the header is served')
  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'proxy-protocol': 'false' })])
  await waitFor('PROXY protocol to be off again', async () => (await raw(gw.ports.http, plain)).status === 404)
})

t.test('files source: default-tls-secret and tls-ciphers follow the ConfigMap for new handshakes', async (t) => {
  const ca = await makeCA()
  const fallback = await makeCert(ca, 'fallback.example.com')
  const dir = tempDir()
  writeManifest(dir, 'tls.yaml', [tlsSecret('fallback', fallback, 'edge-system')])
  const gw = await startTestGateway(dir)
  t.teardown(() => gw.close())
  const served = () => servedCertificate(gw.ports.https, 'other.example.com', ca.cert)
  t.match(await served(), { error: /./ }, 'no default certificate at first: the handshake fails')
  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'default-tls-secret': 'edge-system/fallback' })])
  await waitFor('the default certificate to be served', async () => 'cn' in (await served()))
  t.same(await served(), { cn: 'fallback.example.com' })

  /** A TLS 1.2 handshake offering only `cipher`: the cipher agreed on, or the error. */
  const tls12 = (cipher: string): Promise<string> =>
    new Promise((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: gw.ports.https, servername: 'other.example.com', ca: ca.cert, checkServerIdentity: () => undefined, maxVersion: 'TLSv1.2', ciphers: cipher }, () => {
        resolve(s.getCipher().standardName)
        s.destroy()
      })
      s.on('error', (err) => resolve(`error: ${err.message}`))
    })
  t.equal(await tls12('ECDHE-ECDSA-AES256-GCM-SHA384'), 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', "Node's default list allows it")
  writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', { 'default-tls-secret': 'edge-system/fallback', 'tls-ciphers': 'ECDHE-ECDSA-AES128-GCM-SHA256' })])
  await waitFor('the cipher list to apply', async () => (await tls12('ECDHE-ECDSA-AES256-GCM-SHA384')).startsWith('error'))
  t.equal(await tls12('ECDHE-ECDSA-AES128-GCM-SHA256'), 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'the listed cipher is agreed on')
})

t.test('a gateway process: the access log turned on, off and on again by the ConfigMap', async (t) => {
  const dir = tempDir()
  const gw = await startGatewayProcess(t, process.execPath, [path.join(projectRoot, 'src', 'main.ts'), '--manifests', dir, '--workers', '1', '--listen-address', '127.0.0.1', '--log-level', 'warn'], {})
  const request = async (target: string): Promise<number> => (await get(gw.http, 'nowhere.example.com', target)).status
  const lines = (): string[] => gw.output().split('\n').filter((l) => l.startsWith('LINE '))
  const settings = (data: Record<string, string>): void => writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', data)])
  t.equal(await request('/one'), 404, 'off by default')

  settings({ 'access-log': 'true', 'access-log-template': 'LINE {path} {status}' })
  await waitFor('the access log to be on', async () => (await request('/probe-on')) === 404 && lines().length > 0)
  await request('/two')
  await waitFor('the line of /two', () => lines().includes('LINE /two 404'))

  // With max-url-length in the same edit: the first 414 is seen after both changed together.
  settings({ 'access-log': 'false', 'access-log-template': 'LINE {path} {status}', 'max-url-length': '100' })
  await waitFor('the access log to be off', async () => (await statusForPath(gw.http, 150)) === 414)
  await request('/three')

  settings({ 'access-log': 'true', 'access-log-template': 'LINE {path} {status}' })
  await waitFor('the access log to be on again', async () => (await statusForPath(gw.http, 150)) === 404)
  await request('/four')
  await waitFor('the line of /four', () => lines().includes('LINE /four 404'))
  const seen = lines().filter((l) => !l.includes('/probe-on') && !l.includes('/aaaa'))
  t.same(seen, ['LINE /two 404', 'LINE /four 404'], 'a line for each request made while it was on, none for /one or /three')
})

t.test('a gateway process: log-level follows the ConfigMap, in child loggers too; a level pino does not know keeps the last good one', async (t) => {
  const dir = tempDir()
  const gw = await startGatewayProcess(t, process.execPath, [path.join(projectRoot, 'src', 'main.ts'), '--manifests', dir, '--workers', '1', '--listen-address', '127.0.0.1', '--log-level', 'warn'], {})
  const settings = (data: Record<string, string>): void => writeManifest(dir, 'settings.yaml', [configMap('config-edge-gateway', data)])
  // The settings follower's own line, at info, from its child logger ({ component: 'settings' }).
  const changes = (): Array<{ level: number; component?: string; settings: Record<string, unknown> }> =>
    gw.output().split('\n').filter((l) => l.includes('"settings changed by ConfigMap"')).map((l) => JSON.parse(l))
  const urlLimitIs = (n: number) => async () => (await statusForPath(gw.http, n + 1)) === 414 && (await statusForPath(gw.http, n)) !== 414

  settings({ 'log-level': 'info' })
  await waitFor('the change to info to be logged', () => changes().length === 1)
  t.same(changes()[0]!.settings, { logLevel: 'info' })
  t.equal(changes()[0]!.component, 'settings', 'logged by a child logger made before the change')

  settings({ 'log-level': 'warn', 'max-url-length': '100' })
  await waitFor('max-url-length 100 to apply', urlLimitIs(100))
  settings({ 'log-level': 'warn', 'max-url-length': '200' })
  await waitFor('max-url-length 200 to apply', urlLimitIs(200))
  t.equal(changes().length, 1, 'back at warn: neither later change was logged at info')

  settings({ 'log-level': 'verbose', 'max-url-length': '300' })
  await waitFor('max-url-length 300 to apply', urlLimitIs(300))
  const bad = (await get(gw.admin, 'localhost', '/debug/routes')).json<{ problems: Problem[] }>().problems.find((p) => p.field.includes('log-level'))
  t.match(bad?.reason, /'verbose' is not a log level \(use one of fatal, error, warn, info, debug, trace, silent\)/, 'the bad level is reported')
  t.equal(changes().length, 1, 'and the last good level (warn) stays')
})

t.test('kubernetes source: an edit of config-edge-gateway applies live, and removing it restores the flags', async (t) => {
  const env = await startKubeEnv(t)
  const gw = await startKubeGateway(t, env, ['--max-url-length', '300', '--pod-namespace', 'edge'], { backoff: { initialMs: 50, maxMs: 200 } })
  await waitFor('the gateway to be synced', () => gw.kube!.source.synced)
  t.equal(await statusForPath(gw.ports.http, 250), 404, 'the flag (300) at first')

  // A ConfigMap of the same name elsewhere is not the gateway's.
  apply(env.api, configMap('config-edge-gateway', { 'max-url-length': '64' }, 'default'), configMap('config-edge-gateway', { 'max-url-length': '200' }, 'edge'))
  await waitFor('max-url-length 200 to apply', async () => (await statusForPath(gw.ports.http, 250)) === 414)
  t.equal(await statusForPath(gw.ports.http, 150), 404, 'the edge namespace one (200), not the default one (64)')

  apply(env.api, configMap('config-edge-gateway', { 'max-url-length': '0' }, 'edge'))
  await waitFor('the bad value to be reported', async () => (await settingsProblems(gw)).length === 1)
  t.match((await settingsProblems(gw))[0], { source: 'kubernetes', object: 'ConfigMap edge/config-edge-gateway', field: 'data["max-url-length"]', code: 'EDGE_ERR_CONFIGMAP_VALUE', reason: /0 is below the minimum 64; the last good value 200 stays in effect/ })
  t.equal(await statusForPath(gw.ports.http, 250), 414, 'the last good value stays')

  env.api.remove('', 'v1', 'configmaps', 'edge', 'config-edge-gateway')
  await waitFor('the flag (300) to apply again', async () => (await statusForPath(gw.ports.http, 250)) === 404)
  t.same(await settingsProblems(gw), [], 'nothing left to report')

  apply(env.api, configMap('config-network', { 'system-internal-tls': 'enabled' }), configMap('config-domain', { 'apps.test': '' }))
  await waitFor("Knative's ConfigMaps to be read from knative-serving", () => gw.settings.current.systemInternalTls && gw.settings.current.domain === 'apps.test')
  t.pass('config-network and config-domain are watched in --knative-namespace')
})
