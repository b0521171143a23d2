// First look at a parsed manifest document or cluster object: is it a kind the gateway reads, and
// does it have the shape the rest of the program assumes? Everything wrong is reported at once, each
// problem naming its field, so an operator can fix a file in one pass. Never throws: the input can be
// anything YAML or JSON can produce.
import net from 'node:net'
import type { Kind, ObjectsByKind } from '../model/k8s.ts'
import { LABEL_SERVICE_NAME } from '../model/k8s.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { ErrorCode } from '../errors.ts'
import { DNS1123_LABEL, DNS1123_SUBDOMAIN, checkStringList, checkStringMap, describe, isIntIn, isRecord, key, optionalList, optionalRecord, optionalString, present, requireList, requireRecord, requireString } from './validate-fields.ts'
import type { Checker, Json } from './validate-fields.ts'
import { checkConfiguration, checkKService, checkRevision, checkRoute } from './validate-serving.ts'

export type ValidObject = { [K in Kind]: { kind: K; object: ObjectsByKind[K] } }[Kind]
export type ValidationResult = ValidObject | { problems: ConfigProblem[] }

interface KnownKind {
  group: string
  versions: readonly string[]
  /** The store's kind. */
  kind: Kind
  /** The object's own `kind`, where it differs (Knative's Service is stored as KService). */
  objectKind?: string
}

const KNOWN_KINDS: readonly KnownKind[] = [
  { group: 'networking.internal.knative.dev', versions: ['v1alpha1'], kind: 'Ingress' },
  { group: 'serving.knative.dev', versions: ['v1'], kind: 'Route' },
  { group: 'serving.knative.dev', versions: ['v1'], kind: 'Revision' },
  { group: 'serving.knative.dev', versions: ['v1beta1', 'v1alpha1'], kind: 'DomainMapping' },
  { group: '', versions: ['v1'], kind: 'Service' },
  { group: 'discovery.k8s.io', versions: ['v1'], kind: 'EndpointSlice' },
  { group: '', versions: ['v1'], kind: 'Secret' },
  { group: '', versions: ['v1'], kind: 'ConfigMap' },
  { group: 'serving.knative.dev', versions: ['v1'], kind: 'KService', objectKind: 'Service' },
  { group: 'serving.knative.dev', versions: ['v1'], kind: 'Configuration' },
]


/** `serving.knative.dev/v1 Service, ...`: what the files source reads, for the unserved-kind problem. */
const SERVED = KNOWN_KINDS.map((k) => `${k.group === '' ? '' : `${k.group}/`}${k.versions[0]} ${k.objectKind ?? k.kind}`).join(', ')

export function validateObject(obj: unknown, source: string, document?: number): ValidationResult {
  const problems: ConfigProblem[] = []
  let object: string | undefined
  const c: Checker = {
    add(field, reason, code) {
      const p: ConfigProblem = { source, field, reason, code }
      if (document !== undefined) p.document = document
      if (object !== undefined) p.object = object
      problems.push(p)
    },
  }

  if (!isRecord(obj)) {
    c.add('', `a Kubernetes object must be a mapping with apiVersion, kind and metadata, got ${describe(obj)}`, 'EDGE_ERR_NOT_AN_OBJECT')
    return { problems }
  }
  const { apiVersion, kind } = obj
  if (typeof apiVersion !== 'string' || apiVersion === '') {
    c.add('apiVersion', `apiVersion is required (e.g. "serving.knative.dev/v1"), got ${describe(apiVersion)}`, 'EDGE_ERR_API_VERSION')
  }
  if (typeof kind !== 'string' || kind === '') {
    c.add('kind', `kind is required (e.g. "Route"), got ${describe(kind)}`, 'EDGE_ERR_KIND')
  }
  if (typeof apiVersion !== 'string' || typeof kind !== 'string' || problems.length > 0) return { problems }

  const slash = apiVersion.lastIndexOf('/')
  const group = slash < 0 ? '' : apiVersion.slice(0, slash)
  const version = slash < 0 ? apiVersion : apiVersion.slice(slash + 1)
  const known = KNOWN_KINDS.find((k) => (k.objectKind ?? k.kind) === kind && k.group === group)
  if (known === undefined) {
    c.add('kind', `kind ${kind} of apiVersion ${apiVersion} is not served; served kinds are ${SERVED}. Remove it from the manifest directory, or fix its kind or apiVersion`, 'EDGE_ERR_KIND')
    return { problems }
  }

  const meta = isRecord(obj.metadata) ? obj.metadata : undefined
  const name = typeof meta?.name === 'string' ? meta.name : undefined
  const namespace = typeof meta?.namespace === 'string' && meta.namespace !== '' ? meta.namespace : 'default'
  if (name !== undefined) object = `${kind} ${namespace}/${name}`

  if (!known.versions.includes(version)) {
    const want = known.versions.map((v) => (group === '' ? v : `${group}/${v}`)).join(' or ')
    c.add('apiVersion', `${kind} is read as ${want}, not ${apiVersion}; change apiVersion`, 'EDGE_ERR_API_VERSION')
  }
  checkMetadata(c, obj.metadata)
  KIND_CHECKS[known.kind](c, obj, namespace)
  if (problems.length > 0) return { problems }

  const validated = { ...obj, metadata: { ...meta, namespace } }
  return { kind: known.kind, object: validated } as ValidObject
}

// ---- metadata ----


function checkMetadata(c: Checker, metadata: unknown): void {
  if (!isRecord(metadata)) {
    c.add('metadata', `metadata is required and must be a mapping with at least a name, got ${describe(metadata)}`, 'EDGE_ERR_METADATA')
    return
  }
  const { name, namespace } = metadata
  if (typeof name !== 'string' || name === '') {
    c.add('metadata.name', `metadata.name is required, got ${describe(name)}`, 'EDGE_ERR_METADATA_NAME')
  } else if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    c.add('metadata.name', `${JSON.stringify(name)} is not a valid name: use lower-case letters, digits, "-" and ".", starting and ending with a letter or digit, at most 253 characters`, 'EDGE_ERR_METADATA_NAME')
  }
  if (present(namespace)) {
    if (typeof namespace !== 'string' || namespace.length > 63 || (namespace !== '' && !DNS1123_LABEL.test(namespace))) {
      c.add('metadata.namespace', `${describe(namespace)} is not a valid namespace: use lower-case letters, digits and "-", at most 63 characters, or leave it out for "default"`, 'EDGE_ERR_METADATA_NAMESPACE')
    }
  }
  checkStringMap(c, metadata.labels, 'metadata.labels', 'EDGE_ERR_METADATA')
  checkStringMap(c, metadata.annotations, 'metadata.annotations', 'EDGE_ERR_METADATA')
}

// ---- per kind ----

const KIND_CHECKS: Record<Kind, (c: Checker, obj: Json, namespace: string) => void> = {
  Ingress: checkIngress,
  Route: checkRoute,
  DomainMapping: checkDomainMapping,
  Revision: checkRevision,
  Service: checkService,
  EndpointSlice: checkEndpointSlice,
  Secret: checkSecret,
  KService: checkKService,
  Configuration: checkConfiguration,
  ConfigMap: checkConfigMap,
}

// Mirrors networking's ingress_validation.go (kingress-contract.md §1.2), after defaulting.
function checkIngress(c: Checker, obj: Json, namespace: string): void {
  const spec = requireRecord(c, obj.spec, 'spec', 'EDGE_ERR_INGRESS_SPEC', 'the Ingress spec with rules')
  if (spec === undefined) return
  const rules = requireList(c, spec.rules, 'spec.rules', 'EDGE_ERR_INGRESS_RULES', 'at least one rule with hosts and http.paths')
  rules?.forEach((rule, i) => checkIngressRule(c, rule, `spec.rules[${i}]`, namespace))

  if (present(spec.tls)) {
    const tls = optionalList(c, spec.tls, 'spec.tls', 'EDGE_ERR_INGRESS_TLS')
    tls?.forEach((entry, i) => {
      const field = `spec.tls[${i}]`
      const t = requireRecord(c, entry, field, 'EDGE_ERR_INGRESS_TLS', 'a TLS entry with hosts, secretName and secretNamespace')
      if (t === undefined) return
      checkStringList(c, t.hosts, `${field}.hosts`, 'EDGE_ERR_INGRESS_TLS')
      requireString(c, t.secretName, `${field}.secretName`, 'EDGE_ERR_INGRESS_TLS', 'the name of a kubernetes.io/tls Secret holding tls.crt and tls.key')
      requireString(c, t.secretNamespace, `${field}.secretNamespace`, 'EDGE_ERR_INGRESS_TLS', "the Secret's namespace")
    })
  }
  if (present(spec.httpOption) && spec.httpOption !== '' && spec.httpOption !== 'Enabled' && spec.httpOption !== 'Redirected') {
    c.add('spec.httpOption', `httpOption must be "Enabled", "Redirected" or empty, got ${describe(spec.httpOption)}`, 'EDGE_ERR_INGRESS_HTTP_OPTION')
  }
}

function checkIngressRule(c: Checker, value: unknown, field: string, namespace: string): void {
  const rule = requireRecord(c, value, field, 'EDGE_ERR_INGRESS_RULES', 'a rule with hosts, visibility and http.paths')
  if (rule === undefined) return
  checkStringList(c, rule.hosts, `${field}.hosts`, 'EDGE_ERR_INGRESS_HOST', true)
  const visibility = rule.visibility
  if (present(visibility) && visibility !== '' && visibility !== 'ExternalIP' && visibility !== 'ClusterLocal') {
    c.add(`${field}.visibility`, `visibility must be "ExternalIP" or "ClusterLocal", got ${describe(visibility)}`, 'EDGE_ERR_INGRESS_VISIBILITY')
  }
  const http = requireRecord(c, rule.http, `${field}.http`, 'EDGE_ERR_INGRESS_HTTP', 'http with a list of paths')
  if (http === undefined) return
  const paths = requireList(c, http.paths, `${field}.http.paths`, 'EDGE_ERR_INGRESS_PATHS', 'at least one path with splits')
  paths?.forEach((path, k) => checkIngressPath(c, path, `${field}.http.paths[${k}]`, namespace))
}

function checkIngressPath(c: Checker, value: unknown, field: string, namespace: string): void {
  const path = requireRecord(c, value, field, 'EDGE_ERR_INGRESS_PATHS', 'a path with splits')
  if (path === undefined) return
  if (present(path.path)) {
    if (typeof path.path !== 'string') c.add(`${field}.path`, `path must be a string such as "/api", got ${describe(path.path)}`, 'EDGE_ERR_INGRESS_PATH')
    else if (path.path !== '' && !path.path.startsWith('/')) c.add(`${field}.path`, `path ${JSON.stringify(path.path)} must begin with "/"`, 'EDGE_ERR_INGRESS_PATH')
  }
  if (present(path.rewriteHost) && typeof path.rewriteHost !== 'string') {
    c.add(`${field}.rewriteHost`, `rewriteHost must be a host name string, got ${describe(path.rewriteHost)}`, 'EDGE_ERR_INGRESS_REWRITE_HOST')
  }
  if (present(path.headers)) {
    if (!isRecord(path.headers)) {
      c.add(`${field}.headers`, `headers must map header names to {exact: value}, got ${describe(path.headers)}`, 'EDGE_ERR_INGRESS_HEADER_MATCH')
    } else {
      for (const [header, match] of Object.entries(path.headers)) {
        const at = `${field}.headers${key(header)}`
        checkHeaderName(c, header, at, 'EDGE_ERR_INGRESS_HEADER_MATCH')
        const exact = isRecord(match) ? match.exact : undefined
        if (typeof exact !== 'string' || exact === '') {
          c.add(`${at}.exact`, `a header match needs a non-empty "exact" value (only exact matching is supported), got ${describe(exact)}`, 'EDGE_ERR_INGRESS_HEADER_MATCH')
        }
      }
    }
  }
  checkHeaderMap(c, path.appendHeaders, `${field}.appendHeaders`)

  const splits = requireList(c, path.splits, `${field}.splits`, 'EDGE_ERR_INGRESS_SPLITS', 'at least one split naming serviceName, serviceNamespace and servicePort')
  if (splits === undefined) return
  let total = 0
  let percentsValid = true
  splits.forEach((value, s) => {
    const percent = checkSplit(c, value, `${field}.splits[${s}]`, namespace)
    if (percent === undefined) percentsValid = false
    else total += percent
  })
  // A single split with no percent is defaulted to 100 (ingress_defaults.go).
  const defaulted = splits.length === 1 && total === 0
  if (percentsValid && !defaulted && total !== 100) {
    c.add(`${field}.splits`, `split percents total ${total}; they must total 100 (a single split may leave percent out)`, 'EDGE_ERR_INGRESS_PERCENT')
  }
}

/** The split's percent (0 when absent), or undefined when the total cannot be judged. */
function checkSplit(c: Checker, value: unknown, field: string, namespace: string): number | undefined {
  const split = requireRecord(c, value, field, 'EDGE_ERR_INGRESS_SPLITS', 'a split with serviceName, serviceNamespace and servicePort')
  if (split === undefined) return undefined
  requireString(c, split.serviceName, `${field}.serviceName`, 'EDGE_ERR_INGRESS_BACKEND', 'the name of the Kubernetes Service to send traffic to')
  const ns = split.serviceNamespace
  if (requireString(c, ns, `${field}.serviceNamespace`, 'EDGE_ERR_INGRESS_BACKEND', `the Service's namespace, "${namespace}"`) && ns !== namespace) {
    c.add(`${field}.serviceNamespace`, `serviceNamespace ${JSON.stringify(ns)} must equal the Ingress namespace "${namespace}"; move the Ingress or point at a Service in its namespace`, 'EDGE_ERR_INGRESS_SPLIT_NAMESPACE')
  }
  const port = split.servicePort
  const portOk = (typeof port === 'number' && Number.isInteger(port) && port >= 1 && port <= 65535) || (typeof port === 'string' && port !== '')
  if (!portOk) {
    c.add(`${field}.servicePort`, `servicePort is required: a port number 1-65535 or a port name of the Service, got ${describe(port)}`, 'EDGE_ERR_INGRESS_BACKEND')
  }
  checkHeaderMap(c, split.appendHeaders, `${field}.appendHeaders`)
  if (!present(split.percent)) return 0
  if (!isIntIn(split.percent, 0, 100)) {
    c.add(`${field}.percent`, `percent must be a whole number from 0 to 100, got ${describe(split.percent)}`, 'EDGE_ERR_INGRESS_PERCENT')
    return undefined
  }
  return split.percent as number
}

// Shape only: routeToIngress reports what a well-shaped Route still gets wrong.
// Shape only: domainMappingToIngress checks the ref's kind and namespace.
function checkDomainMapping(c: Checker, obj: Json): void {
  const spec = requireRecord(c, obj.spec, 'spec', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE', 'the DomainMapping spec with a ref')
  if (spec === undefined) return
  const ref = requireRecord(c, spec.ref, 'spec.ref', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE', 'a ref to the Knative Service or Route, e.g. {kind: Service, name: hello}')
  if (ref) {
    requireString(c, ref.kind, 'spec.ref.kind', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE', 'the target kind, Service or Route')
    requireString(c, ref.name, 'spec.ref.name', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE', 'the name of the target')
    optionalString(c, ref.apiVersion, 'spec.ref.apiVersion', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE')
    optionalString(c, ref.namespace, 'spec.ref.namespace', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE')
  }
  const tls = optionalRecord(c, spec.tls, 'spec.tls', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE')
  if (tls) requireString(c, tls.secretName, 'spec.tls.secretName', 'EDGE_ERR_DOMAIN_MAPPING_SHAPE', 'the name of a kubernetes.io/tls Secret')
}

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']

function checkService(c: Checker, obj: Json): void {
  const spec = requireRecord(c, obj.spec, 'spec', 'EDGE_ERR_SERVICE_SPEC', 'the Service spec with ports')
  if (spec === undefined) return
  if (present(spec.type) && !SERVICE_TYPES.includes(spec.type as string)) {
    c.add('spec.type', `type must be one of ${SERVICE_TYPES.join(', ')}, got ${describe(spec.type)}`, 'EDGE_ERR_SERVICE_TYPE')
  }
  if (spec.type === 'ExternalName') {
    requireString(c, spec.externalName, 'spec.externalName', 'EDGE_ERR_SERVICE_EXTERNAL_NAME', 'the DNS name an ExternalName Service points at')
  }
  optionalList(c, spec.ports, 'spec.ports', 'EDGE_ERR_SERVICE_PORT')?.forEach((item, i) => {
    const port = requireRecord(c, item, `spec.ports[${i}]`, 'EDGE_ERR_SERVICE_PORT', 'a port with a number')
    if (port === undefined) return
    if (!isIntIn(port.port, 1, 65535)) {
      c.add(`spec.ports[${i}].port`, `port must be a number 1-65535, got ${describe(port.port)}`, 'EDGE_ERR_SERVICE_PORT')
    }
    for (const name of ['name', 'protocol', 'appProtocol']) optionalString(c, port[name], `spec.ports[${i}].${name}`, 'EDGE_ERR_SERVICE_PORT')
    const target = port.targetPort
    if (present(target) && !isIntIn(target, 1, 65535) && !(typeof target === 'string' && target !== '')) {
      c.add(`spec.ports[${i}].targetPort`, `targetPort must be a port number 1-65535 or a container port name, got ${describe(target)}`, 'EDGE_ERR_SERVICE_PORT')
    }
  })
}

function checkEndpointSlice(c: Checker, obj: Json): void {
  const labels = isRecord(obj.metadata) && isRecord(obj.metadata.labels) ? obj.metadata.labels : {}
  const service = labels[LABEL_SERVICE_NAME]
  if (typeof service !== 'string' || service === '') {
    c.add(`metadata.labels${key(LABEL_SERVICE_NAME)}`, `an EndpointSlice needs the label ${LABEL_SERVICE_NAME} naming its Service, or the gateway cannot tell which Service it serves`, 'EDGE_ERR_ENDPOINTSLICE_SERVICE')
  }
  if (present(obj.addressType) && !['IPv4', 'IPv6', 'FQDN'].includes(obj.addressType as string)) {
    c.add('addressType', `addressType must be IPv4, IPv6 or FQDN, got ${describe(obj.addressType)}`, 'EDGE_ERR_ENDPOINTSLICE_ADDRESS_TYPE')
  }
  optionalList(c, obj.endpoints, 'endpoints', 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES')?.forEach((item, i) => {
    const endpoint = requireRecord(c, item, `endpoints[${i}]`, 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES', 'an endpoint with a list of addresses')
    if (endpoint === undefined) return
    if (!Array.isArray(endpoint.addresses)) {
      c.add(`endpoints[${i}].addresses`, `addresses must be a list of IP addresses, got ${describe(endpoint.addresses)}`, 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES')
    } else {
      checkStringList(c, endpoint.addresses, `endpoints[${i}].addresses`, 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES', true)
      checkAddressFamily(c, endpoint.addresses, obj.addressType, `endpoints[${i}].addresses`)
    }
    const conditions = optionalRecord(c, endpoint.conditions, `endpoints[${i}].conditions`, 'EDGE_ERR_ENDPOINTSLICE_CONDITIONS')
    for (const name of ['ready', 'serving', 'terminating']) {
      const v = conditions?.[name]
      if (present(v) && typeof v !== 'boolean') {
        c.add(`endpoints[${i}].conditions.${name}`, `${name} must be true or false, got ${describe(v)}`, 'EDGE_ERR_ENDPOINTSLICE_CONDITIONS')
      }
    }
  })
  optionalList(c, obj.ports, 'ports', 'EDGE_ERR_ENDPOINTSLICE_PORT')?.forEach((item, i) => {
    const port = requireRecord(c, item, `ports[${i}]`, 'EDGE_ERR_ENDPOINTSLICE_PORT', 'a port with a number')
    if (port && present(port.port) && !isIntIn(port.port, 1, 65535)) {
      c.add(`ports[${i}].port`, `port must be a number 1-65535, got ${describe(port.port)}`, 'EDGE_ERR_ENDPOINTSLICE_PORT')
    }
    if (port) optionalString(c, port.name, `ports[${i}].name`, 'EDGE_ERR_ENDPOINTSLICE_PORT')
  })
}

/** The gateway dials these addresses: each must be an IP of the slice's addressType (IPv6 unbracketed). */
function checkAddressFamily(c: Checker, addresses: unknown[], addressType: unknown, field: string): void {
  if (addressType === 'FQDN') return
  const want = addressType === 'IPv4' ? 4 : addressType === 'IPv6' ? 6 : undefined
  addresses.forEach((a, j) => {
    if (typeof a !== 'string' || a === '') return // checkStringList said so
    const family = net.isIP(a)
    if (family === 0) {
      const hint = /^\[.*\]$/.test(a) ? ` (write IPv6 addresses without brackets: ${a.slice(1, -1)})` : ''
      c.add(`${field}[${j}]`, `${JSON.stringify(a)} is not an IP address${hint}; an EndpointSlice lists pod IPs`, 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES')
    } else if (want !== undefined && family !== want) {
      c.add(`${field}[${j}]`, `${JSON.stringify(a)} is an IPv${family} address in a slice of addressType IPv${want}; put it in a slice of addressType IPv${family} (a dual-stack Service has one slice per family)`, 'EDGE_ERR_ENDPOINTSLICE_ADDRESSES')
    }
  })
}

function checkSecret(c: Checker, obj: Json): void {
  optionalString(c, obj.type, 'type', 'EDGE_ERR_SECRET_DATA')
  const data = checkStringMap(c, obj.data, 'data', 'EDGE_ERR_SECRET_DATA')
  const stringData = checkStringMap(c, obj.stringData, 'stringData', 'EDGE_ERR_SECRET_DATA')
  if (obj.type !== 'kubernetes.io/tls') return
  for (const name of ['tls.crt', 'tls.key']) {
    const has = (m: Json | undefined) => typeof m?.[name] === 'string' && m[name] !== ''
    if (!has(data) && !has(stringData)) {
      c.add(`data${key(name)}`, `a kubernetes.io/tls Secret needs ${name} (base64 under data, or plain under stringData)`, 'EDGE_ERR_SECRET_TLS')
    }
  }
}

/** What a ConfigMap means (settings, src/settings/; a trust bundle) is judged where it is used; here only its shape (the API server requires string values). */
function checkConfigMap(c: Checker, obj: Json): void {
  checkStringMap(c, obj.data, 'data', 'EDGE_ERR_CONFIGMAP_DATA')
}

// RFC 9110 token: what an HTTP client will accept as a header name.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const BAD_HEADER_VALUE = /[\r\n\0]/

function checkHeaderName(c: Checker, name: string, field: string, code: ErrorCode): void {
  if (!HEADER_NAME.test(name)) c.add(field, `${JSON.stringify(name)} is not a valid HTTP header name; use letters, digits and "-"`, code)
}

function checkHeaderMap(c: Checker, value: unknown, field: string): void {
  const map = optionalRecord(c, value, field, 'EDGE_ERR_INGRESS_APPEND_HEADERS')
  for (const [name, v] of Object.entries(map ?? {})) {
    const at = `${field}${key(name)}`
    checkHeaderName(c, name, at, 'EDGE_ERR_INGRESS_APPEND_HEADERS')
    if (typeof v !== 'string') c.add(at, `header values must be strings, got ${describe(v)}; quote the value`, 'EDGE_ERR_INGRESS_APPEND_HEADERS')
    else if (BAD_HEADER_VALUE.test(v)) c.add(at, 'header values cannot contain CR, LF or NUL characters', 'EDGE_ERR_INGRESS_APPEND_HEADERS')
  }
}

