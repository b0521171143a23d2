// Running h2load (nghttp2-client) and reading its report: req/s, mean latency (h2load reports no
// percentiles), failed requests, and the protocol it negotiated.
import { pinnedOutput } from './procs.ts'
import type { LoadResult } from './rounds.ts'
import { toMB, toMs } from './units.ts'

export interface H2loadOptions {
  /** Where to connect: 127.0.0.1 and a port. */
  port: number
  /** The authority (and TLS server name) to ask for; h2load connects to 127.0.0.1 whatever it is. */
  authority: string
  tls: boolean
  clients: number
  /** Concurrent streams per connection (HTTP/2). */
  streams: number
  seconds: number
  cpu?: number
}

export interface H2loadResult extends LoadResult {
  /** What h2load says it negotiated, e.g. `h2`, `h2c`, `http/1.1`. */
  protocol: string
}

export async function h2load(o: H2loadOptions): Promise<H2loadResult> {
  const args = ['-t1', `-c${o.clients}`, `-m${o.streams}`, '-D', String(o.seconds), '--connect-to', `127.0.0.1:${o.port}`]
  args.push(`${o.tls ? 'https' : 'http'}://${o.authority}:${o.port}/`)
  const out = await pinnedOutput(o.cpu, 'h2load', args, (o.seconds + 30) * 1000)
  const finished = /finished in [\d.]+\w+, ([\d.]+) req\/s, ([\d.]+)(B|KB|MB|GB)\/s/.exec(out)
  const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out)
  const statuses = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out)
  if (!finished || !counts || !statuses) throw new Error(`h2load ${args.join(' ')}: could not read its report:\n${out.slice(-2000)}`)
  const [, , , done, , failed] = counts.map(Number)
  const s3xx = Number(statuses[3])
  // h2load's "failed" counts 4xx, 5xx, errored and timed-out requests; a 3xx counts as succeeded,
  // but every target here answers with a 200, so it is a failure too.
  const errors = failed! + s3xx
  const mean = /time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/.exec(out)
  return {
    rps: Number(finished[1]),
    mean: mean ? toMs(mean[1]!, mean[2]!) : NaN,
    p50: NaN,
    p90: NaN,
    p99: NaN,
    p999: NaN,
    mbps: toMB(finished[2]!, finished[3]!),
    requests: done!,
    errors,
    errorDetail: errors ? `${counts[0]}; ${statuses[0]}` : '',
    protocol: /Application protocol: (\S+)/.exec(out)?.[1] ?? 'none',
  }
}
