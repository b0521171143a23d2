// Log lines as a person and as a machine read them: JSON when stdout is a pipe, lines for a person on
// a terminal (--log-format / EDGE_LOG_FORMAT force either), secrets redacted in both. Real child
// processes; the terminal is a real pseudo-terminal (util-linux `script`).
import t from 'tap'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { tempDir } from './helpers/gateway.ts'
import { projectRoot as root } from './helpers/gateway-process.ts'

const main = path.join(root, 'src', 'main.ts')

interface Ran { code: number | null; stdout: string; stderr: string }

function run(command: string, args: string[], env: NodeJS.ProcessEnv = {}, until?: (out: string) => boolean): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c) => {
      stdout += c
      if (until?.(stdout)) child.kill('SIGINT')
    })
    child.stderr.on('data', (c) => (stderr += c))
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

/** A gateway on an empty manifest directory, stopped (SIGINT) once it logged that it listens. */
function gateway(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Ran> {
  const ports = ['--http-port', '0', '--local-port', '0', '--https-port', '0', '--admin-port', '0', '--listen-address', '127.0.0.1']
  return run(process.execPath, [main, '--manifests', tempDir(), '--workers', '1', ...ports, ...args], { EDGE_LOG_FORMAT: '', ...env }, (out) => out.includes('stopped') || /edge-gateway listening/.test(out))
}

const LISTENING_PRETTY = /^\d\d:\d\d:\d\d\.\d{3} INFO {2}edge-gateway listening {2}http=\d+ local=\d+ https=\d+ admin=\d+ role=single manifests=\S+$/m

t.test('on a pipe the gateway logs JSON lines, as before', async (t) => {
  const r = await gateway([])
  const line = r.stdout.split('\n').find((l) => l.includes('edge-gateway listening'))!
  const o = JSON.parse(line) as Record<string, unknown>
  t.equal(o.msg, 'edge-gateway listening')
  t.equal(o.level, 30)
  t.type(o.pod, 'string', 'each line names the pod')
  t.type(o.http, 'number')
})

t.test('--log-format pretty (or EDGE_LOG_FORMAT=pretty) gives lines for a person, even on a pipe', async (t) => {
  for (const [args, env] of [[['--log-format', 'pretty'], {}], [[], { EDGE_LOG_FORMAT: 'pretty' }]] as const) {
    const r = await gateway([...args], env)
    t.match(r.stdout, LISTENING_PRETTY, `${args.join(' ') || JSON.stringify(env)}: ${r.stdout}`)
    t.notMatch(r.stdout, /^\{/m, 'no JSON line')
    t.notMatch(r.stdout, /\x1b\[/, 'no colours where the output is no terminal')
  }
})

t.test('a bad --log-format names the option and the choices', async (t) => {
  const r = await run(process.execPath, [main, '--log-format', 'fancy'])
  t.equal(r.code, 2)
  t.match(r.stderr, `--log-format: expected 'json', 'pretty' or 'auto', got "fancy"`)
})

// A program that logs what must never be shown: credentials in fields, key text inside a message,
// and an error, through the gateway's own logger.
const LOGS_SECRETS = `
import { gatewayLogger } from './src/cli/logger.ts'
const log = gatewayLogger({ logLevel: 'info', logFormat: process.env.FORMAT, podName: 'pod-1' })
log.info({ headers: { authorization: 'Bearer s3cret-bearer' }, token: 's3cret-token', secret: { data: { 'tls.key': 's3cret-data' } } }, 'request seen')
log.warn('manifest line 3: -----BEGIN PRIVATE KEY-----\\nMIIs3cretPEM\\n-----END PRIVATE KEY-----')
log.error({ err: new Error('boom') }, 'it failed')
`

function logsSecrets(format: string, terminal: boolean): Promise<Ran> {
  const args = ['--input-type=module', '-e', LOGS_SECRETS]
  if (!terminal) return run(process.execPath, args, { FORMAT: format })
  // script(1) runs the program on a pseudo-terminal and copies what it printed.
  const command = [process.execPath, ...args].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(' ')
  return run('script', ['-qec', command, '/dev/null'], { FORMAT: format })
}

/** The line for a person, without colours and the terminal's carriage returns. */
const plain = (s: string): string => s.replace(/\x1b\[[0-9;]*m/g, '').replaceAll('\r', '')

t.test('auto: lines for a person on a terminal, JSON on a pipe', async (t) => {
  const tty = await logsSecrets('auto', true)
  t.equal(tty.code, 0, tty.stderr)
  t.match(plain(tty.stdout), /^\d\d:\d\d:\d\d\.\d{3} INFO {2}request seen {2}headers=/m, `a terminal gets pretty lines: ${tty.stdout}`)
  const pipe = await logsSecrets('auto', false)
  t.equal(pipe.code, 0, pipe.stderr)
  t.equal(JSON.parse(pipe.stdout.split('\n')[0]!).msg, 'request seen', 'a pipe gets JSON')
})

t.test('secrets are redacted in both formats; an error shows its stack below the line', async (t) => {
  for (const format of ['json', 'pretty']) {
    const r = await logsSecrets(format, false)
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout, /s3cret/, `${format}: no credential, data or key text`)
    t.match(r.stdout, /\[redacted\]/, `${format}: fields say they were redacted`)
    t.match(r.stdout, /manifest line 3: \[redacted PEM\]/, `${format}: key text inside a message is scrubbed`)
  }
  const pretty = (await logsSecrets('pretty', false)).stdout
  t.match(pretty, /^\d\d:\d\d:\d\d\.\d{3} ERROR it failed {2}err=boom\n {4}Error: boom\n {8}at /m, `the stack is indented under its line: ${pretty}`)
  t.match(pretty, /request seen {2}headers=\{"authorization":"\[redacted\]"\} token=\[redacted\]/, 'fields as key=value')
  t.notMatch(pretty, /pod-1/, 'no pod name on a laptop line')
})
