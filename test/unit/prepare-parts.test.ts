// prepare_job's undo list and health wait, each without a remote.
import { Undo } from '../../src/prepare/undo'
import { waitHealthy, type Started } from '../../src/prepare/health'
import type { RemoteDocker } from '../../src/docker/remote-docker'
import type { Inspect } from '../../src/docker/steps'

describe('Undo', () => {
  it('runs in reverse order, goes on past a failing entry, warns naming it, and runs once', async () => {
    const ran: string[] = []
    const warns: string[] = []
    const u = new Undo()
    u.push('release the host', async () => ran.push('release'))
    u.push('remove the job folder', async () => {
      ran.push('folder')
      throw new Error('permission denied')
    })
    u.push('remove the containers', async () => ran.push('containers'))
    await u.run((m) => warns.push(m))
    expect(ran).toEqual(['containers', 'folder', 'release'])
    expect(warns).toEqual(['while undoing prepare_job, could not remove the job folder: permission denied'])
    await u.run((m) => warns.push(m))
    expect(ran).toHaveLength(3)
    expect(u.size).toBe(0)
  })
})

describe('Undo with a bound per entry', () => {
  // The VM is the job's: a command of the undo (a docker that never answers, a shell that sleeps)
  // may never end. The entries after it, the host's release last, must still run.
  it('gives up an entry that does not end within the bound, says so, and runs the rest', async () => {
    const ran: string[] = []
    const warns: string[] = []
    const u = new Undo()
    u.push('release the host', async () => ran.push('release'))
    u.push('remove the containers', () => {
      ran.push('containers')
      return new Promise(() => undefined)
    })
    await u.run((m) => warns.push(m), 50)
    // positive control: the hanging entry really ran
    expect(ran).toEqual(['containers', 'release'])
    expect(warns).toEqual(['while undoing prepare_job, could not remove the containers: no result after 0.05 s (timeouts.cleanupSeconds)'])
  })

  it('an entry within the bound is waited for, and its failure is still named', async () => {
    const warns: string[] = []
    const u = new Undo()
    u.push('remove the job folder', () => new Promise((_, reject) => setTimeout(() => reject(new Error('busy')), 20)))
    await u.run((m) => warns.push(m), 1000)
    expect(warns).toEqual(['while undoing prepare_job, could not remove the job folder: busy'])
  })
})

describe('waitHealthy', () => {
  const info = (running: boolean, health?: string, exitCode = 0): Inspect => ({
    Id: 'x',
    Config: { Env: null, Image: 'i' },
    State: {
      Running: running,
      Status: running ? 'running' : 'exited',
      ExitCode: exitCode,
      ...(health ? { Health: { Status: health } } : {})
    },
    NetworkSettings: { Ports: null }
  })

  function setup(states: Record<string, Inspect[]>, healthSeconds = 10) {
    const polls: Record<string, number> = {}
    const out: string[] = []
    const docker = {
      inspect: async (id: string) => {
        polls[id] = (polls[id] ?? 0) + 1
        const seq = states[id]
        return seq[Math.min(polls[id] - 1, seq.length - 1)]
      },
      logs: async (id: string) => `log of ${id}\n`
    } as unknown as RemoteDocker
    const log = {
      progress: (m: string) => out.push(`progress ${m}`),
      foreign: (t: string, text: string) => out.push(`foreign ${t}: ${text.trim()}`)
    }
    const ctx = { config: { timeouts: { healthSeconds } }, log, signal: new AbortController().signal } as never
    return { docker, out, polls, ctx }
  }
  const c = (id: string, what = id): Started => ({ id, image: `${id}:1`, what })

  it('containers without a health check need only run; each is inspected once and its inspection returned', async () => {
    const s = setup({ a: [info(true)], b: [info(true)] })
    const infos = await waitHealthy(s.ctx, s.docker, [c('a'), c('b')])
    expect([...infos.keys()]).toEqual(['a', 'b'])
    expect(s.polls).toEqual({ a: 1, b: 1 })
  })

  it('waits for "starting" to turn healthy, polling only what is pending', async () => {
    const s = setup({ a: [info(true)], b: [info(true, 'starting'), info(true, 'starting'), info(true, 'healthy')] })
    const infos = await waitHealthy(s.ctx, s.docker, [c('a'), c('b')])
    expect(infos.get('b')!.State.Health!.Status).toBe('healthy')
    expect(s.polls).toEqual({ a: 1, b: 3 })
  })

  it('a container that stopped fails at once, its log shown first', async () => {
    const s = setup({ a: [info(false, undefined, 3)] })
    await expect(waitHealthy(s.ctx, s.docker, [c('a', 'redis')])).rejects.toThrow('redis (a:1) stopped during start-up with exit code 3')
    expect(s.polls).toEqual({ a: 1 })
    expect(s.out).toEqual(['foreign redis (a:1) logs: log of a'])
  })

  it('an unhealthy one fails at once, its log shown first', async () => {
    const s = setup({ a: [info(true, 'starting'), info(true, 'unhealthy')] })
    await expect(waitHealthy(s.ctx, s.docker, [c('a', 'db')])).rejects.toThrow('db (a:1) is unhealthy')
    expect(s.polls).toEqual({ a: 2 })
    expect(s.out).toEqual(['foreign db (a:1) logs: log of a'])
  })

  it("a log that cannot be read (the VM's docker hangs past its bound) is said in its place; the failure stays the container's", async () => {
    const s = setup({ a: [info(false, undefined, 3)] })
    ;(s.docker as unknown as { logs: () => Promise<string> }).logs = async () => {
      throw new Error('docker logs: no result after 120 s')
    }
    await expect(waitHealthy(s.ctx, s.docker, [c('a', 'redis')])).rejects.toThrow('redis (a:1) stopped during start-up with exit code 3')
    expect(s.out).toEqual(['foreign redis (a:1) logs: (its log could not be read: docker logs: no result after 120 s)'])
  })

  it('on a fake clock: pauses grow from 100 ms to 2 s, a progress line every 5 s names what is pending', async () => {
    const s = setup({ a: [info(true)], b: [...Array(12).fill(info(true, 'starting')), info(true, 'healthy')] }, 60)
    const clock = {
      t: 0,
      pauses: [] as number[],
      now: () => clock.t,
      sleep: async (ms: number) => void (clock.pauses.push(ms), (clock.t += ms))
    }
    await waitHealthy(s.ctx, s.docker, [c('a'), c('b', 'db')], clock)
    // Attempts at 0, 0.1, 0.3, 0.7, 1.5, 3.1 s, then every 2 s; a note on each 5 s mark splits the pause it falls in.
    expect(clock.pauses).toEqual([100, 200, 400, 800, 1600, 1900, 100, 2000, 2000, 900, 1100, 2000, 1900, 100, 2000])
    expect(s.out).toEqual([
      'progress waiting for health: db (5 s)',
      'progress waiting for health: db (10 s)',
      'progress waiting for health: db (15 s)'
    ])
  })

  it('past timeouts.healthSeconds: names what is pending, shows its log', async () => {
    const s = setup({ a: [info(true)], b: [info(true, 'starting')] }, 1)
    await expect(waitHealthy(s.ctx, s.docker, [c('a'), c('b', 'web')])).rejects.toThrow(
      'web not healthy after 1 s (timeouts.healthSeconds)'
    )
    expect(s.out).toEqual(['foreign web (b:1) logs: log of b'])
    expect(s.polls.b).toBeGreaterThan(2)
  })
})

describe('makeJobFolder', () => {
  const { LocalRemote } = require('./local-remote') as typeof import('./local-remote')
  const { makeJobFolder } = require('../../src/prepare/first-copy') as typeof import('../../src/prepare/first-copy')
  const { tempDir, cleanupTempDirs } = require('./_helpers') as typeof import('./_helpers')
  const { statSync, existsSync } = require('node:fs') as typeof import('node:fs')
  afterAll(cleanupTempDirs)
  const OWNER = '0123456789abcdef'
  const JOB = 'fedcba9876543210'

  it('creates the job folder and the given bind folders inside w, 0755 and owned by the SSH user', async () => {
    const root = tempDir()
    const jobRoot = `${root}/jobs/${OWNER}-${JOB}`
    await makeJobFolder(new LocalRemote(tempDir()), root, jobRoot, { dirs: [`${jobRoot}/w/_temp/_github_home`, `${jobRoot}/w/_tool`] })
    expect(statSync(jobRoot).mode & 0o777).toBe(0o700)
    for (const d of ['w', 'w/_temp', 'w/_temp/_github_home', 'w/_tool']) {
      expect(statSync(`${jobRoot}/${d}`).isDirectory()).toBe(true)
      expect(statSync(`${jobRoot}/${d}`).mode & 0o777).toBe(0o755)
    }
  })

  it('answers in the same round trip whether the externals are in place', async () => {
    const root = tempDir()
    const remote = new LocalRemote(tempDir())
    const ext = `${root}/externals/aaaaaaaaaaaaaaaa`
    await expect(makeJobFolder(remote, root, `${root}/jobs/${OWNER}-${JOB}`)).resolves.toEqual({ externalsPresent: null })
    await expect(makeJobFolder(remote, root, `${root}/jobs/${OWNER}-${'1'.repeat(16)}`, { externals: ext })).resolves.toEqual({
      externalsPresent: false
    })
    require('node:fs').mkdirSync(ext, { recursive: true })
    require('node:fs').writeFileSync(`${ext}/.rch-complete`, '')
    await expect(makeJobFolder(remote, root, `${root}/jobs/${OWNER}-${'2'.repeat(16)}`, { externals: ext })).resolves.toEqual({
      externalsPresent: true
    })
    expect(remote.commands).toHaveLength(3)
  })

  it("refuses a folder outside the job's w before anything runs", async () => {
    const root = tempDir()
    const jobRoot = `${root}/jobs/${OWNER}-${JOB}`
    const remote = new LocalRemote(tempDir())
    for (const d of [`${root}/elsewhere`, `${jobRoot}/w/../../x`, `${jobRoot}/w`]) {
      await expect(makeJobFolder(remote, root, jobRoot, { dirs: [d] })).rejects.toThrow(/not a folder of the job's copy/)
    }
    expect(remote.commands).toEqual([])
    expect(existsSync(jobRoot)).toBe(false)
  })
})

describe('allOf', () => {
  const { allOf } = require('../../src/prepare/undo') as typeof import('../../src/prepare/undo')

  it('rejects with the first failure only once every sibling has settled (the undo must find what they made)', async () => {
    let siblingDone = false
    const slow = new Promise<string>((r) => setTimeout(() => ((siblingDone = true), r('made')), 50))
    const failing = Promise.reject(new Error('create failed'))
    await expect(allOf<[string, never]>([slow, failing])).rejects.toThrow('create failed')
    expect(siblingDone).toBe(true)
  })

  it('resolves with every value in order', async () => {
    await expect(allOf<[number, string]>([Promise.resolve(1), Promise.resolve('b')])).resolves.toEqual([1, 'b'])
  })
})
