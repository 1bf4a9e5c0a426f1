// The runner closes the hook's output while prepare_job runs (its worker died, its pipe's reader
// gone): the hook's next write fails with EPIPE. Unheard, that error ended the process at once
// (exit 70 from the uncaught-error handler), before prepare_job's undo: the job's containers,
// network, job folder and slot stayed on the VM. Now it stops the command as a cancel does, with
// its own reason, and the undo runs.
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { jobWithService, leftovers, NOTHING, waitForOutput } from '../helpers/conformance'
import { settlesWithin } from '../helpers/wait'

describe('prepare_job whose output the runner closed', () => {
  const { runner, args } = jobWithService('output-closed')

  test('stops, undoes what it made on the VM and exits non-zero, without a response', async () => {
    // 80 MB: the copy takes long enough for the pipe to be closed while it runs.
    const big = join(runner.workspace, 'big')
    mkdirSync(big, { recursive: true })
    for (let i = 0; i < 4; i++) writeFileSync(join(big, `blob${i}.bin`), randomBytes(20 * 1024 * 1024))
    const { child, done } = runner.start('prepare_job', args(), { state: null })
    await waitForOutput(child, 'slot')
    // The runner's end of the pipe goes: the hook's next line meets EPIPE.
    child.stdout!.destroy()
    const exited = await settlesWithin(done, 60_000)
    if (!exited) child.kill('SIGKILL')
    const r = await done
    expect({ exited, code: r.code }).toEqual({ exited: true, code: 70 })
    expect(r.responseText).toBe('')
    expect(await leftovers(runner)).toEqual(NOTHING)
  }, 90_000)

  test('control: the same prepare_job read to its end leaves its job on the VM, with a response', async () => {
    const r = await runner.prepare(args())
    expect(r.code).toBe(0)
    const made = await leftovers(runner)
    expect({ containers: made.containers.length, leases: made.leases.length }).toEqual({ containers: 2, leases: 1 })
    await runner.cleanup()
    expect(await leftovers(runner)).toEqual(NOTHING)
  }, 90_000)
})
