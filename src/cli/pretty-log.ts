// Log lines for a person at a terminal. pino still builds each line (levels, redaction, the PEM
// scrub all happen there, before this sees it); this destination only re-sets the JSON as
//   12:03:04.123 INFO  manifest loaded  file=hello.yaml objects=4
// with an error's stack on the lines below. A few dozen lines of our own rather than pino-pretty,
// measured (Node 24, 30 starts each, median to the first line): pino's JSON 68 ms, this 70 ms,
// pino-pretty as a stream 94 ms (its 13 dependencies), as a transport in a worker thread 166 ms;
// every --workers process pays it again.
import { styleText } from 'node:util'
import { pino } from 'pino'

type Style = Parameters<typeof styleText>[0]

const LEVELS: Record<number, { name: string; style: Style }> = {
  10: { name: 'TRACE', style: 'gray' },
  20: { name: 'DEBUG', style: 'gray' },
  30: { name: 'INFO ', style: 'green' },
  40: { name: 'WARN ', style: 'yellow' },
  50: { name: 'ERROR', style: 'red' },
  60: { name: 'FATAL', style: ['bgRed', 'white'] },
}

/** Fields the line itself shows (time, level, message), never repeated as key=value. */
const SHOWN = new Set(['time', 'level', 'msg'])

/** `key=value` as a person reads it: plain strings bare unless they hold spaces, the rest as JSON. */
function field(key: string, value: unknown): string {
  const text = typeof value === 'string' ? (/^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)) : JSON.stringify(value)
  return `${key}=${text}`
}

function clock(ms: number): string {
  const d = new Date(ms)
  const two = (n: number): string => String(n).padStart(2, '0')
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`
}

/**
 * One pino JSON line as a person reads it. `paint(style, text)` colours (styleText, which leaves text
 * plain when the output is no terminal or NO_COLOR is set). A line that is not JSON passes unchanged.
 */
export function prettyLine(json: string, paint: (style: Style, text: string) => string = (s, t) => styleText(s, t)): string {
  let o: Record<string, unknown>
  try {
    o = JSON.parse(json) as Record<string, unknown>
  } catch {
    return json
  }
  const level = LEVELS[o.level as number] ?? { name: String(o.level).padEnd(5), style: 'white' }
  const parts = [paint('gray', clock(typeof o.time === 'number' ? o.time : Date.now())), paint(level.style, level.name), typeof o.msg === 'string' ? o.msg : '']
  const fields: string[] = []
  const stacks: string[] = []
  for (const [k, v] of Object.entries(o)) {
    if (SHOWN.has(k) || v === undefined) continue
    // A serialized Error ({ type, message, stack }): its message inline, its stack below the line.
    if (v !== null && typeof v === 'object' && typeof (v as { stack?: unknown }).stack === 'string') {
      const e = v as { message?: unknown; stack: string }
      fields.push(field(k, e.message ?? ''))
      stacks.push(e.stack.split('\n').map((l) => `    ${l}`).join('\n'))
      continue
    }
    fields.push(field(k, v))
  }
  let line = parts.join(' ')
  if (fields.length) line += '  ' + paint('cyan', fields.join(' '))
  for (const s of stacks) line += '\n' + paint('gray', s)
  return line + '\n'
}

/** A pino destination writing pretty lines to stdout, synchronously as pino's own does. */
export function prettyDestination(): { write(line: string): void } {
  const out = pino.destination({ fd: 1, sync: true })
  return { write: (line: string) => void out.write(prettyLine(line.endsWith('\n') ? line.slice(0, -1) : line)) }
}
