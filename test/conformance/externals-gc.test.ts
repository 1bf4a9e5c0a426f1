// Old copies of the runner's externals on a VM that lasts: prepare_job removes, in the background,
// one no job has started with for remote.externalsKeepDays, and keeps its own and recent ones.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { errorLines, staticProvider, testVm } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'
import { externalsVersion } from '../../src/prepare/first-copy'

const DAY = 86_400
const ago = (p: string, days: number): void => {
  const t = Date.now() / 1000 - days * DAY
  utimesSync(p, t, t)
}

test('an externals copy unused for remote.externalsKeepDays goes at a later prepare_job; with 0 it stays; the job’s own and a recent one stay', async () => {
  const vm = testVm()
  // A work root of this test's own: other files' jobs on the VM would collect in the shared one.
  const root = `${vm.workRoot}-gc-${randomBytes(4).toString('hex')}`
  const ext = join(root, 'externals')
  const [old, recent] = [randomBytes(8).toString('hex'), randomBytes(8).toString('hex')]
  execFileSync('install', ['-d', '-o', vm.user, '-m', '755', root, ext])
  for (const [name, days] of [
    [old, 20],
    [recent, 2]
  ] as const) {
    mkdirSync(join(ext, name, 'node20', 'bin'), { recursive: true })
    writeFileSync(join(ext, name, '.rch-complete'), '')
    ago(join(ext, name, '.rch-complete'), days)
  }
  // Collected two days ago: the first collection on a VM only marks its copies used.
  writeFileSync(join(ext, '.rch-gc'), '')
  ago(join(ext, '.rch-gc'), 2)
  execFileSync('chown', ['-R', vm.user, ext])
  const job = async (externalsKeepDays: number): Promise<FakeRunner> => {
    const runner = new FakeRunner({ config: { provider: staticProvider(vm), remote: { workRoot: root, externalsKeepDays } } })
    const p = await runner.prepare({ container: runner.jobContainer('rch-test/tiny:1'), services: [] })
    expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
    expect((await runner.cleanup()).code).toBe(0)
    return runner
  }
  const runners: FakeRunner[] = []
  try {
    // 0: no collection (had one started, it would have taken the old copy, or renewed the day stamp
    // and so kept the next job's from running).
    runners.push(await job(0))
    const own = externalsVersion(runners[0].externals)
    expect(readdirSync(ext).sort()).toEqual(['.rch-gc', own, old, recent].sort())
    runners.push(await job(14))
    // Done once the lock is gone too (the copy leaves its place at the move aside).
    expect(await waitUntil(() => !existsSync(join(ext, old)) && !existsSync(join(ext, '.rch-gc.lock')), 20_000)).toBe(true)
    expect(readdirSync(ext).sort()).toEqual(['.rch-gc', own, recent].sort())
    // the job's own copy was marked used when it started
    expect(Date.now() - statSync(join(ext, own, '.rch-complete')).mtimeMs).toBeLessThan(120_000)
  } finally {
    for (const r of runners) r.dispose()
    rmSync(root, { recursive: true, force: true })
  }
})
