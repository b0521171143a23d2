// A real container image for the container tests, built without a registry (none is reachable from
// CI): a root filesystem holding the Node binary running these tests, the shared libraries `ldd`
// says it needs, and a small HTTP app, imported with `podman import`. Built once: the tag is a hash
// of what goes in, and an image with that tag already present is used as it is.
import { execFile, execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

/**
 * The app: answers every path with JSON saying who answered (MESSAGE, K_REVISION, PORT, the
 * container's host name, its arguments), how many requests it was serving when this one arrived, and
 * whether it was ready (READY_AFTER_MS after start; /healthz says 503 until then). `?ms=N` answers
 * after N ms.
 */
const APP = `import http from 'node:http'
import os from 'node:os'
const readyAt = Date.now() + Number(process.env.READY_AFTER_MS ?? 0)
let inflight = 0
http.createServer((req, res) => {
  const url = new URL(req.url, 'http://app')
  const ready = Date.now() >= readyAt
  if (url.pathname === '/healthz') {
    res.writeHead(ready ? 200 : 503)
    return res.end()
  }
  inflight++
  const seen = { message: process.env.MESSAGE ?? '', revision: process.env.K_REVISION, port: process.env.PORT, host: os.hostname(), argv: process.argv.slice(2), inflight, ready }
  setTimeout(() => {
    inflight--
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(seen))
  }, Number(url.searchParams.get('ms') ?? 0))
}).listen(Number(process.env.PORT ?? 8080))
`

export const APP_PATH = '/app/server.mjs'
export const NODE_PATH = '/usr/local/bin/node'

/** What the app answers (see APP). */
export interface AppAnswer {
  message: string
  revision: string
  port: string
  host: string
  argv: string[]
  inflight: number
  ready: boolean
}

let built: string | undefined

/** The image's reference, building it first if this machine does not have it yet. */
export function testImage(): string {
  if (built) return built
  requirePodman()
  const node = process.execPath
  const libs = sharedLibraries(node)
  const stat = fs.statSync(node)
  const hash = createHash('sha256').update(APP).update(`${node} ${stat.size} ${stat.mtimeMs}`).update(libs.join('\n')).digest('hex').slice(0, 16)
  const tag = `localhost/edge-gateway-test:${hash}`
  if (spawnSync('podman', ['image', 'exists', tag]).status !== 0) build(tag, node, libs)
  built = tag
  return tag
}

/** The container tests need podman; CI installs and configures it with .ci/podman-setup.sh. */
function requirePodman(): void {
  const r = spawnSync('podman', ['info', '--format', '{{.Host.OCIRuntime.Name}}'], { encoding: 'utf8' })
  if (r.error || r.status !== 0) {
    const why = r.error ? `${r.error.message}` : r.stderr.trim()
    throw new Error(`the container tests need a working podman (${why}); install and configure it with .ci/podman-setup.sh, as CI does`)
  }
}

/** The absolute paths `ldd` lists for a binary (the loader included). */
function sharedLibraries(binary: string): string[] {
  const out = execFileSync('ldd', [binary], { encoding: 'utf8' })
  return [...out.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!).sort()
}

function build(tag: string, node: string, libs: string[]): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-image-'))
  try {
    const root = path.join(dir, 'root')
    const put = (from: string, to: string): void => {
      fs.mkdirSync(path.dirname(path.join(root, to)), { recursive: true })
      fs.copyFileSync(from, path.join(root, to)) // follows symlinks: the library itself goes in
    }
    put(node, NODE_PATH)
    for (const lib of libs) put(lib, lib)
    fs.mkdirSync(path.join(root, 'tmp'), { recursive: true })
    fs.mkdirSync(path.dirname(path.join(root, APP_PATH)), { recursive: true })
    fs.writeFileSync(path.join(root, APP_PATH), APP)
    const tar = path.join(dir, 'root.tar')
    execFileSync('tar', ['-C', root, '-cf', tar, '.'])
    execFileSync('podman', ['import', '--change', `CMD ["${NODE_PATH}", "${APP_PATH}"]`, '--change', 'ENV PATH=/usr/local/bin:/usr/bin:/bin', tar, tag], { stdio: ['ignore', 'ignore', 'pipe'] })
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Names of the containers (running or not) with `label=value`; asynchronous, so a gateway in this process keeps running. */
export async function containersWith(label: string, value: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('podman', ['ps', '-a', '--filter', `label=${label}=${value}`, '--format', '{{.Names}}'], { encoding: 'utf8' })
  return stdout.split('\n').map((s) => s.trim()).filter(Boolean)
}
