// The `_example` block of the chart's config-edge-gateway ConfigMap: every option that may change at
// run time, with its help, bounds and default, as Knative documents its own ConfigMaps for whoever
// runs `kubectl edit`. Made from config.ts's table, so it cannot drift: test/chart.test.ts compares
// the chart's copy with this text, and `npx node src/settings/example.ts --write` rewrites it.
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { OptionSpec } from '../config.ts'
import { EDGE_CONFIGMAP, liveOptions } from './configmaps.ts'

/** Where the chart keeps the text (its template reads it with .Files.Get). */
export const EXAMPLE_FILE = 'charts/edge-gateway/files/config-edge-gateway-example.txt'

const WIDTH = 96

export function settingsExample(): string {
  const lines = [
    '################################',
    '#                              #',
    '#    EXAMPLE CONFIGURATION     #',
    '#                              #',
    '################################',
    '',
    `# This block is not configuration: it lists every key ${EDGE_CONFIGMAP} takes, each with its`,
    '# default. Copy a key out of this block into data (unindented) to change the setting; the',
    '# gateway applies it without a restart. A key removed from data falls back to the flag or',
    '# environment variable (the chart\'s values), then to the default. An empty value is no value.',
    '# A bad value is reported (log, /debug/routes problems) and the last good one stays.',
  ]
  for (const o of liveOptions()) {
    lines.push('')
    for (const l of wrap(`${o.help}${bounds(o)}`)) lines.push(`# ${l}`)
    lines.push(`${o.flag}: ${JSON.stringify(defaultText(o))}`)
  }
  const text = lines.join('\n') + '\n'
  // The chart embeds the text in a Go template: template delimiters in a help text would break it.
  if (text.includes('{{')) throw new Error('an option help text contains {{, which the chart template cannot hold')
  return text
}

function bounds(o: OptionSpec): string {
  if (o.min !== undefined && o.max !== undefined) return ` (${o.min} to ${o.max})`
  // Every count and time is at least 0: only a higher floor is worth saying.
  if (o.min !== undefined && o.min > 0) return ` (at least ${o.min})`
  return ''
}

/** The default as the ConfigMap writes it; an option unset by default is the empty string. */
function defaultText(o: OptionSpec): string {
  const v = o.def({})
  if (v === undefined) return ''
  if (Array.isArray(v)) return v.join(',')
  return String(v)
}

function wrap(text: string): string[] {
  const out: string[] = []
  let line = ''
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > WIDTH) {
      out.push(line)
      line = word
    } else line = line === '' ? word : `${line} ${word}`
  }
  if (line !== '') out.push(line)
  return out
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--write')) {
  fs.writeFileSync(new URL(`../../${EXAMPLE_FILE}`, import.meta.url), settingsExample())
}
