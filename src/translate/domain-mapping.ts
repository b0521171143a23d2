// DomainMapping → KIngress, shaped as Knative Serving's domainmapping reconciler builds it
// (kingress-contract.md §1.9): the custom host is proxied to the target's cluster-local host through
// the target's placeholder Service, and K-Original-Host lets queue-proxy restore the custom host.
import { HEADER_ORIGINAL_HOST } from '../model/k8s.ts'
import type { DomainMapping, KIngress } from '../model/k8s.ts'
import { ConfigError } from '../model/problems.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { ErrorCode } from '../errors.ts'
import { httpOptionFrom, ingressAnnotations, isProblem } from './options.ts'
import type { TranslateOptions } from './options.ts'

export const LABEL_DOMAIN_MAPPING_UID = 'serving.knative.dev/domainMappingUID'
export const LABEL_DOMAIN_MAPPING_NAMESPACE = 'serving.knative.dev/domainMappingNamespace'

// Targets Serving can resolve to a `{name}.{ns}.svc.<cluster domain>` address with a Service of the
// same name: a Knative Service and a Route (both serving.knative.dev/v1).
const SERVING_API_VERSION = 'serving.knative.dev/v1'
const ACCEPTED_REF_KINDS = new Set(['Service', 'Route'])

// The placeholder Service's port (Serving's MakeK8sService names it http2, port 80).
const PLACEHOLDER_SERVICE_PORT = 80

/** Throws ConfigError (source '') listing every problem found. */
export function domainMappingToIngress(dm: DomainMapping, opts: TranslateOptions): KIngress {
  const host = dm.metadata.name
  const ns = dm.metadata.namespace ?? 'default'
  const object = `DomainMapping ${ns}/${host}`
  const problems: ConfigProblem[] = []
  const report = (field: string, reason: string, code: ErrorCode) => problems.push({ source: '', object, field, reason, code })

  const httpOption = httpOptionFrom(dm.metadata.annotations, object, opts.httpProtocol)
  if (isProblem(httpOption)) problems.push(httpOption)

  const ref = dm.spec?.ref
  if (typeof ref !== 'object' || ref === null) {
    report('spec.ref', 'spec.ref is required: point it at a Knative Service or Route, e.g. {kind: Service, name: hello, apiVersion: serving.knative.dev/v1}', 'EDGE_ERR_DOMAIN_MAPPING_REF')
    throw new ConfigError(problems)
  }
  if (!ACCEPTED_REF_KINDS.has(ref.kind)) {
    report('spec.ref.kind', `kind ${JSON.stringify(ref.kind)} cannot be a DomainMapping target here; use kind Service (a Knative Service) or Route`, 'EDGE_ERR_DOMAIN_MAPPING_REF')
  }
  if (ref.apiVersion != null && ref.apiVersion !== SERVING_API_VERSION) {
    report('spec.ref.apiVersion', `apiVersion ${JSON.stringify(ref.apiVersion)} is not ${SERVING_API_VERSION}; a DomainMapping targets a Knative Service or Route, not a core Service`, 'EDGE_ERR_DOMAIN_MAPPING_REF')
  }
  if (typeof ref.name !== 'string' || ref.name === '') {
    report('spec.ref.name', 'spec.ref.name is required: the name of the Knative Service or Route to map the domain to', 'EDGE_ERR_DOMAIN_MAPPING_REF')
  }
  if (ref.namespace != null && ref.namespace !== '' && ref.namespace !== ns) {
    report('spec.ref.namespace', `the target is in namespace ${JSON.stringify(ref.namespace)} but the DomainMapping is in "${ns}"; Knative requires the same namespace, so create the DomainMapping in "${ref.namespace}"`, 'EDGE_ERR_DOMAIN_MAPPING_REF')
  }
  const secretName = dm.spec.tls?.secretName
  if (dm.spec.tls != null && (typeof secretName !== 'string' || secretName === '')) {
    report('spec.tls.secretName', 'spec.tls.secretName is required when spec.tls is set: name a kubernetes.io/tls Secret in the same namespace', 'EDGE_ERR_DOMAIN_MAPPING_TLS')
  }
  if (problems.length > 0 || isProblem(httpOption)) throw new ConfigError(problems)

  const labels: Record<string, string> = { [LABEL_DOMAIN_MAPPING_NAMESPACE]: ns }
  if (dm.metadata.uid) labels[LABEL_DOMAIN_MAPPING_UID] = dm.metadata.uid

  return {
    apiVersion: 'networking.internal.knative.dev/v1alpha1',
    kind: 'Ingress',
    metadata: { name: host, namespace: ns, labels, annotations: ingressAnnotations(dm.metadata.annotations, opts.ingressClass) },
    spec: {
      ...(secretName ? { tls: [{ hosts: [host], secretName, secretNamespace: ns }] } : {}),
      rules: [
        {
          hosts: [host],
          visibility: 'ExternalIP',
          http: {
            paths: [
              {
                rewriteHost: `${ref.name}.${ns}.svc.${opts.clusterDomain}`,
                splits: [
                  {
                    serviceNamespace: ns,
                    serviceName: ref.name,
                    servicePort: PLACEHOLDER_SERVICE_PORT,
                    percent: 100,
                    appendHeaders: { [HEADER_ORIGINAL_HOST]: host },
                  },
                ],
              },
            ],
          },
        },
      ],
      httpOption,
    },
  }
}
