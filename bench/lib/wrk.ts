// Running wrk and reading its report: req/s, latency percentiles (µs resolution), failed requests.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pinnedOutput } from './procs.ts'
import type { LoadResult } from './rounds.ts'
import { toMB, toMs } from './units.ts'

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
  /** Send this method with a body of this many bytes instead of a GET. */
  method?: string
  bodyBytes?: number
}

export async function wrk(o: WrkOptions): Promise<LoadResult> {
  const args = ['-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--latency']
  for (const [k, v] of Object.entries({ ...(o.host ? { Host: o.host } : {}), ...o.headers })) args.push('-H', `${k}: ${v}`)
  // A script only when needed: any Lua callback per request slows wrk down.
  const lua: string[] = []
  if (o.method) lua.push(`wrk.method = "${o.method}"`)
  if (o.bodyBytes !== undefined) {
    // Set once, globally: wrk builds the request a single time and sends it over and over.
    lua.push(`wrk.body = string.rep("x", ${o.bodyBytes})`, `wrk.headers["Content-Type"] = "application/octet-stream"`)
  }
  if (o.delayMs !== undefined) {
    // Extended percentiles, and a random think time per request (LuaJIT's math.random(m, n) is
    // an integer in [m, n], from the same seed every run).
    lua.push(
      `function delay() return math.random(0, ${2 * o.delayMs}) end`,
      `done = function(summary, latency, requests)
  io.write(string.format("P999 %d\\n", latency:percentile(99.9)))
end`,
    )
  }
  if (lua.length > 0) {
    const script = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wrk-')), 'bench.lua')
    fs.writeFileSync(script, lua.join('\n') + '\n')
    args.push('-s', script)
  }
  args.push(o.url)
  const out = await pinnedOutput(o.cpu, 'wrk', args, (o.seconds + 30) * 1000)
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)`, 'm').exec(out)
    return m ? toMs(m[1]!, m[2]!) : NaN
  }
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN)
  const tr = /Transfer\/sec:\s+([\d.]+)(KB|MB|GB|B)/.exec(out)
  const mbps = tr ? toMB(tr[1]!, tr[2]!) : NaN
  // wrk counts statuses above 399 as "Non-2xx or 3xx responses" (a 3xx is not among them: the
  // bench's probe checks one answer of each target for a 200 before its rounds).
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0)
  const socket = /Socket errors:.*?connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const errors = non2xx + (socket?.slice(1).reduce((a, b) => a + Number(b), 0) ?? 0)
  const errorDetail = out
    .split('\n')
    .filter((l) => /Non-2xx|Socket errors/.test(l))
    .map((l) => l.trim())
    .join('; ')
  const p999us = /P999 (\d+)/.exec(out)?.[1]
  const latencyAvg = /^\s+Latency\s+([\d.]+)(us|ms|s)/m.exec(out)
  return {
    rps,
    mean: latencyAvg ? toMs(latencyAvg[1]!, latencyAvg[2]!) : NaN,
    p50: pct('50'),
    p90: pct('90'),
    p99: pct('99'),
    p999: p999us ? Number(p999us) / 1000 : NaN,
    mbps,
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN),
    errors,
    errorDetail,
  }
}
