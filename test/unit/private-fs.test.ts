// Private folders and files on the runner host. Another local user (a throwaway one made with
// useradd) who creates the hook's folder first must not receive anything the hook writes there.
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { join } from 'node:path'
import { checkPrivateDir, createPrivateAppend, ensurePrivateDir, openPrivateAppend, syncFd, writePrivateFile } from '../../src/private-fs'
import { createLog } from '../../src/log'
import { saveBase } from '../../src/sync/manifest'
import { createLocalUser, type LocalUser } from '../helpers/local-user'
import { cleanupTempDirs, tempDir } from './_helpers'
import { closeSync, openSync, writeSync } from 'node:fs'

let other: LocalUser
/** A sticky, world-writable folder like /tmp, where the other user can create the hook's folder first. */
let shared: string

beforeAll(() => {
  other = createLocalUser()
  shared = tempDir('rch-shared-tmp-')
  chmodSync(shared, 0o1777)
})
afterAll(() => {
  other?.remove()
  cleanupTempDirs()
})

/** `name` in the shared folder, created by the other user (positive control: it really is theirs). */
function theirs(name: string, mode = '0700'): string {
  const p = join(shared, name)
  other.run(['mkdir', '-m', mode, p])
  expect(lstatSync(p).uid).toBe(other.uid)
  return p
}

describe('ensurePrivateDir / checkPrivateDir', () => {
  test('creates a missing folder 0700 and accepts it afterwards', () => {
    const p = join(shared, `mine-${Date.now()}`, 'rch-0')
    expect(checkPrivateDir(p)).toBe(false)
    ensurePrivateDir(p)
    expect(statSync(p).mode & 0o777).toBe(0o700)
    expect(checkPrivateDir(p)).toBe(true)
  })

  test('a folder another user made first is refused, naming the path, the owner and what to do', () => {
    const p = theirs('rch-0')
    expect(() => ensurePrivateDir(p)).toThrow(
      new RegExp(
        `private folder ${p} is owned by uid ${other.uid}, not ${process.geteuid!()}: another local user may be trying to intercept the hook; set TMPDIR to a private folder`
      )
    )
    expect(() => checkPrivateDir(p)).toThrow(/owned by uid/)
  })

  test('a symlink to a folder of ours is refused (not followed)', () => {
    const target = tempDir('rch-real-')
    chmodSync(target, 0o700)
    const link = join(shared, `link-${Date.now()}`)
    symlinkSync(target, link)
    expect(readlinkSync(link)).toBe(target) // positive control: it is a symlink to a private folder of ours
    expect(() => ensurePrivateDir(link)).toThrow(/is a symlink/)
  })

  test('a symlink made by the other user to a folder of theirs is refused', () => {
    const p = theirs(`dest-${Date.now()}`)
    const link = join(shared, `theirlink-${Date.now()}`)
    other.run(['ln', '-s', p, link])
    expect(lstatSync(link).isSymbolicLink()).toBe(true)
    expect(() => checkPrivateDir(link)).toThrow(/is a symlink/)
  })

  test('a folder of ours with group/other bits is refused', () => {
    const p = join(shared, `open-${Date.now()}`)
    mkdirSync(p)
    chmodSync(p, 0o755)
    expect(() => ensurePrivateDir(p)).toThrow(/is open to other users \(mode 0755, must be 0700\)/)
  })

  test('a file in place of the folder is refused', () => {
    const p = join(shared, `file-${Date.now()}`)
    writeFileSync(p, '')
    expect(() => ensurePrivateDir(p)).toThrow(/is not a folder/)
  })
})

describe('the folders above a private folder', () => {
  /** A folder of ours in a parent of the given mode and owner. */
  const placed = (mode: number, owner?: number): { parent: string; mine: string } => {
    const top = tempDir('rch-above-')
    chmodSync(top, 0o755) // the other user may reach it, as /tmp's parent
    const parent = join(top, 'tmp')
    mkdirSync(parent)
    chmodSync(parent, mode)
    if (owner !== undefined) chownSync(parent, owner, owner)
    return { parent, mine: join(parent, 'rch-0') }
  }

  test('control: in a sticky world-writable parent (like /tmp) the folder is accepted, and the other user cannot move it away', () => {
    const { parent, mine } = placed(0o1777)
    ensurePrivateDir(mine)
    expect(checkPrivateDir(mine)).toBe(true)
    expect(other.tryRun(['mv', mine, join(parent, 'moved')]).status).not.toBe(0)
    expect(existsSync(mine)).toBe(true)
  })

  test('a world-writable parent without the sticky bit is refused: the other user could swap the checked folder for theirs', () => {
    const { parent, mine } = placed(0o777)
    mkdirSync(mine, { mode: 0o700 })
    // positive control: the other user can indeed move ours away and put theirs in its place
    expect(other.tryRun(['mv', mine, join(parent, 'moved')]).status).toBe(0)
    other.run(['mkdir', '-m', '0700', mine])
    expect(lstatSync(mine).uid).toBe(other.uid)
    const fresh = join(parent, 'rch-1')
    expect(() => ensurePrivateDir(fresh)).toThrow(
      new RegExp(`private folder ${fresh}: ${parent} is writable by all users without the sticky bit \\(mode 0777\\)`)
    )
    expect(existsSync(fresh)).toBe(false)
  })

  test("a parent owned by another user is refused, and so is a grandparent that is (a folder's owner may rename what is in it)", () => {
    const { mine } = placed(0o755, other.uid)
    expect(() => ensurePrivateDir(mine)).toThrow(new RegExp(`is owned by uid ${other.uid}, who could replace what is in it`))
    const top = tempDir('rch-above-')
    chownSync(top, other.uid, other.uid)
    mkdirSync(join(top, 'a'), { mode: 0o755 })
    expect(() => ensurePrivateDir(join(top, 'a', 'rch-0'))).toThrow(new RegExp(`${top} is owned by uid ${other.uid}`))
  })

  test('the check follows the parent through a symlink to where it really is', () => {
    const { parent } = placed(0o777)
    const link = join(tempDir('rch-above-'), 'tmp-link')
    symlinkSync(parent, link)
    expect(() => ensurePrivateDir(join(link, 'rch-0'))).toThrow(/is writable by all users without the sticky bit/)
  })

  test('a symlink to a safe folder, held in an unsafe one, is refused: the folder that holds the link is checked too', () => {
    const { parent } = placed(0o777)
    const safe = tempDir('rch-safe-')
    symlinkSync(safe, join(parent, 'rt'))
    // positive control: the other user can swap the link itself for one of theirs
    other.run(['mv', join(parent, 'rt'), join(parent, 'rt-old')])
    other.run(['ln', '-s', other.home, join(parent, 'rt')])
    expect(readlinkSync(join(parent, 'rt'))).toBe(other.home)
    other.run(['rm', join(parent, 'rt')])
    other.run(['mv', join(parent, 'rt-old'), join(parent, 'rt')])
    expect(() => ensurePrivateDir(join(parent, 'rt', 'rch-0'))).toThrow(
      new RegExp(`private folder ${parent}/rt/rch-0: ${parent} is writable by all users without the sticky bit`)
    )
    expect(existsSync(join(safe, 'rch-0'))).toBe(false)
  })

  test('a symlink the other user owns in a sticky folder is refused (they may replace their own entry there); ours is followed, relative targets too', () => {
    const { parent } = placed(0o1777)
    const safe = tempDir('rch-safe-')
    other.run(['ln', '-s', safe, join(parent, 'theirs')])
    expect(() => ensurePrivateDir(join(parent, 'theirs', 'rch-0'))).toThrow(new RegExp(`is a symlink owned by uid ${other.uid}`))
    mkdirSync(join(parent, 'real'), { mode: 0o755 })
    symlinkSync('./real/../real', join(parent, 'mine'))
    expect(ensurePrivateDir(join(parent, 'mine', 'rch-0'))).toBe(join(parent, 'mine', 'rch-0')) // control
    expect(statSync(join(parent, 'real', 'rch-0')).mode & 0o777).toBe(0o700)
  })

  test("a group-writable folder above is accepted (its group is the administrator's choice, as Ubuntu's /var/log root:syslog 0775)", () => {
    const { mine } = placed(0o775)
    expect(ensurePrivateDir(mine)).toBe(mine)
  })
})

describe('files in private folders', () => {
  test('writePrivateFile replaces a planted symlink instead of writing through it', () => {
    const dir = tempDir('rch-priv-')
    const victim = join(tempDir('rch-victim-'), 'victim')
    writeFileSync(victim, 'original')
    symlinkSync(victim, join(dir, 'id_ed25519'))
    // positive control: a plain write would have gone to the victim
    expect(readFileSync(join(dir, 'id_ed25519'), 'utf8')).toBe('original')
    writePrivateFile(join(dir, 'id_ed25519'), 'KEY')
    expect(readFileSync(victim, 'utf8')).toBe('original')
    expect(lstatSync(join(dir, 'id_ed25519')).isFile()).toBe(true)
    expect(statSync(join(dir, 'id_ed25519')).mode & 0o777).toBe(0o600)
    expect(readFileSync(join(dir, 'id_ed25519'), 'utf8')).toBe('KEY')
  })

  test('the sync base is never saved through a symlink at its name (what it points to is no base: refused, loudly)', async () => {
    const dir = tempDir('rch-priv-')
    const victim = join(tempDir('rch-victim-'), 'victim')
    writeFileSync(victim, 'original')
    symlinkSync(victim, join(dir, 'base.json'))
    const add = { set: new Map([['a', { t: 'f' as const, l: '1', r: '2' }]]), remove: new Set<string>() }
    await expect(saveBase(join(dir, 'base.json'), add)).rejects.toThrow(
      `cannot read the sync base ${join(dir, 'base.json')}: it is not JSON`
    )
    expect(readFileSync(victim, 'utf8')).toBe('original')
    // control: where the name holds no base, the save makes one, a file of its own
    rmSync(join(dir, 'base.json'))
    await saveBase(join(dir, 'base.json'), add)
    expect(readFileSync(victim, 'utf8')).toBe('original')
    expect(JSON.parse(readFileSync(join(dir, 'base.json'), 'utf8'))).toEqual({ a: { t: 'f', l: '1', r: '2' } })
  })

  test('openPrivateAppend refuses a symlink and appends to a regular file', () => {
    const dir = tempDir('rch-priv-')
    const victim = join(tempDir('rch-victim-'), 'victim')
    writeFileSync(victim, 'original')
    symlinkSync(victim, join(dir, 'agent.log'))
    expect(() => openPrivateAppend(join(dir, 'agent.log'))).toThrow(/ELOOP/)
    writeFileSync(join(dir, 'x.log'), 'a')
    const fd = openPrivateAppend(join(dir, 'x.log'))
    writeSync(fd, 'b')
    closeSync(fd)
    expect(readFileSync(join(dir, 'x.log'), 'utf8')).toBe('ab')
    expect(readFileSync(victim, 'utf8')).toBe('original')
  })
})

describe("an agent's log", () => {
  test('is a new 0600 file even under a permissive umask; a symlink or file planted at its name is refused, not written through', () => {
    const dir = tempDir('rch-priv-')
    const victim = join(tempDir('rch-victim-'), 'victim')
    writeFileSync(victim, 'original')
    symlinkSync(victim, join(dir, 'agent-starting-1.log'))
    writeFileSync(join(dir, 'agent-starting-2.log'), 'planted')
    const saved = process.umask(0)
    try {
      // positive control: under this umask a plain append follows a link, and a new file is open to all
      const other = join(tempDir('rch-victim-'), 'victim')
      writeFileSync(other, '')
      symlinkSync(other, join(dir, 'control-link.log'))
      const plain = openSync(join(dir, 'control-link.log'), 'a', 0o666)
      writeSync(plain, 'followed')
      closeSync(plain)
      expect(readFileSync(other, 'utf8')).toBe('followed')
      const open = openSync(join(dir, 'control.log'), 'a', 0o666)
      closeSync(open)
      expect(statSync(join(dir, 'control.log')).mode & 0o777).toBe(0o666)
      expect(() => createPrivateAppend(join(dir, 'agent-starting-1.log'))).toThrow(/EEXIST/)
      expect(() => createPrivateAppend(join(dir, 'agent-starting-2.log'))).toThrow(/EEXIST/)
      const fd = createPrivateAppend(join(dir, 'agent-starting-3.log'))
      writeSync(fd, 'entry\n')
      closeSync(fd)
    } finally {
      process.umask(saved)
    }
    expect(statSync(join(dir, 'agent-starting-3.log')).mode & 0o777).toBe(0o600)
    expect(readFileSync(join(dir, 'agent-starting-3.log'), 'utf8')).toBe('entry\n')
    expect(readFileSync(victim, 'utf8')).toBe('original')
    expect(readFileSync(join(dir, 'agent-starting-2.log'), 'utf8')).toBe('planted')
  })
})

describe('the log folder', () => {
  const quiet = { level: 'info', debugToStepLog: false, out: () => undefined }

  test('a log folder another user made first fails the command before anything is written', () => {
    const dir = theirs(`remote-container-hooks-${Date.now()}`, '0777')
    expect(() => createLog({ ...quiet, file: join(dir, 'hook.log') })).toThrow(
      new RegExp(`private folder ${dir} is owned by uid ${other.uid}`)
    )
    expect(existsSync(join(dir, 'hook.log'))).toBe(false)
  })

  test('a missing log folder is created 0700 and the file 0600, appended to', async () => {
    const dir = join(tempDir('rch-logs-'), 'sub')
    const file = join(dir, 'hook.log')
    for (const msg of ['first', 'second']) {
      const log = createLog({ ...quiet, file })
      log.progress(msg)
      await log.close()
    }
    expect(statSync(dir).mode & 0o777).toBe(0o700)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const text = readFileSync(file, 'utf8')
    expect(text).toMatch(/info first\n.*info second\n$/)
  })
})

// In the agent, another open can get a closed descriptor's number at once: a second close of it
// would close that other file (a step's response file, say).
test('a rename that fails (a full disk) closes the written file once, and leaves no temp file (control: the file lands)', () => {
  const dir = tempDir()
  const fs = jest.requireActual<typeof import('node:fs')>('node:fs')
  const closes: number[] = []
  const realClose = fs.closeSync
  const closing = jest.spyOn(fs, 'closeSync').mockImplementation((fd: number) => {
    closes.push(fd)
    realClose(fd)
  })
  const renaming = jest.spyOn(fs, 'renameSync').mockImplementation(() => {
    throw Object.assign(new Error('ENOSPC: no space left on device, rename'), { code: 'ENOSPC' })
  })
  try {
    expect(() => writePrivateFile(join(dir, 'base.json'), '{}')).toThrow('ENOSPC')
  } finally {
    renaming.mockRestore()
    closing.mockRestore()
  }
  expect(closes).toHaveLength(1)
  expect(fs.readdirSync(dir)).toEqual([])
  writePrivateFile(join(dir, 'base.json'), '{}')
  expect(fs.readFileSync(join(dir, 'base.json'), 'utf8')).toBe('{}')
})

describe('syncFd', () => {
  const fs = require('node:fs') as typeof import('node:fs')
  test.each(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP'])('a file system without fsync (%s) is no failure: the write stands', (code) => {
    const spy = jest.spyOn(fs, 'fsyncSync').mockImplementation(() => {
      throw Object.assign(new Error(code), { code })
    })
    try {
      expect(() => syncFd(0)).not.toThrow()
    } finally {
      spy.mockRestore()
    }
  })
  test('control: a failing disk (EIO) fails it', () => {
    const spy = jest.spyOn(fs, 'fsyncSync').mockImplementation(() => {
      throw Object.assign(new Error('EIO'), { code: 'EIO' })
    })
    try {
      expect(() => syncFd(0)).toThrow('EIO')
    } finally {
      spy.mockRestore()
    }
  })
})
