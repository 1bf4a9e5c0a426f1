// Attack: what comes back costs the job nothing to make. A 1 TB sparse file takes no room on the VM
// but would be written out in full on the runner host; a listing too long for the hook used to be
// cut and the missing part read as deletions; many small steps add up. Defense: sync.limits, checked
// at apparent sizes before anything is copied, and a listing over its bound is an error.
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { errors, remoteStat, withJob, type Mode } from './harness'

const MODES_: Mode[] = ['agent', 'no-agent']

describe.each(MODES_)('caps on what comes back (%s)', (mode) => {
  test('a 1 TB sparse file fails the step with the default limits; nothing of it reaches the host', () =>
    withJob(mode, async (job) => {
      const { r } = await job.step('cd /__w/repo/repo && echo small > small.txt && truncate -s 1T huge\n')
      // Positive control: the VM has it, at its apparent size.
      expect(remoteStat(`${job.remoteWork}/repo/repo/huge`)?.size).toBe(1024 ** 4)
      expect(r.code).not.toBe(0)
      expect(errors(r)).toEqual([expect.stringContaining('sync.limits.stepBytes')])
      expect(existsSync(join(job.runner.workspace, 'huge'))).toBe(false)
      expect(job.canaries.changes()).toEqual([])
    }))

  test('a listing over sync.limits.listingEntries is an error, never a truncation read as deletions', () =>
    withJob(
      mode,
      async (job) => {
        const first = await job.step('echo keep > /__w/repo/repo/keep-on-host.txt\n')
        expect(first.r.code).toBe(0)
        expect(readFileSync(join(job.runner.workspace, 'keep-on-host.txt'), 'utf8')).toBe('keep\n')
        const { r } = await job.step('cd /__w/repo/repo && mkdir many && for i in $(seq 1 120); do echo $i > many/f$i; done\n')
        expect(remoteStat(`${job.remoteWork}/repo/repo/many/f120`)?.kind).toBe('file')
        expect(r.code).not.toBe(0)
        expect(errors(r).join('\n')).toContain('sync.limits.listingEntries')
        // Nothing was taken for deleted: the host's files are all still there.
        expect(readFileSync(join(job.runner.workspace, 'keep-on-host.txt'), 'utf8')).toBe('keep\n')
        expect(existsSync(join(job.runner.workspace, 'many'))).toBe(false)
      },
      { config: { sync: { limits: { listingEntries: 100 } } } }
    ))

  test('sync.limits.jobFiles adds up over the steps of a job', () =>
    withJob(
      mode,
      async (job) => {
        const one = await job.step('cd /__w/repo/repo && mkdir a && for i in $(seq 1 20); do echo $i > a/f$i; done\n')
        expect(one.r.code).toBe(0)
        expect(statSync(join(job.runner.workspace, 'a', 'f20')).isFile()).toBe(true)
        const two = await job.step('cd /__w/repo/repo && mkdir b && for i in $(seq 1 20); do echo $i > b/f$i; done\n')
        expect(remoteStat(`${job.remoteWork}/repo/repo/b/f20`)?.kind).toBe('file')
        expect(two.r.code).not.toBe(0)
        expect(errors(two.r).join('\n')).toContain('sync.limits.jobFiles')
        expect(existsSync(join(job.runner.workspace, 'b'))).toBe(false)
      },
      { config: { sync: { limits: { jobFiles: 30 } } } }
    ))
})
