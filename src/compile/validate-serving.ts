// Validation of the Knative Serving kinds the files source reads: Route, Revision, and the Service and
// Configuration users write (serving.knative.dev/v1), with Serving's own rules where a file can be
// checked alone: percents that total 100, unique tags that are DNS labels, exactly one target per
// traffic entry, revision names that start with the Service's. What needs more than one object (a
// traffic entry naming a revision of another Configuration) is the serving controller's to report.
import { DNS1123_LABEL, checkStringList, checkStringMap, describe, isIntIn, isRecord, optionalList, optionalRecord, optionalString, present, requireList, requireRecord, requireString } from './validate-fields.ts'
import type { Checker, Json } from './validate-fields.ts'

export function checkRoute(c: Checker, obj: Json): void {
  const spec = optionalRecord(c, obj.spec, 'spec', 'EDGE_ERR_ROUTE_SHAPE')
  if (spec) checkTrafficList(c, spec.traffic, 'spec.traffic')
  const status = optionalRecord(c, obj.status, 'status', 'EDGE_ERR_ROUTE_SHAPE')
  if (status === undefined) return
  optionalString(c, status.url, 'status.url', 'EDGE_ERR_ROUTE_SHAPE')
  checkTrafficList(c, status.traffic, 'status.traffic')
}

function checkTrafficList(c: Checker, value: unknown, field: string): void {
  optionalList(c, value, field, 'EDGE_ERR_ROUTE_SHAPE')?.forEach((item, i) => {
    const at = `${field}[${i}]`
    const entry = requireRecord(c, item, at, 'EDGE_ERR_ROUTE_SHAPE', 'a traffic entry with revisionName and percent')
    if (entry === undefined) return
    for (const name of ['revisionName', 'configurationName', 'tag', 'url']) optionalString(c, entry[name], `${at}.${name}`, 'EDGE_ERR_ROUTE_SHAPE')
    if (present(entry.latestRevision) && typeof entry.latestRevision !== 'boolean') {
      c.add(`${at}.latestRevision`, `latestRevision must be true or false, got ${describe(entry.latestRevision)}`, 'EDGE_ERR_ROUTE_SHAPE')
    }
    if (present(entry.percent) && !isIntIn(entry.percent, 0, 100)) {
      c.add(`${at}.percent`, `percent must be a whole number from 0 to 100, got ${describe(entry.percent)}`, 'EDGE_ERR_ROUTE_SHAPE')
    }
  })
}

export function checkRevision(c: Checker, obj: Json): void {
  const spec = optionalRecord(c, obj.spec, 'spec', 'EDGE_ERR_REVISION_SPEC')
  if (spec !== undefined) checkRevisionSpec(c, spec, 'spec')
}

/** A Revision's spec, or a Configuration's or Service's template spec, at `at`. */
function checkRevisionSpec(c: Checker, spec: Json, at: string): void {
  if (present(spec.containerConcurrency) && !isIntIn(spec.containerConcurrency, 0, Infinity)) {
    c.add(`${at}.containerConcurrency`, `containerConcurrency must be a whole number, 0 for unlimited, got ${describe(spec.containerConcurrency)}`, 'EDGE_ERR_REVISION_CONCURRENCY')
  }
  if (present(spec.timeoutSeconds) && !isIntIn(spec.timeoutSeconds, 1, Infinity)) {
    c.add(`${at}.timeoutSeconds`, `timeoutSeconds must be a whole number of seconds greater than 0, got ${describe(spec.timeoutSeconds)}`, 'EDGE_ERR_REVISION_TIMEOUT')
  }
  for (const name of ['responseStartTimeoutSeconds', 'idleTimeoutSeconds']) {
    if (present(spec[name]) && !isIntIn(spec[name], 0, Infinity)) {
      c.add(`${at}.${name}`, `${name} must be a whole number of seconds, 0 for none, got ${describe(spec[name])}`, 'EDGE_ERR_REVISION_TIMEOUT')
    }
  }
  optionalList(c, spec.containers, `${at}.containers`, 'EDGE_ERR_REVISION_SPEC')?.forEach((item, i) => {
    const container = requireRecord(c, item, `${at}.containers[${i}]`, 'EDGE_ERR_REVISION_SPEC', 'a container with an image')
    const where = `${at}.containers[${i}]`
    optionalString(c, container?.image, `${where}.image`, 'EDGE_ERR_REVISION_SPEC')
    checkStringList(c, container?.command, `${where}.command`, 'EDGE_ERR_REVISION_SPEC')
    checkStringList(c, container?.args, `${where}.args`, 'EDGE_ERR_REVISION_SPEC')
    optionalList(c, container?.env, `${where}.env`, 'EDGE_ERR_REVISION_SPEC')?.forEach((e, j) => {
      const env = requireRecord(c, e, `${where}.env[${j}]`, 'EDGE_ERR_REVISION_SPEC', 'a variable with a name and a value')
      if (env === undefined) return
      requireString(c, env.name, `${where}.env[${j}].name`, 'EDGE_ERR_REVISION_SPEC', 'the variable\'s name')
      optionalString(c, env.value, `${where}.env[${j}].value`, 'EDGE_ERR_REVISION_SPEC')
    })
    optionalList(c, container?.ports, `${at}.containers[${i}].ports`, 'EDGE_ERR_REVISION_SPEC')?.forEach((p, j) => {
      const port = isRecord(p) ? p.containerPort : p
      if (present(port) && !isIntIn(port, 1, 65535)) {
        c.add(`${at}.containers[${i}].ports[${j}].containerPort`, `containerPort must be a port number 1-65535, got ${describe(port)}`, 'EDGE_ERR_REVISION_PORT')
      }
    })
  })
}

/** A Knative Service: its revision template, and its traffic as Serving validates it. */
export function checkKService(c: Checker, obj: Json): void {
  const name = (obj.metadata as Json | undefined)?.name
  const spec = requireRecord(c, obj.spec, 'spec', 'EDGE_ERR_KSERVICE_SPEC', 'the Service spec with a template (spec.template.spec.containers)')
  if (spec === undefined) return
  checkTemplate(c, spec.template, 'spec.template', typeof name === 'string' ? name : undefined)
  if (present(spec.traffic)) checkServiceTraffic(c, spec.traffic, 'spec.traffic')
}

/** A Configuration: its revision template. */
export function checkConfiguration(c: Checker, obj: Json): void {
  const name = (obj.metadata as Json | undefined)?.name
  const spec = requireRecord(c, obj.spec, 'spec', 'EDGE_ERR_KSERVICE_SPEC', 'the Configuration spec with a template (spec.template.spec.containers)')
  if (spec === undefined) return
  checkTemplate(c, spec.template, 'spec.template', typeof name === 'string' ? name : undefined)
}

/** The revision template: a container to run, and a name (when given) that starts with `<owner>-`. */
function checkTemplate(c: Checker, value: unknown, at: string, owner: string | undefined): void {
  const template = requireRecord(c, value, at, 'EDGE_ERR_KSERVICE_SPEC', 'the revision template with spec.containers')
  if (template === undefined) return
  const meta = optionalRecord(c, template.metadata, `${at}.metadata`, 'EDGE_ERR_KSERVICE_SPEC')
  checkStringMap(c, meta?.labels, `${at}.metadata.labels`, 'EDGE_ERR_METADATA')
  const annotations = checkStringMap(c, meta?.annotations, `${at}.metadata.annotations`, 'EDGE_ERR_METADATA')
  const revName = meta?.name
  if (present(revName)) {
    if (typeof revName !== 'string' || revName.length > 63 || !DNS1123_LABEL.test(revName)) {
      c.add(`${at}.metadata.name`, `${describe(revName)} is not a valid revision name: use lower-case letters, digits and "-", at most 63 characters`, 'EDGE_ERR_KSERVICE_REVISION_NAME')
    } else if (owner !== undefined && !revName.startsWith(`${owner}-`)) {
      c.add(`${at}.metadata.name`, `the revision name ${JSON.stringify(revName)} must start with "${owner}-" (Serving's rule); rename it, e.g. "${owner}-v2", or leave it out to get ${owner}-00001, -00002, ...`, 'EDGE_ERR_KSERVICE_REVISION_NAME')
    }
  }
  const spec = requireRecord(c, template.spec, `${at}.spec`, 'EDGE_ERR_KSERVICE_SPEC', 'the revision spec with containers')
  if (spec === undefined) return
  const containers = requireList(c, spec.containers, `${at}.spec.containers`, 'EDGE_ERR_KSERVICE_SPEC', 'a list with the container to run, e.g. [{image: ...}]')
  checkRevisionSpec(c, spec, `${at}.spec`)
  const first = containers?.[0]
  const image = first && typeof first === 'object' ? (first as Json).image : undefined
  const command = annotations?.['edge.knative.dev/local-command']
  if (containers && (typeof image !== 'string' || image === '') && (typeof command !== 'string' || command === '')) {
    c.add(`${at}.spec.containers[0].image`, 'is required: the container image to run (or, on a laptop, the annotation edge.knative.dev/local-command on the template with a command to run instead)', 'EDGE_ERR_KSERVICE_SPEC')
  }
}

/** Serving's traffic rules for a Service (the default target must total 100). */
function checkServiceTraffic(c: Checker, value: unknown, at: string): void {
  const list = optionalList(c, value, at, 'EDGE_ERR_KSERVICE_TRAFFIC')
  if (list === undefined) return
  if (list.length === 0) {
    c.add(at, 'an empty traffic list sends nothing anywhere; leave spec.traffic out to send 100% to the latest revision', 'EDGE_ERR_KSERVICE_TRAFFIC')
    return
  }
  let total = 0
  const tags = new Map<string, number>()
  list.forEach((item, i) => {
    const field = `${at}[${i}]`
    const entry = requireRecord(c, item, field, 'EDGE_ERR_KSERVICE_TRAFFIC', 'a traffic entry with revisionName or latestRevision: true, and percent')
    if (entry === undefined) return
    const rev = entry.revisionName
    const latest = entry.latestRevision
    if (present(latest) && typeof latest !== 'boolean') c.add(`${field}.latestRevision`, `latestRevision must be true or false, got ${describe(latest)}`, 'EDGE_ERR_KSERVICE_TRAFFIC')
    if (present(entry.configurationName)) c.add(`${field}.configurationName`, 'a Service\'s traffic names its revisions (revisionName) or its latest one (latestRevision: true), not a configuration; remove configurationName', 'EDGE_ERR_KSERVICE_TRAFFIC')
    const hasRev = typeof rev === 'string' && rev !== ''
    if (present(rev) && !hasRev) c.add(`${field}.revisionName`, `revisionName must be a revision's name, got ${describe(rev)}`, 'EDGE_ERR_KSERVICE_TRAFFIC')
    else if (hasRev && latest === true) c.add(field, 'an entry names a revision (revisionName) or follows the latest (latestRevision: true), not both; remove one', 'EDGE_ERR_KSERVICE_TRAFFIC')
    else if (!hasRev && latest !== true) c.add(field, 'this entry has no target: set revisionName, or latestRevision: true', 'EDGE_ERR_KSERVICE_TRAFFIC')
    const percent = entry.percent ?? 0
    if (!isIntIn(percent, 0, 100)) c.add(`${field}.percent`, `percent must be a whole number from 0 to 100, got ${describe(entry.percent)}`, 'EDGE_ERR_KSERVICE_TRAFFIC')
    else total += percent as number
    const tag = entry.tag
    if (present(tag)) {
      if (typeof tag !== 'string' || !DNS1123_LABEL.test(tag) || tag.length > 63) c.add(`${field}.tag`, `${describe(tag)} is not a valid tag: use a DNS label (lower-case letters, digits and "-"), e.g. "candidate"`, 'EDGE_ERR_ROUTE_TAG')
      else if (tags.has(tag)) c.add(`${field}.tag`, `tag "${tag}" is already used by ${at}[${tags.get(tag)}]; tags must be unique`, 'EDGE_ERR_ROUTE_TAG')
      else tags.set(tag, i)
    }
    optionalString(c, entry.url, `${field}.url`, 'EDGE_ERR_KSERVICE_TRAFFIC')
  })
  if (total !== 100 && list.every((e) => e && typeof e === 'object' && isIntIn((e as Json).percent ?? 0, 0, 100))) {
    c.add(at, `traffic percents total ${total}, but they must total 100; adjust the entries' percent`, 'EDGE_ERR_KSERVICE_TRAFFIC')
  }
}
