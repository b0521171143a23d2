// Keeps the snapshot in step with the store and tells everything that follows it, in one defined
// order. Two paths feed it: EndpointSlice changes on a microtask (a pod becoming ready reaches a held
// request at once), and every other change grouped once per setImmediate turn (which then leaves
// out the EndpointSlices already applied, so each is compiled once). After each compile the new
// snapshot is published to the subscribers in SUBSCRIBER_ORDER, whatever order they subscribed in.
import type { Logger } from 'pino'
import { LiveCompiler } from '../compile/live.ts'
import type { CompileOptions } from '../compile/snapshot.ts'
import type { Snapshot } from '../model/snapshot.ts'
import { formatProblem } from '../model/problems.ts'
import { coded } from '../errors.ts'
import { withoutKind } from '../sources/store.ts'
import type { ObjectStore, StoreChanges } from '../sources/store.ts'

/**
 * Who follows the snapshot, in the order they hear of a new one:
 * 0. `cold-starts`: notes the moment a revision waiting for a pod has one (admin/cold-starts.ts). It
 *    only reads a clock, so it goes first: the time is the snapshot's, not after the data plane's work;
 * 1. `data-plane`: the routing table and the throttlers' pods, first, so a request that arrives while
 *    the others run is already routed by the new snapshot;
 * 2. `certificates`: the TLS listeners' SNI table (and, in the files source, every TLS Secret);
 * 3. `slot-broker`: the primary's throttlers for containerConcurrency > 0 revisions (--workers);
 * 4. `status-writer`: KIngress status, which must describe what the data plane already serves;
 * 5. `replica-share`: this replica's share of pod capacity, from the gateway's own EndpointSlices;
 * 6. `revision-health`: (cluster mode) a revision that has a ready endpoint again is not failing.
 */
export const SUBSCRIBER_ORDER = ['cold-starts', 'data-plane', 'certificates', 'slot-broker', 'status-writer', 'replica-share', 'revision-health'] as const
export type SubscriberName = (typeof SUBSCRIBER_ORDER)[number]

export interface Publication {
  readonly snapshot: Snapshot
  /** Backend keys that differ from the previous snapshot; undefined after a full compile (any may). */
  readonly changedBackends: ReadonlySet<string> | undefined
  /** Only EndpointSlices changed (the microtask path). */
  readonly endpointsOnly: boolean
}

export type Subscriber = (p: Publication) => void

export interface PublisherOptions {
  log: Logger
  /** Each compile's outcome, for edge_config_reloads_total. */
  onCompiled?: (ok: boolean) => void
}

export class SnapshotPublisher {
  private readonly live: LiveCompiler
  private readonly opts: PublisherOptions
  private readonly subscribers: Array<Subscriber | undefined> = SUBSCRIBER_ORDER.map(() => undefined)
  private current: Snapshot

  constructor(store: ObjectStore, compile: CompileOptions, opts: PublisherOptions) {
    this.opts = opts
    this.live = new LiveCompiler(store, compile)
    this.current = this.live.full().snapshot
    store.onChange((changes) => {
      const rest = withoutKind(changes, 'EndpointSlice')
      if (rest) this.apply(rest, false)
    })
    store.onChangeSoon(['EndpointSlice'], (changes) => this.apply(changes, true))
  }

  get snapshot(): Snapshot {
    return this.current
  }

  /** One subscriber per name; it hears of every snapshot from now on, in SUBSCRIBER_ORDER. */
  subscribe(name: SubscriberName, fn: Subscriber): void {
    const i = SUBSCRIBER_ORDER.indexOf(name)
    if (this.subscribers[i]) throw new Error(`a ${name} subscriber is already registered`)
    this.subscribers[i] = fn
  }

  /** Compiles the whole store again and publishes the result (start-up, tests). */
  full(): Snapshot {
    this.apply(undefined, false)
    return this.current
  }

  /** New compile options (config-network, config-domain): the whole store again, published as usual. */
  reconfigure(compile: CompileOptions): Snapshot {
    this.apply(undefined, false, compile)
    return this.current
  }

  private apply(changes: StoreChanges | undefined, endpointsOnly: boolean, compile?: CompileOptions): void {
    let changedBackends: ReadonlySet<string> | undefined
    const before = this.current
    try {
      const r = compile ? this.live.reconfigure(compile) : changes ? this.live.update(changes) : this.live.full()
      this.current = r.snapshot
      changedBackends = r.changedBackends
      this.opts.onCompiled?.(true)
    } catch (err) {
      // Compile is total over valid objects; reaching here is a bug. Keep serving the last snapshot.
      this.opts.onCompiled?.(false)
      this.opts.log.error({ err }, coded('EDGE_ERR_COMPILE', 'compiling the configuration failed; the last snapshot stays in service'))
      return
    }
    const snap = this.current
    if (snap.problems !== before.problems) for (const p of snap.problems) this.opts.log.debug({ problem: p }, formatProblem(p))
    const p: Publication = { snapshot: snap, changedBackends, endpointsOnly }
    for (const fn of this.subscribers) fn?.(p)
  }
}
