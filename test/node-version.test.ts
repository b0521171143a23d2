// On a Node older than the project needs, the entry says so in one line and how to run the project's
// own Node, before any dependency gets the chance to fail with a stack trace. The child-process test
// runs the built entry (dist/main.js, the package's "bin": `npm ci` builds it) with a Node from PATH.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { MIN_NODE_MAJOR, nodeVersionProblem } from '../src/node-version.ts'
import { projectRoot as root } from './helpers/gateway-process.ts'

const entry = path.join(root, 'dist', 'main.js')

t.test('the check agrees with package.json engines and decides by major version', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } }
  t.equal(pkg.engines.node, `>=${MIN_NODE_MAJOR}`, 'one required version, in both places')
  for (const ok of [`${MIN_NODE_MAJOR}.0.0`, `${MIN_NODE_MAJOR}.21.0`, `${MIN_NODE_MAJOR + 1}.1.0`]) t.equal(nodeVersionProblem(ok, '/opt/node'), undefined, `${ok} runs`)
  for (const old of ['20.20.2', `${MIN_NODE_MAJOR - 1}.11.1`, '18.0.0']) {
    const line = nodeVersionProblem(old, '/usr/bin/node')
    t.equal(line, `edge-gateway needs Node ${MIN_NODE_MAJOR} or newer, but /usr/bin/node is v${old}. Run the project's own Node ${MIN_NODE_MAJOR} from the project directory: npm start, or npx edge-gateway (npm ci installs it).`, `${old} is refused`)
  }
})

/** Every `node` on PATH with its version (`which -a node`), first to last. */
function nodesOnPath(): Array<{ bin: string; version: string }> {
  const seen = new Set<string>()
  const out: Array<{ bin: string; version: string }> = []
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const bin = path.join(dir, 'node')
    if (!dir || !fs.existsSync(bin)) continue
    const real = fs.realpathSync(bin)
    if (seen.has(real)) continue
    seen.add(real)
    const v = spawnSync(bin, ['--version'], { encoding: 'utf8' })
    if (v.status === 0) out.push({ bin, version: v.stdout.trim().replace(/^v/, '') })
  }
  return out
}

const old = nodesOnPath().find((n) => Number(n.version.split('.')[0]) < MIN_NODE_MAJOR)

// Where the machine has an older Node (here the system's, beside the project's own), it is the one
// tried; where every Node on PATH is new enough, the same entry must let it through.
t.test(old ? `the entry on Node ${old.version} (${old.bin}): one line, what to run, exit 1` : 'every Node on PATH is new enough: the entry lets it through', async (t) => {
  t.ok(fs.existsSync(entry), 'dist/main.js exists (npm run build)')
  if (old) {
    const r = spawnSync(old.bin, [entry, '--help'], { cwd: root, encoding: 'utf8' })
    t.equal(r.status, 1)
    t.equal(r.stdout, '')
    t.equal(r.stderr, nodeVersionProblem(old.version, old.bin) + '\n', 'exactly the one line, no stack trace')
    const status = spawnSync(old.bin, [entry, 'status'], { cwd: root, encoding: 'utf8' })
    t.equal(status.stderr, r.stderr, 'every command is checked, status too')
  } else {
    const r = spawnSync('node', [entry, '--help'], { cwd: root, encoding: 'utf8' })
    t.equal(r.status, 0, r.stderr)
    t.match(r.stdout, /^usage: edge-gateway/)
  }
})
