// The front door's second stage: which route does this request take? Pure: the listener's side of
// the snapshot (public or every host), the Host, the path and the headers (Knative-Serving-Tag
// among them) choose a path and a split; or an answer says why there is none. A request that the
// gateway answers itself by its route (a redirect to https, Knative's network probe) is answered here.
import type { Snapshot } from '../model/snapshot.ts'
import type { ClientRequest } from './client.ts'
import { lookupHost, normaliseHostHeader } from './host.ts'
import type { Answer } from './reply.ts'
import { resolve } from './resolve.ts'
import type { Resolution } from './resolve.ts'
import { hostOf } from './screen.ts'

export type ListenerKind = 'public' | 'local'

/** The route a request takes, or the gateway's answer instead. */
export type Identified = Resolution | Answer

export function isAnswer(r: Identified): r is Answer {
  return (r as Answer).status !== undefined
}

/** After screen(): the Host is there and valid, and the target is a path. */
export function identify(snap: Snapshot, req: ClientRequest, listener: ListenerKind, secure: boolean): Identified {
  const rawHost = hostOf(req)!
  const entry = lookupHost(listener === 'public' ? snap.publicHosts : snap.localHosts, rawHost)
  if (!entry) return { status: 404, reason: 'host-not-found', detail: `no route for host ${normaliseHostHeader(rawHost)} on the ${listener} listener` }
  const url = req.url ?? '/'
  if (!secure && listener === 'public' && entry.ingress.httpOption === 'Redirected') {
    const location = `https://${normaliseHostHeader(rawHost) ?? entry.host}${url}`
    return { status: 301, reason: 'https-redirect', detail: `use ${location}`, headers: { location } }
  }
  const r = resolve(snap, entry, url, req.headers)
  if ('failure' in r) return { status: 404, reason: 'path-not-found', detail: `no path of host ${r.entry.host} matches ${url.split('?')[0]}` }
  const probe = req.headers['k-network-probe']
  return probe === undefined ? r : probeAnswer(probe, req.headers['k-network-hash'], r.entry.ingress.hash)
}

/**
 * Knative's network probe, answered as the activator answers it: the status prober learns that this
 * replica serves the ingress's current spec without waking a scaled-to-zero revision.
 */
function probeAnswer(probe: string | string[], sent: string | string[] | undefined, hash: string): Answer {
  if (probe !== 'probe') return { status: 400, reason: 'bad-request', detail: `unexpected K-Network-Probe value ${JSON.stringify(probe)}` }
  if (typeof sent !== 'string' || sent === '') return { status: 400, reason: 'bad-request', detail: 'a K-Network-Probe request needs a K-Network-Hash header' }
  return { status: 200, reason: 'probe', detail: 'probe ok', headers: { 'k-network-hash': sent === 'override' ? hash : sent } }
}
