// The settings that may change while the gateway runs (issue 22): one frozen GatewayConfig, swapped
// whole when a ConfigMap changes, as the config pipeline swaps the snapshot. A part that follows a
// setting reads `current` when it needs it, or is told of each change with the settings before it,
// so it can tell what moved. Which options change at run time is the `live` column of config.ts.
import type { GatewayConfig } from '../config.ts'

/** Values set by ConfigMaps, over the flags, environment and defaults (the base). */
export type SettingOverrides = Partial<GatewayConfig>

export type SettingsListener = (next: GatewayConfig, prev: GatewayConfig) => void

export class LiveSettings {
  /** Flags, environment and defaults: what a key removed from every ConfigMap falls back to. */
  readonly base: GatewayConfig
  private value: GatewayConfig
  private overriding: SettingOverrides = {}
  private readonly listeners: SettingsListener[] = []

  constructor(base: GatewayConfig) {
    this.base = Object.freeze({ ...base })
    this.value = this.base
  }

  get current(): GatewayConfig {
    return this.value
  }

  /** What the ConfigMaps set now (sent to --workers, shown in /debug/routes). */
  get overrides(): SettingOverrides {
    return this.overriding
  }

  /** Told of every change after it is installed, in the order of subscription. */
  onChange(fn: SettingsListener): void {
    this.listeners.push(fn)
  }

  /** The base with these overrides becomes current; listeners hear of it only when a value moved. */
  override(overrides: SettingOverrides): void {
    const next = Object.freeze({ ...this.base, ...overrides })
    const prev = this.value
    this.overriding = overrides
    if (!differs(prev, next)) return
    this.value = next
    for (const fn of this.listeners) fn(next, prev)
  }
}

/** Whether any of `keys` (all when none named) has another value in `a` than in `b`; lists by content. */
export function differs(a: GatewayConfig, b: GatewayConfig, keys?: ReadonlyArray<keyof GatewayConfig>): boolean {
  for (const k of keys ?? (Object.keys(b) as Array<keyof GatewayConfig>)) {
    const x = a[k]
    const y = b[k]
    if (x === y) continue
    if (Array.isArray(x) && Array.isArray(y) && x.length === y.length && x.every((v, i) => v === y[i])) continue
    return true
  }
  return false
}
