// Why a Knative revision in the cluster cannot become ready, read from what Kubernetes says about it:
// the Revision's conditions and its Pods' container and scheduling states. Pure, so the one rule of
// what is a failure (answered at once) and what is merely slow (held) lives here: an image being
// pulled or a container being created is slow; an image that cannot be pulled, a container that
// keeps crashing or a pod no node can take is a failure.
import type { Condition, Revision } from '../model/k8s.ts'

/** The part of a Pod this reads (the pod informer hands over whole Pods). */
export interface PodState {
  metadata: { name?: string; deletionTimestamp?: string }
  status?: {
    conditions?: Array<{ type: string; status: string; reason?: string; message?: string }>
    initContainerStatuses?: ContainerState[]
    containerStatuses?: ContainerState[]
  }
}

interface ContainerState {
  name: string
  state?: { waiting?: { reason?: string; message?: string } }
  lastState?: { terminated?: { exitCode?: number; reason?: string; message?: string } }
}

export interface RevisionFailure {
  /** Kubernetes' own reason: ImagePullBackOff, Unschedulable, ProgressDeadlineExceeded... */
  readonly reason: string
  /** Kubernetes' message ('' when it gave none). */
  readonly message: string
  /** Where it was seen: `pod P container C`, `pod P`, `its ResourcesAvailable condition`. */
  readonly where: string
  /** The pod and container it was seen in, when it was a pod's (for the hint's kubectl line). */
  readonly pod?: string
  readonly container?: string
}

/** Container waiting reasons that do not clear without a change (Pulling, ContainerCreating do). */
const WAITING_FAILURES = new Set([
  'ImagePullBackOff',
  'ErrImagePull',
  'ErrImageNeverPull',
  'InvalidImageName',
  'CrashLoopBackOff',
  'CreateContainerConfigError',
  'CreateContainerError',
  'RunContainerError',
])

/**
 * The label values of edge_revision_fast_failures_total: a fixed set, so a cluster cannot grow the
 * metric's cardinality with reasons of its own (anything else counts as `other`).
 */
export const FAST_FAILURE_CAUSES = [...WAITING_FAILURES, 'Unschedulable', 'ProgressDeadlineExceeded', 'ExitCode', 'process-exited', 'other'] as const

/** The local runner's cause: its process or container exited before it was ready. */
export const LOCAL_EXIT_CAUSE = 'process-exited'

/** A reason as a label of the fast-failure metric (Knative's `ExitCode1`... are one label). */
export function causeLabel(reason: string): string {
  if (/^ExitCode\d+$/.test(reason)) return 'ExitCode'
  return (FAST_FAILURE_CAUSES as readonly string[]).includes(reason) ? reason : 'other'
}

function isFailureReason(reason: string | undefined): boolean {
  if (reason === undefined) return false
  return WAITING_FAILURES.has(reason) || reason === 'Unschedulable' || reason === 'ProgressDeadlineExceeded' || /^ExitCode\d+$/.test(reason)
}

const condition = (conds: readonly Condition[] | undefined, type: string): Condition | undefined => conds?.find((c) => c.type === type)

/**
 * What the Revision's conditions say: ContainerHealthy or ResourcesAvailable False (Knative copies
 * the pods' and the Deployment's failures there), or Ready False for one of the failure reasons.
 */
export function revisionConditionFailure(rev: Revision): RevisionFailure | undefined {
  const conds = rev.status?.conditions
  for (const type of ['ContainerHealthy', 'ResourcesAvailable']) {
    const c = condition(conds, type)
    if (c?.status === 'False') return { reason: c.reason ?? `${type}False`, message: c.message ?? '', where: `its ${type} condition` }
  }
  const ready = condition(conds, 'Ready')
  if (ready?.status === 'False' && isFailureReason(ready.reason)) return { reason: ready.reason!, message: ready.message ?? '', where: 'its Ready condition' }
  return undefined
}

/** One pod's failure to start, or undefined while it is fine or merely on its way. */
export function podFailure(pod: PodState): RevisionFailure | undefined {
  const name = pod.metadata.name ?? '?'
  const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled')
  if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') return { reason: 'Unschedulable', message: scheduled.message ?? '', where: `pod ${name}`, pod: name }
  for (const cs of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
    const waiting = cs.state?.waiting
    if (waiting?.reason === undefined || !WAITING_FAILURES.has(waiting.reason)) continue
    // A crash loop's own message only says it backs off; the last exit says why it crashed.
    const last = cs.lastState?.terminated
    const exit = last ? `last exit code ${last.exitCode ?? '?'}${last.reason ? ` (${last.reason})` : ''}${last.message ? `: ${last.message.trim()}` : ''}` : ''
    const message = [waiting.message ?? '', exit].filter((s) => s !== '').join('; ')
    return { reason: waiting.reason, message, where: `pod ${name} container ${cs.name}`, pod: name, container: cs.name }
  }
  return undefined
}

/**
 * The revision's pods' verdict: a failure only when every pod still there fails (one that is being
 * scheduled, pulling or starting may yet serve the held requests), else undefined. No pods, no verdict.
 */
export function podsFailure(pods: Iterable<PodState>): RevisionFailure | undefined {
  let first: RevisionFailure | undefined
  for (const pod of pods) {
    if (pod.metadata.deletionTimestamp !== undefined) continue
    const f = podFailure(pod)
    if (f === undefined) return undefined
    first ??= f
  }
  return first
}

/** How to get out of it, by reason: what the 503's body suggests after Kubernetes' own words. */
function hint(f: RevisionFailure, namespace: string): string {
  const reason = f.reason
  if (reason.includes('Image')) return "check the image's name and tag, and that the cluster may pull it (imagePullSecrets)"
  if (reason === 'CrashLoopBackOff' || reason === 'RunContainerError' || reason.startsWith('ExitCode')) {
    const logs = f.pod === undefined ? `kubectl logs -n ${namespace} <pod> --previous` : `kubectl logs -n ${namespace} ${f.pod}${f.container ? ` -c ${f.container}` : ''} --previous`
    return `the container exits; read its logs (${logs})`
  }
  if (reason === 'CreateContainerConfigError' || reason === 'CreateContainerError') return 'a ConfigMap, Secret or setting the container needs is missing or wrong'
  if (reason === 'Unschedulable') return "no node can take the pod: check its resource requests, node selectors and tolerations, or the cluster's capacity"
  if (reason === 'ProgressDeadlineExceeded') return 'it did not become ready within its progress deadline'
  return `see kubectl describe revision -n ${namespace}`
}

/** The 503 `revision-failed` body for a cluster revision. */
export function failureDetail(revisionKey: string, f: RevisionFailure): string {
  const namespace = revisionKey.slice(0, revisionKey.indexOf('/'))
  const said = f.message === '' ? '' : `: ${f.message}`
  return `revision ${revisionKey} cannot become ready: ${f.where} is ${f.reason}${said}; ${hint(f, namespace)} (requests are answered at once until that changes)`
}
