// A fake Kubernetes API server for tests: real HTTP, real JSON wire format, real watch streams.
//
// Supported: get/list/watch/create/replace/merge-patch/json-patch/delete on namespaced (and cluster-scoped)
// resources registered in types.ts, the /status subresource, label and field selectors, resourceVersion
// semantics (409 on stale writes, 410 on expired watch history), bookmarks, finalizers, and fault injection.
// Not supported: strategic merge patch and server-side apply (415), deletecollection, pagination (limit/continue
// are ignored), admission, defaulting, schema validation.
//
// Where the gateway depends on it, it answers as a real kube-apiserver does:
// - field selectors: metadata.name and metadata.namespace everywhere, plus each built-in type's own fields
//   (`type` for Secrets); any other field is a 400 worded as the real server words it (selectors.ts);
// - a resourceVersion the server has not reached yet (a client that saw a server since restored from an
//   older etcd backup, see restoreBackup()): a plain watch from it is accepted and stays silent (no event
//   at or below it, no bookmark below it), as the watch cache does; a list from it, or a watch with
//   sendInitialEvents=true, waits `freshnessWaitMs` for it and then fails with the real 504 Timeout
//   "Too large resource version" Status (cause ResourceVersionTooLarge, retryAfterSeconds 1), the watch
//   as an ERROR event on a 200 stream;
// - authorization: with `rbac`, every request is authorized by RBAC against the given Roles, ClusterRoles
//   and bindings (rbac.ts) and refused with the real 403 Status; without it everything is allowed;
// - every request is recorded with what RBAC sees of it (`requests[i].attributes`: verb, API group,
//   resource, subresource, namespace, name), allowed or not.
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import { KubeConfig } from '@kubernetes/client-node'
import { ApiError, makeStatus } from './errors.ts'
import type { K8sStatus } from './errors.ts'
import { clone, jsonPatch, mergePatch } from './patch.ts'
import { Authorizer, requestAttributes } from './rbac.ts'
import type { RequestAttributes } from './rbac.ts'
import { parseFieldSelector, parseLabelSelector } from './selectors.ts'
import { Store } from './store.ts'
import type { StoreBackup } from './store.ts'
import { DEFAULT_RESOURCES, apiVersionOf, resKeyOf } from './types.ts'
import type { KObject, RequestLogEntry, ResourceDef } from './types.ts'
import { Watcher } from './watch.ts'

export type { KObject, RequestLogEntry, ResourceDef } from './types.ts'
export type { K8sStatus } from './errors.ts'
export type { BoundRule, PolicyRule, RequestAttributes } from './rbac.ts'
export type { StoreBackup } from './store.ts'
export { ruleAllows } from './rbac.ts'
export { MICROTIME_RE } from './store.ts'

export interface FakeApiServerOptions {
  /** 0 (default) = ephemeral port. */
  port?: number
  /** Bearer token required on every request (default 'fake-token'); null disables the check. */
  token?: string | null
  /** Number of events kept for watch resumption (default 1000). Older resourceVersions get 410. */
  historySize?: number
  /** How a watch from an expired resourceVersion is answered: 'event' (200 + ERROR event, default) or 'http' (410). */
  expiredMode?: 'event' | 'http'
  /** BOOKMARK period for watches that ask with allowWatchBookmarks=true (default 1000 ms). */
  bookmarkIntervalMs?: number
  /** Close every watch after this long even if the client sent no timeoutSeconds (default: never). */
  watchTimeoutMs?: number
  /** See StoreOptions.microTimeErrors. */
  microTimeErrors?: 'invalid' | 'decode'
  /** Extra resource types to serve. */
  resources?: ResourceDef[]
  /**
   * Authorize every request as `user` (e.g. `system:serviceaccount:knative-serving:edge-gateway`) against
   * these Roles, ClusterRoles, RoleBindings and ClusterRoleBindings (other objects are ignored, so a
   * rendered chart can be passed whole); what no bound rule allows is answered 403. Absent: all allowed.
   */
  rbac?: { user: string; objects: readonly unknown[] }
  /**
   * How long a list (or a sendInitialEvents watch) from a resourceVersion the server has not reached
   * waits for it before the 504 "Too large resource version" (default 3000 ms, the watch cache's blockTimeout).
   */
  freshnessWaitMs?: number
}

export interface FailRule {
  code: number
  reason?: string
  message?: string
  /** Only requests for which this returns true are failed (and counted). `path` has no query string. */
  match?: (method: string, path: string, query: URLSearchParams) => boolean
}

interface ActiveFault extends FailRule {
  remaining: number
}

interface Route {
  def: ResourceDef
  namespace: string | undefined
  name: string | undefined
  subresource: 'status' | undefined
}

const MAX_BODY = 8 * 1024 * 1024
const DEFAULT_FRESHNESS_WAIT_MS = 3000

/** The real server's answer to a request for a resourceVersion it has not reached (storage.NewTooLargeResourceVersionError). */
export function tooLargeResourceVersion(requested: number, current: number): K8sStatus {
  return makeStatus(504, `Timeout: Too large resource version: ${requested}, current: ${current}`, 'Timeout', {
    causes: [{ reason: 'ResourceVersionTooLarge', message: 'Too large resource version' }],
    retryAfterSeconds: 1,
  })
}

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
  res.end(text)
}

function sendStatus(res: ServerResponse, s: K8sStatus): void {
  sendJson(res, s.code, s)
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > MAX_BODY) {
        reject(new ApiError(413, 'request entity too large'))
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new ApiError(400, `error decoding request body: ${(e as Error).message}`, 'BadRequest')
  }
}

export class FakeApiServer {
  /** Every request received, in order (method, path without query, query, content-type, status). */
  readonly requests: RequestLogEntry[] = []
  readonly store: Store
  /** Undefined without the `rbac` option: every request is allowed. */
  readonly authorizer: Authorizer | undefined
  private readonly opts: FakeApiServerOptions
  /** Called on every store event: requests waiting for a resourceVersion check whether it has come. */
  private readonly rvWaiters = new Set<() => void>()
  private readonly token: string | null
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()
  private readonly watchers = new Set<Watcher>()
  private faults: ActiveFault[] = []
  private stalled = false
  private down = false
  private expiredMode: 'event' | 'http'
  private portNum = 0

  private constructor(opts: FakeApiServerOptions) {
    this.opts = opts
    this.token = opts.token === undefined ? 'fake-token' : opts.token
    this.expiredMode = opts.expiredMode ?? 'event'
    this.store = new Store([...DEFAULT_RESOURCES, ...(opts.resources ?? [])], {
      historySize: opts.historySize,
      microTimeErrors: opts.microTimeErrors,
    })
    this.store.onEvent = (ev) => {
      for (const w of [...this.watchers]) w.offer(ev)
      for (const check of [...this.rvWaiters]) check()
    }
    this.authorizer = opts.rbac === undefined ? undefined : new Authorizer(opts.rbac.user, opts.rbac.objects)
  }

  static async start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const s = new FakeApiServer(opts)
    await s.listen(opts.port ?? 0)
    return s
  }

  get port(): number {
    return this.portNum
  }

  get url(): string {
    return `http://127.0.0.1:${this.portNum}`
  }

  /** The current (highest issued) resourceVersion. */
  get resourceVersion(): string {
    return String(this.store.rv)
  }

  // ---------------------------------------------------------------- lifecycle

  private listen(port: number): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res))
    server.keepAliveTimeout = 5000
    server.on('connection', (sock: Socket) => {
      if (this.down) {
        sock.destroy()
        return
      }
      this.sockets.add(sock)
      sock.on('close', () => this.sockets.delete(sock))
    })
    return new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen({ port, host: '127.0.0.1' }, () => {
        server.off('error', reject)
        const addr = server.address()
        if (addr !== null && typeof addr === 'object') this.portNum = addr.port
        this.server = server
        resolve()
      })
    })
  }

  private async closeListener(): Promise<void> {
    const server = this.server
    this.server = undefined
    for (const w of [...this.watchers]) w.destroy()
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
    if (server === undefined) return
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** Close the listener and every socket. Idempotent. */
  async stop(): Promise<void> {
    this.down = false
    await this.closeListener()
  }

  /**
   * Close everything and listen again on the same port, as an apiserver restart: open watches die, the
   * event history is gone and resourceVersions jump by 1000, so clients resuming from an old
   * resourceVersion get 410 and relist. Objects are kept unless `wipe`.
   */
  async restart(opts: { wipe?: boolean } = {}): Promise<void> {
    await this.closeListener()
    this.store.restart(opts.wipe === true)
    this.down = false
    await this.listen(this.portNum)
  }

  /**
   * down=true: 'refuse' (default) closes the listener, so connects fail with ECONNREFUSED;
   * 'reset' keeps listening but destroys every accepted connection. Open sockets are closed either way.
   */
  async setDown(down: boolean, mode: 'refuse' | 'reset' = 'refuse'): Promise<void> {
    if (down) {
      this.down = true
      if (mode === 'refuse') {
        await this.closeListener()
      } else {
        for (const w of [...this.watchers]) w.destroy()
        for (const s of this.sockets) s.destroy()
      }
      return
    }
    this.down = false
    if (this.server === undefined) await this.listen(this.portNum)
  }

  // ---------------------------------------------------------------- fault injection

  /** Destroy every open watch connection abruptly (no terminating chunk). */
  dropWatches(): void {
    for (const w of [...this.watchers]) w.destroy()
  }

  /** End every open watch cleanly (as the apiserver does when a watch times out). */
  closeWatches(): void {
    for (const w of [...this.watchers]) w.end()
  }

  /** Keep watch connections open but write nothing (events are queued and flushed when un-stalled). */
  stallWatches(on: boolean): void {
    this.stalled = on
    for (const w of this.watchers) w.setStalled(on)
  }

  /** Send a BOOKMARK now on every watch that asked for bookmarks. */
  sendBookmarks(): void {
    for (const w of this.watchers) if (w.opts.bookmarkIntervalMs !== undefined) w.bookmark()
  }

  /** What the cluster holds now (objects and resourceVersion), for restoreBackup(). */
  backup(): StoreBackup {
    return this.store.backup()
  }

  /**
   * Restart as after an etcd restore from `backup` without `etcdutl snapshot restore --bump-revision`:
   * objects and resourceVersion go back to the backup's and the history is gone. A client that saw a
   * later resourceVersion now watches from one this server has not reached: accepted, and silent.
   */
  async restoreBackup(backup: StoreBackup): Promise<void> {
    await this.closeListener()
    this.store.restoreBackup(backup)
    this.down = false
    await this.listen(this.portNum)
  }

  /** Forget the event history: a watch from any older resourceVersion gets 410 Expired. */
  expireHistory(): void {
    this.store.expireHistory()
  }

  /** Send 410 on open watches too (ERROR event, then end), as etcd compaction does. */
  expireWatches(): void {
    this.store.expireHistory()
    for (const w of [...this.watchers]) w.fail(this.expiredStatus())
  }

  /**
   * Send an ERROR event carrying `status` on the open watches (those whose request path `match`
   * accepts), then end them: how a server reports a failure once a watch has started.
   */
  failWatches(status: K8sStatus, match?: (path: string) => boolean): void {
    for (const w of [...this.watchers]) if (match === undefined || match(w.opts.path)) w.fail(status)
  }

  setExpiredMode(mode: 'event' | 'http'): void {
    this.expiredMode = mode
  }

  /** Answer the next `n` requests matching `rule.match` (all requests if absent) with a Status error. */
  failNext(n: number, rule: FailRule): void {
    this.faults.push({ ...rule, remaining: n })
  }

  clearFaults(): void {
    this.faults = []
  }

  watchCount(): number {
    return this.watchers.size
  }

  clearRequests(): void {
    this.requests.length = 0
  }

  /** Requests that could have changed state (POST/PUT/PATCH/DELETE), optionally only those whose path contains `pathPart`. */
  writes(pathPart?: string): RequestLogEntry[] {
    return this.requests.filter((r) => r.method !== 'GET' && (pathPart === undefined || r.path.includes(pathPart)))
  }

  // ---------------------------------------------------------------- direct object access (no HTTP)

  registerResource(def: ResourceDef): void {
    this.store.register(def)
  }

  get(group: string, version: string, plural: string, namespace: string | undefined, name: string): KObject | undefined {
    return this.store.get(this.store.mustDef(group, version, plural), namespace, name)
  }

  list(group: string, version: string, plural: string, namespace?: string): KObject[] {
    return this.store.list(this.store.mustDef(group, version, plural), namespace)
  }

  /**
   * Create or overwrite an object bypassing all write rules (resourceVersion checks, status subresource,
   * validation). Missing metadata is filled in; the namespace defaults to 'default'. Emits ADDED/MODIFIED.
   */
  put(group: string, version: string, plural: string, obj: object): KObject {
    return this.store.putDirect(this.store.mustDef(group, version, plural), obj as KObject)
  }

  /** Delete immediately, ignoring finalizers. Emits DELETED. */
  remove(group: string, version: string, plural: string, namespace: string | undefined, name: string): KObject | undefined {
    return this.store.removeDirect(this.store.mustDef(group, version, plural), namespace, name)
  }

  // ---------------------------------------------------------------- client configuration

  /** Writes a kubeconfig for this server into `dir` and returns its path. */
  writeKubeconfig(dir: string, fileName = 'kubeconfig'): string {
    const path = join(dir, fileName)
    writeFileSync(path, JSON.stringify(this.kubeconfigObject(), null, 2))
    return path
  }

  /** A loaded client-node KubeConfig for this server (plain http needs skipTLSVerify in client-node). */
  kubeConfig(): KubeConfig {
    const kc = new KubeConfig()
    kc.loadFromString(JSON.stringify(this.kubeconfigObject()))
    return kc
  }

  private kubeconfigObject(): Record<string, unknown> {
    return {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake', user: this.token === null ? {} : { token: this.token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake', namespace: 'default' } }],
      'current-context': 'fake',
      preferences: {},
    }
  }

  // ---------------------------------------------------------------- HTTP

  private expiredStatus(rv?: string): K8sStatus {
    const msg = rv === undefined ? 'too old resource version' : `too old resource version: ${rv} (${this.store.compactedRv})`
    return makeStatus(410, msg, 'Expired')
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.down) {
      req.socket.destroy()
      return
    }
    const u = new URL(req.url ?? '/', 'http://fake')
    const query: Record<string, string> = {}
    for (const [k, v] of u.searchParams) query[k] = v
    const method = (req.method ?? 'GET').toUpperCase()
    const isWatch = method === 'GET' && (query['watch'] === 'true' || query['watch'] === '1')
    const attributes = requestAttributes(method, u.pathname, u.searchParams)
    const entry: RequestLogEntry = {
      method,
      path: u.pathname,
      query,
      attributes,
      contentType: req.headers['content-type'],
      watch: isWatch,
      status: 0,
      time: Date.now(),
    }
    this.requests.push(entry)
    res.on('finish', () => {
      entry.status = res.statusCode
    })
    if (isWatch) {
      // Streaming: record the status as soon as headers go out.
      const origWriteHead = res.writeHead.bind(res) as (...a: unknown[]) => ServerResponse
      res.writeHead = ((...a: unknown[]) => {
        entry.status = typeof a[0] === 'number' ? a[0] : 0
        return origWriteHead(...a)
      }) as typeof res.writeHead
    }
    this.dispatch(req, res, method, u, isWatch, attributes).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy()
        return
      }
      if (err instanceof ApiError) sendStatus(res, err.status)
      else sendStatus(res, makeStatus(500, `internal error: ${(err as Error)?.message ?? String(err)}`))
    })
  }

  private takeFault(method: string, path: string, q: URLSearchParams): ActiveFault | undefined {
    for (const f of this.faults) {
      if (f.remaining <= 0) continue
      if (f.match !== undefined && !f.match(method, path, q)) continue
      f.remaining--
      this.faults = this.faults.filter((x) => x.remaining > 0)
      return f
    }
    return undefined
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse, method: string, u: URL, isWatch: boolean, attributes: RequestAttributes): Promise<void> {
    const path = u.pathname
    const bodyText = method === 'GET' || method === 'HEAD' ? '' : await readBody(req)

    if (this.token !== null) {
      const auth = req.headers['authorization']
      if (auth !== `Bearer ${this.token}`) throw new ApiError(401, 'Unauthorized', 'Unauthorized')
    }
    const fault = this.takeFault(method, path, u.searchParams)
    if (fault !== undefined) {
      throw new ApiError(fault.code, fault.message ?? `injected failure (${fault.code})`, fault.reason)
    }
    // As in the real server, authorization comes before routing: a forbidden request for a resource
    // that does not exist is a 403, not a 404.
    if (this.authorizer !== undefined && !this.authorizer.allowed(attributes)) throw this.authorizer.forbidden(attributes)

    if (path === '/healthz' || path === '/readyz' || path === '/livez') {
      res.writeHead(200, { 'Content-Type': 'text/plain' })
      res.end('ok')
      return
    }
    if (path === '/version') {
      sendJson(res, 200, { major: '1', minor: '34', gitVersion: 'v1.34.0-fake', platform: 'linux/amd64' })
      return
    }

    const route = this.route(path)
    const { def, namespace, name, subresource } = route
    const q = u.searchParams

    switch (method) {
      case 'GET': {
        if (name !== undefined) {
          sendJson(res, 200, this.store.mustGet(def, namespace, name))
          return
        }
        const label = parseLabelSelector(q.get('labelSelector'))
        const field = parseFieldSelector(q.get('fieldSelector'), def)
        if (isWatch) {
          await this.startWatch(res, path, route, q, label, field)
          return
        }
        await this.waitForListResourceVersion(q.get('resourceVersion'))
        const items = this.store.list(def, namespace, label, field)
        if (def.builtin) {
          // The real server omits kind/apiVersion on items of built-in list types.
          for (const it of items) {
            delete it.kind
            delete it.apiVersion
          }
        }
        sendJson(res, 200, {
          kind: `${def.kind}List`,
          apiVersion: apiVersionOf(def),
          metadata: { resourceVersion: String(this.store.rv) },
          items,
        })
        return
      }
      case 'POST': {
        if (name !== undefined) throw new ApiError(405, 'the server does not allow this method on the requested resource', 'MethodNotAllowed')
        if (def.namespaced && namespace === undefined) throw new ApiError(404, 'the server could not find the requested resource', 'NotFound')
        sendJson(res, 201, this.store.create(def, namespace, parseJson(bodyText)))
        return
      }
      case 'PUT': {
        if (name === undefined) throw new ApiError(405, 'the server does not allow this method on the requested resource', 'MethodNotAllowed')
        const out = this.store.update(def, namespace, name, parseJson(bodyText), { subresource, requireResourceVersion: true })
        sendJson(res, 200, out)
        return
      }
      case 'PATCH': {
        if (name === undefined) throw new ApiError(405, 'the server does not allow this method on the requested resource', 'MethodNotAllowed')
        const ct = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
        let apply: (cur: KObject) => unknown
        if (ct === 'application/merge-patch+json') {
          const p = parseJson(bodyText)
          apply = (cur) => mergePatch(cur, p)
        } else if (ct === 'application/json-patch+json') {
          const p = parseJson(bodyText)
          apply = (cur) => jsonPatch(cur, p)
        } else {
          throw new ApiError(415,
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json (got "${ct}")`,
            'UnsupportedMediaType')
        }
        const cur = this.store.mustGet(def, namespace, name)
        const patched = apply(clone(cur))
        const out = this.store.update(def, namespace, name, patched, { subresource, requireResourceVersion: false })
        sendJson(res, 200, out)
        return
      }
      case 'DELETE': {
        if (name === undefined) throw new ApiError(405, 'deletecollection is not supported by the fake apiserver', 'MethodNotAllowed')
        let pre: { uid?: string; resourceVersion?: string } | undefined
        if (bodyText.trim() !== '') {
          const opts = parseJson(bodyText) as { preconditions?: { uid?: string; resourceVersion?: string } } | null
          pre = opts?.preconditions ?? undefined
        }
        sendJson(res, 200, this.store.delete(def, namespace, name, pre))
        return
      }
      default:
        throw new ApiError(405, 'the server does not allow this method on the requested resource', 'MethodNotAllowed')
    }
  }

  private route(path: string): Route {
    const notFound = (): ApiError => new ApiError(404, 'the server could not find the requested resource', 'NotFound')
    let segs: string[]
    try {
      segs = path.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s))
    } catch {
      throw notFound()
    }
    let group: string
    let version: string | undefined
    let rest: string[]
    if (segs[0] === 'api') {
      group = ''
      version = segs[1]
      rest = segs.slice(2)
    } else if (segs[0] === 'apis') {
      group = segs[1] ?? ''
      version = segs[2]
      rest = segs.slice(3)
    } else {
      throw notFound()
    }
    if (version === undefined || rest.length === 0) throw notFound()
    let namespace: string | undefined
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      namespace = rest[1]
      rest = rest.slice(2)
    }
    const [plural, name, sub, ...extra] = rest
    if (plural === undefined || extra.length > 0) throw notFound()
    const def = this.store.def(group, version, plural)
    if (def === undefined) throw notFound()
    if (def.namespaced && name !== undefined && namespace === undefined) throw notFound()
    if (!def.namespaced && namespace !== undefined) throw notFound()
    if (sub !== undefined && !(sub === 'status' && def.statusSubresource)) throw notFound()
    return { def, namespace, name, subresource: sub === 'status' ? 'status' : undefined }
  }

  /**
   * Resolves true once the store has reached `rv`, false if it has not within freshnessWaitMs (the
   * watch cache's wait for a resourceVersion it has not seen yet).
   */
  private waitForResourceVersion(rv: number): Promise<boolean> {
    if (this.store.rv >= rv) return Promise.resolve(true)
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer)
        this.rvWaiters.delete(check)
        resolve(ok)
      }
      const check = (): void => {
        if (this.store.rv >= rv) done(true)
      }
      const timer = setTimeout(() => done(false), this.opts.freshnessWaitMs ?? DEFAULT_FRESHNESS_WAIT_MS)
      timer.unref()
      this.rvWaiters.add(check)
    })
  }

  /** A list "not older than" a resourceVersion (any but '' and '0') the server has not reached: 504 after the wait. */
  private async waitForListResourceVersion(rvParam: string | null): Promise<void> {
    if (rvParam === null || rvParam === '' || rvParam === '0') return
    const rv = Number(rvParam)
    if (!Number.isInteger(rv) || rv < 0) throw new ApiError(400, `invalid resource version: ${rvParam}`, 'BadRequest')
    if (!(await this.waitForResourceVersion(rv))) {
      const s = tooLargeResourceVersion(rv, this.store.rv)
      throw new ApiError(s.code, s.message, s.reason, s.details)
    }
  }

  private async startWatch(
    res: ServerResponse,
    path: string,
    route: Route,
    q: URLSearchParams,
    label: ReturnType<typeof parseLabelSelector>,
    field: ReturnType<typeof parseFieldSelector>,
  ): Promise<void> {
    const { def, namespace } = route
    const rvParam = q.get('resourceVersion') ?? ''
    const initialEvents = q.get('sendInitialEvents') === 'true'
    let history: ReturnType<Store['eventsSince']> = []
    const fromNow = rvParam === '' || rvParam === '0'
    let rv = 0
    if (!fromNow) {
      rv = Number(rvParam)
      if (!Number.isInteger(rv) || rv < 0) {
        throw new ApiError(400, `invalid resource version: ${rvParam}`, 'BadRequest')
      }
      if (!initialEvents) {
        history = this.store.eventsSince(rv)
        if (history === undefined && this.expiredMode === 'http') throw new ApiError(410, this.expiredStatus(rvParam).message, 'Expired')
      }
    }
    // Only a watch that asks for the initial state waits for its resourceVersion; a plain watch from a
    // resourceVersion not reached yet is accepted at once and stays silent until the server passes it.
    const fresh = !initialEvents || fromNow || (await this.waitForResourceVersion(rv))
    if (res.destroyed) return
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? '')
    let timeoutMs: number | undefined = Number.isFinite(timeoutSeconds) && timeoutSeconds > 0 ? timeoutSeconds * 1000 : undefined
    if (this.opts.watchTimeoutMs !== undefined) timeoutMs = Math.min(timeoutMs ?? Infinity, this.opts.watchTimeoutMs)
    const bookmarks = q.get('allowWatchBookmarks') === 'true' || q.get('allowWatchBookmarks') === '1'
    const w = new Watcher(res, {
      path,
      def,
      resKey: resKeyOf(def.group, def.version, def.plural),
      namespace,
      label,
      field,
      bookmarkIntervalMs: bookmarks ? (this.opts.bookmarkIntervalMs ?? 1000) : undefined,
      timeoutMs,
      currentRv: () => this.store.rv,
      stalled: this.stalled,
      fromRv: initialEvents ? this.store.rv : fromNow ? undefined : rv,
      onClose: (x) => this.watchers.delete(x),
    })
    if (!fresh) {
      // Past authorization and a parsed resourceVersion, the real server reports errors as an ERROR event.
      w.fail(tooLargeResourceVersion(rv, this.store.rv))
      return
    }
    if (history === undefined) {
      w.fail(this.expiredStatus(rvParam))
      return
    }
    if (initialEvents) {
      w.sendInitial(this.store.list(def, namespace))
      if (bookmarks) w.bookmark({ 'k8s.io/initial-events-end': 'true' })
    } else if (fromNow) w.sendInitial(this.store.list(def, namespace))
    else for (const ev of history) w.offer(ev)
    if (!w.isClosed) this.watchers.add(w)
  }
}
