// pull() against a "remote" that is a local folder run by the real /bin/sh, find and tar, with the
// SSH transport replaced. A hostile VM is played by PATH entries that shadow tar or find.
import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs'
import { loadBase, loadPulled, saveBase } from '../../src/sync/manifest'
import { OutputLimitError, run, stopper, type Remote } from '../../src/remote/remote'
import { pull, push, type SyncLimits, type SyncTarget } from '../../src/sync/sync'
import { Cancelled } from '../../src/errors'
import { cleanupTempDirs, tempDir, LOOSE_SYNC_LIMITS } from './_helpers'
import { member, tarOf } from './_tar'
import { running, waitUntil } from '../helpers/wait'

afterAll(cleanupTempDirs)

const REAL_PATH = process.env.PATH ?? '/usr/bin:/bin'

/**
 * Runs every command with the local /bin/sh in place of SSH. As when an SSH channel is closed, the
 * command ends when the hook closes its output before the end: its whole process group, so a
 * stalled VM tar (and the sleep it runs) does not outlive the test and hold Jest open.
 */
function localRemote(env: NodeJS.ProcessEnv = {}): Remote {
  return {
    async openExec(command) {
      const c = spawn('/bin/sh', ['-c', command], { env: { PATH: REAL_PATH, ...env }, detached: true })
      const done = new Promise<{ code: number | null; signal: string | null }>((res) =>
        c.on('close', (code, signal) => res({ code, signal }))
      )
      let ended = false
      c.stdout.on('end', () => (ended = true))
      c.stdout.on('close', () => {
        if (ended) return // read to its end: the command finished on its own
        try {
          process.kill(-c.pid!, 'SIGKILL')
        } catch {
          // the group is already gone
        }
      })
      return { stdin: c.stdin, stdout: c.stdout, stderr: c.stderr, done }
    },
    openSocket: () => Promise.reject(new Error('no sockets here')),
    close: () => undefined
  }
}

interface World {
  host: string
  vm: string
  outside: string
  bin: string
  warnings: string[]
  target(env?: NodeJS.ProcessEnv, limits?: Partial<SyncLimits>): SyncTarget
}

const ROOTS = ['_temp', 'ws']
const FC = '_temp/_runner_file_commands'

function world(): World {
  const top = tempDir()
  const w = { host: `${top}/host`, vm: `${top}/vm`, outside: `${top}/outside`, bin: `${top}/bin`, warnings: [] as string[] }
  for (const d of [w.host, w.vm, w.outside, w.bin, `${w.vm}/${FC}`, `${w.vm}/ws`, `${top}/local`]) mkdirSync(d, { recursive: true })
  writeFileSync(`${w.outside}/.credentials`, 'TOKEN')
  return {
    ...w,
    target: (env = {}, limits = {}) => ({
      remote: localRemote(env),
      hostWork: w.host,
      remoteWork: w.vm,
      manifestFile: `${top}/local/base.json`,
      excludes: ['_temp/_runner_hook_responses'],
      limits: { ...LOOSE_SYNC_LIMITS, ...limits },
      warn: (m) => void w.warnings.push(m)
    })
  }
}

/** A PATH that shadows `tool` with a script (the SSH user's shell start-up files can do this on the VM). */
function shadow(w: World, tool: string, script: string): NodeJS.ProcessEnv {
  writeFileSync(`${w.bin}/${tool}`, `#!/bin/sh\n${script}\n`)
  chmodSync(`${w.bin}/${tool}`, 0o755)
  return { PATH: `${w.bin}:${REAL_PATH}` }
}

const realTar = execFileSync('/bin/sh', ['-c', 'command -v tar']).toString().trim()

/** A tar that sends `archive` whatever it was asked for. */
function evilTar(w: World, archive: Buffer): NodeJS.ProcessEnv {
  writeFileSync(`${w.bin}/evil.tar`, archive)
  return shadow(w, 'tar', `case "$1" in -c) cat ${w.bin}/evil.tar; exit 0;; esac\nexec ${realTar} "$@"`)
}

describe('pull: positive path', () => {
  it('brings files, folders, symlinks and file-command files back, records them, and the next pull is a no-op', async () => {
    const w = world()
    writeFileSync(`${w.vm}/${FC}/set_env_1`, 'A=1\n')
    mkdirSync(`${w.vm}/ws/sub`)
    writeFileSync(`${w.vm}/ws/sub/b.sh`, '#!/bin/sh\n')
    chmodSync(`${w.vm}/ws/sub/b.sh`, 0o4755)
    writeFileSync(`${w.vm}/ws/empty`, '')
    symlinkSync('sub/b.sh', `${w.vm}/ws/link`)
    const s = await pull(w.target(), ROOTS)
    expect(readFileSync(`${w.host}/${FC}/set_env_1`, 'utf8')).toBe('A=1\n')
    expect(lstatSync(`${w.host}/ws/sub/b.sh`).mode & 0o7777).toBe(0o755)
    expect(readlinkSync(`${w.host}/ws/link`)).toBe('sub/b.sh')
    expect(readFileSync(`${w.host}/ws/empty`, 'utf8')).toBe('')
    expect(s.files).toBe(3)
    expect(loadBase(w.target().manifestFile).size).toBe(8)
    expect(loadPulled(w.target().manifestFile)).toEqual({ files: 8, bytes: 14 })
    expect((await pull(w.target(), ROOTS)).files).toBe(0)
    expect(w.warnings).toEqual([])
  })

  it('removes on the host what the step removed, and replaces a folder the step made a file', async () => {
    const w = world()
    mkdirSync(`${w.vm}/ws/d/e`, { recursive: true })
    writeFileSync(`${w.vm}/ws/d/e/f`, 'f')
    writeFileSync(`${w.vm}/ws/gone`, 'g')
    await pull(w.target(), ROOTS)
    execFileSync('rm', ['-rf', `${w.vm}/ws/d`, `${w.vm}/ws/gone`])
    writeFileSync(`${w.vm}/ws/d`, 'now a file')
    const s = await pull(w.target(), ROOTS)
    expect(s.deleted).toBe(2)
    expect(readFileSync(`${w.host}/ws/d`, 'utf8')).toBe('now a file')
    expect(existsSync(`${w.host}/ws/gone`)).toBe(false)
  })
})

describe('pull: the runner file-command files must be regular files', () => {
  it.each([
    [
      'a symlink to the runner credentials',
      (p: string) => symlinkSync('../../../outside/.credentials', p),
      /add_path_1 is a symlink on the remote/
    ],
    ['a fifo', (p: string) => execFileSync('mkfifo', [p]), /add_path_1 is a fifo on the remote/],
    ['a folder', (p: string) => mkdirSync(p), /add_path_1 is a folder on the remote/]
  ])('%s fails the step and nothing at all is copied back', async (_what, make, why) => {
    const w = world()
    writeFileSync(`${w.vm}/ws/other`, 'other change')
    make(`${w.vm}/${FC}/add_path_1`)
    await expect(pull(w.target(), ROOTS)).rejects.toThrow(why)
    expect(existsSync(`${w.host}/ws`)).toBe(false)
    expect(existsSync(`${w.host}/_temp`)).toBe(false)
    // control: without the bad entry the same pull copies
    execFileSync('rm', ['-rf', `${w.vm}/${FC}/add_path_1`])
    await pull(w.target(), ROOTS)
    expect(readFileSync(`${w.host}/ws/other`, 'utf8')).toBe('other change')
  })

  it('the folder itself replaced by a symlink fails too', async () => {
    const w = world()
    execFileSync('rm', ['-rf', `${w.vm}/${FC}`])
    symlinkSync('../../outside', `${w.vm}/${FC}`)
    await expect(pull(w.target(), ROOTS)).rejects.toThrow(/_temp\/_runner_file_commands is a symlink on the remote/)
  })

  it('_temp itself replaced by a symlink fails too (the file-command files would then live, unchecked, under its target)', async () => {
    const w = world()
    // Another repository's folder in the same _work: inside _work, but not this job's.
    mkdirSync(`${w.host}/other`)
    writeFileSync(`${w.host}/other/secret.txt`, 'OTHER JOB SECRET')
    mkdirSync(`${w.vm}/ws/t/_runner_file_commands`, { recursive: true })
    symlinkSync('../../../other/secret.txt', `${w.vm}/ws/t/_runner_file_commands/set_env_1`)
    execFileSync('rm', ['-rf', `${w.vm}/_temp`])
    symlinkSync('ws/t', `${w.vm}/_temp`)
    await expect(pull(w.target(), ROOTS)).rejects.toThrow(/_temp is a symlink on the remote/)
    // The runner would read GITHUB_ENV at _temp/_runner_file_commands/set_env_1 on the host.
    expect(existsSync(`${w.host}/_temp`)).toBe(false)
    expect(existsSync(`${w.host}/ws`)).toBe(false)
    // control: with _temp a real folder again the same pull copies, a link inside ws too; the link
    // to another repository's folder is not made (symlinkEscapes: only the job's own folders)
    symlinkSync('_runner_file_commands', `${w.vm}/ws/t/inside`)
    execFileSync('rm', ['-f', `${w.vm}/_temp`])
    mkdirSync(`${w.vm}/_temp`)
    await pull(w.target(), ROOTS)
    expect(readlinkSync(`${w.host}/ws/t/inside`)).toBe('_runner_file_commands')
    expect(lstatSync(`${w.host}/ws/t/_runner_file_commands`).isDirectory()).toBe(true)
    expect(existsSync(`${w.host}/ws/t/_runner_file_commands/set_env_1`)).toBe(false)
  })
})

describe('pull: symlinks planted by the step', () => {
  it('escaping or absolute links are not created, are warned about, stay out of the base, and are not pushed back as deletions', async () => {
    const w = world()
    symlinkSync('../..', `${w.vm}/ws/x`)
    symlinkSync('/etc', `${w.vm}/_temp/abs`)
    symlinkSync('../ws', `${w.vm}/_temp/inside`)
    await pull(w.target(), ROOTS)
    expect(() => lstatSync(`${w.host}/ws/x`)).toThrow()
    expect(() => lstatSync(`${w.host}/_temp/abs`)).toThrow()
    expect(readlinkSync(`${w.host}/_temp/inside`)).toBe('../ws') // control: an inside link is created
    expect(w.warnings.join('\n')).toMatch(/ws\/x is a symlink to "\.\.\/\.\."/)
    expect(w.warnings.join('\n')).toMatch(/_temp\/abs is a symlink to "\/etc"/)
    const base = loadBase(w.target().manifestFile)
    expect(base.has('ws/x') || base.has('_temp/abs')).toBe(false)
    const up = await push(w.target(), ROOTS)
    expect(up.deleted).toBe(0)
    expect(readlinkSync(`${w.vm}/ws/x`)).toBe('../..')
  })

  it('thousands of such links: a few are named, the rest counted in one line (each warning goes to the shared hook.log too)', async () => {
    const w = world()
    mkdirSync(`${w.vm}/ws/many`)
    for (let i = 0; i < 2000; i++) symlinkSync('/etc', `${w.vm}/ws/many/l${i}`)
    await pull(w.target(), ROOTS)
    const named = w.warnings.filter((m) => / is a symlink to "\/etc"/.test(m))
    expect(named).toHaveLength(5)
    expect(w.warnings.filter((m) => m.startsWith('... and '))).toEqual([
      '... and 1995 more symlinks not copied back (absolute, or pointing outside the folders synced back)'
    ])
    // none of them was made on the host
    expect(readdirSync(`${w.host}/ws/many`)).toEqual([])
  })

  it('a file the step replaced by an escaping symlink is removed on the host and dropped from the base', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/f`, 'f')
    await pull(w.target(), ROOTS)
    execFileSync('rm', [`${w.vm}/ws/f`])
    symlinkSync('../../outside/.credentials', `${w.vm}/ws/f`)
    await pull(w.target(), ROOTS)
    expect(existsSync(`${w.host}/ws/f`)).toBe(false)
    expect(loadBase(w.target().manifestFile).has('ws/f')).toBe(false)
    expect((await push(w.target(), ROOTS)).deleted).toBe(0)
    expect(readFileSync(`${w.outside}/.credentials`, 'utf8')).toBe('TOKEN')
  })

  it('a host folder that is a symlink is never written through nor deleted through', async () => {
    const w = world()
    mkdirSync(`${w.host}/ws`)
    symlinkSync('../../outside', `${w.host}/ws/p`)
    // the base claims ws/p/.credentials was synced; the remote no longer has it: a deletion
    await saveBase(w.target().manifestFile, { set: new Map([['ws/p/.credentials', { t: 'f', l: 'x', r: 'x' }]]), remove: new Set() })
    await expect(pull(w.target(), ROOTS)).rejects.toThrow(/"ws\/p" is a symlink on the runner host/)
    expect(readFileSync(`${w.outside}/.credentials`, 'utf8')).toBe('TOKEN')
  })
})

describe('pull: a hostile tar or find on the VM', () => {
  const cases: [string, () => Buffer, RegExp][] = [
    ['a member that climbs out', () => tarOf(member({ name: 'ws/../../outside/.credentials' }, 'pwned')), /"\.\." component/],
    ['an absolute member', () => tarOf(member({ name: '/tmp/pwned' }, 'pwned')), /absolute/],
    ['a member not asked for', () => tarOf(member({ name: 'ws/other' }, 'pwned')), /"ws\/other" was not asked for/],
    ['a member sent twice', () => tarOf(member({ name: 'ws/f' }, 'a'), member({ name: 'ws/f' }, 'b')), /sent twice/],
    ['a hardlink to a host file', () => tarOf(member({ name: 'ws/f', type: '1', linkname: '/etc/passwd' })), /a hardlink/],
    ['a fifo', () => tarOf(member({ name: 'ws/f', type: '6' })), /a fifo/],
    [
      'a symlink where the listing had a file',
      () => tarOf(member({ name: 'ws/f', type: '2', linkname: '../../outside' })),
      /not of the type the listing announced/
    ],
    ['a cut-off archive', () => member({ name: 'ws/f' }, 'four'), /cut off/]
  ]
  it.each(cases)('%s is refused and nothing lands outside', async (_what, archive, why) => {
    const w = world()
    writeFileSync(`${w.vm}/ws/f`, 'four')
    await expect(pull(w.target(evilTar(w, archive())), ROOTS)).rejects.toThrow(why)
    expect(readFileSync(`${w.outside}/.credentials`, 'utf8')).toBe('TOKEN')
    expect(existsSync('/tmp/pwned')).toBe(false)
    expect(existsSync(`${w.host}/ws/other`)).toBe(false)
  })

  it('a file whose size changed since the listing is not written nor recorded (the next pull brings it); its bytes still count', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/f`, 'four')
    const warnings: string[] = []
    const target = { ...w.target(evilTar(w, tarOf(member({ name: 'ws/f' }, 'x'.repeat(5000))))), warn: (m: string) => warnings.push(m) }
    await pull(target, ROOTS)
    expect(existsSync(`${w.host}/ws/f`)).toBe(false)
    expect(warnings.join('\n')).toMatch(/ws\/f changed on the remote while it was being copied \(4 bytes listed, 5000 sent\)/)
    // The same stream over the step's byte cap fails, as any other bytes would.
    const capped = w.target(evilTar(w, tarOf(member({ name: 'ws/f' }, 'x'.repeat(5000)))), { stepBytes: 4096 })
    await expect(pull(capped, ROOTS)).rejects.toThrow(/sync\.limits\.stepBytes/)
    // Without the hostile tar the file comes back: it was not recorded as copied.
    await pull(w.target({}), ROOTS)
    expect(readFileSync(`${w.host}/ws/f`, 'utf8')).toBe('four')
  })

  it('a symlink whose target is not the one the listing announced is refused (control: the announced target is taken)', async () => {
    const w = world()
    mkdirSync(`${w.vm}/ws/a`)
    mkdirSync(`${w.vm}/ws/b`)
    symlinkSync('a', `${w.vm}/ws/l`)
    // The listing (the real find) says ws/l -> a; the VM's tar sends ws/l -> b, another folder inside _work.
    const link = (target: string): Buffer => tarOf(member({ name: 'ws/l', type: '2', linkname: target }))
    await expect(pull(w.target(evilTar(w, link('b'))), ['ws'])).rejects.toThrow(
      /the symlink "ws\/l" does not have the target the listing announced/
    )
    expect(() => lstatSync(`${w.host}/ws/l`)).toThrow()
    expect(loadBase(w.target().manifestFile).has('ws/l')).toBe(false)
    // control: the same shadowing tar with the announced target is accepted, and the link made
    await pull(w.target(evilTar(w, link('a'))), ['ws'])
    expect(readlinkSync(`${w.host}/ws/l`)).toBe('a')
  })

  it('control: the shadowing tar is really used (a well-formed archive from it is accepted)', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/f`, 'four')
    await pull(w.target(evilTar(w, tarOf(member({ name: 'ws', type: '5' }), member({ name: 'ws/f' }, 'FAKE')))), ROOTS)
    expect(readFileSync(`${w.host}/ws/f`, 'utf8')).toBe('FAKE')
  })

  it('a find that lists paths of its choosing is refused before anything is copied', async () => {
    const w = world()
    const rec = (y: string, p: string): string => `${y}\\0004\\0001\\000644\\000${y === 'd' ? '1:2' : ''}\\000${p}\\000`
    // find starts the listing with its time (remoteListScript); a folder carries its device and inode.
    const env = shadow(w, 'find', `printf '1.5\\000${rec('d', 'ws')}${rec('f', 'ws/../../outside/x')}'`)
    await expect(pull(w.target(env), ROOTS)).rejects.toThrow(/remote file listing: bad path: "\.\." component/)
    const env2 = shadow(w, 'find', `printf '1.5\\000${rec('d', 'ws')}${rec('f', 'elsewhere/x')}'`)
    await expect(pull(w.target(env2), ROOTS)).rejects.toThrow(/outside the requested folders/)
    const env3 = shadow(w, 'find', `printf '1.5\\000${rec('d', 'ws')}${rec('f', 'ws/ok')}'`)
    await expect(pull(w.target(env3), ['ws'])).resolves.toBeTruthy() // control: the fake find is used and parsed
    expect(loadBase(w.target().manifestFile).has('ws/ok')).toBe(false) // (the real tar found no ws/ok)
  })
})

describe('pull: caps', () => {
  it('a 1 TB sparse file is refused before anything is fetched (sync.limits.stepBytes)', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/small`, 's')
    execFileSync('truncate', ['-s', '1T', `${w.vm}/ws/huge`])
    await expect(pull(w.target({}, { stepBytes: 10 * 1024 ** 3 }), ROOTS)).rejects.toThrow(
      /^sync\.limits\.stepBytes: .* 1099511627777 bytes, over the limit of 10737418240/
    )
    expect(existsSync(`${w.host}/ws`)).toBe(false)
  })

  it('stepFiles counts what a step brings back', async () => {
    const w = world()
    for (let i = 0; i < 5; i++) writeFileSync(`${w.vm}/ws/${i}`, 'x')
    await expect(pull(w.target({}, { stepFiles: 5 }), ROOTS)).rejects.toThrow(/^sync\.limits\.stepFiles: the step changed 8 files/)
    expect(existsSync(`${w.host}/ws`)).toBe(false)
    await pull(w.target({}, { stepFiles: 8 }), ROOTS) // control
  })

  it('jobBytes and jobFiles add up over the steps of a job (kept next to the base)', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/a`, 'x'.repeat(600))
    await pull(w.target({}, { jobBytes: 1000 }), ROOTS)
    writeFileSync(`${w.vm}/ws/b`, 'x'.repeat(600))
    await expect(pull(w.target({}, { jobBytes: 1000 }), ROOTS)).rejects.toThrow(
      /^sync\.limits\.jobBytes: .* to 1200, over the limit of 1000/
    )
    expect(existsSync(`${w.host}/ws/b`)).toBe(false)
    await expect(pull(w.target({}, { jobFiles: 4 }), ROOTS)).rejects.toThrow(/^sync\.limits\.jobFiles: .* to 5, over the limit of 4/)
    await pull(w.target({}, { jobFiles: 5 }), ROOTS) // control
    expect(readFileSync(`${w.host}/ws/b`, 'utf8')).toHaveLength(600)
  })

  it('a listing over listingBytes or listingEntries is an error, never a shorter listing read as deletions', async () => {
    const w = world()
    for (let i = 0; i < 50; i++) writeFileSync(`${w.vm}/ws/file-${i}`, 'x')
    await pull(w.target(), ROOTS)
    await expect(pull(w.target({}, { listingBytes: 1024 }), ROOTS)).rejects.toThrow(
      /^sync\.limits\.listingBytes: the remote file listing is larger than 1024 bytes/
    )
    await expect(pull(w.target({}, { listingEntries: 30 }), ROOTS)).rejects.toThrow(
      /^sync\.limits\.listingEntries: the remote listing has 53 entries, over the limit of 30$/
    )
    // Far over: counted only so far (a listing of millions of fields is not counted to its end).
    await expect(pull(w.target({}, { listingEntries: 20 }), ROOTS)).rejects.toThrow(
      /^sync\.limits\.listingEntries: the remote listing has more than 40 entries, over the limit of 20$/
    )
    expect(existsSync(`${w.host}/ws/file-49`)).toBe(true)
  })
})

describe('pull: other remote types', () => {
  it('a fifo where a file was is neither fetched nor taken as a deletion', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/p`, 'was a file')
    await pull(w.target(), ROOTS)
    execFileSync('rm', [`${w.vm}/ws/p`])
    execFileSync('mkfifo', [`${w.vm}/ws/p`])
    const s = await pull(w.target(), ROOTS)
    expect(s.deleted).toBe(0)
    expect(readFileSync(`${w.host}/ws/p`, 'utf8')).toBe('was a file')
  })
})

describe('push: the remote extraction', () => {
  it('runs under umask 077 without the archive modes (control: the local file is world-readable)', async () => {
    const w = world()
    mkdirSync(`${w.host}/ws/d`, { recursive: true })
    writeFileSync(`${w.host}/ws/d/f`, 'f')
    chmodSync(`${w.host}/ws/d/f`, 0o644)
    await push(w.target(), ['ws'])
    expect(lstatSync(`${w.vm}/ws/d/f`).mode & 0o777).toBe(0o600)
    expect(lstatSync(`${w.vm}/ws/d`).mode & 0o077).toBe(0)
  })
})

describe('run(): collected output over its bound', () => {
  it('is an OutputLimitError, never a silent cut', async () => {
    const r = localRemote()
    await expect(run(r, 'head -c 5000 /dev/zero', { collect: true, maxCollect: 4096, label: 'the listing' })).rejects.toThrow(
      OutputLimitError
    )
    await expect(run(r, 'head -c 5000 /dev/zero', { collect: true, maxCollect: 4096, label: 'the listing' })).rejects.toThrow(
      'the listing: output is larger than 4096 bytes'
    )
    expect((await run(r, 'head -c 4096 /dev/zero', { collect: true, maxCollect: 4096 })).stdout.length).toBe(4096) // control
  })
})

describe("tar's record size on the VM", () => {
  it('a VM whose TAR_OPTIONS sets 2 MiB records still pulls: the pull asks for 20-block records itself', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/f`, 'four')
    // positive control: the VM's tar honours TAR_OPTIONS, and pads far past the reader's 1 MiB bound
    const padded = execFileSync('tar', ['-c', '-f', '-', 'ws/f'], {
      cwd: w.vm,
      env: { PATH: REAL_PATH, TAR_OPTIONS: '-b 4096' },
      maxBuffer: 1 << 24
    })
    expect(padded.length).toBe(4096 * 512)
    await pull(w.target({ TAR_OPTIONS: '-b 4096' }), ROOTS)
    expect(readFileSync(`${w.host}/ws/f`, 'utf8')).toBe('four')
  })
})

describe('stopper', () => {
  it('stops once: a second stop (a chunk already in flight over the bound) runs nothing again', async () => {
    const { PassThrough } = await import('node:stream')
    let ran = 0
    const s = stopper({ stdin: new PassThrough(), stdout: new PassThrough() }, undefined, () => void ran++)
    s.stop(new Error('first'))
    s.stop(new Error('second'))
    await expect(s.stopped).rejects.toThrow('first')
    expect(ran).toBe(1)
  })
})

describe('a VM that streams for ever is cut off, and its command ended', () => {
  /** A tar that writes its pid, sends `archive`, then runs `then` (which never ends). */
  const endless = (w: World, archive: Buffer, then: string): NodeJS.ProcessEnv => {
    writeFileSync(`${w.bin}/evil.tar`, archive)
    return shadow(w, 'tar', `case "$1" in -c) echo $$ > ${w.bin}/pid; cat ${w.bin}/evil.tar; ${then};; esac\nexec ${realTar} "$@"`)
  }
  const pidOf = async (w: World): Promise<number> => {
    expect(await waitUntil(() => existsSync(`${w.bin}/pid`) && readFileSync(`${w.bin}/pid`, 'utf8').endsWith('\n'), 10_000, 10)).toBe(true)
    return Number(readFileSync(`${w.bin}/pid`, 'utf8'))
  }
  /** The pull's outcome, or 'still running' after 15 s (the old reader took such a stream for ever). */
  const settle = (p: Promise<unknown>): Promise<unknown> =>
    Promise.race([
      p.then(
        () => 'resolved',
        (e: unknown) => e
      ),
      new Promise((r) => setTimeout(() => r('still running'), 15_000).unref())
    ])
  const asked = (w: World): Buffer => {
    writeFileSync(`${w.vm}/ws/f`, 'four')
    return tarOf(member({ name: 'ws', type: '5' }), member({ name: 'ws/f' }, 'FAKE'))
  }

  it('control: a live process is seen as running, a finished one is not', async () => {
    expect(running(process.pid)).toBe(true)
    const c = spawn('sleep', ['0.1'])
    expect(running(c.pid!)).toBe(true)
    await new Promise((r) => c.on('close', r))
    expect(running(c.pid!)).toBe(false)
  })

  it("zeros for ever after the end of the archive: refused after 1 MiB of them (control: tar's own padding is taken)", async () => {
    const w = world()
    const padded = endless(w, Buffer.concat([asked(w), Buffer.alloc(9216)]), 'exit 0')
    await expect(pull(w.target(padded), ROOTS)).resolves.toBeTruthy()
    expect(readFileSync(`${w.host}/ws/f`, 'utf8')).toBe('FAKE')
    const w2 = world()
    const err = await settle(pull(w2.target(endless(w2, asked(w2), 'exec cat /dev/zero')), ROOTS))
    expect(String(err)).toMatch(/over 1048576 bytes after the end-of-archive marker/)
    const pid = await pidOf(w2)
    expect(await waitUntil(() => !running(pid), 5000, 20)).toBe(true)
  })

  it('extended headers for ever, without a member: refused at the second', async () => {
    const w = world()
    writeFileSync(`${w.bin}/g.hdr`, member({ name: 'g', type: 'g' }, '20 path=/etc/shadow\n'))
    const env = endless(w, Buffer.alloc(0), `while :; do cat ${w.bin}/g.hdr || exit; done`)
    writeFileSync(`${w.vm}/ws/f`, 'four')
    const err = await settle(pull(w.target(env), ROOTS))
    expect(String(err)).toMatch(/a repeated extended header \(type g\)/)
    const pid = await pidOf(w)
    expect(await waitUntil(() => !running(pid), 5000, 20)).toBe(true)
  })

  it('a refused member closes the channel at once: the VM command is ended, not drained to its end', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/f`, 'four')
    const env = endless(w, tarOf(member({ name: 'ws/other' }, 'x')).subarray(0, 1024), 'exec cat /dev/zero')
    const err = await settle(pull(w.target(env), ROOTS))
    expect(String(err)).toMatch(/"ws\/other" was not asked for/)
    const pid = await pidOf(w)
    expect(await waitUntil(() => !running(pid), 5000, 20)).toBe(true)
    expect(existsSync(`${w.host}/ws/other`)).toBe(false)
  })

  it('run(): output over maxCollect closes the channel at once (a listing that never ends)', async () => {
    const dir = tempDir()
    const r = localRemote()
    await expect(
      run(r, `echo $$ > ${dir}/pid; exec cat /dev/zero`, { collect: true, maxCollect: 4096, label: 'the listing' })
    ).rejects.toThrow('the listing: output is larger than 4096 bytes')
    const pid = Number(readFileSync(`${dir}/pid`, 'utf8'))
    expect(await waitUntil(() => !running(pid), 5000, 20)).toBe(true)
  })
})

describe('cancel stops a transfer the VM never ends', () => {
  const endless = (w: World, mode: '-c' | '-x'): NodeJS.ProcessEnv =>
    // prints a tar header's worth of zeros, marks that it stalls, then stalls: a VM that keeps the
    // channel open for ever
    shadow(w, 'tar', `case "$1" in ${mode}) head -c 100 /dev/zero; : > ${w.bin}/stalled; exec sleep 30;; esac\nexec ${realTar} "$@"`)
  const stalled = (w: World): Promise<boolean> => waitUntil(() => existsSync(`${w.bin}/stalled`), 10_000, 10)

  it('pull: rejects with Cancelled at once and writes nothing more', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/f`, 'four')
    const ac = new AbortController()
    const p = pull({ ...w.target(endless(w, '-c')), signal: ac.signal }, ROOTS)
    p.catch(() => undefined)
    expect(await stalled(w)).toBe(true)
    const t0 = Date.now()
    ac.abort('SIGINT')
    await expect(p).rejects.toBeInstanceOf(Cancelled)
    // the stalled tar sleeps 30 s
    expect(Date.now() - t0).toBeLessThan(10_000)
    expect(existsSync(`${w.host}/ws/f`)).toBe(false)
  })

  it('push: rejects with Cancelled at once', async () => {
    const w = world()
    mkdirSync(`${w.host}/ws`, { recursive: true })
    writeFileSync(`${w.host}/ws/new`, 'x')
    const ac = new AbortController()
    const p = push({ ...w.target(endless(w, '-x')), signal: ac.signal }, ROOTS)
    p.catch(() => undefined)
    expect(await stalled(w)).toBe(true)
    const t0 = Date.now()
    ac.abort('SIGTERM')
    await expect(p).rejects.toBeInstanceOf(Cancelled)
    // the stalled tar sleeps 30 s
    expect(Date.now() - t0).toBeLessThan(10_000)
  })

  it('control: without a cancel the stalled pull is still running after 1 s', async () => {
    const w = world()
    writeFileSync(`${w.vm}/ws/f`, 'four')
    const ac = new AbortController()
    const p = pull({ ...w.target(endless(w, '-c')), signal: ac.signal }, ROOTS)
    p.catch(() => undefined)
    // stalled as in the tests above: what the cancel there ended
    expect(await stalled(w)).toBe(true)
    const state = await Promise.race([
      p.then(
        () => 'done',
        () => 'failed'
      ),
      new Promise((r) => setTimeout(() => r('running'), 1000))
    ])
    expect(state).toBe('running')
    ac.abort('SIGINT')
    await expect(p).rejects.toBeInstanceOf(Cancelled)
  })
})

describe('file-command files the runner will read', () => {
  it('one over sync.limits.fileCommandBytes fails the step before anything is copied (control: under it, it comes back)', async () => {
    const w = world()
    writeFileSync(`${w.vm}/${FC}/set_output_1`, 'x'.repeat(2000))
    writeFileSync(`${w.vm}/ws/f`, 'four')
    await expect(pull(w.target({}, { fileCommandBytes: 1024 }), ROOTS)).rejects.toThrow(
      /sync\.limits\.fileCommandBytes: _temp\/_runner_file_commands\/set_output_1 is 2000 bytes/
    )
    expect(existsSync(`${w.host}/ws/f`)).toBe(false)
    await pull(w.target({}, { fileCommandBytes: 4096 }), ROOTS)
    expect(readFileSync(`${w.host}/${FC}/set_output_1`, 'utf8')).toHaveLength(2000)
  })

  it('one the VM does not send (unreadable there) fails the step instead of losing its commands', async () => {
    const w = world()
    writeFileSync(`${w.vm}/${FC}/set_env_1`, 'A=1\n')
    await expect(pull(w.target(evilTar(w, tarOf())), ROOTS)).rejects.toThrow(/set_env_1 could not be read on the remote/)
  })

  it('one whose size changes during the copy fails the step (a workspace file would be skipped)', async () => {
    const w = world()
    writeFileSync(`${w.vm}/${FC}/set_env_1`, 'A=1\n')
    await expect(pull(w.target(evilTar(w, tarOf(member({ name: `${FC}/set_env_1` }, 'A=1\nB=2\n')))), ROOTS)).rejects.toThrow(
      /set_env_1 changed on the remote while it was being copied/
    )
  })
})
