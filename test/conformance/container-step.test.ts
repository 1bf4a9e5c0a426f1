// run_container_step without prepare_job, private-registry
// pulls with credentials that never show up in output or on a command line, and the pull policy.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { FakeRunner, type HookRun } from '../helpers/fake-runner'
import { loadRegistry, testenvDir, testImages } from '../helpers/testenv'
import { withFileLock } from '../../src/file-lock'
import { LABEL_JOB, LABEL_OWNER } from '../../src/labels'
import { waitUntil } from '../helpers/wait'
import { registryFaults } from '../helpers/registry-faults'
import { cmd, errorLines, LABEL_RUNNER, leftovers, NOTHING, runnerProcesses, runnerSplit, scanWhile, testVm } from '../helpers/conformance'

const runners: FakeRunner[] = []
function newRunner(opts: ConstructorParameters<typeof FakeRunner>[0] = {}): FakeRunner {
  const r = new FakeRunner(opts)
  runners.push(r)
  return r
}

afterAll(async () => {
  for (const r of runners) {
    await r.cleanup()
    r.dispose()
  }
})

async function imagePresent(image: string): Promise<boolean> {
  return (await cmd('docker', ['image', 'inspect', '--format', '.', image])).code === 0
}

async function removeImage(image: string): Promise<void> {
  await cmd('docker', ['image', 'rm', '-f', image])
  expect(await imagePresent(image)).toBe(false)
}

describe('run_container_step with state null (no prepare_job)', () => {
  test('output is streamed, file commands come back, and nothing is left on the VM', async () => {
    const runner = newRunner()
    const { args, fc } = runner.containerStep({
      image: testImages.tiny,
      entryPoint: 'sh',
      args: runnerSplit(
        '-c "echo action-output-line; echo from-action=ok >> $GITHUB_OUTPUT; echo ACTION_ENV=1 >> $GITHUB_ENV; echo made > /github/workspace/action-made.txt"'
      )
    })
    const r = await runner.call('run_container_step', args, { state: null })
    expect({ code: r.code, errors: errorLines(r), stderr: r.stderr }).toEqual({ code: 0, errors: [], stderr: '' })
    expect(r.stdout).toContain('action-output-line\n')
    // Getting the host, the first copy and the image each in a fold, closed before the action's own output.
    const folds = r.stdout.split('\n').filter((l) => /^::(end)?group::/.test(l))
    expect(folds).toEqual([
      '::group::Getting a host',
      '::endgroup::',
      "::group::Copying the step's files",
      '::endgroup::',
      `::group::Image ${testImages.tiny}`,
      '::endgroup::'
    ])
    expect(r.stdout.lastIndexOf('::endgroup::')).toBeLessThan(r.stdout.indexOf('action-output-line'))
    expect(readFileSync(fc.files.GITHUB_OUTPUT, 'utf8')).toBe('from-action=ok\n')
    expect(readFileSync(fc.files.GITHUB_ENV, 'utf8')).toBe('ACTION_ENV=1\n')
    expect(readFileSync(`${runner.workspace}/action-made.txt`, 'utf8')).toBe('made\n')
    expect(r.response).toBeNull()
    expect(await leftovers(runner)).toEqual(NOTHING)
    expect(await runnerProcesses(runner)).toEqual([])
  })

  test('the action exit code passes through (exit 5 → hook exit 5) and nothing is left', async () => {
    const runner = newRunner()
    const { args, fc } = runner.containerStep({
      image: testImages.tiny,
      entryPoint: 'sh',
      args: runnerSplit('-c "echo before-exit-5; echo failed=yes >> $GITHUB_OUTPUT; exit 5"')
    })
    const r = await runner.call('run_container_step', args, { state: null })
    expect(r.code).toBe(5)
    expect(r.stdout).toContain('before-exit-5\n')
    // the user's failure is not reported as an infrastructure error
    expect(errorLines(r)).toEqual([])
    // file commands still come back for a failed step (the runner processes them in `finally`)
    expect(readFileSync(fc.files.GITHUB_OUTPUT, 'utf8')).toBe('failed=yes\n')
    expect(await leftovers(runner)).toEqual(NOTHING)
  })
})

// No cleanup_job follows a container action without state: a hook killed in its teardown left the
// job's folder (a copy of the workspace) and its containers on a host later jobs use, and nothing
// but a prepare_job of the same runner there removed them.
describe('a container action without state on a host others use next', () => {
  /** A container of `owner`'s job `job`, as a step of it would have left (labelled for this runner when `runner`). */
  async function leftContainer(owner: string, job: string, runner?: string): Promise<string> {
    const labels = [`${LABEL_OWNER}=${owner}`, `${LABEL_JOB}=${job}`, ...(runner ? [`${LABEL_RUNNER}=${runner}`] : [])]
    const r = await cmd('docker', ['create', ...labels.flatMap((l) => ['--label', l]), testImages.tiny, 'true'])
    expect(r.code).toBe(0)
    return r.stdout.trim()
  }
  const exists = async (id: string): Promise<boolean> => (await cmd('docker', ['inspect', '--format', '.', id])).code === 0

  test("removes this runner's earlier leftovers there before its step; another runner's stay (control)", async () => {
    const runner = newRunner()
    const vm = testVm()
    const dead = randomBytes(8).toString('hex')
    const other = randomBytes(8).toString('hex')
    const folderOf = (owner: string): string => join(vm.workRoot, 'jobs', `${owner}-${dead}`)
    for (const owner of [runner.owner, other]) {
      mkdirSync(join(folderOf(owner), 'w'), { recursive: true })
      writeFileSync(join(folderOf(owner), 'w', 'left.txt'), 'left\n')
      expect((await cmd('chown', ['-R', `${vm.user}:`, folderOf(owner)])).code).toBe(0)
    }
    const mine = await leftContainer(runner.owner, dead, runner.name)
    const theirs = await leftContainer(other, dead)
    try {
      const { args } = runner.containerStep({ image: testImages.tiny, entryPoint: 'sh', args: runnerSplit('-c "echo ran"') })
      const r = await runner.call('run_container_step', args, { state: null })
      expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
      expect(r.stdout).toContain('removed leftovers of an earlier job: 1 containers')
      expect(existsSync(folderOf(runner.owner))).toBe(false)
      expect(await exists(mine)).toBe(false)
      // Control: what another runner left is not this runner's to remove.
      expect(existsSync(join(folderOf(other), 'w', 'left.txt'))).toBe(true)
      expect(await exists(theirs)).toBe(true)
      expect(await leftovers(runner)).toEqual(NOTHING)
    } finally {
      await cmd('docker', ['rm', '-f', mine, theirs])
      for (const owner of [runner.owner, other]) rmSync(folderOf(owner), { recursive: true, force: true })
    }
  })

  test("what carries the step's job label but is not its container (the job is root there) is removed after the step", async () => {
    const runner = newRunner()
    const { args } = runner.containerStep({ image: testImages.tiny, entryPoint: 'sh', args: runnerSplit('-c "sleep 3"') })
    const { done } = runner.start('run_container_step', args, { state: null })
    const label = `{{index .Config.Labels "${LABEL_JOB}"}}`
    let job = ''
    const seen = await waitUntil(
      async () => {
        const ids = (await cmd('docker', ['ps', '-q', '--filter', `label=${LABEL_RUNNER}=${runner.name}`])).stdout
          .split('\n')
          .filter(Boolean)
        if (ids.length) job = (await cmd('docker', ['inspect', '--format', label, ids[0]])).stdout.trim()
        return job !== ''
      },
      30_000,
      50
    )
    expect(seen).toBe(true)
    const made = await leftContainer(runner.owner, job, runner.name)
    try {
      const r = await done
      expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
      expect(await exists(made)).toBe(false)
      expect(await leftovers(runner)).toEqual(NOTHING)
    } finally {
      await cmd('docker', ['rm', '-f', made])
    }
  })
})

describe('private registry', () => {
  // This suite runs twice (container-step-no-agent.test.ts, agent off), maybe at the same time in
  // another worker, against one dockerd: each test removes the image and looks for it afterwards,
  // so the other file's pull in between made a failed pull look like one that left the image.
  const registryTurn = (fn: () => Promise<void>): Promise<void> =>
    withFileLock(join(testenvDir, 'registry-image.lock'), fn, 180_000, { what: "the private registry tests' lock" })
  const reg = loadRegistry()
  const password = readFileSync(reg.passwordFile, 'utf8')

  test('prepare_job pulls the job image with credentials; the password is never printed nor on a command line', () =>
    registryTurn(async () => {
      expect(password.length).toBeGreaterThanOrEqual(8)
      await removeImage(reg.image)
      const runner = newRunner()
      const { done } = runner.start(
        'prepare_job',
        { container: runner.jobContainer(reg.image, { registry: { username: reg.user, password, serverUrl: reg.host } }), services: [] },
        { state: null }
      )
      const scan = await scanWhile(password, done, 5, 20)
      const r: HookRun = await done
      expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
      expect(await imagePresent(reg.image)).toBe(true)
      expect(r.stdout + r.stderr).not.toContain(password)
      expect(scan.hits).toEqual([])
      expect(scan.scans).toBeGreaterThanOrEqual(5)
      // and no file under the VM's work root keeps it (the per-job docker config is gone)
      // and no file in the job folder or the SSH user's docker config keeps it
      const jobRoot = (r.response.state as { jobRoot: string }).jobRoot
      const vmHome = (await cmd('getent', ['passwd', testVm().user])).stdout.split(':')[5]
      expect(jobRoot).toBeTruthy()
      expect(vmHome).toBeTruthy()
      const dockerAuth = Buffer.from(`${reg.user}:${password}`).toString('base64')
      // The job folder is searched (it must be there); the SSH user's ~/.docker only if something made it.
      expect(existsSync(jobRoot)).toBe(true)
      const where = [jobRoot, ...(existsSync(`${vmHome}/.docker`) ? [`${vmHome}/.docker`] : [])]
      for (const needle of [password, dockerAuth]) {
        // grep's 1: searched and not found (2 would be a folder that is not there)
        const g = await cmd('grep', ['-rlF', '--', needle, ...where])
        expect({ code: g.code, found: g.stdout }).toEqual({ code: 1, found: '' })
      }

      runner.state = r.response.state
      expect((await runner.cleanup()).code).toBe(0)
      runner.state = null
      expect(await leftovers(runner)).toEqual(NOTHING)
    }))

  // docker asks for a manifest twice (HEAD, then GET after a HEAD failed): two 503s fail its pull.
  test('a pull the registry failed (a 503) is tried again: prepare_job succeeds and says so', () =>
    registryTurn(async () => {
      const proxy = await registryFaults(reg.host, 2)
      const via = `127.0.0.1:${proxy.port}`
      const image = `${via}/${reg.image.slice(reg.host.length + 1)}`
      try {
        await removeImage(image)
        const runner = newRunner()
        const r = await runner.call(
          'prepare_job',
          { container: runner.jobContainer(image, { registry: { username: reg.user, password, serverUrl: via } }), services: [] },
          { state: null }
        )
        // Set at once: a failed expectation below still leaves the job to the suite's cleanup.
        if (r.response?.state) runner.state = r.response.state
        expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
        // Positive control: docker met both failures, and asked again only after them.
        expect(proxy.failed()).toBe(2)
        expect(proxy.manifests()).toBeGreaterThan(2)
        expect(r.stdout).toMatch(
          new RegExp(
            `docker pull ${image.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} failed \\(exit code 1\\): .*503.*; trying again in \\d+ s \\(attempt 2 of 3\\)`
          )
        )
        expect(await imagePresent(image)).toBe(true)
        expect(r.stdout + r.stderr).not.toContain(password)
        expect((await runner.cleanup()).code).toBe(0)
        runner.state = null
        expect(await leftovers(runner)).toEqual(NOTHING)
      } finally {
        await cmd('docker', ['image', 'rm', '-f', image])
        await proxy.close()
      }
    }))

  test('a wrong password fails prepare_job with an ::error:: and leaves nothing behind', () =>
    registryTurn(async () => {
      await removeImage(reg.image)
      const runner = newRunner()
      const wrong = `wrong-${randomBytes(8).toString('hex')}`
      const r = await runner.call(
        'prepare_job',
        {
          container: runner.jobContainer(reg.image, { registry: { username: reg.user, password: wrong, serverUrl: reg.host } }),
          services: []
        },
        { state: null }
      )
      expect(r.code).not.toBe(0)
      const errors = errorLines(r)
      expect(errors).toHaveLength(1)
      expect(errors[0]).toContain(reg.image)
      expect(r.stdout + r.stderr).not.toContain(wrong)
      expect(await imagePresent(reg.image)).toBe(false)
      expect(await leftovers(runner)).toEqual(NOTHING)
      expect(await runnerProcesses(runner)).toEqual([])
      const c = await runner.call('cleanup_job', {}, { state: null })
      expect(c.code).toBe(0)
    }))
})

test('images.pullPolicy "never" with a missing image: a clear error naming the image and the setting', async () => {
  const runner = newRunner({ config: { images: { pullPolicy: 'never' } } })
  const image = `rch-test/absent-${randomBytes(4).toString('hex')}:1`
  expect(await imagePresent(image)).toBe(false)
  const r = await runner.call('prepare_job', { container: runner.jobContainer(image), services: [] }, { state: null })
  expect(r.code).not.toBe(0)
  const errors = errorLines(r)
  expect(errors).toHaveLength(1)
  expect(errors[0]).toContain(image)
  expect(errors[0]).toContain('images.pullPolicy')
  expect(await leftovers(runner)).toEqual(NOTHING)
})

// docker takes an untagged name of hex digits that names no image for the prefix of an image's id:
// `image: <prefix>` ran whatever local image's id starts so (one a job left on a shared host).
test('an untagged hex name is only ever a name: not taken for the prefix of a local image id', async () => {
  const id = (await cmd('docker', ['image', 'inspect', '--format', '{{.Id}}', testImages.tiny])).stdout.trim()
  const prefix = id.replace(/^sha256:/, '').slice(0, 12)
  expect(prefix).toMatch(/^[0-9a-f]{12}$/)
  // Positive control: docker's own lookup takes the prefix for the tiny image.
  expect((await cmd('docker', ['image', 'inspect', '--format', '{{.Id}}', prefix])).stdout.trim()).toBe(id)
  const runner = newRunner({ config: { images: { pullPolicy: 'never' } } })
  const r = await runner.call('prepare_job', { container: runner.jobContainer(prefix), services: [] }, { state: null })
  expect(r.code).not.toBe(0)
  expect(errorLines(r)).toEqual([`::error::image ${prefix} is not on the remote host and images.pullPolicy is "never"`])
  expect(await leftovers(runner)).toEqual(NOTHING)
  const { args } = runner.containerStep({ image: prefix, entryPoint: 'sh', args: runnerSplit('-c "echo ran"') })
  const s = await runner.call('run_container_step', args, { state: null })
  expect(s.code).not.toBe(0)
  expect(s.stdout).not.toContain('ran\n')
  expect(errorLines(s)).toEqual([`::error::image ${prefix} is not on the remote host and images.pullPolicy is "never"`])
  expect(await leftovers(runner)).toEqual(NOTHING)
})

test("a services-only job's container action sees the workspace as the runner host's steps left it (control: with a job container, host changes stay on the host)", async () => {
  // Without a job container, run: steps and JS actions run on the runner host: a checkout there
  // after prepare_job must reach the VM before a container action reads it.
  const action = (runner: FakeRunner) =>
    runner.containerStep({
      image: testImages.tiny,
      entryPoint: 'sh',
      args: runnerSplit('-c "cat /github/workspace/host-made.txt || echo not-there"')
    })
  const servicesOnly = newRunner()
  const svc = servicesOnly.service(testImages.tiny, { entryPoint: 'sh', entryPointArgs: runnerSplit('-c "exec sleep 3600"') })
  expect((await servicesOnly.prepare({ container: null, services: [svc] })).code).toBe(0)
  writeFileSync(`${servicesOnly.workspace}/host-made.txt`, 'checked out on the host\n')
  const r = await servicesOnly.call('run_container_step', action(servicesOnly).args)
  expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
  expect(r.stdout).toMatch(/^checked out on the host$/m)
  expect((await servicesOnly.cleanup()).code).toBe(0)
  // Control: a job with a job container runs its steps on the VM; the repository is not pushed again.
  const withContainer = newRunner()
  expect((await withContainer.prepare({ container: withContainer.jobContainer(testImages.tiny), services: [] })).code).toBe(0)
  writeFileSync(`${withContainer.workspace}/host-made.txt`, 'checked out on the host\n')
  const c = await withContainer.call('run_container_step', action(withContainer).args)
  expect(c.code).toBe(0)
  expect(c.stdout).toMatch(/^not-there$/m)
  expect((await withContainer.cleanup()).code).toBe(0)
})
