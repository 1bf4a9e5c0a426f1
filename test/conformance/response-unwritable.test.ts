// prepare_job's response file cannot be written once the job is ready (a full disk; here, the file
// replaced by a folder while the hook runs): the runner reads the file only after exit 0, so it
// never learns of the job. The write was made after the handler had returned, outside its undo:
// the containers, network, job folder and slot stayed on the VM until a cleanup_job without state
// or a later job of the runner found them. Now the write is prepare_job's last part, and a failed
// one is undone like any other failure.
import { mkdirSync, readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { jobWithService, leftovers, NOTHING, waitForOutput } from '../helpers/conformance'

describe('prepare_job whose response file cannot be written', () => {
  const { runner, args } = jobWithService('response-unwritable')
  const responses = join(runner.temp, '_runner_hook_responses')

  test('fails naming the file, and undoes what it made on the VM', async () => {
    rmSync(responses, { recursive: true, force: true })
    const { child, done } = runner.start('prepare_job', args(), { state: null })
    // Past the hook's check of the file at its start: the lease is taken.
    await waitForOutput(child, 'slot')
    const files = readdirSync(responses)
    expect(files).toHaveLength(1)
    const file = join(responses, files[0])
    rmSync(file)
    mkdirSync(file)
    const r = await done
    expect(r.code).not.toBe(0)
    expect(r.stdout).toContain(`::error::responseFile: cannot open ${JSON.stringify(file)} for writing (EISDIR)`)
    expect(await leftovers(runner)).toEqual(NOTHING)
  }, 90_000)

  test('control: with its file left alone, the same prepare_job leaves its job on the VM, with a response', async () => {
    const r = await runner.prepare(args())
    expect(r.code).toBe(0)
    expect(r.response.state).toBeTruthy()
    const made = await leftovers(runner)
    expect({ containers: made.containers.length, leases: made.leases.length }).toEqual({ containers: 2, leases: 1 })
    await runner.cleanup()
    expect(await leftovers(runner)).toEqual(NOTHING)
  }, 90_000)
})
