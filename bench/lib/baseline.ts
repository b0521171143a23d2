// A throwaway build of another commit of the gateway, for `--baseline REF`: the bench runs it beside
// the current build in the same interleaved rounds, so that "no slower than before" is an A/B of one
// run rather than a comparison of two runs on a machine whose speed drifts between them.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

/** Which dist/main.js to start, and the name its rows get in the tables. */
export interface GatewayBuild {
  name: string
  mainJs: string
}

const PROJECT = path.resolve(import.meta.dirname, '..', '..')

export const CURRENT_BUILD: GatewayBuild = { name: 'edge-gateway', mainJs: path.join(PROJECT, 'dist', 'main.js') }

export interface BaselineBuild extends GatewayBuild {
  sha: string
  subject: string
  /** Deletes the build; safe to call more than once, and synchronous so that it can run on 'exit'. */
  remove(): void
}

function git(args: string[]): { ok: boolean; out: string } {
  const r = spawnSync('git', ['-C', PROJECT, ...args], { encoding: 'utf8' })
  return { ok: r.status === 0, out: (r.stdout ?? '').trim() || (r.stderr ?? '').trim() }
}

/**
 * Exports REF's tree with `git archive` into a temporary directory (no worktree: nothing is added to
 * the repository's metadata, so nothing is left behind in it if the bench dies), links this
 * project's node_modules into it and compiles it with tsc. The dependencies are this checkout's: if
 * REF's package.json wants other versions, the baseline runs with these ones.
 */
export function buildBaseline(ref: string): BaselineBuild {
  const rev = git(['rev-parse', '--verify', '--quiet', `${ref}^{commit}`])
  if (!rev.ok) throw new Error(`--baseline ${ref}: not a commit in ${PROJECT} (git rev-parse found nothing); give a commit, branch or tag, e.g. --baseline HEAD~1 or --baseline main`)
  const sha = rev.out
  const subject = git(['log', '-1', '--format=%s', sha]).out
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `edge-baseline-${sha.slice(0, 7)}-`))
  const remove = (): void => fs.rmSync(dir, { recursive: true, force: true })
  try {
    const tar = path.join(dir, 'tree.tar')
    const archived = git(['archive', '--format=tar', '-o', tar, sha])
    if (!archived.ok) throw new Error(`--baseline ${ref}: git archive ${sha} failed: ${archived.out}`)
    const tree = path.join(dir, 'tree')
    fs.mkdirSync(tree)
    const untar = spawnSync('tar', ['-x', '-f', tar, '-C', tree], { encoding: 'utf8' })
    if (untar.status !== 0) throw new Error(`--baseline ${ref}: unpacking ${tar} failed: ${untar.stderr}`)
    fs.rmSync(tar)
    if (!fs.existsSync(path.join(tree, 'tsconfig.build.json'))) throw new Error(`--baseline ${ref}: ${sha.slice(0, 7)} has no tsconfig.build.json, so it cannot be built the way this bench builds the gateway; pick a later commit`)
    fs.symlinkSync(fs.realpathSync(path.join(PROJECT, 'node_modules')), path.join(tree, 'node_modules'))
    process.stdout.write(`building the baseline ${sha.slice(0, 7)} (${subject}) in ${tree}...\n`)
    const tsc = spawnSync(process.execPath, [path.join(tree, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: tree, encoding: 'utf8' })
    if (tsc.status !== 0) throw new Error(`--baseline ${ref}: tsc -p tsconfig.build.json failed for ${sha.slice(0, 7)}:\n${tsc.stdout}${tsc.stderr}`)
    const mainJs = path.join(tree, 'dist', 'main.js')
    if (!fs.existsSync(mainJs)) throw new Error(`--baseline ${ref}: the build of ${sha.slice(0, 7)} has no dist/main.js`)
    return { name: `edge-gateway@${sha.slice(0, 7)}`, mainJs, sha, subject, remove }
  } catch (err) {
    remove()
    throw err
  }
}
