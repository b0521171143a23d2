// What the local runner cannot do with a revision that runs from its image, said as configuration
// problems (/debug/routes, the log): no container engine to run it at all, or parts of the template
// that need a cluster. Pure, so the wording is the same wherever it shows.
import type { ConfigProblem } from '../model/problems.ts'
import type { Revision } from '../model/k8s.ts'
import { ANN_LOCAL_COMMAND } from '../model/k8s.ts'
import { servingContainer } from './revision-template.ts'

export const LOCAL_RUNNER_SOURCE = 'local-runner'

export interface RuntimeVerdict {
  problems: ConfigProblem[]
  /** Why the revision cannot run at all (the 503 `no-runtime` body); undefined when it can. */
  unrunnable?: string
}

/** `noEngine`: why there is no container engine, or undefined when there is one. */
export function runtimeProblems(rev: Revision, noEngine: string | undefined): RuntimeVerdict {
  const ns = rev.metadata.namespace ?? 'default'
  const object = `Revision ${ns}/${rev.metadata.name}`
  const c = servingContainer(rev)
  const at = `spec.containers[${Math.max(0, rev.spec?.containers?.indexOf(c!) ?? 0)}]`
  const problems: ConfigProblem[] = []
  let unrunnable: string | undefined
  if (noEngine !== undefined) {
    unrunnable =
      `revision ${ns}/${rev.metadata.name} cannot run here: it has no ${ANN_LOCAL_COMMAND} annotation, and no container engine can run its image ${c?.image} (${noEngine}). ` +
      `Install podman or docker (or choose one with --container-engine), or give the Revision an ${ANN_LOCAL_COMMAND} annotation`
    problems.push({ source: LOCAL_RUNNER_SOURCE, object, field: `${at}.image`, reason: unrunnable, code: 'EDGE_ERR_NO_RUNTIME' })
  }
  c?.env?.forEach((e, i) => {
    if (e.value !== undefined || e.valueFrom === undefined) return
    problems.push({
      source: LOCAL_RUNNER_SOURCE,
      object,
      field: `${at}.env[${i}].valueFrom`,
      reason: `${e.name} takes its value from the cluster (valueFrom), which the local runner cannot read; it is left unset. Give it a value for local runs`,
      code: 'EDGE_ERR_CONTAINER_ENV',
    })
  })
  if ((c?.envFrom?.length ?? 0) > 0) {
    problems.push({
      source: LOCAL_RUNNER_SOURCE,
      object,
      field: `${at}.envFrom`,
      reason: 'envFrom reads ConfigMaps or Secrets from the cluster, which the local runner cannot; those variables are left unset. List them under env with values for local runs',
      code: 'EDGE_ERR_CONTAINER_ENV',
    })
  }
  return { problems, unrunnable }
}
