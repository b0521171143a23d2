// Running wrk and reading its report: req/s and latency percentiles (µs resolution).
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { hasTaskset } from './procs.ts'

export interface WrkResult {
  rps: number
  p50: number
  p90: number
  p99: number
  p999: number
  /** MB/s transferred */
  mbps: number
  errors: number
}

export interface WrkOptions {
  url: string
  host?: string
  headers?: Record<string, string>
  connections: number
  seconds: number
  cpu?: number
  /**
   * Pace each connection: after each response it waits a random 0..2×`delayMs` ms (mean `delayMs`)
   * before the next request, an approximately fixed rate with arrivals spread out. A constant
   * think time would keep every connection in the phase they all started in, so the requests
   * would arrive in bursts of one per connection.
   */
  delayMs?: number
}

function toMs(v: string, unit: string): number {
  const n = Number(v)
  return unit === 'us' ? n / 1000 : unit === 's' ? n * 1000 : n
}

export async function wrk(o: WrkOptions): Promise<WrkResult> {
  const args = ['-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--latency']
  for (const [k, v] of Object.entries({ ...(o.host ? { Host: o.host } : {}), ...o.headers })) args.push('-H', `${k}: ${v}`)
  let script: string | undefined
  if (o.delayMs !== undefined) {
    script = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wrk-')), 'pace.lua')
    // Extended percentiles, and a random think time per request (LuaJIT's math.random(m, n) is
    // an integer in [m, n], from the same seed every run).
    fs.writeFileSync(
      script,
      `function delay() return math.random(0, ${2 * o.delayMs}) end
done = function(summary, latency, requests)
  io.write(string.format("P999 %d\\n", latency:percentile(99.9)))
end\n`,
    )
    args.push('-s', script)
  }
  args.push(o.url)
  const [cmd, argv] = o.cpu !== undefined && hasTaskset ? ['taskset', ['-c', String(o.cpu), 'wrk', ...args]] : ['wrk', args]
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(cmd, argv as string[])
    let s = ''
    p.stdout.on('data', (c) => (s += c))
    p.stderr.on('data', (c) => (s += c))
    p.on('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`wrk failed: ${s}`))))
  })
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out)
    return m ? toMs(m[1]!, m[2]!) : NaN
  }
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN)
  const tr = /Transfer\/sec:\s+([\d.]+)(KB|MB|GB|B)/.exec(out)
  const mbps = tr ? Number(tr[1]) * ({ B: 1 / 1e6, KB: 1 / 1024, MB: 1, GB: 1024 } as Record<string, number>)[tr[2]!]! : NaN
  const errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0) + Number(/Socket errors:.*?connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)?.slice(1).reduce((a, b) => a + Number(b), 0) ?? 0)
  const p999us = /P999 (\d+)/.exec(out)?.[1]
  return { rps, p50: pct('50'), p90: pct('90'), p99: pct('99'), p999: p999us ? Number(p999us) / 1000 : NaN, mbps, errors }
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
