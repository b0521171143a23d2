// Follows the settings ConfigMaps in the store, whichever source put them there (a manifest file, or
// an informer): after each change that touches a ConfigMap the settings are read again, installed
// (LiveSettings tells the parts that follow them), and their problems are reported: in the log, once
// each, and in the store, so /debug/routes lists them with every other configuration problem.
import type { Logger } from 'pino'
import type { ConfigMap } from '../model/k8s.ts'
import { formatProblem } from '../model/problems.ts'
import type { ObjectStore } from '../sources/store.ts'
import { SETTINGS_CONFIGMAPS, readSettingsConfigMaps } from './configmaps.ts'
import { differs } from './live-settings.ts'
import type { LiveSettings } from './live-settings.ts'

/** The store source the settings problems are filed under. */
export const SETTINGS_SOURCE = 'settings'

export class SettingsFollower {
  private readonly store: ObjectStore
  private readonly settings: LiveSettings
  private readonly log: Logger
  private reported = new Set<string>()
  private unsubscribe: (() => void) | undefined

  constructor(store: ObjectStore, settings: LiveSettings, log: Logger) {
    this.store = store
    this.settings = settings
    this.log = log
  }

  /** Reads the ConfigMaps now, then again after every store change that touches one. */
  start(): void {
    this.unsubscribe = this.store.onChange((changes) => {
      for (const c of changes.objects.values()) {
        if (c.kind !== 'ConfigMap') continue
        this.refresh()
        return
      }
    })
    this.refresh()
  }

  stop(): void {
    this.unsubscribe?.()
  }

  refresh(): void {
    const configMaps = this.store.list('ConfigMap').filter((cm) => (SETTINGS_CONFIGMAPS as readonly string[]).includes(cm.metadata.name))
    const prev = this.settings.current
    const read = readSettingsConfigMaps({
      base: this.settings.base,
      configMaps,
      sourceOf: (cm: ConfigMap) => this.store.ownerOf('ConfigMap', `${cm.metadata.namespace ?? 'default'}/${cm.metadata.name}`) ?? 'kubernetes',
      lastGood: this.settings.overrides,
    })
    this.settings.override(read.overrides)
    const next = this.settings.current
    const moved = (Object.keys(next) as Array<keyof typeof next>).filter((k) => differs(prev, next, [k]))
    if (moved.length > 0) this.log.info({ settings: Object.fromEntries(moved.map((k) => [k, next[k] ?? null])) }, 'settings changed by ConfigMap')
    const now = new Set(read.problems.map(formatProblem))
    for (const p of read.problems) if (!this.reported.has(formatProblem(p))) this.log.error({ problem: p }, formatProblem(p))
    if (now.size !== this.reported.size || [...now].some((p) => !this.reported.has(p))) this.store.setProblems(SETTINGS_SOURCE, read.problems)
    this.reported = now
  }

  /** For /debug/routes: what the ConfigMaps set now. */
  describe(): Record<string, unknown> {
    return { configMaps: [...SETTINGS_CONFIGMAPS], overrides: this.settings.overrides }
  }
}
