// `networking.internal.knative.dev/tag-to-host` (Knative Serving 1.22, knative/serving#16455): on a
// KIngress made from a Route with traffic tags, a JSON map from each tag to its hosts, one per
// visibility (`{"candidate":["candidate-hello.default.svc.cluster.local","candidate-hello.default.example.com"]}`).
// It changes no routing: the tag's rules and the Knative-Serving-Tag header paths are in the spec as
// before. It says which rules belong to which tag, which the hosts alone only tell by reverse-parsing
// the tag template; net-gateway-api labels its HTTPRoutes with it. The gateway names each host's tag
// in /debug/routes. Pure; docs/architecture.md has the sources.
import { ANN_TAG_TO_HOST } from '../model/k8s.ts'

export const TAG_TO_HOST_FIELD = `metadata.annotations["${ANN_TAG_TO_HOST}"]`

/** Host → its traffic tag. */
export type TagsByHost = ReadonlyMap<string, string>

const NONE: TagsByHost = new Map()

/**
 * The hosts' tags from the annotation (hosts spelt as `normalise` spells rule hosts); no annotation:
 * none. A malformed value or a host two tags name is returned as a sentence saying what is wrong:
 * the caller serves the ingress anyway (the annotation is only information).
 */
export function tagsByHost(annotations: Readonly<Record<string, string>> | undefined, normalise: (host: string) => string): TagsByHost | string {
  const text = annotations?.[ANN_TAG_TO_HOST]
  if (text === undefined || text === '') return NONE
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return `${abbreviate(text)} is not JSON; Knative Serving writes a map from each traffic tag to its hosts, e.g. {"candidate":["candidate-hello.default.example.com"]}`
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return `expected a JSON map from each traffic tag to a list of its hosts, got ${abbreviate(text)}`
  }
  const out = new Map<string, string>()
  for (const [tag, hosts] of Object.entries(parsed)) {
    if (tag === '') return 'a tag name is empty; the default target has no tag and is not listed'
    if (!Array.isArray(hosts) || hosts.some((h) => typeof h !== 'string' || h === '')) {
      return `tag ${JSON.stringify(tag)} must map to a list of host names, got ${abbreviate(JSON.stringify(hosts))}`
    }
    for (const raw of hosts as string[]) {
      const host = normalise(raw)
      const other = out.get(host)
      if (other !== undefined && other !== tag) return `host ${host} is listed under tags ${JSON.stringify(other)} and ${JSON.stringify(tag)}; a host belongs to one tag`
      out.set(host, tag)
    }
  }
  return out
}

/** Hosts the annotation names that no rule of the ingress serves: said, since a tag's host is then wrong. */
export function unservedTagHosts(tags: TagsByHost, hosts: readonly string[]): string[] {
  const out: string[] = []
  for (const host of tags.keys()) if (!hosts.includes(host)) out.push(host)
  return out
}

function abbreviate(text: string): string {
  return text.length > 80 ? `${JSON.stringify(text.slice(0, 77))}...` : JSON.stringify(text)
}
