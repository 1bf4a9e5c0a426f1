// Static-host leases (src/providers/static-host.ts): a runner runs one job at a time, so a lease of
// its own that a dead job left on the host is released as soon as its next job takes a slot there,
// even a different one; other runners' leases are never touched.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, chownSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines, otherOwner, staticProvider, testVm } from '../helpers/conformance'

test("a dead job's lease on another slot is released when the runner's next job leases slot 0; another runner's lease stays", async () => {
  const vm = testVm()
  // A work root of its own, so its slots do not compete with the other test files' jobs.
  const workRoot = join(vm.workRoot, `lease-test-${process.pid}`)
  const runner = new FakeRunner({ name: 'lease-stale', config: { provider: staticProvider(vm, { slots: 3 }), remote: { workRoot } } })
  try {
    const leases = join(workRoot, 'leases')
    mkdirSync(leases, { recursive: true })
    const st = statSync(vm.workRoot)
    const plant = (slot: number, owner: string): void => {
      const d = join(leases, `slot-${slot}`)
      mkdirSync(d)
      writeFileSync(join(d, 'owner'), `${owner} 00000000deadbeef dead-runner somehost 2026-01-01T00:00:00Z\n`)
      for (const p of [d, join(d, 'owner')]) chownSync(p, st.uid, st.gid)
    }
    chownSync(workRoot, st.uid, st.gid)
    chownSync(leases, st.uid, st.gid)
    plant(2, runner.owner) // this runner's, from a job that died
    plant(1, otherOwner('some-other-runner')) // another runner's, busy

    const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expect(r.stdout).toMatch(/slot 0\b/)
    expect(r.stdout).toContain("released this runner's stale lease of slot 2")
    expect(readdirSync(leases).sort()).toEqual(['slot-0', 'slot-1'])
    expect(readFileSync(join(leases, 'slot-1', 'owner'), 'utf8')).toContain(otherOwner('some-other-runner'))

    const c = await runner.cleanup()
    expect({ code: c.code, errors: errorLines(c) }).toEqual({ code: 0, errors: [] })
    expect(readdirSync(leases)).toEqual(['slot-1'])
  } finally {
    runner.dispose()
    if (existsSync(workRoot)) require('node:fs').rmSync(workRoot, { recursive: true, force: true })
  }
})
