// What Knative Serving derives from what users write, as plain functions: a Service makes a
// Configuration and a Route of its name; a Configuration's template makes a Revision; a Service's
// traffic (or, without one, 100% to the latest revision) resolves to revision names. The stateful
// parts (which revisions exist, which became ready) are the controller's (controller.ts, history.ts).
import type { Configuration, KService, Revision, RevisionTemplate, Route, TrafficTarget } from '../model/k8s.ts'
import type { ErrorCode } from '../errors.ts'

export const LABEL_SERVICE = 'serving.knative.dev/service'
export const LABEL_CONFIGURATION = 'serving.knative.dev/configuration'
export const LABEL_CONFIGURATION_GENERATION = 'serving.knative.dev/configurationGeneration'
export const LABEL_ROUTE_OF = 'serving.knative.dev/route'
/** Where a derived object's owner was read from (a manifest file): local processes run beside it. */
export const ANN_SOURCE_FILE = 'edge.knative.dev/source-file'

/** Annotations a user's object never passes on to what is derived from it (kubectl's bookkeeping). */
const NOT_INHERITED = new Set(['kubectl.kubernetes.io/last-applied-configuration'])

function inherited(annotations: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(annotations ?? {})) if (!NOT_INHERITED.has(k)) out[k] = v
  return out
}

/** The Configuration a Service makes: its name, the Service's labels and template. */
export function configurationOf(svc: KService): Configuration {
  const name = svc.metadata.name
  return {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Configuration',
    metadata: { name, namespace: svc.metadata.namespace, labels: { ...svc.metadata.labels, [LABEL_SERVICE]: name }, annotations: inherited(svc.metadata.annotations) },
    spec: { template: svc.spec?.template ?? {} },
  }
}

/** One revision of a Configuration's template, labelled and annotated as Serving does. */
export function revisionOf(config: Configuration, template: RevisionTemplate, name: string, generation: number, sourceFile: string | undefined): Revision {
  const service = config.metadata.labels?.[LABEL_SERVICE]
  const labels: Record<string, string> = { ...template.metadata?.labels, [LABEL_CONFIGURATION]: config.metadata.name, [LABEL_CONFIGURATION_GENERATION]: String(generation) }
  if (service !== undefined) labels[LABEL_SERVICE] = service
  const annotations = { ...template.metadata?.annotations }
  if (sourceFile !== undefined) annotations[ANN_SOURCE_FILE] = sourceFile
  return {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Revision',
    metadata: { name, namespace: config.metadata.namespace, labels, annotations },
    spec: template.spec ?? {},
  }
}

/** The revision name Serving gives generation `n` of a configuration: `name-00001`. */
export function revisionName(config: string, generation: number): string {
  return `${config}-${String(generation).padStart(5, '0')}`
}

export interface TrafficProblem {
  field: string
  reason: string
  code: ErrorCode
}

/**
 * The Service's traffic with every target named: `latestRevision: true` becomes `latest`, and a
 * `revisionName` must be one of the configuration's own revisions (Serving's RevisionNotOwned).
 */
export function resolveTraffic(svc: KService, own: ReadonlySet<string>, latest: string): TrafficTarget[] | TrafficProblem[] {
  const entries = svc.spec?.traffic ?? [{ latestRevision: true, percent: 100 }]
  const problems: TrafficProblem[] = []
  const out: TrafficTarget[] = entries.map((e, i) => {
    let revision = latest
    if (e.latestRevision !== true && e.revisionName !== undefined) {
      revision = e.revisionName
      if (!own.has(revision)) {
        problems.push({
          field: `spec.traffic[${i}].revisionName`,
          reason: `${revision} is not a revision of this Service (its revisions: ${[...own].join(', ') || 'none yet'}); name one of them, or use latestRevision: true`,
          code: 'EDGE_ERR_REVISION_NOT_OWNED',
        })
      }
    }
    const t: TrafficTarget = { revisionName: revision, percent: e.percent ?? (entries.length === 1 ? 100 : 0) }
    if (e.latestRevision === true) t.latestRevision = true
    if (e.tag !== undefined) t.tag = e.tag
    return t
  })
  return problems.length > 0 ? problems : out
}

/** The Route a Service makes, with its traffic already resolved (as Serving's status.traffic). */
export function routeOf(svc: KService, traffic: readonly TrafficTarget[], url: string, tagUrl: (tag: string) => string): Route {
  const name = svc.metadata.name
  return {
    apiVersion: 'serving.knative.dev/v1',
    kind: 'Route',
    metadata: { name, namespace: svc.metadata.namespace, labels: { ...svc.metadata.labels, [LABEL_SERVICE]: name }, annotations: inherited(svc.metadata.annotations) },
    spec: { traffic: svc.spec?.traffic ?? [{ latestRevision: true, percent: 100 }] },
    status: { url, traffic: traffic.map((t) => (t.tag ? { ...t, url: tagUrl(t.tag) } : { ...t })) },
  }
}

/** A stable text of a value with sorted keys: two templates are the same revision when these match. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value as object).filter((k) => (value as Record<string, unknown>)[k] !== undefined).sort()
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}
