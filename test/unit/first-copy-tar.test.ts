// The first copy of a small tree: walkSmall decides, push({ fresh }) sends it as a tar over the
// connection into an empty folder ("the remote" is a local folder run by the real /bin/sh and tar).
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync
} from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { push } from '../../src/sync/sync'
import { walkLocal, walkSmall } from '../../src/sync/tree'
import { tarOf } from '../../src/sync/tar-writer'
import { SYNC_EXCLUDES } from '../../src/job'
import { LocalRemote } from './local-remote'
import type { Remote } from '../../src/remote/remote'
import { TransportError } from '../../src/errors'
import { cleanupTempDirs, tempDir, LOOSE_SYNC_LIMITS } from './_helpers'
import { running, waitUntil } from '../helpers/wait'

afterAll(cleanupTempDirs)

/** The VM's job folder `w`: the push keeps its lock in the folder above (else it was left in /tmp). */
function jobWork(): string {
  const w = join(tempDir(), 'w')
  mkdirSync(w)
  return w
}

/** A runner-side `_work` with the kinds a first copy meets, and a response file it must leave out. */
function work(): string {
  const w = tempDir()
  mkdirSync(join(w, 'repo/repo/src/deep'), { recursive: true })
  mkdirSync(join(w, '_actions/actions/checkout/v4'), { recursive: true })
  mkdirSync(join(w, '_temp/_runner_hook_responses'), { recursive: true })
  writeFileSync(join(w, 'repo/repo/README'), 'hello\n')
  writeFileSync(join(w, 'repo/repo/src/deep/run.sh'), '#!/bin/sh\necho ran\n')
  chmodSync(join(w, 'repo/repo/src/deep/run.sh'), 0o755)
  writeFileSync(join(w, 'repo/repo/name with spaces\nand a newline'), 'odd\n')
  writeFileSync(join(w, 'repo/repo/empty'), '')
  symlinkSync('README', join(w, 'repo/repo/link'))
  symlinkSync('/nowhere/at/all', join(w, 'repo/repo/dangling'))
  writeFileSync(join(w, '_actions/actions/checkout/v4/action.yml'), 'runs: {}\n')
  writeFileSync(join(w, '_temp/_runner_hook_responses/r.json'), '{"secret":1}')
  writeFileSync(join(w, '_temp/step.sh'), 'echo step\n')
  utimesSync(join(w, 'repo/repo/README'), 1_600_000_000, 1_600_000_000)
  return w
}

const ROOTS = ['_temp', '_actions', 'repo/repo']
const BIG = { entries: 1e6, bytes: 1e12 }

describe('walkSmall', () => {
  test('within the limits: the same walk as walkLocal, and the bytes of its files', () => {
    const w = work()
    const small = walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)
    expect(small).not.toBeNull()
    expect([...small!.snap]).toEqual([...walkLocal(w, ROOTS, SYNC_EXCLUDES)])
    expect(small!.bytes).toBe(6 + 19 + 4 + 0 + 9 + 10)
    expect(small!.snap.has('_temp/_runner_hook_responses')).toBe(false)
  })

  test('null once past the entry or byte limit (the limit itself still fits)', () => {
    const w = work()
    const all = walkLocal(w, ROOTS, SYNC_EXCLUDES)
    const bytes = 48
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, { entries: all.size, bytes: 1e9 })).not.toBeNull()
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, { entries: all.size - 1, bytes: 1e9 })).toBeNull()
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, { entries: 1e6, bytes })).not.toBeNull()
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, { entries: 1e6, bytes: bytes - 1 })).toBeNull()
  })

  test('null for a symlink whose target is not UTF-8 (the tar would carry U+FFFD in its place)', () => {
    const w = work()
    symlinkSync('fine-target', join(w, 'repo/repo/good-link'))
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)).not.toBeNull() // positive control: a link with a UTF-8 target
    symlinkSync(Buffer.from('target-\xff', 'latin1'), join(w, 'repo/repo/bad-link'))
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)).toBeNull()
  })

  test('null for a fifo or socket (rsync -a copies them; the walk does not list them)', () => {
    const w = work()
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)).not.toBeNull()
    execFileSync('mkfifo', [join(w, 'repo/repo/pipe')])
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)).toBeNull()
  })

  test('null for a file or folder this process cannot read (rsync fails on it loudly; the tar would leave it out)', () => {
    const w = work()
    const denying = (denied: string) => (path: string) => {
      if (path === join(w, denied)) throw Object.assign(new Error('EACCES'), { code: 'EACCES' })
    }
    // positive control: the same check, denying a path that is not in the tree
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG, denying('repo/repo/not-there'))).not.toBeNull()
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG, denying('repo/repo/README'))).toBeNull()
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG, denying('repo/repo/src'))).toBeNull()
  })

  test('null for a name that is not UTF-8 (node could not name it to read it)', () => {
    const w = work()
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)).not.toBeNull() // positive control: the same tree without it
    writeFileSync(Buffer.from(`${w}/repo/repo/bad-\xff-name`, 'latin1'), 'x')
    expect(walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)).toBeNull()
  })
})

describe('push({ fresh }): the tar copy', () => {
  test('sends the whole walk into the empty folder: contents, modes without group/other bits, symlinks, times; no listing, no base', async () => {
    const w = work()
    const dest = jobWork()
    const manifest = join(tempDir(), 'base.json')
    const remote = new LocalRemote(tempDir())
    const small = walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)!
    const s = await push({ remote, hostWork: w, remoteWork: dest, manifestFile: manifest, excludes: SYNC_EXCLUDES }, ROOTS, {
      fresh: small.snap
    })
    expect(s.files).toBe(6)
    expect(s.deleted).toBe(0)
    expect(readFileSync(join(dest, 'repo/repo/README'), 'utf8')).toBe('hello\n')
    expect(readFileSync(join(dest, 'repo/repo/name with spaces\nand a newline'), 'utf8')).toBe('odd\n')
    expect(readFileSync(join(dest, 'repo/repo/empty'), 'utf8')).toBe('')
    expect(execFileSync(join(dest, 'repo/repo/src/deep/run.sh')).toString()).toBe('ran\n')
    expect(statSync(join(dest, 'repo/repo/src/deep/run.sh')).mode & 0o777).toBe(0o700)
    expect(statSync(join(dest, 'repo/repo/README')).mode & 0o777).toBe(0o600)
    expect(statSync(join(dest, 'repo/repo/src')).mode & 0o777).toBe(0o700)
    expect(Math.floor(statSync(join(dest, 'repo/repo/README')).mtimeMs / 1000)).toBe(1_600_000_000)
    expect(readlinkSync(join(dest, 'repo/repo/link'))).toBe('README')
    expect(readlinkSync(join(dest, 'repo/repo/dangling'))).toBe('/nowhere/at/all')
    expect(readFileSync(join(dest, '_actions/actions/checkout/v4/action.yml'), 'utf8')).toBe('runs: {}\n')
    expect(existsSync(join(dest, '_temp/step.sh'))).toBe(true)
    expect(existsSync(join(dest, '_temp/_runner_hook_responses'))).toBe(false)
    // Every path of the walk arrived, of its kind.
    const arrived = walkLocal(dest, ROOTS, [])
    expect([...arrived.keys()].sort()).toEqual([...small.snap.keys()].sort())
    for (const [p, n] of small.snap) expect(arrived.get(p)!.t).toBe(n.t)
    // One command, and it lists nothing back; nothing recorded (the caller records the base).
    expect(remote.commands).toHaveLength(1)
    expect(remote.commands[0]).toMatch(/tar -x -f - --no-same-permissions && \{ true; \}$/)
    expect(existsSync(manifest)).toBe(false)
  })

  test('a base left in the manifest is neither read nor written: nothing is deleted on the remote', async () => {
    const w = work()
    const dest = jobWork()
    const manifest = join(tempDir(), 'base.json')
    // A base naming a path the walk does not have: a normal push would delete it there.
    writeFileSync(manifest, JSON.stringify({ 'repo/repo/old.txt': { t: 'f', l: 'f:1:1:420', r: 'f:1:1:420' } }))
    mkdirSync(join(dest, 'repo/repo'), { recursive: true })
    writeFileSync(join(dest, 'repo/repo/old.txt'), 'x')
    const before = readFileSync(manifest, 'utf8')
    const remote = new LocalRemote(tempDir())
    const small = walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)!
    await push({ remote, hostWork: w, remoteWork: dest, manifestFile: manifest, excludes: SYNC_EXCLUDES }, ROOTS, { fresh: small.snap })
    expect(existsSync(join(dest, 'repo/repo/old.txt'))).toBe(true)
    expect(readFileSync(manifest, 'utf8')).toBe(before)
    expect(lstatSync(join(dest, 'repo/repo/README')).isFile()).toBe(true) // positive control: the copy ran
  })
})

describe('push({ fresh }) when the VM misbehaves', () => {
  const TAR = execFileSync('/bin/sh', ['-c', 'command -v tar']).toString().trim()
  const copy = (
    stubs: Record<string, string>,
    opts: { signal?: AbortSignal; listingBytes?: number; fresh?: boolean; lose?: boolean } = {}
  ) => {
    const w = work()
    const dest = jobWork()
    const small = walkSmall(w, ROOTS, SYNC_EXCLUDES, BIG)!
    const limits = { ...LOOSE_SYNC_LIMITS, listingBytes: opts.listingBytes ?? 1e7 }
    const local = new LocalRemote(tempDir(), {}, stubs)
    // lose: every channel ends with neither an exit code nor a signal, as a dropped connection's does.
    const remote: Remote = opts.lose
      ? {
          ...local,
          openExec: async (c) => {
            const ch = await local.openExec(c)
            return { ...ch, done: ch.done.then(() => ({ code: null, signal: null })) }
          },
          openSocket: (p) => local.openSocket(p),
          close: () => undefined
        }
      : local
    const target = {
      remote,
      hostWork: w,
      remoteWork: dest,
      manifestFile: join(tempDir(), 'b.json'),
      excludes: SYNC_EXCLUDES,
      limits,
      signal: opts.signal
    }
    return { dest, done: push(target, ROOTS, opts.fresh === false ? {} : { fresh: small.snap }) }
  }

  test('a tar that fails fails the copy with its exit code and its last words', async () => {
    await expect(copy({ tar: 'echo "tar: no space left" >&2; exit 3' }).done).rejects.toThrow(
      /sync to remote failed \(exit 3\): tar: no space left/
    )
    await expect(copy({ tar: `exec ${TAR} "$@"` }).done).resolves.toMatchObject({ files: 6 }) // positive control: the real tar through the stub
  })

  test('a channel that ends without an exit status is a lost connection, never a success', async () => {
    await expect(copy({}, { lose: true }).done).rejects.toThrow(/connection lost while syncing/)
  })

  test("a tar the VM kills fails the copy naming the signal: the VM's answer, not a lost connection", async () => {
    const done = copy({ tar: 'kill -KILL 0' }).done
    await expect(done).rejects.toThrow(/sync to remote failed \(killed by signal SIGKILL\)/)
    await expect(done).rejects.not.toBeInstanceOf(TransportError)
  })

  test('a VM that never reads the tar: a cancel ends the copy at once', async () => {
    const ac = new AbortController()
    const started = join(tempDir(), 'started')
    const { done } = copy({ tar: `touch ${started}; exec sleep 60` }, { signal: ac.signal })
    const settled = done.then(
      () => 'resolved',
      (e: Error) => e.constructor.name
    )
    await waitUntil(() => existsSync(started), 10_000, 10)
    const t = Date.now()
    ac.abort('SIGINT')
    expect(await settled).toBe('Cancelled')
    expect(Date.now() - t).toBeLessThan(3000)
  })

  test('what the VM prints is no listing: sync.limits.listingBytes does not fail a first copy', async () => {
    const noisy = { tar: `head -c 20000 /dev/zero; exec ${TAR} "$@"` }
    await expect(copy(noisy, { listingBytes: 100 }).done).resolves.toMatchObject({ files: 6 })
    // positive control: a push that asks for its listing keeps the output and meets the limit
    await expect(copy(noisy, { listingBytes: 100, fresh: false }).done).rejects.toThrow(/sync.limits.listingBytes/)
  })

  test.each([true, false])(
    'a VM that prints for ever fails the copy (fresh: %s) and its command is ended, the channel closed rather than read to its end',
    async (fresh) => {
      const pidFile = join(tempDir(), 'pid')
      const endless = { tar: `echo $$ > ${pidFile}; exec cat /dev/zero` }
      const settled = await Promise.race([
        copy(endless, { fresh }).done.then(
          () => 'resolved',
          (e: Error) => e.message
        ),
        new Promise((r) => setTimeout(() => r('still running'), 20_000).unref())
      ])
      expect(settled).toMatch(fresh ? /printed over 1048576 bytes during the first copy/ : /sync.limits.listingBytes/)
      const pid = Number(readFileSync(pidFile, 'utf8'))
      expect(await waitUntil(() => !running(pid), 5000, 20)).toBe(true)
    }
  )
})

describe('tarOf: small pieces go out gathered', () => {
  test('2,000 small files come out in a few large chunks, and the archive holds all of them', async () => {
    const w = tempDir()
    mkdirSync(join(w, 'd'))
    for (let i = 0; i < 2000; i++) writeFileSync(join(w, 'd', `f${i}`), `file ${i}\n`)
    const paths = ['d', ...Array.from({ length: 2000 }, (_, i) => `d/f${i}`)]
    const chunks: Buffer[] = []
    await new Promise<void>((resolve, reject) => {
      const t = tarOf(w, paths)
      t.on('data', (c: Buffer) => chunks.push(c))
      t.on('end', resolve)
      t.on('error', reject)
    })
    const total = chunks.reduce((n, c) => n + c.length, 0)
    // Each file is a header and a padded block: 2 × 2,000 + 1 pieces (+ the end) one by one.
    expect(total).toBe(512 + 2000 * 1024 + 1024)
    expect(chunks.length).toBeLessThanOrEqual(Math.ceil(total / (64 * 1024)) + 1)
    const out = tempDir()
    execFileSync('tar', ['-x', '-f', '-', '-C', out], { input: Buffer.concat(chunks) })
    for (const i of [0, 999, 1999]) expect(readFileSync(join(out, 'd', `f${i}`), 'utf8')).toBe(`file ${i}\n`)
    expect(walkLocal(out, ['d'], []).size).toBe(2001)
  })
})
