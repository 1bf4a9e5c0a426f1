// User volumes as the runner passes them, and the bundle working alone in an empty folder.
import { copyFileSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeRunner, HOOK } from '../helpers/fake-runner'
import { loadRegistry, testImages } from '../helpers/testenv'
import { errorLines } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'
import { holdingProxy } from '../helpers/holding-proxy'
import { LABEL_JOB, LABEL_OWNER } from '../../src/labels'
import type { HookRun } from '../helpers/fake-runner'
import { TAR_COPY_MAX } from '../../src/job'

const volumeExists = (name: string): boolean => {
  try {
    execFileSync('docker', ['volume', 'inspect', name], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

describe('user volumes and the standalone bundle', () => {
  test('named, anonymous and workspace host-path volumes; the named volume the job made is removed at cleanup', async () => {
    // dist/index.js copied alone into an empty folder: no node_modules anywhere above it.
    const alone = mkdtempSync(join(tmpdir(), 'rch-bundle-'))
    copyFileSync(HOOK, join(alone, 'index.js'))
    expect(existsSync(join(alone, 'node_modules'))).toBe(false)
    const runner = new FakeRunner({ hook: join(alone, 'index.js') })
    const vol = `rch-test-vol-${runner.trackingId.slice(0, 8)}`
    try {
      mkdirSync(join(runner.workspace, 'data'), { recursive: true })
      writeFileSync(join(runner.workspace, 'data', 'seed.txt'), 'seeded on the host\n')
      const p = await runner.prepare({
        container: runner.jobContainer(testImages.glibc, {
          userMountVolumes: [
            runner.mount(vol, '/named', false, `${vol}:/named`),
            runner.mount(null, '/anon', false, '/anon'),
            runner.mount(join(runner.workspace, 'data'), '/hostdata', true, './data:/hostdata:ro')
          ]
        }),
        services: []
      })
      expect({ code: p.code, out: p.stdout }).toEqual({ code: 0, out: expect.not.stringContaining('::error::') })
      expect(volumeExists(vol)).toBe(true)
      const { args } = runner.scriptStep(
        'cat /hostdata/seed.txt; echo persisted > /named/x; echo anon > /anon/y; cat /named/x /anon/y; touch /hostdata/ro 2>/dev/null && echo writable || echo read-only\n'
      )
      const r = await runner.call('run_script_step', args)
      expect(r.code).toBe(0)
      expect(r.stdout).toContain('seeded on the host')
      expect(r.stdout).toContain('persisted\nanon\n')
      expect(r.stdout).toContain('read-only')
      const c = await runner.cleanup()
      expect(c.code).toBe(0)
      expect(volumeExists(vol)).toBe(false)
    } finally {
      await runner.cleanup()
      runner.dispose()
      rmSync(alone, { recursive: true, force: true })
    }
  })

  test('a volume that existed before the job is left alone', async () => {
    const runner = new FakeRunner()
    const vol = `rch-test-keep-${runner.trackingId.slice(0, 8)}`
    execFileSync('docker', ['volume', 'create', vol], { stdio: 'ignore' })
    try {
      const p = await runner.prepare({
        container: runner.jobContainer(testImages.tiny, { userMountVolumes: [runner.mount(vol, '/keep', false, `${vol}:/keep`)] }),
        services: []
      })
      expect(p.code).toBe(0)
      expect((await runner.cleanup()).code).toBe(0)
      expect(volumeExists(vol)).toBe(true)
    } finally {
      execFileSync('docker', ['volume', 'rm', '-f', vol], { stdio: 'ignore' })
      runner.dispose()
    }
  })

  test('a host path outside the work folder is refused before anything starts', async () => {
    const runner = new FakeRunner()
    try {
      const p = await runner.prepare({
        container: runner.jobContainer(testImages.tiny, { userMountVolumes: [runner.mount('/etc', '/hostetc', true, '/etc:/hostetc:ro')] }),
        services: []
      })
      expect(p.code).not.toBe(0)
      expect(p.stdout).toMatch(/::error::args\.container\.userMountVolumes\.0\.sourceVolumePath: host path \/etc is outside/)
      expect(p.stdout).not.toContain('connecting')
    } finally {
      runner.dispose()
    }
  })
})

describe('bulk copies without an OpenSSH client on the runner host', () => {
  test('the first sync goes through the job agent instead, and the job works', async () => {
    // A PATH holding rsync and tar but no ssh: the hook must use its agent as rsync's transport.
    const bin = mkdtempSync(join(tmpdir(), 'rch-bin-'))
    for (const tool of ['rsync', 'tar', 'sh', 'dd', 'xargs', 'rm'])
      execFileSync('ln', [
        '-s',
        execFileSync('sh', ['-c', `command -v ${tool}`])
          .toString()
          .trim(),
        join(bin, tool)
      ])
    expect(existsSync(join(bin, 'ssh'))).toBe(false)
    const runner = new FakeRunner()
    try {
      writeFileSync(join(runner.workspace, 'via-agent.txt'), 'copied by rsync over the agent\n')
      // Past the tar copy's limit (TAR_COPY_MAX): a small tree would go over the hook's own connection.
      writeFileSync(join(runner.workspace, 'big.bin'), Buffer.alloc(TAR_COPY_MAX.bytes + 1))
      const p = await runner.call(
        'prepare_job',
        { container: runner.jobContainer(testImages.tiny), services: [] },
        { state: null, env: { PATH: bin } }
      )
      expect({ code: p.code, out: p.stdout }).toEqual({ code: 0, out: expect.not.stringContaining('::error::') })
      expect(p.stdout).toMatch(/copied \d+ files \/ [\d.]+ MB in [\d.]+ s \(rsync; /)
      runner.state = p.response.state
      const { args } = runner.scriptStep('cat via-agent.txt\n')
      const r = await runner.call('run_script_step', args, { env: { PATH: bin } })
      expect(r.code).toBe(0)
      expect(r.stdout).toContain('copied by rsync over the agent')
    } finally {
      await runner.cleanup()
      runner.dispose()
      rmSync(bin, { recursive: true, force: true })
    }
  })
})

const jobIdOf = (r: HookRun): string => (r.response.state as { jobId: string }).jobId

/** The volume's labels, or null when it does not exist. */
const volumeLabels = (name: string): Record<string, string> | null => {
  try {
    return JSON.parse(execFileSync('docker', ['volume', 'inspect', name, '--format', '{{json .Labels}}']).toString()) ?? {}
  } catch {
    return null
  }
}

describe("a named volume docker creates at container create is the job's", () => {
  test("one that another runner's job removes between this prepare_job's check and its creates comes back with this job's labels, and its cleanup removes it", async () => {
    const reg = loadRegistry()
    const password = readFileSync(reg.passwordFile, 'utf8')
    const proxy = await holdingProxy(Number(reg.host.split(':')[1]))
    const held = `127.0.0.1:${proxy.port}/${reg.image.slice(reg.host.length + 1)}`
    const a = new FakeRunner()
    const b = new FakeRunner()
    const id = a.trackingId.slice(0, 8)
    // One mounted by a container created through the Engine API, one by `docker create` (a service with
    // options), at a target that, unquoted, would add bind options to the volume docker creates.
    const [viaApi, viaCli] = [`rch-test-race-api-${id}`, `rch-test-race-cli-${id}`]
    const hostile = '/x","volume-opt=type=none","volume-opt=device=/etc","volume-opt=o=bind'
    try {
      const pa = await a.prepare({
        container: a.jobContainer(testImages.tiny, { userMountVolumes: [a.mount(viaApi, '/api'), a.mount(viaCli, '/cli')] }),
        services: []
      })
      expect({ code: pa.code, errors: errorLines(pa) }).toEqual({ code: 0, errors: [] })
      expect(volumeLabels(viaApi)).toMatchObject({ [LABEL_JOB]: jobIdOf(pa) })
      // b finds both volumes existing, then waits on its service's pull, which the proxy holds.
      const { done } = b.start(
        'prepare_job',
        {
          container: b.jobContainer(testImages.tiny, { userMountVolumes: [b.mount(viaApi, '/api')] }),
          services: [
            b.service(held, {
              createOptions: '--cpus 1',
              entryPoint: 'sleep',
              entryPointArgs: ['600'],
              registry: { username: reg.user, password, serverUrl: `127.0.0.1:${proxy.port}` },
              userMountVolumes: [b.mount(viaCli, hostile)]
            })
          ]
        },
        { state: null }
      )
      expect(await waitUntil(() => proxy.connections() > 0, 60_000)).toBe(true)
      // a's cleanup removes both: nothing of b's mounts them yet.
      expect((await a.cleanup()).code).toBe(0)
      expect([volumeLabels(viaApi), volumeLabels(viaCli)]).toEqual([null, null])
      proxy.release()
      const pb = await done
      expect({ code: pb.code, errors: errorLines(pb) }).toEqual({ code: 0, errors: [] })
      b.state = pb.response.state
      const mine = { [LABEL_JOB]: jobIdOf(pb), [LABEL_OWNER]: b.owner }
      expect([volumeLabels(viaApi), volumeLabels(viaCli)]).toEqual([expect.objectContaining(mine), expect.objectContaining(mine)])
      // The hostile target is the mount's destination, letter for letter, and the volume has no options.
      const service = execFileSync('docker', ['ps', '-aq', '--filter', `label=${LABEL_JOB}=${jobIdOf(pb)}`, '--filter', 'volume=' + viaCli])
        .toString()
        .trim()
      expect(service).toMatch(/^[0-9a-f]+$/)
      const mounts = JSON.parse(execFileSync('docker', ['inspect', service, '--format', '{{json .Mounts}}']).toString()) as Array<{
        Name?: string
        Destination: string
      }>
      expect(mounts.filter((m) => m.Name === viaCli).map((m) => m.Destination)).toEqual([hostile])
      expect(execFileSync('docker', ['volume', 'inspect', viaCli, '--format', '{{json .Options}}']).toString().trim()).toMatch(
        /^(null|\{\})$/
      )
      expect((await b.cleanup()).code).toBe(0)
      expect([volumeLabels(viaApi), volumeLabels(viaCli)]).toEqual([null, null])
    } finally {
      proxy.release()
      await proxy.close()
      for (const r of [a, b]) {
        await r.cleanup()
        r.dispose()
      }
      for (const v of [viaApi, viaCli]) execFileSync('docker', ['volume', 'rm', '-f', v], { stdio: 'ignore' })
      execFileSync('docker', ['rmi', '-f', held], { stdio: 'ignore' })
    }
  })

  test("a container action's named volume, which nothing creates beforehand, has the job's labels and goes at cleanup; one that existed stays", async () => {
    const runner = new FakeRunner()
    const id = runner.trackingId.slice(0, 8)
    const [fresh, existing] = [`rch-test-step-vol-${id}`, `rch-test-step-keep-${id}`]
    execFileSync('docker', ['volume', 'create', existing], { stdio: 'ignore' })
    try {
      const p = await runner.prepare({ container: runner.jobContainer(testImages.tiny), services: [] })
      expect(p.code).toBe(0)
      const { args } = runner.containerStep({
        image: testImages.tiny,
        args: ['sh', '-c', 'echo kept > /fresh/x && ls /keep && echo listed']
      })
      const r = await runner.call('run_container_step', {
        ...args,
        userMountVolumes: [runner.mount(fresh, '/fresh'), runner.mount(existing, '/keep')]
      })
      expect({ code: r.code, out: r.stdout }).toEqual({ code: 0, out: expect.stringContaining('listed') })
      expect(volumeLabels(fresh)).toMatchObject({ [LABEL_JOB]: jobIdOf(p), [LABEL_OWNER]: runner.owner })
      expect(volumeLabels(existing)).toEqual({})
      expect((await runner.cleanup()).code).toBe(0)
      expect(volumeLabels(fresh)).toBeNull()
      // the control: a volume the job did not make stays
      expect(volumeLabels(existing)).toEqual({})
    } finally {
      await runner.cleanup()
      runner.dispose()
      for (const v of [fresh, existing]) execFileSync('docker', ['volume', 'rm', '-f', v], { stdio: 'ignore' })
    }
  })
})
