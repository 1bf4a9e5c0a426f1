// The collection of old externals copies, run by a real /bin/sh on a folder like a VM's work root.
import { existsSync, lstatSync, mkdirSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { externalsGcBody, externalsGcScript, externalsLookScript } from '../../src/prepare/externals-gc'
import { cleanupTempDirs, sh, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

const DAY = 86_400
const hex = (c: string): string => c.repeat(16)
const ago = (p: string, days: number): void => {
  const t = Date.now() / 1000 - days * DAY
  utimesSync(p, t, t)
}

/** A complete copy last started with `days` ago (its marker's mtime; the folder's own is older still). */
function copy(root: string, name: string, days: number, marker = true): string {
  // A VM collected before (two days ago): the first collection on a VM only marks its copies.
  const stamp = join(root, 'externals', '.rch-gc')
  if (!existsSync(stamp)) {
    mkdirSync(join(root, 'externals'), { recursive: true })
    writeFileSync(stamp, '')
    ago(stamp, 2)
  }
  const d = join(root, 'externals', name)
  mkdirSync(join(d, 'node20', 'bin'), { recursive: true })
  writeFileSync(join(d, 'node20', 'bin', 'node'), 'x')
  if (marker) {
    writeFileSync(join(d, '.rch-complete'), '')
    ago(join(d, '.rch-complete'), days)
  }
  ago(d, marker ? 400 : days)
  return d
}

const names = (root: string): string[] => readdirSync(join(root, 'externals')).sort()

describe('externalsGcBody', () => {
  test('removes copies no job started with for the given days, and nothing else', () => {
    const root = tempDir()
    copy(root, hex('a'), 20)
    copy(root, hex('b'), 1)
    copy(root, hex('c'), 20)
    // no marker (a bind source docker made): aged by the folder itself
    copy(root, hex('d'), 20, false)
    copy(root, hex('e'), 1, false)
    // names that are not a content version: left alone however old
    copy(root, 'f'.repeat(15), 20)
    copy(root, 'notes', 20)
    // a symlink named as a version, to an old folder outside: the link and its target stay
    const outside = join(root, 'outside')
    mkdirSync(outside)
    writeFileSync(join(outside, '.rch-complete'), '')
    ago(join(outside, '.rch-complete'), 20)
    symlinkSync(outside, join(root, 'externals', hex('1')))
    // a copy a killed collection moved aside long ago, not marked since
    copy(root, `.rch-gc-${hex('2')}-123`, 20)
    const r = sh(externalsGcBody(root, hex('c'), 14))
    expect(r.status).toBe(0)
    expect(names(root)).toEqual(['.rch-gc', hex('1'), hex('b'), hex('c'), hex('e'), 'fffffffffffffff', 'notes'].sort())
    expect(lstatSync(join(root, 'externals', hex('1'))).isSymbolicLink()).toBe(true)
    expect(existsSync(join(outside, '.rch-complete'))).toBe(true)
  })

  test('runs at most once a day per work root, and not beside another collection', () => {
    const root = tempDir()
    copy(root, hex('a'), 20)
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    expect(names(root)).toEqual(['.rch-gc'])
    // within the day: a newly old copy stays
    copy(root, hex('b'), 20)
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    expect(names(root)).toEqual(['.rch-gc', hex('b')])
    // a day later, but another collection holds the lock: still nothing
    ago(join(root, 'externals', '.rch-gc'), 1.1)
    mkdirSync(join(root, 'externals', '.rch-gc.lock'))
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    expect(names(root)).toContain(hex('b'))
    // a lock a day old belongs to a killed collection: it lapses (the control)
    ago(join(root, 'externals', '.rch-gc.lock'), 1.1)
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    expect(names(root)).toEqual(['.rch-gc'])
  })

  test('a copy a job starts with just as the collection moves it aside is put back', () => {
    const root = tempDir()
    copy(root, hex('a'), 20)
    copy(root, hex('b'), 20)
    // An mv that first marks the copy it moves used, as a job's look does at that moment.
    const bin = tempDir()
    const realMv = sh('command -v mv').stdout.toString().trim()
    writeFileSync(join(bin, 'mv'), `#!/bin/sh\ncase "$2" in ${hex('a')}) touch "$2/.rch-complete";; esac\nexec ${realMv} "$@"\n`, {
      mode: 0o755
    })
    expect(sh(externalsGcBody(root, hex('c'), 14), { env: { PATH: `${bin}:${process.env.PATH}` } }).status).toBe(0)
    // b, not touched, is removed (the control); a is back in place, whole
    expect(names(root)).toEqual(['.rch-gc', hex('a')])
    expect(existsSync(join(root, 'externals', hex('a'), 'node20', 'bin', 'node'))).toBe(true)
  })

  test('the first collection on a VM only marks every copy used (an older build of the hook never marked its own)', () => {
    const root = tempDir()
    copy(root, hex('a'), 20)
    copy(root, hex('b'), 20, false)
    rmSync(join(root, 'externals', '.rch-gc'))
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    expect(names(root)).toEqual(['.rch-gc', hex('a'), hex('b')])
    expect(Date.now() / 1000 - lstatSync(join(root, 'externals', hex('a'), '.rch-complete')).mtimeMs / 1000).toBeLessThan(60)
    // the next one, a day later, finds a marked and keeps it; b (no marker, nothing to mark) goes
    ago(join(root, 'externals', '.rch-gc'), 1.1)
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    expect(names(root)).toEqual(['.rch-gc', hex('a')])
  })

  test("copies a killed collection moved aside: a day on, one marked since is put back where its place is free; another collection's are left alone", () => {
    const root = tempDir()
    const dayAgo = Math.floor(Date.now() / 1000) - 2 * DAY
    const now = Math.floor(Date.now() / 1000)
    copy(root, `.rch-gc-${hex('a')}-${dayAgo}`, 0) // marked since, place free: back
    copy(root, `.rch-gc-${hex('b')}-${dayAgo}`, 0) // marked since, but a new copy is in its place: removed
    copy(root, hex('b'), 0)
    copy(root, `.rch-gc-${hex('d')}-${dayAgo}`, 20) // not marked since: removed
    copy(root, `.rch-gc-${hex('e')}-${now}`, 20) // moved aside just now by a collection still running: left
    copy(root, `.rch-gc-${hex('f')}-x1`, 20) // not a time: left
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    expect(names(root)).toEqual(['.rch-gc', hex('a'), hex('b'), `.rch-gc-${hex('e')}-${now}`, `.rch-gc-${hex('f')}-x1`].sort())
    expect(existsSync(join(root, 'externals', hex('a'), 'node20', 'bin', 'node'))).toBe(true)
  })

  test('a work root without externals, or whose externals folder is a symlink, is left alone', () => {
    const root = tempDir()
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    const other = tempDir()
    copy(other, hex('a'), 20)
    symlinkSync(join(other, 'externals'), join(root, 'externals'))
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    expect(names(other)).toEqual(['.rch-gc', hex('a')])
  })

  test('0 days keeps every copy: no script at all', () => {
    expect(externalsGcScript('/srv/rch', hex('c'), 0)).toBe('')
    expect(externalsGcScript('/srv/rch', hex('c'), 14)).toMatch(/^\(.*\) <\/dev\/null >\/dev\/null 2>&1 &$/)
  })
})

describe('externalsLookScript', () => {
  test("marks a complete copy used (its marker's mtime) before it answers; an incomplete one is not made complete", () => {
    const root = tempDir()
    const d = copy(root, hex('a'), 20)
    const r = sh(externalsLookScript(d, 'echo yes', 'echo no'))
    expect(r.stdout.toString()).toBe('yes\n')
    expect(Date.now() / 1000 - lstatSync(join(d, '.rch-complete')).mtimeMs / 1000).toBeLessThan(60)
    // so the collection keeps it now
    expect(sh(externalsGcBody(root, hex('c'), 14)).status).toBe(0)
    expect(names(root)).toContain(hex('a'))
    const bare = copy(root, hex('b'), 20, false)
    expect(sh(externalsLookScript(bare, 'echo yes', 'echo no')).stdout.toString()).toBe('no\n')
    expect(existsSync(join(bare, '.rch-complete'))).toBe(false)
  })
})
