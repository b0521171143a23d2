// What the settings ConfigMaps say (issue 22), as overrides of the flags, environment and defaults:
//   config-edge-gateway (in --pod-namespace)      each key an option's flag name (`max-url-length`),
//                                                   for the options config.ts marks live;
//   config-network (in --knative-namespace)        Knative's keys that concern an ingress;
//   config-domain (in --knative-namespace)         the default domain (the key whose value is empty).
// Each value goes through the same parse and checks as its flag. A bad value is a problem and the
// key keeps its last good value; keys starting with `_` (the `_example` block) are skipped, as
// Knative does. Pure: the caller keeps the last good values and reports the problems.
import { gatewayOptions, parseOptionValue } from '../config.ts'
import type { GatewayConfig, OptionSpec } from '../config.ts'
import type { ConfigMap } from '../model/k8s.ts'
import { keyOf } from '../model/k8s.ts'
import { key as mapKey } from '../compile/validate-fields.ts'
import type { ConfigProblem } from '../model/problems.ts'
import type { ErrorCode } from '../errors.ts'
import type { SettingOverrides } from './live-settings.ts'

export const EDGE_CONFIGMAP = 'config-edge-gateway'
export const NETWORK_CONFIGMAP = 'config-network'
export const DOMAIN_CONFIGMAP = 'config-domain'
export const SETTINGS_CONFIGMAPS = [EDGE_CONFIGMAP, NETWORK_CONFIGMAP, DOMAIN_CONFIGMAP] as const

/** config-network's switch for TLS on cluster-local hosts: it needs a listener, not a setting. */
const CLUSTER_LOCAL_DOMAIN_TLS = 'cluster-local-domain-tls'

/** config-network keys the gateway reads, and the option each one sets. */
const NETWORK_KEYS: Readonly<Record<string, keyof GatewayConfig>> = {
  'system-internal-tls': 'systemInternalTls',
  'domain-template': 'domainTemplate',
  'tag-template': 'tagTemplate',
  'http-protocol': 'httpProtocol',
}

/** Options Knative's ConfigMaps own: config-edge-gateway points there instead of taking them. */
const KNATIVE_OWNED: ReadonlyMap<keyof GatewayConfig, string> = new Map([
  ['systemInternalTls', NETWORK_CONFIGMAP],
  ['domainTemplate', NETWORK_CONFIGMAP],
  ['tagTemplate', NETWORK_CONFIGMAP],
  ['httpProtocol', NETWORK_CONFIGMAP],
  ['domain', DOMAIN_CONFIGMAP],
])

/** The options config-edge-gateway may set: config.ts's live ones, in table order. */
export function liveOptions(): OptionSpec[] {
  return gatewayOptions().filter((o) => o.live === true)
}

export interface SettingsInput {
  /** Flags, environment and defaults. */
  base: GatewayConfig
  /** Every ConfigMap the sources hold with one of the settings names, in any namespace. */
  configMaps: readonly ConfigMap[]
  /** Where an object came from (a file, or `kubernetes`), for its problems. */
  sourceOf(cm: ConfigMap): string
  /** The overrides in effect before this read: a bad value keeps its key's last good one. */
  lastGood: SettingOverrides
}

export interface SettingsRead {
  overrides: SettingOverrides
  problems: ConfigProblem[]
}

export function readSettingsConfigMaps(input: SettingsInput): SettingsRead {
  const { base } = input
  const out: SettingsRead = { overrides: {}, problems: [] }
  const homes: Record<string, string> = { [EDGE_CONFIGMAP]: base.podNamespace, [NETWORK_CONFIGMAP]: base.knativeNamespace, [DOMAIN_CONFIGMAP]: base.knativeNamespace }
  for (const cm of input.configMaps) {
    const name = cm.metadata.name
    const home = homes[name]
    if (home === undefined) continue
    const at = new Reader(input, cm, out)
    if ((cm.metadata.namespace ?? 'default') !== home) {
      const option = name === EDGE_CONFIGMAP ? '--pod-namespace' : '--knative-namespace'
      at.problem('metadata.namespace', `${name} is read from namespace ${home} (${option}), not ${cm.metadata.namespace ?? 'default'}; move it there`, 'EDGE_ERR_CONFIGMAP_NAMESPACE')
      continue
    }
    if (name === EDGE_CONFIGMAP) at.gatewayKeys()
    else if (name === NETWORK_CONFIGMAP) at.networkKeys()
    else at.domainKeys()
  }
  return out
}

/** Reads one ConfigMap's data into the overrides, reporting what it cannot take. */
class Reader {
  private readonly input: SettingsInput
  private readonly cm: ConfigMap
  private readonly out: SettingsRead
  private readonly options: ReadonlyMap<string, OptionSpec>

  constructor(input: SettingsInput, cm: ConfigMap, out: SettingsRead) {
    this.input = input
    this.cm = cm
    this.out = out
    this.options = new Map(gatewayOptions().map((o) => [o.flag, o]))
  }

  /** Keys without the `_example` notes; `withEmpty` false: an empty value is the same as no key. */
  private entries(withEmpty = false): Array<[string, string]> {
    return Object.entries(this.cm.data ?? {}).filter(([k, v]) => !k.startsWith('_') && (withEmpty || v !== ''))
  }

  gatewayKeys(): void {
    for (const [key, raw] of this.entries()) {
      const spec = this.options.get(key.replace(/^--?/, ''))
      if (!spec) {
        this.problem(dataField(key), `"${key}" is not an option of the gateway; a key is an option's name without its leading dashes (e.g. max-url-length), as listed under _example`, 'EDGE_ERR_CONFIGMAP_KEY')
        continue
      }
      if (key !== spec.flag) {
        this.problem(dataField(key), `write the key as "${spec.flag}", without the leading dashes`, 'EDGE_ERR_CONFIGMAP_KEY')
        continue
      }
      const owner = KNATIVE_OWNED.get(spec.key)
      if (owner) {
        this.problem(dataField(key), `${key} is Knative's setting: set it in ${owner} in namespace ${this.input.base.knativeNamespace} (or by --${spec.flag}); this value is not applied`, 'EDGE_ERR_CONFIGMAP_RESTART')
        continue
      }
      if (!spec.live) {
        this.problem(dataField(key), `${key} is read only at start: set --${spec.flag} or ${spec.env} (the chart's values) and restart the gateway; this value is not applied`, 'EDGE_ERR_CONFIGMAP_RESTART')
        continue
      }
      this.take(key, spec.key, () => parseOptionValue(spec, raw, key))
    }
  }

  networkKeys(): void {
    for (const [key, raw] of this.entries()) {
      if (key === CLUSTER_LOCAL_DOMAIN_TLS) {
        this.clusterLocalDomainTls(key, raw)
        continue
      }
      const setting = NETWORK_KEYS[key]
      // config-network holds keys for every Knative component: only the ingress's are read.
      if (setting === undefined) continue
      if (setting === 'systemInternalTls') this.take(key, setting, () => enabledOrDisabled(key, raw))
      else {
        const spec = gatewayOptions().find((o) => o.key === setting)!
        this.take(key, setting, () => parseOptionValue(spec, raw, key))
      }
    }
  }

  /**
   * cluster-local-domain-tls: Serving then puts certificates for cluster-local hosts in the KIngress,
   * which only a cluster-local TLS listener can serve. That listener starts with the gateway (the
   * chart always gives it one); without it, enabling this is a change the gateway cannot follow.
   */
  private clusterLocalDomainTls(key: string, raw: string): void {
    let on: boolean
    try {
      on = enabledOrDisabled(key, raw)
    } catch (err) {
      this.problem(dataField(key), (err as Error).message, 'EDGE_ERR_CONFIGMAP_VALUE')
      return
    }
    if (on && this.input.base.localHttpsPort === undefined) {
      this.problem(dataField(key), 'cluster-local-domain-tls is enabled, but this gateway has no cluster-local TLS listener, so cluster-local hosts are served in plain HTTP only: start it with --local-https-port N (EDGE_LOCAL_HTTPS_PORT; the chart sets ports.localHttps) and restart', 'EDGE_ERR_CONFIGMAP_RESTART')
    }
  }

  /** Serving's config-domain: `domain: ""` is the default domain; a selector scopes one to labels. */
  domainKeys(): void {
    const plain: string[] = []
    for (const [key, raw] of this.entries(true)) {
      if (raw.trim() === '') plain.push(key)
      else this.problem(dataField(key), `domains chosen by a label selector are not supported: every Route gets the default domain (the key with an empty value)`, 'EDGE_ERR_CONFIGMAP_KEY')
    }
    // Knative's default install leaves the domain to a value such as `example.com: ""`; with several,
    // the first in order is taken, the same on every replica.
    const chosen = plain.sort()[0]
    if (chosen !== undefined) this.out.overrides.domain = chosen
  }

  /** A value that parsed is taken; one that did not keeps the last good value, which the problem names. */
  private take(key: string, setting: keyof GatewayConfig, parse: () => unknown): void {
    try {
      ;(this.out.overrides as Record<string, unknown>)[setting] = parse()
    } catch (err) {
      const last = this.input.lastGood[setting]
      const kept = last !== undefined ? `the last good value ${show(last)} stays in effect` : `${show(this.input.base[setting])} (from the flag, environment or default) stays in effect`
      if (last !== undefined) (this.out.overrides as Record<string, unknown>)[setting] = last
      this.problem(dataField(key), `${(err as Error).message}; ${kept}`, 'EDGE_ERR_CONFIGMAP_VALUE')
    }
  }

  problem(field: string, reason: string, code: ErrorCode): void {
    this.out.problems.push({ source: this.input.sourceOf(this.cm), object: `ConfigMap ${keyOf(this.cm.metadata)}`, field, reason, code })
  }
}

/** config-network's switches: `enabled` or `disabled`, in any case, as Knative reads them. */
function enabledOrDisabled(key: string, raw: string): boolean {
  const v = raw.trim().toLowerCase()
  if (v === 'enabled') return true
  if (v === 'disabled') return false
  throw new Error(`${key}: expected "enabled" or "disabled", got ${JSON.stringify(raw)}`)
}

/** `data["max-url-length"]`, as every problem names a map key's field. */
function dataField(name: string): string {
  return `data${mapKey(name)}`
}

function show(v: unknown): string {
  return v === undefined ? 'unset' : JSON.stringify(v)
}
