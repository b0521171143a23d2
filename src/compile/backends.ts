// Resolves a KIngress split (Service + port) to what the data plane dials: the ready pods of a
// Service or of a Knative revision, or the DNS name of an ExternalName Service. Pure.
import type { EndpointSlice, IngressBackendSplit, Revision, Service, ServicePort } from '../model/k8s.ts'
import { HEADER_REVISION, LABEL_REVISION, LABEL_SERVICE_NAME, QUEUE_PROXY_TLS_PORT } from '../model/k8s.ts'
import type { BackendSpec, Endpoint, RevisionRef, UpstreamProtocol } from '../model/snapshot.ts'
import { canonicalIp, hostPort } from '../model/addresses.ts'
import net from 'node:net'

export interface BackendIndex {
  services: ReadonlyMap<string, Service>
  revisions: ReadonlyMap<string, Revision>
  /** EndpointSlices grouped by `namespace/<kubernetes.io/service-name>`. */
  slicesByService: ReadonlyMap<string, EndpointSlice[]>
}

export function indexSlices(slices: readonly EndpointSlice[]): Map<string, EndpointSlice[]> {
  const out = new Map<string, EndpointSlice[]>()
  for (const s of slices) {
    const svc = s.metadata.labels?.[LABEL_SERVICE_NAME]
    if (!svc) continue
    const key = `${s.metadata.namespace ?? 'default'}/${svc}`
    const list = out.get(key)
    if (list) list.push(s)
    else out.set(key, [s])
  }
  return out
}

const H2C_PORT_NAMES = new Set(['http2', 'h2c'])

function isH2c(name: string | undefined, appProtocol: string | undefined): boolean {
  return (name !== undefined && H2C_PORT_NAMES.has(name)) || appProtocol === 'kubernetes.io/h2c'
}

function headerValue(headers: Record<string, string> | undefined, name: string): string | undefined {
  if (!headers) return undefined
  const lower = name.toLowerCase()
  for (const k of Object.keys(headers)) if (k.toLowerCase() === lower) return headers[k]
  return undefined
}

function endpointAt(ip: string, port: number, address: string, securePort: number | undefined): Endpoint {
  if (securePort === undefined) return { address, host: ip, port, origin: `http://${address}` }
  return { address, host: ip, port, origin: `http://${address}`, tls: { port: securePort, origin: `https://${hostPort(ip, securePort)}` } }
}

/**
 * A revision pod's TLS port: the private Service's `https` port (443 → queue-proxy's 8112 in
 * Serving), else 8112 itself, the port the activator dials with system-internal-tls.
 */
function queueProxyTlsPort(ports: NonNullable<EndpointSlice['ports']>): number {
  return ports.find((p) => p.name === 'https')?.port ?? QUEUE_PROXY_TLS_PORT
}

/**
 * Ready endpoints of a Service's slices on one port. `portName` undefined means "the only port"
 * (a Service with a single unnamed port yields slices whose port has no name).
 */
export function readyEndpoints(
  slices: readonly EndpointSlice[] | undefined,
  pick: (ports: NonNullable<EndpointSlice['ports']>) => { port?: number; name?: string; appProtocol?: string } | undefined,
  tlsPort?: (ports: NonNullable<EndpointSlice['ports']>) => number,
): { endpoints: Endpoint[]; notReady: Endpoint[]; h2c: boolean } {
  const seen = new Set<string>()
  const endpoints: Endpoint[] = []
  const starting = new Map<string, Endpoint>()
  let h2c = false
  for (const slice of slices ?? []) {
    if (slice.addressType === 'FQDN') continue
    const port = pick(slice.ports ?? [])
    if (!port?.port) continue
    if (isH2c(port.name, port.appProtocol)) h2c = true
    const securePort = tlsPort?.(slice.ports ?? [])
    for (const ep of slice.endpoints ?? []) {
      const listed = ep.addresses?.[0]
      // Only IPs are dialled (validation refuses anything else in a manifest; this guards the rest).
      if (typeof listed !== 'string' || net.isIP(listed) === 0) continue
      const ip = canonicalIp(listed)
      const address = hostPort(ip, port.port)
      // Kubernetes: a nil `ready` means ready. A not-ready pod that is not terminating may be
      // starting: a candidate for the activator's early probe (unless another slice lists it ready).
      if (ep.conditions?.ready === false) {
        if (ep.conditions.terminating !== true && !starting.has(address)) starting.set(address, endpointAt(ip, port.port, address, securePort))
        continue
      }
      if (seen.has(address)) continue
      seen.add(address)
      endpoints.push(endpointAt(ip, port.port, address, securePort))
    }
  }
  for (const a of seen) starting.delete(a)
  const notReady = [...starting.values()]
  endpoints.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
  notReady.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
  return { endpoints, notReady, h2c }
}

export function revisionRef(namespace: string, name: string, rev: Revision | undefined): RevisionRef {
  const spec = rev?.spec
  const cc = spec?.containerConcurrency
  return {
    namespace,
    name,
    key: `${namespace}/${name}`,
    containerConcurrency: typeof cc === 'number' && cc >= 0 ? Math.floor(cc) : 0,
    timeoutSeconds: positive(spec?.timeoutSeconds),
    responseStartTimeoutSeconds: positive(spec?.responseStartTimeoutSeconds),
    idleTimeoutSeconds: positive(spec?.idleTimeoutSeconds),
    known: rev !== undefined,
  }
}

function positive(n: unknown): number | undefined {
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : undefined
}

/** Knative turns the early probe off when the app's readiness is an exec probe or it has a startup probe. */
function earlyProbeAllowed(rev: Revision | undefined): boolean {
  for (const c of rev?.spec?.containers ?? []) if (c.readinessProbe?.exec || c.startupProbe) return false
  return true
}

function revisionIsH2c(rev: Revision | undefined): boolean {
  for (const c of rev?.spec?.containers ?? []) {
    if (c.ports?.[0]?.name === 'h2c') return true
  }
  return false
}

/** The pods of a revision: the ready addresses of `<revision>-private` on its `http`/`http2` port. */
function revisionBackend(namespace: string, name: string, serviceName: string, index: BackendIndex): BackendSpec {
  const rev = index.revisions.get(`${namespace}/${name}`)
  const slices = index.slicesByService.get(`${namespace}/${name}-private`)
  const { endpoints, notReady, h2c } = readyEndpoints(
    slices,
    (ports) => (ports.length === 1 ? ports[0] : ports.find((p) => p.name === 'http' || p.name === 'http2' || p.name === 'h2c')),
    queueProxyTlsPort,
  )
  const protocol: UpstreamProtocol = h2c || revisionIsH2c(rev) ? 'h2c' : 'http1'
  return {
    key: `rev:${namespace}/${name}`,
    kind: 'pods',
    namespace,
    serviceName,
    protocol,
    endpoints,
    revision: revisionRef(namespace, name, rev),
    ...(notReady.length > 0 && earlyProbeAllowed(rev) ? { notReady } : {}),
  }
}

function findServicePort(svc: Service, want: number | string): ServicePort | undefined {
  const ports = svc.spec.ports ?? []
  if (typeof want === 'number') return ports.find((p) => p.port === want)
  if (/^\d+$/.test(want)) return ports.find((p) => p.port === Number(want)) ?? ports.find((p) => p.name === want)
  return ports.find((p) => p.name === want)
}

/**
 * What a split points at, decided without touching endpoints: the key the backend will have and
 * what to resolve. Cheap, so a compile resolves each distinct backend once, not once per split.
 */
export interface BackendTarget {
  readonly key: string
  readonly namespace: string
  readonly serviceName: string
  readonly servicePort: number | string
  /** Set when the split reaches a Knative revision's pods. */
  readonly revisionName: string | undefined
  /** `namespace/<service-name>` of the EndpointSlices the endpoints come from. */
  readonly sliceService: string
}

export function backendTarget(split: IngressBackendSplit, index: BackendIndex): BackendTarget {
  const namespace = split.serviceNamespace
  const serviceName = split.serviceName
  const svc = index.services.get(`${namespace}/${serviceName}`)
  const revisionName = headerValue(split.appendHeaders, HEADER_REVISION) ?? svc?.metadata.labels?.[LABEL_REVISION]
  // Revisions are reached at their pods, never through a ClusterIP: that is what lets the gateway
  // hold requests at zero and enforce containerConcurrency per pod.
  if (revisionName) {
    return { key: `rev:${namespace}/${revisionName}`, namespace, serviceName, servicePort: split.servicePort, revisionName, sliceService: `${namespace}/${revisionName}-private` }
  }
  return { key: `svc:${namespace}/${serviceName}:${split.servicePort}`, namespace, serviceName, servicePort: split.servicePort, revisionName: undefined, sliceService: `${namespace}/${serviceName}` }
}

export function resolveBackend(split: IngressBackendSplit, index: BackendIndex): BackendSpec {
  return resolveTarget(backendTarget(split, index), index)
}

export function resolveTarget(t: BackendTarget, index: BackendIndex): BackendSpec {
  const { namespace, serviceName, key } = t
  if (t.revisionName) return revisionBackend(namespace, t.revisionName, serviceName, index)
  const wantPort = t.servicePort
  const svc = index.services.get(`${namespace}/${serviceName}`)
  const base = { key, namespace, serviceName }
  if (!svc) {
    return { ...base, kind: 'pods', protocol: 'http1', endpoints: [], problem: `Service ${namespace}/${serviceName} not found` }
  }
  const port = findServicePort(svc, wantPort)
  if (svc.spec.type === 'ExternalName') {
    const host = svc.spec.externalName
    const externalPort = port?.port ?? (typeof wantPort === 'number' ? wantPort : Number.parseInt(wantPort, 10))
    if (!host || !Number.isInteger(externalPort) || externalPort <= 0) {
      return { ...base, kind: 'external', protocol: 'http1', endpoints: [], problem: `ExternalName Service ${namespace}/${serviceName} has no usable name or port ${wantPort}` }
    }
    const h2c = (svc.spec.ports ?? []).some((p) => isH2c(p.name, p.appProtocol))
    // An IP literal is allowed there too; an IPv6 one is dialled unbracketed but written in brackets in the origin.
    const externalHost = net.isIP(host) === 0 ? host : canonicalIp(host.replace(/^\[(.*)\]$/, '$1'))
    return { ...base, kind: 'external', protocol: h2c ? 'h2c' : 'http1', endpoints: [], externalHost, externalPort, externalOrigin: `http://${hostPort(externalHost, externalPort)}` }
  }
  if (!port) {
    return { ...base, kind: 'pods', protocol: 'http1', endpoints: [], problem: `Service ${namespace}/${serviceName} has no port ${wantPort}` }
  }
  const slices = index.slicesByService.get(`${namespace}/${serviceName}`)
  const { endpoints } = readyEndpoints(slices, (ports) =>
    port.name ? ports.find((p) => p.name === port.name) : ports.find((p) => !p.name) ?? (ports.length === 1 ? ports[0] : undefined),
  )
  // Kourier's rule, kept for compatibility: any h2c-named port makes the Service speak h2c upstream.
  const h2c = (svc.spec.ports ?? []).some((p) => isH2c(p.name, p.appProtocol))
  return { ...base, kind: 'pods', protocol: h2c ? 'h2c' : 'http1', endpoints }
}

function sameAddresses(a: readonly Endpoint[], b: readonly Endpoint[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i]!.address !== b[i]!.address || a[i]!.tls?.origin !== b[i]!.tls?.origin) return false
  return true
}

/** Same routing-relevant content: lets an update keep the old object, so nothing downstream churns. */
export function sameBackend(a: BackendSpec, b: BackendSpec): boolean {
  if (a === b) return true
  if (a.key !== b.key || a.kind !== b.kind || a.namespace !== b.namespace || a.serviceName !== b.serviceName || a.protocol !== b.protocol) return false
  if (a.externalHost !== b.externalHost || a.externalPort !== b.externalPort || a.problem !== b.problem) return false
  if (!sameAddresses(a.endpoints, b.endpoints) || !sameAddresses(a.notReady ?? [], b.notReady ?? [])) return false
  const ra = a.revision
  const rb = b.revision
  if (ra === rb) return true
  if (!ra || !rb) return false
  return (
    ra.key === rb.key &&
    ra.containerConcurrency === rb.containerConcurrency &&
    ra.timeoutSeconds === rb.timeoutSeconds &&
    ra.responseStartTimeoutSeconds === rb.responseStartTimeoutSeconds &&
    ra.idleTimeoutSeconds === rb.idleTimeoutSeconds &&
    ra.known === rb.known
  )
}
