// What the local runner reads of a Revision's pod template: the serving container, its port, its
// readiness probe, and the environment Knative gives every revision.
import type { Container, Revision } from '../model/k8s.ts'
import type { ReadinessProbe } from './readiness.ts'

/** Knative's default when the serving container names no port. */
export const DEFAULT_CONTAINER_PORT = 8080

/** The container that takes requests: the one with a port (Knative allows one), else the first. */
export function servingContainer(rev: Revision): Container | undefined {
  const all = rev.spec?.containers ?? []
  return all.find((c) => (c.ports?.length ?? 0) > 0) ?? all[0]
}

export function containerPort(c: Container | undefined): number {
  return c?.ports?.[0]?.containerPort ?? DEFAULT_CONTAINER_PORT
}

/**
 * The probe to run: httpGet or tcpSocket. Knative allows them only on the serving port, so they are
 * run against the port requests use; an exec probe cannot run from outside, so it falls back to a
 * TCP connect like no probe at all.
 */
export function readinessProbe(c: Container | undefined): ReadinessProbe | undefined {
  const p = c?.readinessProbe
  return p?.httpGet || p?.tcpSocket ? p : undefined
}

/** The variables Knative sets in every revision's containers, with PORT the serving port. */
export function knativeEnv(rev: Revision, port: number): Record<string, string> {
  const labels = rev.metadata.labels ?? {}
  return {
    K_REVISION: rev.metadata.name,
    K_CONFIGURATION: labels['serving.knative.dev/configuration'] ?? '',
    K_SERVICE: labels['serving.knative.dev/service'] ?? '',
    PORT: String(port),
  }
}

/** The serving container's plain `env` values, for a local process (valueFrom needs a cluster). */
export function containerEnv(rev: Revision): Record<string, string> {
  const out: Record<string, string> = {}
  for (const e of servingContainer(rev)?.env ?? []) if (typeof e.value === 'string') out[e.name] = e.value
  return out
}
