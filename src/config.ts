// Every option the gateway takes: its flag, its environment variable and its default, in one table.
// Other tools drive the gateway by these names, so they are kept stable.
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { parseAccessTemplate } from './observe/access-log.ts'
import { parseRateLimit } from './policy/rate-limit-spec.ts'
import { EXTAUTHZ_PROTOCOLS, parseAuthorizerAddress } from './policy/extauthz-spec.ts'
import type { ExtAuthzProtocol } from './policy/extauthz-spec.ts'
import { DEFAULT_DOMAIN_TEMPLATE, DEFAULT_TAG_TEMPLATE, parseTemplate } from './serving/domain.ts'
import { ENGINE_CHOICES } from './autoscaler/container-engine.ts'
import { canonicalIp } from './model/addresses.ts'
import { httpOptionOf } from './translate/options.ts'
import type { EngineChoice } from './autoscaler/container-engine.ts'

export interface GatewayConfig {
  manifests: string
  kubernetes: boolean
  kubeconfig: string | undefined
  watchServing: boolean
  namespaces: string[]
  /** IP addresses every listener binds, each on the listener's port (Kourier's listen-ip-addresses). */
  listenAddresses: string[]
  httpPort: number
  httpsPort: number
  /** Cluster-local TLS listener; undefined: none. */
  localHttpsPort: number | undefined
  localPort: number
  adminPort: number
  ingressClass: string
  domain: string
  /** Serving's domain-template: a Route's host from its name, namespace and the domain. */
  domainTemplate: string
  /** Serving's tag-template: the name part of a traffic tag's host. */
  tagTemplate: string
  /** config-network's http-protocol: `enabled`, `redirected` or `disabled`, for Routes without the annotation. */
  httpProtocol: string
  clusterDomain: string
  publicService: string
  localService: string
  podNamespace: string
  /** Where Knative Serving keeps config-network and config-domain. */
  knativeNamespace: string
  podName: string
  podIp: string | undefined
  autoscalerUrl: string | undefined
  scaleToZeroAfter: number
  /** Files mode: what runs revisions that have an image and no local command. */
  containerEngine: EngineChoice
  drainSeconds: number
  workers: number
  logLevel: string
  /** How log lines look: JSON, or lines for a person; `auto`: pretty when stdout is a terminal. */
  logFormat: 'auto' | 'json' | 'pretty'
  accessLog: boolean
  /** A text template for access-log lines (`{field}` placeholders); undefined: JSON lines. */
  accessLogTemplate: string | undefined
  /** `namespace/name` of a TLS Secret served to SNI names without a certificate of their own. */
  defaultTlsSecret: string | undefined
  /** OpenSSL cipher list for TLS 1.2 connections. */
  tlsCiphers: string | undefined
  /**
   * Knative's system-internal-tls: revision pods are reached over TLS (queue-proxy's https port),
   * verified against the trust bundles. May change at run time: read it through an accessor.
   */
  systemInternalTls: boolean
  /** Streams (gRPC, server-sent events) are cut after this long without data; 0: never. */
  streamIdleTimeoutSeconds: number
  /** Cold-start budget: how long a request may wait for a revision's first ready pod. */
  coldStartTimeoutSeconds: number
  /** Held requests allowed per revision and in the whole process. */
  maxQueuedPerRevision: number
  maxQueuedTotal: number
  /** Held requests per namespace (within maxQueuedTotal); 0: no namespace bound. */
  maxQueuedPerNamespace: number
  /** Bytes of held request bodies in the process (held-body.ts counts them); 0: no bound. */
  maxHeldBodyBytes: number
  /** Bytes of held request bodies per namespace; 0: no bound. */
  maxHeldBodyBytesPerNamespace: number
  // ---- hostile input (issue 7): limits on what a client may send ----
  /** Seconds a client has to send its request headers (408 after). */
  headerTimeoutSeconds: number
  /** Bytes of request line plus headers (431 above). */
  maxHeaderBytes: number
  /** Request header lines (431 above). */
  maxHeaders: number
  /** Characters of the request target (414 above). */
  maxUrlLength: number
  /** Who reads plain HTTP/1.1 requests: the gateway's own server (bodyless ones), or node:http for all. */
  http1Server: 'edge' | 'node'
  /** Bytes of request body; 0 = no limit (413 above). */
  maxBodyBytes: number
  /** Open connections from one client IP; 0 = no limit. */
  maxConnectionsPerIp: number
  /** CIDRs whose X-Forwarded-* / Forwarded headers are believed (appended to) rather than replaced. */
  trustedProxies: string[]
  /** Every connection on the public and cluster-local listeners starts with a PROXY protocol header. */
  proxyProtocol: boolean
  /** A rate limit per client address (`100/s`, `6000/m`); undefined: none. */
  rateLimitPerClient: string | undefined
  // ---- external authorization (issue 21): Kourier's extauthz-* settings ----
  /** The authorizer, HOST:PORT; undefined: no external authorization. */
  extAuthzHost: string | undefined
  extAuthzProtocol: ExtAuthzProtocol
  /** The authorizer unreachable or too slow: let requests through (true) or refuse them with 403. */
  extAuthzFailureModeAllow: boolean
  /** Bytes of a request's body sent with its check; 0: none. */
  extAuthzMaxRequestBodyBytes: number
  extAuthzTimeoutMs: number
  /** HTTP authorizer: put before the request's path; undefined: none. */
  extAuthzPathPrefix: string | undefined
  /** gRPC authorizer: the body as bytes (raw_body) rather than as text (body). */
  extAuthzPackAsBytes: boolean
  /** Requests on the cluster-local listeners are not checked (Kourier checks them). */
  extAuthzSkipClusterLocal: boolean
  /** HTTP authorizer: client headers sent besides Host, Authorization and Content-Length. */
  extAuthzAllowedHeaders: string[]
  /** HTTP authorizer: headers of an allowing answer that go to the pod (Kourier: none). */
  extAuthzAllowedUpstreamHeaders: string[]
  /** https authorizer: a PEM file of the CAs its certificate is checked against, instead of Node's. */
  extAuthzCaFile: string | undefined
  // ---- tracing (issue 20): W3C trace context in, OTLP spans out ----
  /** The OTLP collector's base URL (spans go to `/v1/traces` under it); undefined: no tracing at all. */
  tracingEndpoint: string | undefined
  /** Share of traces the gateway starts itself (no traceparent came), 0..1; a caller's sampled flag wins. */
  tracingSamplingRate: number
  /** `service.name` of the gateway's spans. */
  tracingServiceName: string
}

type OptionKind = 'string' | 'int' | 'bytes' | 'number' | 'bool' | 'list'

/** One option of a command: its flag, environment variable, kind, default and checks. */
export interface OptionSpec<K extends string = keyof GatewayConfig> {
  flag: string
  env: string
  kind: OptionKind
  key: K
  help: string
  /** Default when neither flag nor env is given; may depend on the environment. */
  def: (env: NodeJS.ProcessEnv) => unknown
  min?: number
  max?: number
  /** Extra check of a parsed value; throws UsageError. */
  check?: (value: unknown, origin: string) => void
  /**
   * Changes while the gateway runs, from the `config-edge-gateway` ConfigMap (src/settings/). Options
   * without it are read once at start: the ConfigMap reports them as needing a restart.
   */
  live?: true
}

const MI = 1024 * 1024
/** Kubernetes quantity suffixes, binary and decimal, as a ConfigMap writer would use them. */
const BYTE_UNITS: Record<string, number> = { '': 1, Ki: 1024, Mi: MI, Gi: 1024 * MI, k: 1000, M: 1000_000, G: 1000_000_000 }

const OPTIONS: OptionSpec[] = [
  { flag: 'manifests', env: 'EDGE_MANIFESTS', kind: 'string', key: 'manifests', def: () => 'routes', help: 'serve the Kubernetes manifests in DIR (files source)' },
  { flag: 'kubernetes', env: 'EDGE_KUBERNETES', kind: 'bool', key: 'kubernetes', def: (e) => Boolean(e.KUBERNETES_SERVICE_HOST), help: 'watch the cluster (on by default inside a pod)' },
  { flag: 'kubeconfig', env: 'KUBECONFIG', kind: 'string', key: 'kubeconfig', def: () => undefined, help: 'kubeconfig for out-of-cluster use' },
  { flag: 'watch-serving', env: 'EDGE_WATCH_SERVING', kind: 'bool', key: 'watchServing', def: () => false, help: 'also translate Routes and DomainMappings (no Serving controller)' },
  { flag: 'namespace', env: 'EDGE_NAMESPACES', kind: 'list', key: 'namespaces', def: () => [], help: 'watch only this namespace (repeatable)' },
  { flag: 'listen-address', env: 'EDGE_LISTEN_ADDRESS', kind: 'list', key: 'listenAddresses', def: () => ['::'], check: checkListenAddresses, help: "IP[,IP]: addresses every listener (public, cluster-local, TLS, admin) binds, as Kourier's listen-ip-addresses; '::' alone takes IPv4 too, '0.0.0.0,::' binds each family on its own" },
  { flag: 'http-port', env: 'EDGE_HTTP_PORT', kind: 'int', key: 'httpPort', def: () => 8080, min: 0, max: 65535, help: 'public listener: ExternalIP rules only' },
  { flag: 'https-port', env: 'EDGE_HTTPS_PORT', kind: 'int', key: 'httpsPort', def: () => 8443, min: 0, max: 65535, help: 'TLS listener with SNI' },
  { flag: 'local-port', env: 'EDGE_LOCAL_PORT', kind: 'int', key: 'localPort', def: () => 8081, min: 0, max: 65535, help: 'cluster-local listener: all rules' },
  { flag: 'local-https-port', env: 'EDGE_LOCAL_HTTPS_PORT', kind: 'int', key: 'localHttpsPort', def: () => undefined, min: 0, max: 65535, help: 'cluster-local TLS listener with SNI, all rules (Knative cluster-local TLS); off unless set' },
  { flag: 'admin-port', env: 'EDGE_ADMIN_PORT', kind: 'int', key: 'adminPort', def: () => 9090, min: 0, max: 65535, help: '/healthz, /readyz, /metrics, /debug/routes' },
  { flag: 'ingress-class', env: 'EDGE_INGRESS_CLASS', kind: 'string', key: 'ingressClass', def: () => 'edge.ingress.networking.knative.dev', help: 'KIngress class served' },
  { flag: 'domain', env: 'EDGE_DOMAIN', kind: 'string', key: 'domain', def: () => 'example.com', help: 'default domain where a Route omits its URL' },
  { flag: 'domain-template', env: 'EDGE_DOMAIN_TEMPLATE', kind: 'string', key: 'domainTemplate', def: () => DEFAULT_DOMAIN_TEMPLATE, check: checkTemplate(false), help: "a Route's host, as Serving's domain-template: {{.Name}}, {{.Namespace}}, {{.Domain}}, {{index .Annotations \"key\"}}" },
  { flag: 'tag-template', env: 'EDGE_TAG_TEMPLATE', kind: 'string', key: 'tagTemplate', def: () => DEFAULT_TAG_TEMPLATE, check: checkTemplate(true), help: "the name part of a tag's host, as Serving's tag-template: {{.Tag}}, {{.Name}}" },
  { flag: 'http-protocol', env: 'EDGE_HTTP_PROTOCOL', kind: 'string', key: 'httpProtocol', def: () => 'enabled', check: checkHttpProtocol, help: "plain HTTP for Routes and DomainMappings without the networking.knative.dev/http-protocol annotation, as Serving's config-network http-protocol: enabled, redirected (to https) or disabled" },
  { flag: 'cluster-domain', env: 'CLUSTER_DOMAIN', kind: 'string', key: 'clusterDomain', def: () => 'cluster.local', help: 'cluster DNS domain' },
  { flag: 'public-service', env: 'EDGE_PUBLIC_SERVICE', kind: 'string', key: 'publicService', def: () => 'edge-gateway', help: "the gateway's public Service name" },
  { flag: 'local-service', env: 'EDGE_LOCAL_SERVICE', kind: 'string', key: 'localService', def: () => 'edge-gateway-local', help: "the gateway's cluster-local Service name" },
  { flag: 'pod-namespace', env: 'POD_NAMESPACE', kind: 'string', key: 'podNamespace', def: () => 'knative-serving', help: "the gateway's own namespace" },
  { flag: 'knative-namespace', env: 'EDGE_KNATIVE_NAMESPACE', kind: 'string', key: 'knativeNamespace', def: () => 'knative-serving', help: "Knative Serving's namespace, where config-network and config-domain are read" },
  { flag: 'pod-name', env: 'POD_NAME', kind: 'string', key: 'podName', def: () => os.hostname(), help: 'this replica, as reported to the autoscaler' },
  { flag: 'pod-ip', env: 'POD_IP', kind: 'string', key: 'podIp', def: () => undefined, help: "this replica's IP (capacity sharing between replicas)" },
  { flag: 'autoscaler-url', env: 'EDGE_AUTOSCALER_URL', kind: 'string', key: 'autoscalerUrl', def: () => undefined, help: 'Knative autoscaler stat websocket' },
  { flag: 'scale-to-zero-after', env: 'EDGE_SCALE_TO_ZERO_AFTER', kind: 'int', key: 'scaleToZeroAfter', def: () => 30, min: 1, help: 'local runner: idle seconds before a revision stops' },
  { flag: 'container-engine', env: 'EDGE_CONTAINER_ENGINE', kind: 'string', key: 'containerEngine', def: () => 'auto', check: checkContainerEngine, help: "local runner: what runs a Revision's image when it has no local command: podman, docker, none, or auto (the first of podman and docker that works)" },
  { flag: 'drain-seconds', env: 'EDGE_DRAIN_SECONDS', kind: 'int', key: 'drainSeconds', def: () => 30, min: 0, max: 45, help: 'keep serving this long after SIGTERM' },
  { flag: 'workers', env: 'EDGE_WORKERS', kind: 'int', key: 'workers', def: () => os.availableParallelism(), min: 1, max: 64, help: 'worker processes (1 = single process)' },
  { flag: 'log-level', env: 'EDGE_LOG_LEVEL', kind: 'string', key: 'logLevel', def: () => 'info', check: checkLogLevel, live: true, help: 'fatal, error, warn, info, debug, trace or silent' },
  { flag: 'log-format', env: 'EDGE_LOG_FORMAT', kind: 'string', key: 'logFormat', def: () => 'auto', check: checkLogFormat, help: "'json', 'pretty' (lines for a person), or 'auto': pretty when stdout is a terminal" },
  { flag: 'access-log', env: 'EDGE_ACCESS_LOG', kind: 'bool', key: 'accessLog', def: () => false, live: true, help: 'log every request (and every WebSocket, when it closes) as a line on stdout; JSON unless --access-log-template' },
  { flag: 'access-log-template', env: 'EDGE_ACCESS_LOG_TEMPLATE', kind: 'string', key: 'accessLogTemplate', def: () => undefined, check: checkAccessTemplate, live: true, help: 'access-log lines as text: {time} {client} {method} {host} {path} {protocol} {status} {bytesIn} {bytesOut} {durationMs} {ttfbMs} {pod} {namespace} {revision} {coldStartMs} {reason} {traceId} {userAgent} {requestId} {upgrade}' },
  { flag: 'default-tls-secret', env: 'EDGE_DEFAULT_TLS_SECRET', kind: 'string', key: 'defaultTlsSecret', def: () => undefined, live: true, help: 'NAMESPACE/NAME of a TLS Secret for hosts without their own certificate' },
  { flag: 'tls-ciphers', env: 'EDGE_TLS_CIPHERS', kind: 'string', key: 'tlsCiphers', def: () => undefined, live: true, help: 'OpenSSL cipher list for TLS 1.2 (TLS 1.2 is the minimum)' },
  { flag: 'stream-idle-timeout', env: 'EDGE_STREAM_IDLE_TIMEOUT', kind: 'int', key: 'streamIdleTimeoutSeconds', def: () => 300, min: 0, live: true, help: 'seconds a gRPC, event or WebSocket stream may stay silent when its revision sets no idleTimeoutSeconds (0: no limit); streams are not cut by request timeouts' },
  { flag: 'cold-start-timeout', env: 'EDGE_COLD_START_TIMEOUT', kind: 'int', key: 'coldStartTimeoutSeconds', def: () => 600, min: 1, live: true, help: 'seconds a request may wait for a first ready pod' },
  { flag: 'max-queued-per-revision', env: 'EDGE_MAX_QUEUED_PER_REVISION', kind: 'int', key: 'maxQueuedPerRevision', def: () => 10000, min: 0, live: true, help: 'held requests per revision before 503' },
  { flag: 'max-queued-per-namespace', env: 'EDGE_MAX_QUEUED_PER_NAMESPACE', kind: 'int', key: 'maxQueuedPerNamespace', def: () => 25000, min: 0, live: true, help: "held requests per namespace, within --max-queued, so one namespace's burst cannot take the whole process's budget (then 503 queue-full); 0 = no namespace bound" },
  { flag: 'max-queued', env: 'EDGE_MAX_QUEUED', kind: 'int', key: 'maxQueuedTotal', def: () => 50000, min: 0, live: true, help: 'held requests in the process before 503' },
  { flag: 'max-held-body-bytes', env: 'EDGE_MAX_HELD_BODY_BYTES', kind: 'bytes', key: 'maxHeldBodyBytes', def: () => 256 * MI, min: 0, live: true, help: 'bytes of request bodies held in memory while their requests wait for a pod, in the process (each counts its Content-Length, at most what the gateway reads before it stops: 128Ki over HTTP/1.1, 64Ki over HTTP/2); a request with a body over it gets 503 queue-full; 0 = no bound; Ki, Mi, Gi accepted' },
  { flag: 'max-held-body-bytes-per-namespace', env: 'EDGE_MAX_HELD_BODY_BYTES_PER_NAMESPACE', kind: 'bytes', key: 'maxHeldBodyBytesPerNamespace', def: () => 128 * MI, min: 0, live: true, help: 'the same per namespace, within --max-held-body-bytes; 0 = no namespace bound' },
  // Hostile input. Defaults are safe for a public edge and never touch a long-running stream: the
  // header timeout covers only the request headers, the body limit is off unless set.
  { flag: 'header-timeout', env: 'EDGE_HEADER_TIMEOUT', kind: 'int', key: 'headerTimeoutSeconds', def: () => 15, min: 1, max: 300, live: true, help: 'seconds a client has to send its request headers (then 408)' },
  { flag: 'max-header-size', env: 'EDGE_MAX_HEADER_SIZE', kind: 'int', key: 'maxHeaderBytes', def: () => 32 * 1024, min: 1024, max: 1024 * 1024, live: true, help: 'bytes of request line and headers (then 431)' },
  { flag: 'max-headers', env: 'EDGE_MAX_HEADERS', kind: 'int', key: 'maxHeaders', def: () => 100, min: 8, max: 10000, live: true, help: 'request header lines (then 431)' },
  { flag: 'max-url-length', env: 'EDGE_MAX_URL_LENGTH', kind: 'int', key: 'maxUrlLength', def: () => 8192, min: 64, live: true, help: 'characters of the request target (then 414)' },
  { flag: 'http1-server', env: 'EDGE_HTTP1_SERVER', kind: 'string', key: 'http1Server', def: () => 'edge', check: checkHttp1Server, help: "plain HTTP/1.1: 'edge' serves bodyless requests with the gateway's own server and hands the rest to node:http; 'node' gives node:http every request" },
  { flag: 'max-body-size', env: 'EDGE_MAX_BODY_SIZE', kind: 'bytes', key: 'maxBodyBytes', def: () => 0, min: 0, live: true, help: 'bytes of request body, counted as it streams (then 413); 0 = no limit' },
  { flag: 'max-connections-per-ip', env: 'EDGE_MAX_CONNECTIONS_PER_IP', kind: 'int', key: 'maxConnectionsPerIp', def: () => 0, min: 0, live: true, help: 'open connections from one client IP (more are closed); 0 = no limit' },
  { flag: 'proxy-protocol', env: 'EDGE_PROXY_PROTOCOL', kind: 'bool', key: 'proxyProtocol', def: () => false, live: true, help: "every connection (public and cluster-local listeners, plain and TLS) starts with a PROXY protocol v1 or v2 header from the load balancer, as Kourier's enable-proxy-protocol; its client address is used everywhere; a connection without one is closed" },
  { flag: 'rate-limit-per-client', env: 'EDGE_RATE_LIMIT_PER_CLIENT', kind: 'string', key: 'rateLimitPerClient', def: () => undefined, check: checkRateLimit, live: true, help: 'requests per client address, e.g. 100/s or 6000/m (burst: the count), over which the answer is 429 rate-limited before any hold; per gateway process (divided among --workers)' },
  // External authorization, named after Kourier's config-kourier keys; off unless a host is given.
  { flag: 'extauthz-host', env: 'EDGE_EXTAUTHZ_HOST', kind: 'string', key: 'extAuthzHost', def: () => undefined, live: true, check: checkAuthorizerAddress, help: "HOST:PORT of an external authorizer (Envoy's ext_authz API) that checks every request before it is held or wakes a revision; off unless set" },
  { flag: 'extauthz-protocol', env: 'EDGE_EXTAUTHZ_PROTOCOL', kind: 'string', key: 'extAuthzProtocol', def: () => 'grpc', live: true, check: checkExtAuthzProtocol, help: "how the authorizer is asked: 'grpc' (envoy.service.auth.v3.Authorization/Check), 'http' or 'https' (the request's headers, its answer as the client's)" },
  { flag: 'extauthz-failure-mode-allow', env: 'EDGE_EXTAUTHZ_FAILURE_MODE_ALLOW', kind: 'bool', key: 'extAuthzFailureModeAllow', def: () => false, live: true, help: 'let requests through while the authorizer cannot be asked (unreachable, too slow, 5xx); otherwise they get 403 extauthz-unavailable' },
  { flag: 'extauthz-max-request-body-bytes', env: 'EDGE_EXTAUTHZ_MAX_REQUEST_BODY_BYTES', kind: 'int', key: 'extAuthzMaxRequestBodyBytes', def: () => 8192, live: true, min: 0, max: 16 * 1024 * 1024, help: 'bytes of a request body (with a Content-Length) sent with its check; a longer body is sent in part; 0: none' },
  { flag: 'extauthz-timeout', env: 'EDGE_EXTAUTHZ_TIMEOUT', kind: 'int', key: 'extAuthzTimeoutMs', def: () => 2000, live: true, min: 1, max: 600_000, help: 'milliseconds the authorizer has to decide; then --extauthz-failure-mode-allow decides' },
  { flag: 'extauthz-path-prefix', env: 'EDGE_EXTAUTHZ_PATH_PREFIX', kind: 'string', key: 'extAuthzPathPrefix', def: () => undefined, live: true, check: checkPathPrefix, help: "http/https authorizer: put before the request's path (e.g. /auth)" },
  { flag: 'extauthz-pack-as-bytes', env: 'EDGE_EXTAUTHZ_PACK_AS_BYTES', kind: 'bool', key: 'extAuthzPackAsBytes', def: () => false, live: true, help: 'grpc authorizer: send the body as bytes (raw_body) instead of text (body)' },
  { flag: 'extauthz-skip-cluster-local', env: 'EDGE_EXTAUTHZ_SKIP_CLUSTER_LOCAL', kind: 'bool', key: 'extAuthzSkipClusterLocal', def: () => false, live: true, help: 'do not check requests on the cluster-local listeners (Kourier checks them)' },
  { flag: 'extauthz-allowed-headers', env: 'EDGE_EXTAUTHZ_ALLOWED_HEADERS', kind: 'list', key: 'extAuthzAllowedHeaders', def: () => [], live: true, check: checkHeaderNames, help: 'http/https authorizer: NAME[,NAME] client headers sent besides Host, Authorization and Content-Length (e.g. cookie)' },
  { flag: 'extauthz-ca-file', env: 'EDGE_EXTAUTHZ_CA_FILE', kind: 'string', key: 'extAuthzCaFile', def: () => undefined, live: true, check: checkCaFile, help: "https authorizer: PEM file of the CAs its certificate must chain to, instead of Node's (e.g. a mounted Secret's ca.crt)" },
  { flag: 'extauthz-allowed-upstream-headers', env: 'EDGE_EXTAUTHZ_ALLOWED_UPSTREAM_HEADERS', kind: 'list', key: 'extAuthzAllowedUpstreamHeaders', def: () => [], live: true, check: checkHeaderNames, help: "http/https authorizer: NAME[,NAME] headers of its 200 answer set on the request to the pod (Kourier's: none)" },
  { flag: 'trusted-proxies', env: 'EDGE_TRUSTED_PROXIES', kind: 'list', key: 'trustedProxies', def: () => [], check: checkCidrs, live: true, help: 'CIDR[,CIDR]: hops whose X-Forwarded-* are kept (others are replaced)' },
  // Tracing is off unless a collector is named: then no span, context or id is made per request.
  { flag: 'tracing-endpoint', env: 'EDGE_TRACING_ENDPOINT', kind: 'string', key: 'tracingEndpoint', def: () => undefined, check: checkTracingEndpoint, help: "OTLP/HTTP collector's base URL (e.g. http://otel-collector:4318): spans go to /v1/traces under it; tracing is off unless set" },
  // Knative's config-tracing samples 10% by default; so does the gateway.
  { flag: 'tracing-sampling-rate', env: 'EDGE_TRACING_SAMPLING_RATE', kind: 'number', key: 'tracingSamplingRate', def: () => 0.1, min: 0, max: 1, live: true, help: "share of requests without a traceparent that start a trace (0..1); a caller's sampled flag is always honoured" },
  { flag: 'tracing-service-name', env: 'EDGE_TRACING_SERVICE_NAME', kind: 'string', key: 'tracingServiceName', def: () => 'edge-gateway', help: "service.name of the gateway's spans" },
  { flag: 'system-internal-tls', env: 'EDGE_SYSTEM_INTERNAL_TLS', kind: 'bool', key: 'systemInternalTls', def: () => false, help: "talk TLS 1.3 to revision pods (queue-proxy's https port), as Knative's config-network system-internal-tls: enabled (whose value, when set, overrides this); certificates are checked against the CAs in knative-serving (routing-serving-certs' ca.crt, ConfigMaps labelled networking.knative.dev/trust-bundle) and must name kn-routing or kn-user-<namespace>" },
]

function checkTemplate(allowTag: boolean): (value: unknown, origin: string) => void {
  return (value, origin) => {
    try {
      parseTemplate(String(value), allowTag)
    } catch (err) {
      throw new UsageError(`${origin}: ${(err as Error).message}`)
    }
  }
}

function checkHttpProtocol(value: unknown, origin: string): void {
  if (httpOptionOf(String(value)) === undefined) throw new UsageError(`${origin}: expected 'enabled', 'redirected' or 'disabled', got ${JSON.stringify(value)}`)
}

function checkLogFormat(value: unknown, origin: string): void {
  if (value !== 'auto' && value !== 'json' && value !== 'pretty') throw new UsageError(`${origin}: expected 'json', 'pretty' or 'auto', got ${JSON.stringify(value)}`)
}

function checkAccessTemplate(value: unknown, origin: string): void {
  try {
    parseAccessTemplate(String(value))
  } catch (err) {
    throw new UsageError(`${origin}: ${(err as Error).message}`)
  }
}

function checkRateLimit(value: unknown, origin: string): void {
  const r = parseRateLimit(String(value), undefined)
  if (typeof r === 'string') throw new UsageError(`${origin}: ${r}`)
}

function checkAuthorizerAddress(value: unknown, origin: string): void {
  const a = parseAuthorizerAddress(String(value))
  if (typeof a === 'string') throw new UsageError(`${origin}: ${a}`)
}

function checkExtAuthzProtocol(value: unknown, origin: string): void {
  if (!EXTAUTHZ_PROTOCOLS.includes(value as ExtAuthzProtocol)) throw new UsageError(`${origin}: expected one of ${EXTAUTHZ_PROTOCOLS.join(', ')}, got ${JSON.stringify(value)}`)
}

function checkPathPrefix(value: unknown, origin: string): void {
  const text = String(value)
  if (!text.startsWith('/') || /[\s?#]/.test(text)) throw new UsageError(`${origin}: '${text}' is not a path prefix: start it with / and leave out spaces, ? and # (e.g. /auth)`)
}

/** A readable PEM file with at least one certificate. */
function checkCaFile(value: unknown, origin: string): void {
  const file = String(value)
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new UsageError(`${origin}: cannot read '${file}' (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); give the path of a PEM file of CA certificates`)
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`${origin}: '${file}' holds no PEM certificate (-----BEGIN CERTIFICATE-----); give the CA certificates the authorizer's certificate chains to`)
}

function checkHeaderNames(value: unknown, origin: string): void {
  for (const name of value as string[]) if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) throw new UsageError(`${origin}: '${name}' is not a header name (e.g. cookie,x-user)`)
}

/** Options that mean something for one protocol only: given with the other, they are a mistake. */
export function checkExtAuthz(c: GatewayConfig): void {
  const grpc = c.extAuthzProtocol === 'grpc'
  if (!grpc && c.extAuthzPackAsBytes) throw new UsageError(`--extauthz-pack-as-bytes is for a grpc authorizer; with --extauthz-protocol ${c.extAuthzProtocol} the body is sent as the request's own body: leave it out`)
  const httpOnly = [
    ['--extauthz-path-prefix', c.extAuthzPathPrefix !== undefined],
    ['--extauthz-allowed-headers', c.extAuthzAllowedHeaders.length > 0],
    ['--extauthz-allowed-upstream-headers', c.extAuthzAllowedUpstreamHeaders.length > 0],
  ] as const
  if (c.extAuthzCaFile !== undefined && c.extAuthzProtocol !== 'https') throw new UsageError(`--extauthz-ca-file is for an https authorizer; with --extauthz-protocol ${c.extAuthzProtocol} the connection is not TLS: set --extauthz-protocol https, or leave it out`)
  for (const [flag, given] of httpOnly) if (grpc && given) throw new UsageError(`${flag} is for an http or https authorizer (a grpc authorizer gets every header and sets its own); set --extauthz-protocol http, or leave it out`)
  c.extAuthzAllowedHeaders = c.extAuthzAllowedHeaders.map((h) => h.toLowerCase())
  c.extAuthzAllowedUpstreamHeaders = c.extAuthzAllowedUpstreamHeaders.map((h) => h.toLowerCase())
}

/** An http(s) base URL; `/v1/traces` is added to it, so a URL that already ends so is refused. */
function checkTracingEndpoint(value: unknown, origin: string): void {
  const text = String(value)
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new UsageError(`${origin}: '${text}' is not a URL; give the OTLP/HTTP collector's base URL, e.g. http://otel-collector:4318`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${origin}: '${text}' must be an http:// or https:// URL (OTLP over HTTP; gRPC is not supported)`)
  if (url.search || url.hash) throw new UsageError(`${origin}: '${text}' must not have a query or fragment`)
  if (/\/v1\/traces\/?$/.test(url.pathname)) throw new UsageError(`${origin}: give the collector's base URL without /v1/traces (spans are sent to /v1/traces under it), e.g. ${url.origin}`)
}

/** IP literals only, as Kourier's listen-ip-addresses: a name would bind whatever it resolved to at start. */
function checkListenAddresses(value: unknown, origin: string): void {
  const list = value as string[]
  if (list.length === 0) throw new UsageError(`${origin} needs at least one IP address, e.g. 0.0.0.0,::`)
  for (const a of list) {
    if (/^\[.*\]$/.test(a)) throw new UsageError(`${origin}: '${a}': write an IPv6 address without brackets, e.g. ${a.slice(1, -1)}`)
    if (net.isIP(a) === 0) throw new UsageError(`${origin}: '${a}' is not an IP address; give IP addresses separated by commas, e.g. 0.0.0.0,:: (all interfaces) or 127.0.0.1,::1`)
  }
}

function checkContainerEngine(value: unknown, origin: string): void {
  if (!ENGINE_CHOICES.includes(value as EngineChoice)) throw new UsageError(`${origin}: expected one of ${ENGINE_CHOICES.join(', ')}, got ${JSON.stringify(value)}`)
}

function checkHttp1Server(value: unknown, origin: string): void {
  if (value !== 'edge' && value !== 'node') throw new UsageError(`${origin}: expected 'edge' or 'node', got ${JSON.stringify(value)}`)
}

/** `10.0.0.0/8`, `fd00::/8`, or a bare address (one host). */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = text.indexOf('/')
  const address = slash === -1 ? text : text.slice(0, slash)
  const v = net.isIP(address)
  if (v === 0) return undefined
  const max = v === 4 ? 32 : 128
  let prefix = max
  if (slash !== -1) {
    const p = text.slice(slash + 1)
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return undefined
    prefix = Number(p)
  }
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' }
}

function checkCidrs(value: unknown, origin: string): void {
  for (const c of value as string[]) if (!parseCidr(c)) throw new UsageError(`${origin}: '${c}' is not an IP address or CIDR (e.g. 10.0.0.0/8, fd00::/8)`)
}

/** pino's levels, most severe first; `silent` logs nothing. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** --log-level's check: pino would throw on anything else, at start or when a ConfigMap changes it. */
function checkLogLevel(value: unknown, origin: string): void {
  if (!LOG_LEVELS.includes(String(value))) throw new UsageError(`${origin}: '${String(value)}' is not a log level (use one of ${LOG_LEVELS.join(', ')})`)
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export function usage(): string {
  return formatUsage(['usage: edge-gateway [options]', '       edge-gateway status [--admin-port N | --admin-url URL]   (what a running gateway serves; status --help)'], OPTIONS)
}

/** A command's usage: its synopsis lines, then one line per option with its environment variable. */
export function formatUsage<K extends string>(synopsis: readonly string[], table: readonly OptionSpec<K>[]): string {
  const lines = [...synopsis, '', 'options (each also settable by its environment variable):']
  for (const o of table) {
    const arg = o.kind === 'bool' ? '' : o.kind === 'int' || o.kind === 'number' ? ' N' : o.kind === 'bytes' ? ' BYTES' : ' VALUE'
    lines.push(`  --${o.flag}${arg}`.padEnd(34) + `${o.env.padEnd(30)} ${o.help}`)
  }
  lines.push('  --help'.padEnd(34) + ''.padEnd(30) + ' print this and exit')
  return lines.join('\n')
}

/** Every option of the gateway command, in table order (src/settings/ reads it for the ConfigMaps). */
export function gatewayOptions(): readonly OptionSpec[] {
  return OPTIONS
}

/** One option's value from text, with the same parse and checks as its flag; throws UsageError naming `origin`. */
export function parseOptionValue<K extends string>(o: OptionSpec<K>, raw: string, origin: string): unknown {
  const value = parseValue(o, raw, origin)
  o.check?.(value, origin)
  return value
}

function parseValue<K extends string>(o: OptionSpec<K>, raw: string, origin: string): unknown {
  switch (o.kind) {
    case 'string':
      if (raw === '') throw new UsageError(`${origin} needs a value`)
      return raw
    case 'bool': {
      const v = raw.toLowerCase()
      if (['1', 'true', 'yes', 'on'].includes(v)) return true
      if (['0', 'false', 'no', 'off', ''].includes(v)) return false
      throw new UsageError(`${origin}: '${raw}' is not a boolean (use true or false)`)
    }
    case 'int': {
      if (!/^\d+$/.test(raw)) throw new UsageError(`${origin}: '${raw}' is not a whole number`)
      return inRange(o, Number(raw), origin)
    }
    case 'bytes': {
      const m = /^(\d+)(Ki|Mi|Gi|k|M|G)?$/.exec(raw)
      if (!m) throw new UsageError(`${origin}: '${raw}' is not a size in bytes (a whole number, or with Ki, Mi or Gi as in 64Mi)`)
      return inRange(o, Number(m[1]) * BYTE_UNITS[m[2] ?? '']!, origin)
    }
    case 'number': {
      if (!/^(\d+(\.\d*)?|\.\d+)$/.test(raw)) throw new UsageError(`${origin}: '${raw}' is not a number (e.g. 0.05)`)
      return inRange(o, Number(raw), origin)
    }
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter(Boolean)
  }
}

function inRange<K extends string>(o: OptionSpec<K>, n: number, origin: string): number {
  if (o.min !== undefined && n < o.min) throw new UsageError(`${origin}: ${n} is below the minimum ${o.min}`)
  if (o.max !== undefined && n > o.max) throw new UsageError(`${origin}: ${n} is above the maximum ${o.max}`)
  return n
}

/** Parses argv (without node and script) and the environment; throws UsageError naming the bad option. */
export function parseConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const config = parseOptions<GatewayConfig>(OPTIONS, argv, env)
  checkExtAuthz(config)
  // Repeated flags add up, so overlaps between them are checked on the whole list.
  return { ...config, listenAddresses: distinctListenAddresses(config.listenAddresses) }
}

/**
 * The addresses once each (Node spells an IPv6 address one way), and none already covered by a
 * wildcard of its family: binding 0.0.0.0 and 127.0.0.1 on one port fails with EADDRINUSE.
 */
function distinctListenAddresses(addresses: readonly string[]): string[] {
  const out: string[] = []
  for (const a of addresses) {
    const canonical = canonicalIp(a)
    if (!out.includes(canonical)) out.push(canonical)
  }
  for (const wildcard of ['0.0.0.0', '::']) {
    if (!out.includes(wildcard)) continue
    const family = net.isIP(wildcard)
    const covered = out.filter((a) => a !== wildcard && net.isIP(a) === family)
    if (covered.length > 0) throw new UsageError(`--listen-address (EDGE_LISTEN_ADDRESS): ${covered.join(', ')} ${covered.length === 1 ? 'is' : 'are'} already covered by ${wildcard} (every address of its family); list either the wildcard or the addresses, not both`)
  }
  return out
}

/** Any command's options from its table: flags beat the environment, the environment beats defaults. */
export function parseOptions<T>(table: readonly OptionSpec<keyof T & string>[], argv: readonly string[], env: NodeJS.ProcessEnv): T {
  type K = keyof T & string
  const byFlag = new Map(table.map((o) => [o.flag, o]))
  const values = new Map<K, unknown>()
  const lists = new Map<K, string[]>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument '${arg}' (options start with --)`)
    const eq = arg.indexOf('=')
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    const spec = byFlag.get(name)
    if (!spec) throw new UsageError(`unknown option '--${name}'`)
    let raw: string
    if (eq !== -1) raw = arg.slice(eq + 1)
    else if (spec.kind === 'bool') raw = 'true'
    else {
      const next = argv[++i]
      if (next === undefined) throw new UsageError(`--${name} needs a value`)
      raw = next
    }
    const value = parseValue(spec, raw, `--${name}`)
    spec.check?.(value, `--${name}`)
    if (spec.kind === 'list') lists.set(spec.key, [...(lists.get(spec.key) ?? []), ...(value as string[])])
    else values.set(spec.key, value)
  }
  const out: Record<string, unknown> = {}
  for (const o of table) {
    if (lists.has(o.key)) out[o.key] = lists.get(o.key)
    else if (values.has(o.key)) out[o.key] = values.get(o.key)
    else if (env[o.env] !== undefined && env[o.env] !== '') {
      out[o.key] = parseValue(o, env[o.env]!, o.env)
      o.check?.(out[o.key], o.env)
    }
    else out[o.key] = o.def(env)
  }
  return out as T
}

export function wantsHelp(argv: readonly string[]): boolean {
  return argv.includes('--help') || argv.includes('-h')
}
