// Cancelling prepare_job: the runner's SIGINT/SIGTERM during the first sync stops
// the copy at once, the hook exits non-zero within 7.5 s (the runner's SIGTERM would come then), and what prepare_job had made is undone.
// Before the fix, the hook noticed a cancel only at its next wait, finished the copy and could
// even report success.
import { randomBytes } from 'node:crypto'
import { mkdirSync, readlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, leftovers, NOTHING, scanCmdlines, waitForOutput } from '../helpers/conformance'
import { settlesWithin, waitUntil } from '../helpers/wait'

/** A process's working folder, or '' once it is gone. */
const cwdOf = (pid: number): string => {
  try {
    return readlinkSync(`/proc/${pid}/cwd`)
  } catch {
    return ''
  }
}

describe.each([['SIGINT'], ['SIGTERM']] as const)('prepare_job cancelled by %s during the first sync', (sig) => {
  const runner = new FakeRunner({ name: `cancel-prep-${sig.toLowerCase()}` })
  afterAll(async () => {
    await runner.cleanup()
    runner.dispose()
  })

  test('exits non-zero within 7.5 s, stops rsync here and on the remote, and leaves nothing behind', async () => {
    // 160 MB: the copy takes seconds here, so the cancel lands in the middle of it.
    const big = join(runner.workspace, 'big')
    mkdirSync(big, { recursive: true })
    for (let i = 0; i < 8; i++) writeFileSync(join(big, `blob${i}.bin`), randomBytes(20 * 1024 * 1024))
    const { child, done } = runner.start('prepare_job', { container: runner.jobContainer(testImages.tiny), services: [] }, { state: null })
    await waitForOutput(child, 'slot')
    // the copy is really running (our rsync, run by absolute path, names the runner's work folder)
    const rsyncs = (): unknown[] => scanCmdlines(runner.work).filter((p) => /^(\S*\/)?rsync /.test(p.cmdline))
    // The remote rsync's command line names no path (--protect-args): it is known by its working
    // folder, the job's folder on the VM, whose name holds the runner's owner id.
    const remoteRsyncs = (): unknown[] =>
      scanCmdlines('--server').filter((p) => /(^|\/)rsync --server/.test(p.cmdline) && cwdOf(p.pid).includes(runner.owner))
    await waitUntil(() => rsyncs().length > 0 && remoteRsyncs().length > 0, 10_000, 20)
    // Both copies are really running when the cancel comes (positive control for the checks below).
    expect({ local: rsyncs().length > 0, remote: remoteRsyncs().length > 0 }).toEqual({ local: true, remote: true })
    const t0 = Date.now()
    child.kill(sig)
    const exitedInTime = await settlesWithin(done, 7500)
    if (!exitedInTime) child.kill('SIGKILL')
    const r = await done
    expect({ exitedInTime, ms: Date.now() - t0 < 7500 }).toEqual({ exitedInTime: true, ms: true })
    expect(r.code).toBe(sig === 'SIGINT' ? 130 : 143)
    expect(r.stderr).toContain(`cancelled by ${sig}`)
    // No step ran: the note claims nothing about one (it said "the remote process was stopped").
    expect(r.stderr).toContain(`[remote-hooks] cancelled by ${sig}\n`)
    expect(r.stdout).not.toContain('copied ')
    expect(errorLines(r)).toEqual([])
    expect(r.responseText).toBe('')
    // no rsync left, local or remote (the remote rsync runs in the job folder)
    const localRsyncs = (): unknown[] => scanCmdlines(runner.work).filter((p) => /(^|\/)rsync /.test(p.cmdline))
    await waitUntil(() => localRsyncs().length === 0 && remoteRsyncs().length === 0, 3000)
    expect(localRsyncs()).toEqual([])
    expect(remoteRsyncs()).toEqual([])
    expect(await leftovers(runner)).toEqual(NOTHING)
  })
})
