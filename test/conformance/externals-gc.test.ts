// Old copies of the runner's externals on a VM that lasts: prepare_job removes, in the background,
// one no job has started with for remote.externalsKeepDays, and keeps its own and recent ones.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { errorLines, staticProvider, testVm } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'
import { holdingProxy } from '../helpers/holding-proxy'
import { loadRegistry } from '../helpers/testenv'
import { LABEL_OWNER } from '../../src/labels'
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
    // The first job copies the externals into this new root while its container (image cached) is
    // created: the create waits for them, since docker refuses a missing bind source (see below).
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

// A collection moves an old copy aside, looks at its mark again, and puts it back when a job marked it
// meanwhile. A job that marked and found the copy just before the move, and creates its container in
// the milliseconds before the put back, finds the copy's place empty. Docker would make an empty
// folder there for `-v` and the job would run with an empty /__e; the hook mounts the copy as a bind
// docker refuses to make, so the job fails, naming the copy, and leaves nothing.
describe('the externals copy missing at the job container’s create', () => {
  test.each([
    ['through the Engine API', undefined],
    ['through docker create (options)', '--cpus 1']
  ])(
    '%s: prepare_job fails naming the copy and leaves nothing; with the copy in place the job sees it (control)',
    async (_, createOptions) => {
      const vm = testVm()
      const reg = loadRegistry()
      const password = readFileSync(reg.passwordFile, 'utf8')
      const proxy = await holdingProxy(Number(reg.host.split(':')[1]))
      const held = `127.0.0.1:${proxy.port}/${reg.image.slice(reg.host.length + 1)}`
      const root = `${vm.workRoot}-gone-${randomBytes(4).toString('hex')}`
      execFileSync('install', ['-d', '-o', vm.user, '-m', '755', root])
      const runner = new FakeRunner({ config: { provider: staticProvider(vm), remote: { workRoot: root, externalsKeepDays: 0 } } })
      const copy = join(root, 'externals', externalsVersion(runner.externals))
      const container = runner.jobContainer(held, {
        registry: { username: reg.user, password, serverUrl: `127.0.0.1:${proxy.port}` },
        ...(createOptions ? { createOptions } : {})
      })
      const left = (): string =>
        ['ps -a', 'network ls', 'volume ls']
          .map((c) =>
            execFileSync('docker', [...c.split(' '), '-q', '--filter', `label=${LABEL_OWNER}=${runner.owner}`])
              .toString()
              .trim()
          )
          .join('')
      try {
        const { done } = runner.start('prepare_job', { container, services: [] }, { state: null })
        // The copy is in place and marked, and the job container's pull is held: move the copy aside.
        expect(await waitUntil(() => proxy.connections() > 0 && existsSync(join(copy, '.rch-complete')), 60_000)).toBe(true)
        const aside = join(root, 'externals', `.rch-gc-${externalsVersion(runner.externals)}-${Math.floor(Date.now() / 1000)}`)
        renameSync(copy, aside)
        proxy.release()
        const p = await done
        expect(p.code).not.toBe(0)
        expect(errorLines(p).join('\n')).toContain(`bind source path does not exist: ${copy}`)
        expect(existsSync(copy)).toBe(false)
        expect(left()).toBe('')
        // Control: with the copy put back, the same job runs and sees the externals.
        renameSync(aside, copy)
        const q = await runner.prepare({ container, services: [] })
        expect({ code: q.code, errors: errorLines(q) }).toEqual({ code: 0, errors: [] })
        const r = await runner.call(
          'run_script_step',
          runner.scriptStep('ls /__e; touch /__e/x 2>/dev/null && echo writable || echo read-only\n').args
        )
        expect(r.code).toBe(0)
        expect(r.stdout).toMatch(/node20[\s\S]*read-only/)
        expect((await runner.cleanup()).code).toBe(0)
        expect(left()).toBe('')
      } finally {
        proxy.release()
        await proxy.close()
        await runner.cleanup()
        runner.dispose()
        rmSync(root, { recursive: true, force: true })
        execFileSync('docker', ['rmi', '-f', held], { stdio: 'ignore' })
      }
    }
  )
})
