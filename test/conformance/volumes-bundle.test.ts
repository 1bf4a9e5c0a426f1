// User volumes as the runner passes them, and the bundle working alone in an empty folder.
import { copyFileSync, mkdtempSync, mkdirSync, writeFileSync, existsSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeRunner, HOOK } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
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
    }
  })
})
