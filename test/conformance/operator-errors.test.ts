// Mistakes in the VM's setup fail prepare_job at once with the real cause, and leave no lease: a
// work root the SSH user cannot create, a slot folder that cannot be made, a shell start-up file
// that prints. None is "all slots busy" waited on for acquireTimeoutSeconds (600 s by default).
import { execFileSync } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { loadVm, repoRoot, testImages, type VmName } from '../helpers/testenv'
import { errorLines, leftovers, NOTHING, staticProvider, testVm } from '../helpers/conformance'

jest.setTimeout(120_000)

/** The lease folders (slot-N) and half-made leases in a work root. */
const leaseEntries = (workRoot: string): string[] => (existsSync(join(workRoot, 'leases')) ? readdirSync(join(workRoot, 'leases')) : [])

describe('on VM a', () => {
  const vm = testVm()
  const own = join(vm.workRoot, `operator-errors-${process.pid}`)
  const st = statSync(vm.workRoot)
  afterAll(() => rmSync(own, { recursive: true, force: true }))

  test('a work root the SSH user cannot create: one ::error:: naming remote.workRoot and the reason, at once', async () => {
    // root's folder, not writable by the SSH user
    const parent = `/var/tmp/rch-operator-errors-${process.pid}`
    mkdirSync(parent, { recursive: true, mode: 0o755 })
    const workRoot = `${parent}/work`
    const runner = new FakeRunner({ name: 'oper-workroot', config: { provider: staticProvider(vm), remote: { workRoot } } })
    try {
      const t0 = Date.now()
      const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
      expect(Date.now() - t0).toBeLessThan(20_000)
      expect(r.code).not.toBe(0)
      const errors = errorLines(r)
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/Permission denied/)
      expect(errors[0]).toContain(`cannot create ${workRoot}/leases and ${workRoot}/jobs (remote.workRoot) as ${vm.user}`)
      expect(errors[0]).not.toMatch(/busy|leased by another job/)
      expect(r.stdout).not.toContain('waiting for a free host')
      expect(existsSync(workRoot)).toBe(false)
    } finally {
      runner.dispose()
      rmSync(parent, { recursive: true, force: true })
    }
  })

  test('a slot that cannot be made (a file in its place) is named as the error, not waited on as busy', async () => {
    const workRoot = join(own, 'slotfile')
    mkdirSync(join(workRoot, 'leases'), { recursive: true })
    writeFileSync(join(workRoot, 'leases', 'slot-0'), 'not a lease\n')
    for (const p of [own, workRoot, join(workRoot, 'leases'), join(workRoot, 'leases', 'slot-0')]) chownSync(p, st.uid, st.gid)
    const runner = new FakeRunner({ name: 'oper-slotfile', config: { provider: staticProvider(vm, { slots: 1 }), remote: { workRoot } } })
    try {
      const t0 = Date.now()
      const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
      expect(Date.now() - t0).toBeLessThan(20_000)
      expect(r.code).not.toBe(0)
      const errors = errorLines(r)
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/lease slot 0 on 127\.0\.0\.1:\d+ failed \(exit code 5\): .*slot-0/)
      expect(r.stdout).not.toContain('waiting for a free host')
      expect(leaseEntries(workRoot)).toEqual(['slot-0'])
    } finally {
      runner.dispose()
    }
  })
})

describe('on a VM whose SSH user has a start-up file that prints', () => {
  const NAME = `prov9noise`
  const PORT = 2252
  const DIR = `/var/tmp/rch-${NAME}`
  const RC = `${DIR}/rc`
  const vmScript = (...args: string[]): void =>
    void execFileSync('bash', [join(repoRoot, 'scripts/testenv/vm.sh'), ...args], {
      env: { ...process.env, VM_FORCE_COMMAND: RC },
      stdio: 'pipe'
    })

  beforeAll(() => {
    rmSync(DIR, { recursive: true, force: true })
    mkdirSync(DIR, { recursive: true, mode: 0o755 })
    // As ~/.bashrc with a greeting would: every command's output starts with it.
    writeFileSync(RC, ['#!/bin/bash', 'echo "Welcome to the build VM"', 'exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"', ''].join('\n'))
    chmodSync(RC, 0o755)
    vmScript('start', NAME, String(PORT))
  })
  afterAll(() => {
    vmScript('stop', NAME)
    rmSync(DIR, { recursive: true, force: true })
  })

  test.each(['agent', 'no agent'])('prepare_job (%s) fails at once naming the output, and leaves no lease', async (mode) => {
    const noisy = loadVm(NAME as VmName)
    const runner = new FakeRunner({
      name: `oper-noise-${mode.replace(' ', '-')}`,
      config: {
        provider: staticProvider(noisy, { slots: 2 }),
        remote: { workRoot: noisy.workRoot },
        ...(mode === 'no agent' ? { agent: { enabled: false } } : {})
      }
    })
    try {
      const t0 = Date.now()
      const r = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
      expect(Date.now() - t0).toBeLessThan(20_000)
      expect(r.code).not.toBe(0)
      const errors = errorLines(r)
      expect(errors).toHaveLength(1)
      expect(errors[0]).toMatch(/printed output of its own \("Welcome to the build VM\\n"\).*start-up files/)
      // positive control: a slot was taken before the failure (the lease step came first)
      expect(r.stdout).toMatch(/\[remote-hooks\] using 127\.0\.0\.1:\d+ slot 0/)
      expect(leaseEntries(noisy.workRoot)).toEqual([])
      // Not asserted: the job folder the failing "create the job folder" step made stays until this
      // runner's next prepare_job or cleanup_job there (prepare_job registers its undo only after that step).
      expect({ ...(await leftovers(runner, noisy)), jobFolders: [] }).toEqual(NOTHING)
    } finally {
      runner.dispose()
    }
  })
})
