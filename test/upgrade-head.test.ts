// The authorizer's response headers written into a pod's 101 on an upgraded connection
// (src/dataplane/upgrade-head.ts): the head is edited wherever its bytes are split, and every byte
// after it passes as it came.
import t from 'tap'
import { PassThrough } from 'node:stream'
import { ResponseHeadEditor, withResponseHeaders } from '../src/dataplane/upgrade-head.ts'

const SET = [{ lower: 'x-authz', name: 'x-authz', value: 'checked' }]

async function through(chunks: Buffer[]): Promise<Buffer> {
  const editor = new ResponseHeadEditor(SET)
  const out: Buffer[] = []
  const sink = new PassThrough()
  sink.on('data', (c: Buffer) => out.push(c))
  editor.pipe(sink)
  const ended = new Promise((r) => sink.once('end', r))
  for (const c of chunks) editor.write(c)
  editor.end()
  await ended
  return Buffer.concat(out)
}

t.test('a header of the same name is replaced, whatever its case; the others and the status line stay', async (t) => {
  t.equal(withResponseHeaders('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX-Authz: from-pod\r\nConnection: Upgrade', SET), 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-authz: checked')
})

t.test('a head split anywhere is edited once; the frames after it pass as they came', async (t) => {
  const head = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n'
  const frame = Buffer.from([0x81, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f])
  const whole = Buffer.concat([Buffer.from(head), frame, Buffer.from('\r\n\r\nnot a head')])
  const expected = Buffer.concat([Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nx-authz: checked\r\n\r\n'), frame, Buffer.from('\r\n\r\nnot a head')])
  for (const cut of [1, 20, head.length - 3, head.length - 1, head.length + 2]) {
    t.same(await through([whole.subarray(0, cut), whole.subarray(cut)]), expected, `cut at byte ${cut}`)
  }
  t.same(await through([...whole].map((b) => Buffer.from([b]))), expected, 'a byte at a time')
})

t.test('bytes that never make a head pass as they came', async (t) => {
  const short = Buffer.from('HTTP/1.1 101 Swi')
  t.same(await through([short]), short, 'cut short: flushed at the end')
  const long = Buffer.alloc(70 * 1024, 0x61)
  t.same(await through([long, Buffer.from('\r\n\r\n')]), Buffer.concat([long, Buffer.from('\r\n\r\n')]), 'over 64 KiB without a blank line: not a head to edit')
})
