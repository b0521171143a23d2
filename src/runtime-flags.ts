// Node/V8 flags the gateway is meant to run with. They cannot be set from inside a running process
// (V8 sizes its heap at start-up), so every launch path passes them: the `edge-gateway` bin's
// shebang, `npm start`, the Dockerfile's ENTRYPOINT, the workers forked by the primary, and bench/.
// test/chart.test.ts checks that those places agree with this list.
//
// --max-semi-space-size=16: V8 sizes the young generation by the machine's memory and grows it in
// allocation bursts, and it does not give it back. Loading 10,000 KIngress, or 10,000 requests held
// at once, grew it to ~120 MB on a 24 GiB machine. A proxy's garbage dies young either way, so a
// 16 MB semi-space keeps scavenges as cheap (their cost follows the survivors, i.e. the requests
// in flight) and caps that memory (measured here: RSS with 10,000 KIngress after a wrk run, 307 →
// 221 MB; bench/RESULTS.md has the current number).
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16']

/** `execArgv` plus whichever of NODE_FLAGS it does not set already (an operator's own value wins). */
export function withNodeFlags(execArgv: readonly string[]): string[] {
  const out = [...execArgv]
  for (const flag of NODE_FLAGS) {
    const name = flag.split('=')[0]!
    if (!out.some((a) => a === name || a.startsWith(`${name}=`))) out.push(flag)
  }
  return out
}
