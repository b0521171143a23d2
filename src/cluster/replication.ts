// Store replication from the primary to its workers. The primary forwards every write the moment it
// happens (coalesced per microtask), so a pod that becomes ready reaches the workers' throttlers
// without waiting for a recompile in the primary.
import type { Worker } from 'node:cluster'
import type { Kind, KubeObject } from '../model/k8s.ts'
import { KINDS } from '../model/k8s.ts'
import type { ObjectStore } from '../sources/store.ts'
import type { ToWorker } from './protocol.ts'

export const REPLICA_SOURCE = 'primary'

/** Primary side: sends the whole store to a new worker, then every change to every worker. */
export class StoreReplicator {
  private readonly store: ObjectStore
  private readonly workers = new Set<Worker>()

  constructor(store: ObjectStore) {
    this.store = store
    store.onChangeSoon(KINDS, (changes) => {
      if (this.workers.size === 0) return
      const msg: ToWorker = { t: 'store', upsert: [], remove: [] }
      for (const c of changes.objects.values()) {
        const obj = store.get(c.kind, c.key)
        if (obj) msg.upsert.push(obj)
        else msg.remove.push([c.kind, c.key])
      }
      for (const w of this.workers) send(w, msg)
    })
  }

  add(worker: Worker): void {
    this.workers.add(worker)
    const all: KubeObject[] = []
    for (const k of KINDS) all.push(...this.store.list(k))
    send(worker, { t: 'store', upsert: all, remove: [] })
  }

  delete(worker: Worker): void {
    this.workers.delete(worker)
  }
}

/** Worker side: applies the primary's writes to the local store in one batch per message. */
export function applyReplica(store: ObjectStore, msg: Extract<ToWorker, { t: 'store' }>): void {
  store.batch(() => {
    for (const [kind, key] of msg.remove) store.remove(kind as Kind, key, REPLICA_SOURCE)
    for (const obj of msg.upsert) store.upsert(obj, REPLICA_SOURCE)
  })
}

export function send(worker: Worker, msg: ToWorker): void {
  if (worker.isConnected()) worker.send(msg)
}
