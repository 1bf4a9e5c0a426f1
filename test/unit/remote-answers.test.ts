// Strict parsing of what the remote prints: start-up noise, printed paths, `..` and symlinks never
// reach `rm`; unexpected answers are errors naming what came back.
import { existsSync, lstatSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ask, record, unframe, UnexpectedAnswer } from '../../src/remote/answer'
import { assertJobFolder, removeJobFolder } from '../../src/docker/job-folder'
import { StaticHostProvider } from '../../src/providers/static-host'
import type { ProviderEnv } from '../../src/providers/provider'
import { removeOwnedLeftovers } from '../../src/handlers/cleanup-job'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs, tempDir } from './_helpers'
import { emptyEngine, LocalRemote } from './local-remote'
import { recordingFleetGate } from '../helpers/fleet-gate'
import { runnerFacts } from '../helpers/runner-facts'
import { unexpectedScrub } from '../helpers/runner-facts'

afterAll(cleanupTempDirs)

const OWNER = '0123456789abcdef'
const JOB = 'fedcba9876543210'

/** A provider's environment whose every connection is `remote`. */
function env(remote: Remote): ProviderEnv {
  const logged: string[] = []
  const log = { debug: () => undefined, progress: (m: string) => void logged.push(m), warn: (m: string) => void logged.push(m) }
  return {
    runner: runnerFacts(),
    log,
    signal: new AbortController().signal,
    connect: async () => remote,
    discard: async () => undefined,
    fleet: recordingFleetGate(),
    scrub: unexpectedScrub
  }
}

/** Cleanup without state as cleanup_job runs it: the handler's tidy on each host, then the provider's release. */
async function cleanupOrphans(workRoot: string, remote: Remote) {
  const engine = await emptyEngine(tempDir())
  try {
    return await provider(workRoot).cleanupOrphans(OWNER, env(remote), (r) =>
      removeOwnedLeftovers(r, workRoot, engine.socket, OWNER).then(() => undefined)
    )
  } finally {
    await engine.close()
  }
}

function provider(workRoot: string): StaticHostProvider {
  return new StaticHostProvider(
    {
      kind: 'static',
      acquireTimeoutSeconds: 0,
      hosts: [{ host: '127.0.0.1', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh', slots: 2 }]
    },
    workRoot
  )
}

/** A work root with one real job folder of OWNER, a canary folder outside it, and look-alike names. */
function layout() {
  const dir = tempDir()
  const workRoot = join(dir, 'work')
  const jobs = join(workRoot, 'jobs')
  const canary = join(dir, 'canary')
  mkdirSync(join(jobs, `${OWNER}-${JOB}`, 'w'), { recursive: true })
  writeFileSync(join(jobs, `${OWNER}-${JOB}`, 'w', 'f'), 'x')
  mkdirSync(canary)
  writeFileSync(join(canary, 'keep'), 'precious')
  for (const n of [`${OWNER}-notajob`, `${OWNER}-${JOB}0`]) mkdirSync(join(jobs, n))
  return { dir, workRoot, jobs, canary }
}

describe('answers are framed', () => {
  test('noise before and after the frame is ignored; records come back exactly', async () => {
    const r = new LocalRemote(tempDir(), { before: 'hello\\000/etc\\n', after: '/tmp\\000bye\\n' })
    await expect(ask(r, `${record("'a b'")}; ${record("'new'")}`, { label: 't' })).resolves.toEqual(['a b', 'new'])
    // positive control: the noise really was printed around the answer
    expect(r.outputs[0].toString('latin1')).toMatch(/^hello\0\/etc\n[^]*\/tmp\0bye\n$/)
  })

  test('an answer without the frame is an error naming what came back, escaped and truncated', async () => {
    let err: unknown = null
    try {
      unframe(Buffer.from(`/home/victim\n\u001b[31m${'y'.repeat(500)}`), 'n0nce', 'list things')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(UnexpectedAnswer)
    expect((err as Error).message).toContain('list things: the remote\'s answer has no frame; got "/home/victim\\n\\u001b[31myyy')
    expect((err as Error).message).toMatch(/… \(\d+ bytes\)$/)
    expect((err as Error).message).not.toContain('\n')
  })

  test('silentShell: output around the frame is an error naming it (rsync could not work through it)', async () => {
    const noisy = new LocalRemote(tempDir(), { before: 'Welcome\\n' })
    await expect(ask(noisy, record("'ok'"), { label: 'create the job folder', silentShell: true })).rejects.toThrow(
      /create the job folder: the SSH user's shell printed output of its own \("Welcome\\n"\).*start-up files/
    )
    // control: the same noisy shell without the option, and a silent shell with it, both answer
    await expect(ask(new LocalRemote(tempDir(), { before: 'Welcome\\n' }), record("'ok'"), { label: 'x' })).resolves.toEqual(['ok'])
    await expect(ask(new LocalRemote(tempDir()), record("'ok'"), { label: 'x', silentShell: true })).resolves.toEqual(['ok'])
  })

  test('a frame cut short is an error', () => {
    expect(() => unframe(Buffer.from('RCH-BEGIN-n\0a\0b'), 'n', 'x')).toThrow(/ends inside the frame/)
  })
})

describe('job folder paths are checked before any rm', () => {
  test.each([
    ['/srv/w/jobs/0123456789abcdef-fedcba9876543210', true],
    ['/srv/w/jobs/0123456789abcdef-fedcba9876543210/..', false],
    ['/srv/w/jobs/../jobs/0123456789abcdef-fedcba9876543210', false],
    ['/srv/w/jobs/0123456789abcdef-fedcba98765432', false],
    ['/srv/w/jobs//0123456789abcdef-fedcba9876543210', false],
    ['/srv/w/jobs/0123456789ABCDEF-fedcba9876543210', false],
    ['/home/rchvm', false],
    ['/srv/w/jobs/0123456789abcdef-fedcba9876543210\n/etc', false]
  ])('%j allowed: %s', (p, ok) => {
    if (ok) expect(() => assertJobFolder('/srv/w', p)).not.toThrow()
    else expect(() => assertJobFolder('/srv/w', p)).toThrow(/refusing to touch/)
  })

  test('removeJobFolder refuses a path with .. and a printed path without running anything', async () => {
    const { workRoot, canary, dir } = layout()
    const r = new LocalRemote(dir)
    await expect(removeJobFolder(r, workRoot, `${workRoot}/jobs/${OWNER}-${JOB}/../../../canary`, null)).rejects.toThrow(
      /refusing to touch/
    )
    await expect(removeJobFolder(r, workRoot, canary, null)).rejects.toThrow(/refusing to touch/)
    expect(r.commands).toEqual([])
    expect(existsSync(join(canary, 'keep'))).toBe(true)
  })

  test('a symlinked job folder is removed as a link; its target survives', async () => {
    const { workRoot, jobs, canary, dir } = layout()
    const link = join(jobs, `${OWNER}-${'1'.repeat(16)}`)
    symlinkSync(canary, link)
    await removeJobFolder(new LocalRemote(dir), workRoot, link, null)
    expect(existsSync(link) || lstatSync(link, { throwIfNoEntry: false })).toBeFalsy()
    expect(existsSync(join(canary, 'keep'))).toBe(true)
  })

  test('a jobs folder that is a symlink is refused', async () => {
    const { workRoot, canary, dir } = layout()
    const other = join(dir, 'other')
    mkdirSync(join(other, 'x'), { recursive: true })
    const wr2 = join(dir, 'work2')
    mkdirSync(wr2)
    symlinkSync(canary, join(wr2, 'jobs'))
    await expect(removeJobFolder(new LocalRemote(dir), wr2, `${wr2}/jobs/${OWNER}-${JOB}`, null)).rejects.toThrow(/symlink/)
    expect(existsSync(join(canary, 'keep'))).toBe(true)
    void workRoot
  })
})

describe('state-less cleanup (cleanupOrphans)', () => {
  test('a start-up file printing a path does not get it removed; only exact job folders go', async () => {
    const { workRoot, jobs, canary, dir } = layout()
    const remote = new LocalRemote(dir, { before: `${canary}\\n`, after: `\\n${canary}\\n` })
    const link = join(jobs, `${OWNER}-${'2'.repeat(16)}`)
    symlinkSync(canary, link)
    expect(await cleanupOrphans(workRoot, remote)).toEqual({ released: [], unreachable: [] })
    // positive control: the noise was printed on the listing's stdout
    expect(remote.outputs.some((o) => o.toString().startsWith(`${canary}\n`))).toBe(true)
    expect(existsSync(join(canary, 'keep'))).toBe(true)
    expect(readdirSync(jobs).sort()).toEqual([`${OWNER}-${JOB}0`, `${OWNER}-notajob`])
    // no command names the canary
    expect(remote.commands.filter((c) => c.includes(canary))).toEqual([])
  })

  test('a listing value outside the pattern is an error, never an rm argument', async () => {
    const { workRoot, dir } = layout()
    const remote = new LocalRemote(dir)
    // A remote whose listing answers with a foreign path inside the frame.
    const evil: Remote = {
      openExec: (c) =>
        remote.openExec(c.includes('list') || c.includes('for d in') ? c.replace('for d in', `printf '%s\\0' /home/victim; for d in`) : c),
      openSocket: (p) => remote.openSocket(p),
      close: () => undefined
    }
    const report = await cleanupOrphans(workRoot, evil)
    expect(report.unreachable).toEqual([
      { machine: '127.0.0.1:22', reason: expect.stringMatching(/unexpected value from the remote: "\/home\/victim"/) }
    ])
    expect(remote.commands.filter((c) => c.includes('rm -rf') && c.includes('/home/victim'))).toEqual([])
  })
})

describe('leasing reads its answer strictly', () => {
  test('start-up noise does not turn a free slot into "busy"', async () => {
    const { workRoot, dir } = layout()
    const remote = new LocalRemote(dir, { before: 'Welcome!\\n', after: 'bye\\n' })
    const got = await provider(workRoot).acquire({ jobId: JOB, owner: OWNER, localDir: dir }, env(remote))
    expect(got.lease.slot).toBe(0)
    expect(remote.outputs[0].toString()).toMatch(/^Welcome!\n/)
  })

  test('an unexpected answer is an error naming it, not a wait for a free slot', async () => {
    const { workRoot, dir } = layout()
    const remote = new LocalRemote(dir)
    const evil: Remote = {
      openExec: (c) => remote.openExec(c.replace(/printf '%s\\0' \$r/, "printf '%s\\0' maybe")),
      openSocket: (p) => remote.openSocket(p),
      close: () => undefined
    }
    const t0 = Date.now()
    await expect(provider(workRoot).acquire({ jobId: JOB, owner: OWNER, localDir: dir }, env(evil))).rejects.toThrow(
      /lease a slot \(0 to 1\) on 127\.0\.0\.1:22: unexpected value from the remote: "maybe"/
    )
    expect(Date.now() - t0).toBeLessThan(5000)
  })
})

describe('thenFolders: the job folders go even when removing what docker holds failed', () => {
  it('runs the folders after a failure, rethrows that first failure as it was, and hands a second one on', async () => {
    const { thenFolders } = await import('../../src/docker/job-folder')
    const { TransportError } = await import('../../src/errors')
    const seen: string[] = []
    const first = new TransportError('connection lost', 'lost')
    await expect(
      thenFolders(
        Promise.reject(first),
        async () => void seen.push('folders'),
        () => seen.push('also')
      )
    ).rejects.toBe(first)
    expect(seen).toEqual(['folders'])
    await expect(
      thenFolders(
        Promise.reject(first),
        () => Promise.reject(new Error('folder failed')),
        (e) => seen.push(`also: ${(e as Error).message}`)
      )
    ).rejects.toBe(first)
    expect(seen).toEqual(['folders', 'also: folder failed'])
    // control: without a failure, the folders run and their own failure is the error
    await expect(
      thenFolders(
        Promise.resolve(3),
        async () => void seen.push('folders again'),
        () => undefined
      )
    ).resolves.toBe(3)
    await expect(
      thenFolders(
        Promise.resolve(3),
        () => Promise.reject(new Error('only this')),
        () => undefined
      )
    ).rejects.toThrow('only this')
  })

  it('thenFoldersReported: a failure to remove what docker holds also says what became of the job folder', async () => {
    const { thenFoldersReported } = await import('../../src/docker/job-folder')
    const { TransportError } = await import('../../src/errors')
    const lost = new TransportError('connection lost', 'lost')
    // the folder went: the report says so, and the error keeps its kind
    const e1 = await thenFoldersReported(Promise.reject(lost), async () => undefined).catch((e: unknown) => e)
    expect(e1).toBe(lost)
    expect((e1 as Error).message).toBe('connection lost; the job folder was removed')
    // both failed: the folder's failure is named too
    const busy = new Error('network in use')
    const e2 = await thenFoldersReported(Promise.reject(busy), () => Promise.reject(new Error('rm: Permission denied'))).catch(
      (e: unknown) => e
    )
    expect((e2 as Error).message).toBe('network in use; the job folder could not be removed either: rm: Permission denied')
    // control: docker's part went, the folder's own failure is the error, as it was
    await expect(thenFoldersReported(Promise.resolve(2), () => Promise.reject(new Error('only the folder')))).rejects.toThrow(
      /^only the folder$/
    )
    await expect(thenFoldersReported(Promise.resolve(2), async () => undefined)).resolves.toBe(2)
    // a failure that is not an Error becomes one that keeps it as its cause
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the case under test
    const e3 = await thenFoldersReported(Promise.reject('x'), async () => undefined).catch((e: unknown) => e)
    expect((e3 as Error).message).toBe('x; the job folder was removed')
    expect((e3 as Error).cause).toBe('x')
    // folders() that throws at once counts as a failed removal, not as one that went
    const e4 = await thenFoldersReported(Promise.reject(new Error('docker down')), () => {
      throw new Error('bad path')
    }).catch((e: unknown) => e)
    expect((e4 as Error).message).toBe('docker down; the job folder could not be removed either: bad path')
  })
})
