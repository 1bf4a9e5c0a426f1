// After a step lost its machine, the hook asks the provider what became of it, bounded in time and
// stopped by a cancel, whatever the provider's call waits on (the AWS SDK heeds its abort signal in
// the HTTP call only, not while it resolves credentials). Provider and state are stand-ins here.
const whyLost = jest.fn<Promise<{ says: string; cause: string } | null>, [unknown, { signal: AbortSignal }]>()
const recordLost = jest.fn<Promise<void>, [unknown, unknown, string, string]>()
jest.mock('../../src/providers/factory', () => ({
  ...jest.requireActual('../../src/providers/factory'),
  providerFor: () => ({ kind: 'ec2', whyLost })
}))
jest.mock('../../src/fleet/job-fleet', () => ({ jobFleet: (_ctx: unknown, jobId: string) => ({ jobId }) }))
jest.mock('../../src/fleet/job-ledger-writes', () => ({ recordLost }))
jest.mock('../../src/state', () => ({
  decodeState: () => ({ jobId: 'fedcba9876543210', host: { kind: 'ec2', instanceId: 'i-0123456789abcdef0' } }),
  stateFacts: () => ({}),
  leaseOf: (h: unknown) => h
}))
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { lostMachine } from '../../src/handlers/lost-machine'
import type { HookContext } from '../../src/context'
import type { HookInput } from '../../src/protocol'
import { waitUntil } from '../helpers/wait'

const input = { command: 'run_script_step', state: {} } as unknown as HookInput
const warned: string[] = []
const ctx = (signal: AbortSignal): HookContext =>
  ({ signal, log: { warn: (m: string) => warned.push(m) }, config: {} }) as unknown as HookContext
const limits = (lookupMs: number, recordMs = 1000) => ({ lookupMs, recordMs })

beforeEach(() => {
  whyLost.mockReset()
  recordLost.mockReset()
  recordLost.mockResolvedValue(undefined)
  warned.length = 0
})

// A full collection on demand: the hook's own heap churn (loading the AWS SDK) does the same.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

test("the provider's answer is returned; its cause goes on the job's record when asked (positive control)", async () => {
  whyLost.mockResolvedValue({ says: 'the machine is terminated', cause: 'spot' })
  const found = await lostMachine(input, ctx(new AbortController().signal), limits(5000))
  expect(found?.says).toBe('the machine is terminated')
  // the line is said before anything is written to the ledger
  expect(recordLost).not.toHaveBeenCalled()
  await found!.record()
  expect(recordLost.mock.calls.map(([fleet, , cause, provider]) => [fleet, cause, provider])).toEqual([
    [{ jobId: 'fedcba9876543210' }, 'spot', 'ec2']
  ])
})

test('a ledger that does not answer holds the hook no longer than the record bound, with a warning', async () => {
  whyLost.mockResolvedValue({ says: 'the machine is terminated', cause: 'spot' })
  recordLost.mockImplementation(() => new Promise(() => undefined))
  const found = await lostMachine(input, ctx(new AbortController().signal), limits(5000, 100))
  const t0 = Date.now()
  await found!.record()
  expect(Date.now() - t0).toBeLessThan(2000)
  expect(warned).toEqual([expect.stringMatching(/^fleet\.ledger: could not record the lost machine: no answer within 0\.1 s/)])
})

test('a provider that cannot tell records nothing', async () => {
  whyLost.mockResolvedValue(null)
  await expect(lostMachine(input, ctx(new AbortController().signal), limits(5000))).resolves.toBeNull()
  expect(recordLost).not.toHaveBeenCalled()
})

test('a provider call that ignores its signal is given up on at the bound', async () => {
  let seen: AbortSignal | undefined
  whyLost.mockImplementation((_l, env) => {
    seen = env.signal
    setTimeout(gc, 10)
    return new Promise(() => undefined)
  })
  const t0 = Date.now()
  await expect(lostMachine(input, ctx(new AbortController().signal), limits(100))).rejects.toThrow('no answer within 0.1 s')
  expect(Date.now() - t0).toBeLessThan(10_000) // a full collection of a loaded worker's heap may take seconds; never firing is the failure
  expect(seen?.aborted).toBe(true)
})

test('the bound fires after a garbage collection (a call that heeds its signal ends with it)', async () => {
  whyLost.mockImplementation(
    (_l, env) =>
      new Promise((_resolve, reject) => {
        setTimeout(gc, 10)
        env.signal.addEventListener('abort', () => reject(new Error('aborted')))
      })
  )
  const t0 = Date.now()
  await expect(lostMachine(input, ctx(new AbortController().signal), limits(100))).rejects.toThrow('no answer within 0.1 s')
  expect(Date.now() - t0).toBeLessThan(10_000) // as above
})

test('a cancel ends the lookup at once, even when the provider call ignores it', async () => {
  whyLost.mockImplementation(() => new Promise(() => undefined))
  const c = new AbortController()
  const p = lostMachine(input, ctx(c.signal), limits(60_000))
  // Cancelled while the provider's call is under way.
  await waitUntil(() => whyLost.mock.calls.length > 0, 5000, 2)
  c.abort('SIGINT')
  const t0 = Date.now()
  await expect(p).rejects.toThrow('stopped (SIGINT)')
  expect(Date.now() - t0).toBeLessThan(2000)
})
