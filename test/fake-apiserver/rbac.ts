// Authorization as kube-apiserver's RBAC authorizer decides it, for one user: Roles, ClusterRoles and
// their bindings are given as objects (for example the chart's rendered templates), every request is
// described the way RBAC sees it (verb, API group, resource, subresource, namespace, name), and a
// request no bound rule allows gets the real server's 403 Status.
import { ApiError } from './errors.ts'
import type { StatusDetails } from './errors.ts'

/** What the authorizer sees of a request (k8s.io/apiserver's RequestInfo). */
export interface RequestAttributes {
  /** false for paths outside /api and /apis collections (/version, /healthz, discovery). */
  resourceRequest: boolean
  /** get, list, watch, create, update, patch, delete, deletecollection; for non-resource paths, the lowercased method. */
  verb: string
  apiGroup: string
  apiVersion: string
  resource: string
  subresource: string
  namespace: string
  /** The object's name; for list/watch, the one a `metadata.name=` field selector names. */
  name: string
  path: string
}

export interface PolicyRule {
  verbs: string[]
  apiGroups?: string[]
  resources?: string[]
  resourceNames?: string[]
  nonResourceURLs?: string[]
}

interface RbacObject {
  kind?: unknown
  metadata?: { name?: unknown; namespace?: unknown }
  rules?: unknown
  roleRef?: { kind?: unknown; name?: unknown }
  subjects?: unknown
}

interface Subject {
  kind?: string
  name?: string
  namespace?: string
}

/** A rule together with where it came from, so a test can tell which grant a request used. */
export interface BoundRule {
  /** `ClusterRole/name` or `Role/namespace/name`. */
  role: string
  index: number
  rule: PolicyRule
  /** Only requests in this namespace (a RoleBinding); undefined: everywhere (a ClusterRoleBinding). */
  namespace: string | undefined
}

/**
 * What every cluster grants every authenticated user through its default bindings
 * (system:public-info-viewer and system:discovery): health, version and discovery paths.
 */
const DEFAULT_RULES: PolicyRule[] = [
  { verbs: ['get'], nonResourceURLs: ['/healthz', '/livez', '/readyz', '/version', '/version/'] },
  { verbs: ['get'], nonResourceURLs: ['/api', '/api/*', '/apis', '/apis/*', '/openapi', '/openapi/*'] },
]

const VERBS_BY_METHOD: Record<string, string> = { POST: 'create', PUT: 'update', PATCH: 'patch' }

/** Describes a request as RBAC sees it (the rules of k8s.io/apiserver's RequestInfoFactory that the fake needs). */
export function requestAttributes(method: string, path: string, query: URLSearchParams): RequestAttributes {
  const nonResource: RequestAttributes = {
    resourceRequest: false, verb: method.toLowerCase(), apiGroup: '', apiVersion: '', resource: '', subresource: '', namespace: '', name: '', path,
  }
  let segs = path.split('/').filter((s) => s !== '')
  let apiGroup: string
  let apiVersion: string
  if (segs[0] === 'api' && segs.length >= 3) {
    apiGroup = ''
    apiVersion = segs[1]!
    segs = segs.slice(2)
  } else if (segs[0] === 'apis' && segs.length >= 4) {
    apiGroup = segs[1]!
    apiVersion = segs[2]!
    segs = segs.slice(3)
  } else {
    return nonResource
  }
  let legacyWatch = false
  if (segs[0] === 'watch') {
    legacyWatch = true
    segs = segs.slice(1)
  }
  let namespace = ''
  // /namespaces/x is the namespace object itself; /namespaces/x/<resource>... is inside it.
  if (segs[0] === 'namespaces' && segs.length >= 3) {
    namespace = segs[1]!
    segs = segs.slice(2)
  }
  const [resource = '', name = '', subresource = ''] = segs.map((s) => safeDecode(s))
  let verb: string
  const watchParam = query.get('watch') === 'true' || query.get('watch') === '1'
  if (method === 'GET' || method === 'HEAD') {
    if (legacyWatch || watchParam) verb = 'watch'
    else verb = name === '' ? 'list' : 'get'
  } else if (method === 'DELETE') {
    verb = name === '' ? 'deletecollection' : 'delete'
  } else {
    verb = VERBS_BY_METHOD[method] ?? method.toLowerCase()
  }
  let effectiveName = name
  if (effectiveName === '' && (verb === 'list' || verb === 'watch')) {
    // A list or watch of one object by name is authorized as that name (resourceNames rules).
    for (const part of (query.get('fieldSelector') ?? '').split(',')) {
      const m = /^\s*metadata\.name\s*==?\s*(.*)$/.exec(part)
      if (m) effectiveName = m[1]!.trim()
    }
  }
  return { resourceRequest: true, verb, apiGroup, apiVersion, resource, subresource, namespace, name: effectiveName, path }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

/** Whether one rule allows the request (RBAC's rule matching, wildcards included). */
export function ruleAllows(rule: PolicyRule, a: RequestAttributes): boolean {
  const has = (list: string[] | undefined, v: string): boolean => list !== undefined && (list.includes('*') || list.includes(v))
  if (!has(rule.verbs, a.verb)) return false
  if (!a.resourceRequest) {
    return (rule.nonResourceURLs ?? []).some((u) => u === '*' || u === a.path || (u.endsWith('*') && a.path.startsWith(u.slice(0, -1))))
  }
  if (!has(rule.apiGroups, a.apiGroup)) return false
  const combined = a.subresource === '' ? a.resource : `${a.resource}/${a.subresource}`
  const resources = rule.resources ?? []
  const resourceOk = resources.includes('*') || resources.includes(combined) ||
    (a.subresource !== '' && resources.includes(`*/${a.subresource}`))
  if (!resourceOk) return false
  const names = rule.resourceNames ?? []
  return names.length === 0 || (a.name !== '' && names.includes(a.name))
}

/** `system:serviceaccount:<ns>:<name>` → its namespace and name. */
function serviceAccountOf(user: string): { namespace: string; name: string } | undefined {
  const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(user)
  return m ? { namespace: m[1]!, name: m[2]! } : undefined
}

function asRules(v: unknown, where: string): PolicyRule[] {
  if (v === undefined || v === null) return []
  if (!Array.isArray(v)) throw new Error(`fake-apiserver rbac: ${where}: rules must be a list`)
  return v.map((r, i) => {
    const rule = r as PolicyRule
    if (!Array.isArray(rule?.verbs)) throw new Error(`fake-apiserver rbac: ${where}: rule ${i} has no verbs list`)
    return rule
  })
}

export class Authorizer {
  readonly user: string
  private readonly groups: string[]
  /** Every rule that applies to the user, with where it applies. */
  readonly rules: BoundRule[] = []

  /**
   * `objects`: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings (other kinds are ignored, so
   * a chart's whole rendering can be passed). Only rules bound to `user` count.
   */
  constructor(user: string, objects: readonly unknown[]) {
    this.user = user
    const sa = serviceAccountOf(user)
    this.groups = ['system:authenticated', ...(sa ? ['system:serviceaccounts', `system:serviceaccounts:${sa.namespace}`] : [])]
    const roles = new Map<string, PolicyRule[]>()
    const bindings: RbacObject[] = []
    for (const raw of objects) {
      const o = raw as RbacObject
      const name = String(o?.metadata?.name ?? '')
      const ns = String(o?.metadata?.namespace ?? '')
      if (o?.kind === 'ClusterRole') roles.set(`ClusterRole/${name}`, asRules(o.rules, `ClusterRole ${name}`))
      else if (o?.kind === 'Role') roles.set(`Role/${ns}/${name}`, asRules(o.rules, `Role ${ns}/${name}`))
      else if (o?.kind === 'RoleBinding' || o?.kind === 'ClusterRoleBinding') bindings.push(o)
    }
    for (const b of bindings) {
      if (!this.bound(b.subjects)) continue
      const ns = b.kind === 'RoleBinding' ? String(b.metadata?.namespace ?? '') : undefined
      const refName = String(b.roleRef?.name ?? '')
      // A ClusterRoleBinding may only refer to a ClusterRole; a RoleBinding to either (a Role in its namespace).
      const key = b.roleRef?.kind === 'Role' && ns !== undefined ? `Role/${ns}/${refName}` : b.roleRef?.kind === 'ClusterRole' ? `ClusterRole/${refName}` : undefined
      const rules = key === undefined ? undefined : roles.get(key)
      // A binding to a missing role grants nothing (as in a real cluster).
      if (key === undefined || rules === undefined) continue
      rules.forEach((rule, index) => this.rules.push({ role: key, index, rule, namespace: ns }))
    }
  }

  private bound(subjects: unknown): boolean {
    if (!Array.isArray(subjects)) return false
    const sa = serviceAccountOf(this.user)
    return (subjects as Subject[]).some((s) => {
      if (s.kind === 'ServiceAccount') return sa !== undefined && s.name === sa.name && s.namespace === sa.namespace
      if (s.kind === 'User') return s.name === this.user
      if (s.kind === 'Group') return s.name !== undefined && this.groups.includes(s.name)
      return false
    })
  }

  /** The bound rules that allow the request (empty: forbidden). Default public paths allow with no rule. */
  allowing(a: RequestAttributes): BoundRule[] {
    return this.rules.filter((b) => (b.namespace === undefined || (a.resourceRequest && b.namespace === a.namespace)) && ruleAllows(b.rule, a))
  }

  allowed(a: RequestAttributes): boolean {
    return this.allowing(a).length > 0 || (!a.resourceRequest && DEFAULT_RULES.some((r) => ruleAllows(r, a)))
  }

  /** The real server's 403 for this request. */
  forbidden(a: RequestAttributes): ApiError {
    const who = `User ${JSON.stringify(this.user)}`
    if (!a.resourceRequest) {
      return new ApiError(403, `forbidden: ${who} cannot ${a.verb} path ${JSON.stringify(a.path)}`, 'Forbidden', {})
    }
    const resource = a.subresource === '' ? a.resource : `${a.resource}/${a.subresource}`
    const scope = a.namespace === '' ? 'at the cluster scope' : `in the namespace ${JSON.stringify(a.namespace)}`
    const why = `${who} cannot ${a.verb} resource ${JSON.stringify(resource)} in API group ${JSON.stringify(a.apiGroup)} ${scope}`
    const qualified = a.apiGroup === '' ? a.resource : `${a.resource}.${a.apiGroup}`
    const message = a.name === '' ? `${qualified} is forbidden: ${why}` : `${qualified} ${JSON.stringify(a.name)} is forbidden: ${why}`
    // Go omits the empty fields of StatusDetails.
    const details: StatusDetails = { kind: a.resource }
    if (a.apiGroup !== '') details.group = a.apiGroup
    if (a.name !== '') details.name = a.name
    return new ApiError(403, message, 'Forbidden', details)
  }
}
