// node bench/held-bodies.ts [--requests N] [--body-mib M]   (after npm run build)
// What a held request's body costs the gateway. Held requests are not read until they go to a pod
// (the gateway does not buffer bodies): this measures that, by holding N requests for a revision at
// zero twice, once without a body and once each announcing an M MiB body and writing as much of it
// as the connection takes (the revision's local command never listens, so nothing is dispatched),
// then comparing the gateway's RSS growth and how many body bytes each
// client could hand its socket before backpressure stopped it.
import net from 'node:net'
import { gatewayManifests, startGatewayProc } from './lib/proxies.ts'
import { rssMb } from './lib/procs.ts'
import { fmt } from './lib/rounds.ts'
import fs from 'node:fs'
import path from 'node:path'
import { opt } from './lib/args.ts'

const REQUESTS = Number(opt('requests', '500'))
const BODY = Number(opt('body-mib', '4')) * 1024 * 1024
const CHUNK = Buffer.alloc(64 * 1024, 'x')

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function held(admin: number): Promise<number> {
  const m = await fetch(`http://127.0.0.1:${admin}/metrics`).then((r) => r.text())
  return Number(/edge_revision_requests_queued\{namespace="default",revision="cold-00001"\} (\d+)/.exec(m)?.[1] ?? 0)
}

/** Writes body chunks until the socket stops taking them (write() false and no drain for 300 ms). */
async function pushBody(s: net.Socket): Promise<void> {
  let sent = 0
  while (sent < BODY) {
    sent += CHUNK.length
    if (s.write(CHUNK)) continue
    const drained = await Promise.race([new Promise<boolean>((r) => s.once('drain', () => r(true))), sleep(300).then(() => false)])
    if (!drained) return
  }
}

async function run(withBody: boolean): Promise<{ held: number; before: number; after: number; perRequestKiB: number }> {
  const dir = gatewayManifests(1)
  fs.appendFileSync(
    path.join(dir, 'bench.yaml'),
    `---\napiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata: {name: cold-00001, namespace: default, annotations: {edge.knative.dev/local-command: sleep 600}}\n---\napiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: {name: cold, namespace: default}\nstatus:\n  url: http://cold.example.com\n  traffic: [{revisionName: cold-00001, percent: 100}]\n`,
  )
  const g = await startGatewayProc(18700, 18790, dir, undefined, 1, ['--cold-start-timeout', '600'])
  const sockets: net.Socket[] = []
  try {
    await sleep(500)
    const before = rssMb(g.child.pid) ?? NaN
    const pushes: Array<Promise<void>> = []
    for (let i = 0; i < REQUESTS; i++) {
      const s = net.connect(18700, '127.0.0.1')
      s.on('error', () => {})
      sockets.push(s)
      const head = withBody ? `POST /held/${i} HTTP/1.1\r\nHost: cold.example.com\r\nContent-Length: ${BODY}\r\n\r\n` : `GET /held/${i} HTTP/1.1\r\nHost: cold.example.com\r\n\r\n`
      s.write(head)
      if (withBody) pushes.push(pushBody(s))
      if (i % 100 === 99) await sleep(20)
    }
    await Promise.all(pushes)
    let n = 0
    for (let k = 0; k < 100 && n < REQUESTS; k++) {
      await sleep(100)
      n = await held(18790)
    }
    await sleep(1000)
    // What each client handed its socket beyond the head: kernel buffers (both ends) plus what node read.
    const bytes = sockets.reduce((sum, s) => sum + s.bytesWritten, 0) / REQUESTS
    return { held: n, before, after: rssMb(g.child.pid) ?? NaN, perRequestKiB: bytes / 1024 }
  } finally {
    for (const s of sockets) s.destroy()
    await g.stop()
  }
}

const plain = await run(false)
const bodies = await run(true)
const row = (what: string, r: typeof plain): string => `| ${what} | ${r.held} | ${fmt(r.perRequestKiB)} | ${fmt(r.before)} | ${fmt(r.after)} | ${fmt(r.after - r.before)} |`
process.stdout.write(
  [
    `## ${REQUESTS} requests held at zero: no body vs a ${BODY / 1024 / 1024} MiB body each (RSS growth)`,
    '',
    '| requests | held | bytes sent per request KiB | RSS before MB | RSS holding MB | growth MB |',
    '|---|---|---|---|---|---|',
    row('GET, no body', plain),
    row(`POST, ${BODY / 1024 / 1024} MiB body each`, bodies),
    '',
    `Body bytes held in the gateway's memory per request, at most: (${fmt(bodies.after - bodies.before)} - ${fmt(plain.after - plain.before)}) MB / ${REQUESTS} = ${fmt((((bodies.after - bodies.before) - (plain.after - plain.before)) * 1024) / REQUESTS)} KiB.`,
    '',
  ].join('\n'),
)
