import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { badRelPath, SafeTree, symlinkEscapes, UnsafePathError, type FileWriter } from '../../src/sync/safe-fs'
import { cleanupTempDirs, tempDir } from './_helpers'

// One-off calls: a fresh SafeTree each time, so each checks its path afresh.
const openFile = (root: string, rel: string, mode: number, mtimeSec: number): FileWriter => new SafeTree(root).openFile(rel, mode, mtimeSec)
const makeSymlink = (root: string, rel: string, target: string): boolean => new SafeTree(root).makeSymlink(rel, target)
const makeDir = (root: string, rel: string): void => new SafeTree(root).makeDir(rel)
const setDirMode = (root: string, rel: string, mode: number): void => new SafeTree(root).setDirMode(rel, mode)
const removeUnder = (root: string, rel: string): boolean => new SafeTree(root).removeUnder(rel)

afterAll(cleanupTempDirs)

/** A work root with a sibling "outside" folder holding a file that must never change. */
function setup(): { root: string; outside: string } {
  const top = tempDir()
  const root = `${top}/work`
  const outside = `${top}/outside`
  mkdirSync(root)
  mkdirSync(outside)
  writeFileSync(`${outside}/secret`, 'secret')
  return { root, outside }
}

function put(root: string, rel: string, content: string, mode = 0o644, mtime = 1_700_000_000): void {
  const w = openFile(root, rel, mode, mtime)
  w.write(Buffer.from(content))
  w.finish()
}

describe('openFile', () => {
  it('writes through missing parents, masks setuid/setgid/sticky, sets the mtime', () => {
    const { root } = setup()
    put(root, 'a/b/c.sh', 'x', 0o7755, 1_600_000_000)
    const st = statSync(`${root}/a/b/c.sh`)
    expect(readFileSync(`${root}/a/b/c.sh`, 'utf8')).toBe('x')
    expect(st.mode & 0o7777).toBe(0o755)
    expect(st.mtimeMs).toBe(1_600_000_000_000)
  })

  it('never makes a file writable by group or others, whatever mode the VM sent', () => {
    const { root } = setup()
    put(root, 'open', 'x', 0o777)
    put(root, 'plain', 'x', 0o664)
    expect(statSync(`${root}/open`).mode & 0o7777).toBe(0o755)
    expect(statSync(`${root}/plain`).mode & 0o7777).toBe(0o644)
  })

  it('refuses to write through a symlinked parent (control: a plain write escapes)', () => {
    const { root, outside } = setup()
    symlinkSync('../outside', `${root}/x`)
    writeFileSync(`${root}/x/planted`, 'p') // control: the naive write lands outside
    expect(existsSync(`${outside}/planted`)).toBe(true)
    expect(() => put(root, 'x/secret', 'overwritten')).toThrow(UnsafePathError)
    expect(() => put(root, 'x/secret', 'overwritten')).toThrow(/"x" is a symlink on the runner host/)
    expect(() => put(root, 'x/new/deeper', 'n')).toThrow(UnsafePathError)
    expect(readFileSync(`${outside}/secret`, 'utf8')).toBe('secret')
    expect(existsSync(`${outside}/new`)).toBe(false)
  })

  it('refuses a symlink deeper in the path too', () => {
    const { root, outside } = setup()
    mkdirSync(`${root}/a/b`, { recursive: true })
    symlinkSync('../../../outside', `${root}/a/b/c`)
    expect(() => put(root, 'a/b/c/secret', 'o')).toThrow(/"a\/b\/c" is a symlink/)
    expect(readFileSync(`${outside}/secret`, 'utf8')).toBe('secret')
  })

  it('replaces a symlink at the final name instead of writing through it (control: a plain write follows it)', () => {
    const { root, outside } = setup()
    symlinkSync('../outside/secret', `${root}/GITHUB_PATH`)
    symlinkSync('../outside/other', `${root}/control`)
    writeFileSync(`${root}/control`, 'followed')
    expect(readFileSync(`${outside}/other`, 'utf8')).toBe('followed')
    put(root, 'GITHUB_PATH', '/usr/bin')
    expect(lstatSync(`${root}/GITHUB_PATH`).isFile()).toBe(true)
    expect(readFileSync(`${root}/GITHUB_PATH`, 'utf8')).toBe('/usr/bin')
    expect(readFileSync(`${outside}/secret`, 'utf8')).toBe('secret')
  })

  it('removes a folder in the way, without following symlinks inside it', () => {
    const { root, outside } = setup()
    mkdirSync(`${root}/d/sub`, { recursive: true })
    symlinkSync('../../outside', `${root}/d/sub/out`)
    put(root, 'd', 'now a file')
    expect(readFileSync(`${root}/d`, 'utf8')).toBe('now a file')
    expect(readFileSync(`${outside}/secret`, 'utf8')).toBe('secret')
  })

  it('a parent that is a regular file is refused; abort leaves no temporary file', () => {
    const { root } = setup()
    writeFileSync(`${root}/f`, 'x')
    expect(() => put(root, 'f/g', 'x')).toThrow(/"f" is not a folder/)
    const w = openFile(root, 'a', 0o644, 1)
    w.write(Buffer.from('partial'))
    w.abort()
    expect(require('node:fs').readdirSync(root)).toEqual(['f'])
  })

  it.each(['../x', 'a/../../x', '/etc/passwd', 'a//b', './a', 'a/.', ''])('refuses the path %j', (rel) => {
    const { root } = setup()
    expect(() => openFile(root, rel, 0o644, 1)).toThrow(UnsafePathError)
  })
})

describe('makeSymlink', () => {
  it.each([
    ['a/l', 'b', false],
    ['a/l', '../b', false],
    ['a/b/l', '../../x', false],
    ['l', '.', false],
    ['a/l', '..', false],
    ['l', '..', true],
    ['a/l', '../..', true],
    ['a/l', '../../work/x', true],
    ['a/l', 'b/../../../x', true],
    ['a/l', 's/..', true],
    ['a/l', 'b/../c', true],
    ['a/l', './b/./c', false],
    ['l', '/etc/passwd', true],
    ['l', '', true]
  ])('%s -> %j escapes: %s', (rel, target, escapes) => {
    expect(symlinkEscapes(rel, target)).toBe(escapes)
  })

  const tops = new Set(['repo', '_temp'])
  it.each([
    ['repo/repo/l', 'x', false],
    ['repo/repo/l', '../../_temp/f', false],
    ['repo/repo/l', '../../_actions/a/b', true], // the runner unpacks actions there with links of their own
    ['_temp/l', '../repo/repo', false],
    ['repo/repo/l', '../../other/other/.env', true], // another repository's folder
    ['repo/repo/l', '../..', true], // _work itself: every folder in it
    ['repo/repo/l', '../../_tool/x', true],
    ['_temp/l', '..', true],
    ['repo/repo/l', '../../../x', true]
  ])('with top-level folders repo and _temp: %s -> %j escapes: %s', (rel, target, escapes) => {
    expect(symlinkEscapes(rel, target, tops)).toBe(escapes)
    // control: without them only leaving the root counts
    if (escapes && !target.startsWith('../../../') && target !== '..') expect(symlinkEscapes(rel, target)).toBe(false)
  })

  it('creates links that stay inside, refuses the others (nothing created)', () => {
    const { root } = setup()
    expect(makeSymlink(root, 'a/l', '../b')).toBe(true)
    expect(readlinkSync(`${root}/a/l`)).toBe('../b')
    expect(makeSymlink(root, 'a/up', '../..')).toBe(false)
    expect(makeSymlink(root, 'a/abs', '/etc')).toBe(false)
    expect(existsSync(`${root}/a/up`) || existsSync(`${root}/a/abs`)).toBe(false)
    expect(() => lstatSync(`${root}/a/up`)).toThrow()
  })

  it('a ".." after a name is refused: through a symlink it climbs from where that points', () => {
    const { root, outside } = setup()
    mkdirSync(`${root}/ws/sub`, { recursive: true })
    expect(makeSymlink(root, 'ws/sub/s', '../..')).toBe(true) // the root itself: inside
    // control: lexically inside (ws/sub/s/.. is ws/sub), really the root's parent
    symlinkSync('s/..', `${root}/ws/sub/control`)
    expect(existsSync(`${root}/ws/sub/control/outside/secret`)).toBe(true)
    expect(makeSymlink(root, 'ws/sub/l', 's/..')).toBe(false)
    expect(readFileSync(`${outside}/secret`, 'utf8')).toBe('secret')
  })

  it('replaces a file or folder at the name, never writing through a symlinked parent', () => {
    const { root } = setup()
    mkdirSync(`${root}/d/x`, { recursive: true })
    writeFileSync(`${root}/f`, 'x')
    expect(makeSymlink(root, 'd', 'f')).toBe(true)
    expect(makeSymlink(root, 'f', 'd')).toBe(true)
    expect(readlinkSync(`${root}/d`)).toBe('f')
    symlinkSync('../outside', `${root}/p`)
    expect(() => makeSymlink(root, 'p/l', 'secret')).toThrow(UnsafePathError)
  })
})

describe('makeDir and setDirMode', () => {
  it('replaces a symlink to an outside folder with a real folder (control: mkdir -p follows it)', () => {
    const { root, outside } = setup()
    symlinkSync('../outside', `${root}/d`)
    symlinkSync('../outside', `${root}/control`)
    mkdirSync(`${root}/control/made`, { recursive: true })
    expect(existsSync(`${outside}/made`)).toBe(true)
    makeDir(root, 'd')
    expect(lstatSync(`${root}/d`).isDirectory()).toBe(true)
    setDirMode(root, 'd', 0o500)
    expect(statSync(`${root}/d`).mode & 0o777).toBe(0o700) // the owner keeps rwx
    expect(readFileSync(`${outside}/secret`, 'utf8')).toBe('secret')
  })

  it('setDirMode never makes a folder writable by group or others', () => {
    const { root } = setup()
    makeDir(root, 'd')
    setDirMode(root, 'd', 0o777)
    expect(statSync(`${root}/d`).mode & 0o7777).toBe(0o755)
    setDirMode(root, 'd', 0o1777)
    expect(statSync(`${root}/d`).mode & 0o7777).toBe(0o755)
  })

  it('setDirMode does not follow a symlink', () => {
    const { root, outside } = setup()
    symlinkSync('../outside', `${root}/l`)
    const before = statSync(outside).mode
    setDirMode(root, 'l', 0o777)
    expect(statSync(outside).mode).toBe(before)
  })
})

describe('removeUnder', () => {
  it('refuses to delete through a symlinked parent (control: a plain rm deletes outside)', () => {
    const { root, outside } = setup()
    writeFileSync(`${outside}/victim`, 'v')
    symlinkSync('../outside', `${root}/x`)
    rmSync(`${root}/x/victim`) // control
    expect(existsSync(`${outside}/victim`)).toBe(false)
    expect(() => removeUnder(root, 'x/secret')).toThrow(UnsafePathError)
    expect(readFileSync(`${outside}/secret`, 'utf8')).toBe('secret')
  })

  it('removes a symlink itself, not its target; a folder with its contents; missing is a no-op', () => {
    const { root, outside } = setup()
    symlinkSync('../outside', `${root}/l`)
    mkdirSync(`${root}/d/e`, { recursive: true })
    symlinkSync('../../../outside/secret', `${root}/d/e/s`)
    expect(removeUnder(root, 'l')).toBe(true)
    expect(removeUnder(root, 'd')).toBe(true)
    expect(removeUnder(root, 'missing/x')).toBe(false)
    expect(removeUnder(root, 'nope')).toBe(false)
    expect(readFileSync(`${outside}/secret`, 'utf8')).toBe('secret')
    expect(require('node:fs').readdirSync(root)).toEqual([])
  })

  it('a parent that is a plain file means nothing to delete', () => {
    const { root } = setup()
    writeFileSync(`${root}/f`, 'x')
    expect(removeUnder(root, 'f/g')).toBe(false)
    expect(() => removeUnder(root, '../outside/secret')).toThrow(UnsafePathError)
  })
})

describe('SafeTree (remembers checked folders within one pull)', () => {
  it('forgets a folder it replaced, so a later write through the new symlink is refused', () => {
    const { root, outside } = setup()
    const fs = new SafeTree(root)
    const w = fs.openFile('a/b/f', 0o644, 1)
    w.finish()
    expect(fs.makeSymlink('a', 'x')).toBe(true) // folder a replaced by a symlink (inside the root)
    symlinkSync('../outside', `${root}/x`)
    expect(() => fs.openFile('a/b/g', 0o644, 1)).toThrow(/"a" is a symlink/)
    fs.makeDir('d')
    fs.openFile('d/f', 0o644, 1).finish()
    fs.openFile('d', 0o644, 1).finish() // folder d replaced by a file
    expect(() => fs.openFile('d/g', 0o644, 1)).toThrow(/"d" is not a folder/)
    expect(fs.removeUnder('a')).toBe(true)
    expect(require('node:fs').readdirSync(outside)).toEqual(['secret'])
  })
})

describe('badRelPath', () => {
  it.each([
    ['a/b', null],
    ['a', null],
    ['..a/b..', null],
    ['a/..', '".." component'],
    ['/a', 'absolute'],
    ['a\0b', 'contains NUL']
  ])('%j → %j', (p, want) => {
    expect(badRelPath(p)).toBe(want)
  })

  // Limits are in UTF-8 bytes, not characters: the count is skipped only when it cannot matter.
  it.each([
    ['a 255-byte name of 85 three-byte characters', `d/${'€'.repeat(85)}`, null],
    ['a 258-byte name of 86 three-byte characters', `d/${'€'.repeat(86)}`, 'a name longer than 255 bytes'],
    ['a 256-byte name of 64 four-byte characters', `d/${'😀'.repeat(64)}`, 'a name longer than 255 bytes'],
    ['a 252-byte name of 63 four-byte characters', `d/${'😀'.repeat(63)}`, null],
    ['a 4098-byte path of three-byte characters', `${`${'€'.repeat(80)}/`.repeat(17)}a`, 'longer than 4096 bytes'],
    ['a 4096-byte path of three-byte characters', `${`${'€'.repeat(80)}/`.repeat(16)}${'a'.repeat(240)}`, null]
  ])('%s', (_what, p, want) => {
    if (want === null) expect(Buffer.byteLength(p)).toBeLessThanOrEqual(4096)
    expect(badRelPath(p)).toBe(want)
  })
})

// A full disk's error names no file (ENOSPC, write): the step's error line says which, and where.
test('a write that fails (a full disk) names the file on the runner host; the half-written file is gone (control: a write that fits lands)', () => {
  const root = tempDir()
  const fs = jest.requireActual<typeof import('node:fs')>('node:fs')
  const spy = jest.spyOn(fs, 'writeSync').mockImplementation(() => {
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
  })
  let f: FileWriter
  try {
    f = openFile(root, 'out.txt', 0o644, 1_600_000_000)
    expect(() => f.write(Buffer.from('data'))).toThrow(`cannot write ${root}/out.txt on the runner host (ENOSPC)`)
  } finally {
    spy.mockRestore()
  }
  f.abort()
  expect(fs.readdirSync(root)).toEqual([])
  const g = openFile(root, 'out.txt', 0o644, 1_600_000_000)
  g.write(Buffer.from('data'))
  g.finish()
  expect(readFileSync(`${root}/out.txt`, 'utf8')).toBe('data')
})
