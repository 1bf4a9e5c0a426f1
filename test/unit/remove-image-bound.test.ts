// A Dockerfile action's image removal: the job, root on the VM, can make `docker image rm` hang.
// After a cancel the removal gets CUT_AFTER_CANCEL_MS, no more; without one, CALL_TIMEOUT_MS.
import { removeImage } from '../../src/docker/cli'
import { CUT_AFTER_CANCEL_MS, graceAfter } from '../../src/docker/steps'
import { settlesWithin } from '../../src/retry'
import { LocalRemote } from './local-remote'
import { cleanupTempDirs, tempDir } from './_helpers'
import { existsSync } from 'node:fs'
import { waitUntil } from '../helpers/wait'

afterAll(cleanupTempDirs)
jest.setTimeout(30_000)

test('a hanging docker image rm is given up CUT_AFTER_CANCEL_MS after the cancel, not waited on', async () => {
  const dir = tempDir()
  const remote = new LocalRemote(dir, {}, { docker: `: > ${dir}/began; exec sleep 600` })
  const cancel = new AbortController()
  const removal = removeImage(remote, 'rch-action-x:1', cancel.signal)
  removal.catch(() => undefined)
  // Cancelled once docker runs: the grace is counted from the cancel.
  expect(await waitUntil(() => existsSync(`${dir}/began`), 5000, 5)).toBe(true)
  const began = Date.now()
  cancel.abort('SIGINT')
  expect(await settlesWithin(removal, CUT_AFTER_CANCEL_MS + 3000)).toBe(true)
  // The grace was given: the removal was not cut at the cancel itself.
  expect(Date.now() - began).toBeGreaterThanOrEqual(CUT_AFTER_CANCEL_MS)
  await expect(removal).rejects.toThrow()
})

test('control: an answering docker image rm is run once and returns at once', async () => {
  const dir = tempDir()
  const remote = new LocalRemote(dir)
  const removal = removeImage(remote, 'rch-action-x:1', new AbortController().signal)
  expect(await settlesWithin(removal, 3000)).toBe(true)
  await expect(removal).resolves.toBeUndefined()
  expect(remote.commands.filter((c) => c.includes('docker image rm'))).toHaveLength(1)
})

test('graceAfter: aborts ms after the cancel (a cancel before counts from the call), and never once cleared', async () => {
  jest.useFakeTimers()
  try {
    const c = new AbortController()
    const g = graceAfter(c.signal, 1000)
    await jest.advanceTimersByTimeAsync(5000)
    expect(g.signal.aborted).toBe(false)
    c.abort('SIGTERM')
    await jest.advanceTimersByTimeAsync(999)
    expect(g.signal.aborted).toBe(false)
    await jest.advanceTimersByTimeAsync(1)
    expect(g.signal.aborted).toBe(true)
    expect(g.signal.reason).toBe('SIGTERM')
    const before = new AbortController()
    before.abort('SIGINT')
    const early = graceAfter(before.signal, 1000)
    await jest.advanceTimersByTimeAsync(1000)
    expect(early.signal.aborted).toBe(true)
    const cleared = graceAfter(before.signal, 1000)
    cleared.clear()
    await jest.advanceTimersByTimeAsync(5000)
    expect(cleared.signal.aborted).toBe(false)
  } finally {
    jest.useRealTimers()
  }
})
