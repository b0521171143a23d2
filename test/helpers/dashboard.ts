// The chart's Grafana dashboard as tests read it: its panels, the PromQL each one runs, and its
// template variables, with Grafana's variables replaced the way Grafana would for "All".
import fs from 'node:fs'
import path from 'node:path'
import { projectRoot } from './gateway-process.ts'

export const DASHBOARD_FILE = path.join(projectRoot, 'charts', 'edge-gateway', 'dashboards', 'edge-gateway.json')

export interface Target {
  refId: string
  expr: string
  legendFormat?: string
  datasource?: { type: string; uid: string }
}

export interface Panel {
  id: number
  type: string
  title: string
  datasource?: { type: string; uid: string }
  gridPos: { h: number; w: number; x: number; y: number }
  targets?: Target[]
  panels?: Panel[]
}

export interface Variable {
  name: string
  type: string
  query: string | { query: string }
  allValue?: string
}

export interface Dashboard {
  uid: string
  title: string
  panels: Panel[]
  templating: { list: Variable[] }
}

export function loadDashboard(text = fs.readFileSync(DASHBOARD_FILE, 'utf8')): Dashboard {
  return JSON.parse(text) as Dashboard
}

/** Every panel that shows data (rows left out, the panels of a collapsed row included). */
export function dataPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => (p.type === 'row' ? (p.panels ?? []) : [p]))
}

/**
 * `expr` as Grafana sends it with every multi-value variable at "All" (its allValue, `.*`) and the
 * rate interval at `rateInterval`.
 */
export function asPromQL(expr: string, d: Dashboard, rateInterval: string): string {
  let q = expr.replaceAll('$__rate_interval', rateInterval).replaceAll('$__interval', rateInterval)
  for (const v of d.templating.list) {
    if (v.type === 'query') q = q.replaceAll(`$${v.name}`, v.allValue ?? '.*')
  }
  if (/\$\w/.test(q)) throw new Error(`a variable the dashboard does not define is left in ${q}`)
  return q
}

/** A query variable's `label_values(<selector>, <label>)` as PromQL giving one series per value. */
export function variableQuery(v: Variable): { promql: string; label: string } {
  const text = typeof v.query === 'string' ? v.query : v.query.query
  const m = /^label_values\((.+),\s*(\w+)\)$/.exec(text.trim())
  if (!m) throw new Error(`variable ${v.name}: expected label_values(selector, label), got ${text}`)
  return { promql: `count by (${m[2]}) (${m[1]})`, label: m[2]! }
}
