// The deadline rules shared by requests and WebSocket upgrades (src/dataplane/deadlines.ts): which
// limit fires next in each state, as a table. Pure: times are plain numbers (ms).
import t from 'tap'
import { nextDeadline, timeoutDetail } from '../src/dataplane/deadlines.ts'
import type { TimedState } from '../src/dataplane/deadlines.ts'
import type { RevisionRef } from '../src/model/snapshot.ts'

const rev = (timeouts: Partial<Pick<RevisionRef, 'timeoutSeconds' | 'responseStartTimeoutSeconds' | 'idleTimeoutSeconds'>>): RevisionRef => ({
  namespace: 'default',
  name: 'app-00001',
  key: 'default/app-00001',
  containerConcurrency: 0,
  timeoutSeconds: undefined,
  responseStartTimeoutSeconds: undefined,
  idleTimeoutSeconds: undefined,
  known: true,
  ...timeouts,
})
const limits = { coldStartBudgetMs: 60_000, streamIdleTimeoutMs: 300_000 }
const base: TimedState = { startedAt: 1000, queuedAt: 0, onPod: true, responded: false, streaming: false, lastActivity: 0 }

const rows: Array<[string, Partial<TimedState>, Parameters<typeof rev>[0], { at: number; reason: string } | undefined]> = [
  ['no limits at all', {}, {}, undefined],
  ['timeoutSeconds counts from arrival', {}, { timeoutSeconds: 30 }, { at: 31_000, reason: 'request-timeout' }],
  ['a stream is not cut by timeoutSeconds', { streaming: true }, { timeoutSeconds: 30 }, { at: 301_000, reason: 'idle-timeout' }],
  ['a stream with --stream-idle-timeout 0 has no limit', { streaming: true }, { timeoutSeconds: 30 }, undefined],
  ['responseStartTimeoutSeconds wins when earlier', {}, { timeoutSeconds: 30, responseStartTimeoutSeconds: 5 }, { at: 6000, reason: 'response-start-timeout' }],
  ['responseStartTimeoutSeconds is over once the pod answered', { responded: true }, { timeoutSeconds: 30, responseStartTimeoutSeconds: 5 }, { at: 31_000, reason: 'request-timeout' }],
  ['held without a pod: the cold-start budget from when it queued', { onPod: false, queuedAt: 2000 }, { timeoutSeconds: 600 }, { at: 62_000, reason: 'cold-start-timeout' }],
  ['on a pod, the cold-start budget no longer applies', { onPod: true, queuedAt: 2000 }, { timeoutSeconds: 600 }, { at: 601_000, reason: 'request-timeout' }],
  ['idleTimeoutSeconds counts from the last activity', { lastActivity: 9000 }, { timeoutSeconds: 30, idleTimeoutSeconds: 2 }, { at: 11_000, reason: 'idle-timeout' }],
  ['idleTimeoutSeconds counts from arrival before any activity (also while held)', { onPod: false, queuedAt: 1000 }, { idleTimeoutSeconds: 2 }, { at: 3000, reason: 'idle-timeout' }],
  ["a revision's idleTimeoutSeconds beats --stream-idle-timeout for a stream", { streaming: true, lastActivity: 5000 }, { idleTimeoutSeconds: 10 }, { at: 15_000, reason: 'idle-timeout' }],
]

t.test('the earliest limit that applies, by state', async (t) => {
  for (const [name, state, timeouts, want] of rows) {
    const noStreamIdle = name.includes('--stream-idle-timeout 0')
    const got = nextDeadline({ ...base, ...state }, rev(timeouts), noStreamIdle ? { ...limits, streamIdleTimeoutMs: 0 } : limits, 0)
    t.same(got, want, name)
  }
})

t.test('a deadline already past fires on the next millisecond, never in the past', async (t) => {
  t.same(nextDeadline(base, rev({ timeoutSeconds: 1 }), limits, 50_000), { at: 50_001, reason: 'request-timeout' })
})

t.test('each message names the limit and its value', async (t) => {
  const r = rev({ timeoutSeconds: 30, responseStartTimeoutSeconds: 5, idleTimeoutSeconds: 2 })
  t.equal(timeoutDetail('request-timeout', r, limits), 'revision default/app-00001 did not finish within its timeoutSeconds (30s)')
  t.equal(timeoutDetail('response-start-timeout', r, limits), 'revision default/app-00001 did not start responding within its responseStartTimeoutSeconds (5s)')
  t.equal(timeoutDetail('cold-start-timeout', r, limits), 'no pod of revision default/app-00001 became ready within the cold start budget (60s)')
  t.equal(timeoutDetail('idle-timeout', r, limits), 'revision default/app-00001 sent nothing for its idleTimeoutSeconds (2s)')
  t.equal(timeoutDetail('idle-timeout', rev({}), limits), 'the stream to revision default/app-00001 was silent for --stream-idle-timeout (300s)')
})
