// A runner that died after prepare_job leaves its job's local folder (an EC2 job's private key,
// agent sockets, the sync base): no cleanup_job comes for it. The runner's next prepare_job removes
// it, and no other runner's.
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines } from '../helpers/conformance'

const localRoot = join(tmpdir(), `rch-${process.getuid!()}`)

test("prepare_job removes the local folders of this runner's earlier jobs, and only this runner's", async () => {
  const runner = new FakeRunner()
  const stale = join(localRoot, `${runner.owner}-0123456789abcdef`)
  const other = join(localRoot, `ffffffffffffffff-0123456789abcdef`)
  try {
    // An entry of this runner's that is no folder of ours to remove (a file): said, and left; the job goes on.
    writeFileSync(join(localRoot, `${runner.owner}-fedcba9876543210`), 'not a folder')
    for (const dir of [stale, other]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      chmodSync(dir, 0o700)
      writeFileSync(join(dir, 'id_ed25519'), 'a per-job key', { mode: 0o600 })
    }
    const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
    expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
    expect(existsSync(stale)).toBe(false)
    // control: another runner's folder (its job may be running) is left
    expect(existsSync(join(other, 'id_ed25519'))).toBe(true)
    // the job's own folder is there
    expect(existsSync(join(localRoot, `${runner.owner}-${(runner.state as { jobId: string }).jobId}`))).toBe(true)
  } finally {
    rmSync(join(localRoot, `${runner.owner}-fedcba9876543210`), { force: true })
    rmSync(other, { recursive: true, force: true })
    await runner.cleanup()
    runner.dispose()
  }
})
