// A real Prometheus for tests: Debian's `prometheus` binary run with its own configuration and data
// directory on a free port (never the system service the package installs), its HTTP query API, and
// `promtool check metrics`. .ci/prometheus-setup.sh installs both binaries.
import type { Test } from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { request } from 'undici'
import { freePorts, tempDir, waitFor } from './gateway.ts'

/**
 * Throws, saying how to install it, when `binary` (prometheus or promtool) cannot be run: the test
 * fails rather than skips, so a CI machine without it is noticed.
 */
export function requireBinary(binary: 'prometheus' | 'promtool'): void {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8' })
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status}: ${r.stderr}`
    throw new Error(`${binary} cannot be run (${why}). This test needs a real Prometheus: install Debian's prometheus package (.ci/prometheus-setup.sh, or apt-get install prometheus), which brings prometheus and promtool.`)
  }
}

export interface Sample {
  metric: Record<string, string>
  /** The sample's value as Prometheus prints it: a number, or NaN, +Inf, -Inf. */
  value: string
}

export interface Prometheus {
  readonly url: string
  /** An instant query (/api/v1/query); throws with Prometheus's error when the query is refused. */
  query(expr: string): Promise<Sample[]>
}

/** Starts Prometheus scraping `/metrics` of `targets` (host:port) every second, as job `job`; stopped at the end of the test. */
export async function startPrometheus(t: Test, job: string, targets: string[]): Promise<Prometheus> {
  const dir = tempDir('edge-prometheus-')
  const config = path.join(dir, 'prometheus.yml')
  fs.writeFileSync(config, JSON.stringify({ global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' }, scrape_configs: [{ job_name: job, metrics_path: '/metrics', static_configs: [{ targets }] }] }))
  const [port] = (await freePorts(1)) as [number]
  const url = `http://127.0.0.1:${port}`
  const child: ChildProcess = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (c) => (stderr += c))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  t.teardown(async () => {
    child.kill('SIGTERM')
    await exited
    fs.rmSync(dir, { recursive: true, force: true })
  })
  try {
    await waitFor('Prometheus to be ready', async () => {
      if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}): ${stderr}`)
      return (await request(`${url}/-/ready`).then((r) => r.body.text().then(() => r.statusCode)).catch(() => 0)) === 200
    }, 20_000)
  } catch (err) {
    throw new Error(`${(err as Error).message}; its log: ${stderr}`)
  }
  return {
    url,
    async query(expr: string): Promise<Sample[]> {
      const res = await request(`${url}/api/v1/query`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ query: expr }).toString() })
      const body = (await res.body.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } }
      if (body.status !== 'success' || !body.data) throw new Error(`Prometheus refused ${expr}: ${body.error ?? res.statusCode}`)
      if (body.data.resultType !== 'vector') throw new Error(`${expr}: expected an instant vector, got ${body.data.resultType}`)
      return body.data.result.map((r) => ({ metric: r.metric, value: r.value[1] }))
    },
  }
}

/** `promtool check metrics` on an exposition text: its exit code and what it printed (its complaints). */
export async function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (c) => (output += c))
  child.stderr.on('data', (c) => (output += c))
  const code = new Promise<number | null>((r) => child.once('close', (c) => r(c)))
  child.stdin.end(text)
  return { code: await code, output }
}
