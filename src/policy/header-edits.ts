// The headers an external authorizer hands back, checked once before any of them is used: for the
// request to the pod (allowed), or for the client's answer (denied). A name or value that is not
// valid HTTP, or one that would change how a message is framed or routed, is dropped, never sent: an
// authorizer is trusted with decisions, not with the gateway's framing.
import type { HeaderSet } from '../model/snapshot.ts'
import type { HeaderEdits } from '../dataplane/upstream-headers.ts'

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

/** Never set on the request to the pod by an authorizer: framing, hop-by-hop, and the gateway's own. */
const NOT_FOR_UPSTREAM = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'expect',
  'k-proxy-request', 'knative-serving-revision', 'knative-serving-namespace', 'k-original-host',
])

/** Never copied into the client's answer: framing and hop-by-hop (HTTP/2 refuses them), and the gateway's reason. */
const NOT_FOR_CLIENT = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'x-edge-reason'])

/** Valid HTTP, and not one of `banned`. */
function acceptable(lower: string, value: string, banned: ReadonlySet<string>): boolean {
  return TOKEN.test(lower) && FIELD_VALUE.test(value) && !banned.has(lower)
}

/** Collects an allowed check's changes to the request; `build()` is undefined when there are none. */
export class EditsBuilder {
  private readonly set: HeaderSet[] = []
  private readonly append: HeaderSet[] = []
  private readonly remove: string[] = []
  private readonly respond: HeaderSet[] = []

  /** `mode`: replace the client's header of that name (`set`), or add beside it (`append`). */
  upstream(name: string, value: string, mode: 'set' | 'append'): void {
    const lower = name.toLowerCase()
    if (!acceptable(lower, value, NOT_FOR_UPSTREAM)) return
    const list = mode === 'set' ? this.set : this.append
    if (mode === 'set') {
      // A later set of the same name wins, as in Envoy's header map.
      const at = list.findIndex((h) => h.lower === lower)
      if (at >= 0) list.splice(at, 1)
    }
    list.push({ lower, name: lower, value })
  }

  /** A client header the pod must not see (e.g. the credentials the authorizer consumed). */
  without(name: string): void {
    const lower = name.trim().toLowerCase()
    if (lower === '' || lower.startsWith(':') || lower === 'host') return
    if (!this.remove.includes(lower)) this.remove.push(lower)
  }

  /** A header for the client's response, when the pod's answer goes back. */
  toClient(name: string, value: string): void {
    const lower = name.toLowerCase()
    if (!acceptable(lower, value, NOT_FOR_CLIENT)) return
    const at = this.respond.findIndex((h) => h.lower === lower)
    if (at >= 0) this.respond.splice(at, 1)
    this.respond.push({ lower, name: lower, value })
  }

  build(): HeaderEdits | undefined {
    if (this.set.length + this.append.length + this.remove.length + this.respond.length === 0) return undefined
    return { set: this.set, append: this.append, remove: this.remove, respond: this.respond }
  }
}

/** A denial's headers for the client, as an answer carries them (a repeated name keeps every value). */
export class ClientHeaders {
  readonly headers: Record<string, string | string[]> = {}

  add(name: string, value: string, mode: 'set' | 'append'): void {
    const lower = name.toLowerCase()
    if (!acceptable(lower, value, NOT_FOR_CLIENT)) return
    const had = this.headers[lower]
    if (mode === 'set' || had === undefined) this.headers[lower] = value
    else this.headers[lower] = typeof had === 'string' ? [had, value] : [...had, value]
  }
}
