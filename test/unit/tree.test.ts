import { chmodSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { shq } from '../../src/remote/quote'
import { isExcluded, parseRemoteListing, remoteFindScript, remoteListScript, walkLocal, type Snapshot } from '../../src/sync/tree'
import { cleanupTempDirs, sh, tempDir } from './_helpers'
import { failingFs } from './_fs-faults'

afterAll(cleanupTempDirs)

const EXCLUDES = ['ws/node_modules/.cache', 'ws/skip-me.txt']
const ROOTS = ['ws', 'tmp', 'missing', 'rootlink', 'dangling-root']

/** A tree with files, dirs, symlinks, odd names, a fifo and excluded paths. */
function makeTree(): string {
  const base = tempDir()
  const w = (rel: string, content: string, mode = 0o644): void => {
    writeFileSync(`${base}/${rel}`, content)
    chmodSync(`${base}/${rel}`, mode)
  }
  mkdirSync(`${base}/ws/sub/deep`, { recursive: true })
  mkdirSync(`${base}/ws/empty`)
  mkdirSync(`${base}/ws/node_modules/.cache/x`, { recursive: true })
  mkdirSync(`${base}/ws/node_modules/.cache2`, { recursive: true })
  mkdirSync(`${base}/tmp`)
  w('ws/a.txt', 'hello')
  w('ws/run.sh', '#!/bin/sh\n', 0o755)
  w('ws/sub/b.bin', 'x'.repeat(1000))
  w('ws/sub/deep/c', '')
  w('ws/node_modules/.cache/x/big', 'cached')
  w('ws/node_modules/.cache2/kept', 'kept')
  w('ws/skip-me.txt', 'skip')
  w('ws/spaced name it\'s "q".txt', 'odd')
  w('ws/new\nline', 'nl')
  w('ws/ünïcødé', 'u')
  w('tmp/t', 't')
  symlinkSync('a.txt', `${base}/ws/link`)
  symlinkSync('../nowhere', `${base}/ws/dangling`)
  symlinkSync('sub', `${base}/ws/dirlink`)
  symlinkSync('ws/sub', `${base}/rootlink`)
  symlinkSync('nowhere', `${base}/dangling-root`)
  execFileSync('mkfifo', [`${base}/ws/fifo`])
  utimesSync(`${base}/ws/a.txt`, 1_700_000_000.25, 1_700_000_000.25)
  return base
}

function listRemote(base: string, roots = ROOTS, excludes = EXCLUDES): Snapshot {
  const r = sh(remoteFindScript(roots, excludes, shq), { cwd: base })
  expect(r.stderr.toString()).toBe('')
  expect(r.status).toBe(0)
  return parseRemoteListing(r.stdout, { roots, maxEntries: 1000, tree: true }).snap
}

const kinds = (s: Snapshot): string[] => [...s].map(([p, n]) => `${n.t} ${p}`).sort()

describe('remoteFindScript + parseRemoteListing vs walkLocal', () => {
  const base = makeTree()
  const remote = listRemote(base)
  const local = walkLocal(base, ROOTS, EXCLUDES)

  it('list the same paths with the same kinds', () => {
    expect(kinds(remote)).toEqual(kinds(local))
  })

  it('list exactly the expected paths (excluded ones, the fifo and missing roots left out)', () => {
    expect(kinds(remote)).toEqual(
      [
        'd ws',
        'f ws/a.txt',
        'f ws/run.sh',
        'd ws/sub',
        'd ws/sub/deep',
        'f ws/sub/b.bin',
        'f ws/sub/deep/c',
        'd ws/empty',
        'd ws/node_modules',
        'd ws/node_modules/.cache2',
        'f ws/node_modules/.cache2/kept',
        'f ws/spaced name it\'s "q".txt',
        'f ws/new\nline',
        'f ws/ünïcødé',
        'l ws/link',
        'l ws/dangling',
        'l ws/dirlink',
        'd tmp',
        'f tmp/t',
        'l rootlink',
        'l dangling-root'
      ].sort()
    )
  })

  it('agree on symlink targets, sizes and modes', () => {
    for (const [p, n] of local) {
      const r = remote.get(p)!
      if (n.t === 'l' || n.t === 'd') expect([p, r.fp]).toEqual([p, n.fp])
      else {
        const [, ls, , lm] = n.fp.split(':')
        const [, rs, , rm] = r.fp.split(':')
        expect([p, rs, rm]).toEqual([p, ls, lm])
      }
    }
    expect(local.get('ws/link')!.fp).toBe('l:a.txt')
    expect(local.get('ws/run.sh')!.fp).toMatch(/^f:10:\d+:493$/)
    expect(remote.get('ws/run.sh')!.fp).toMatch(/^f:10:[\d.]+:493$/)
  })

  it('agree on the whole seconds of the mtime', () => {
    expect(local.get('ws/a.txt')!.fp).toBe('f:5:1700000000250:420')
    expect(Math.floor(parseFloat(remote.get('ws/a.txt')!.fp.split(':')[2]))).toBe(1_700_000_000)
  })

  it('both fingerprints change when a file changes', () => {
    const b2 = makeTree()
    const before = { l: walkLocal(b2, ['ws'], []).get('ws/a.txt')!.fp, r: listRemote(b2, ['ws'], []).get('ws/a.txt')!.fp }
    writeFileSync(`${b2}/ws/a.txt`, 'hello, changed')
    chmodSync(`${b2}/ws/a.txt`, 0o600)
    expect(walkLocal(b2, ['ws'], []).get('ws/a.txt')!.fp).not.toBe(before.l)
    expect(listRemote(b2, ['ws'], []).get('ws/a.txt')!.fp).not.toBe(before.r)
  })

  it('an excluded root yields nothing on either side', () => {
    expect(listRemote(base, ['ws/node_modules/.cache'], EXCLUDES).size).toBe(0)
    expect(walkLocal(base, ['ws/node_modules/.cache'], EXCLUDES).size).toBe(0)
  })

  it('missing roots alone give an empty listing and exit 0', () => {
    const r = sh(remoteFindScript(['missing', 'also/missing'], [], shq), { cwd: base })
    expect(r.status).toBe(0)
    expect(r.stdout.length).toBe(0)
    expect(parseRemoteListing(r.stdout, { roots: ['missing'], maxEntries: 1 }).snap.size).toBe(0)
    expect(walkLocal(base, ['missing', 'also/missing'], []).size).toBe(0)
  })

  it('a root that is a file is listed as that file', () => {
    expect(kinds(listRemote(base, ['ws/a.txt'], []))).toEqual(['f ws/a.txt'])
    expect(kinds(walkLocal(base, ['ws/a.txt'], []))).toEqual(['f ws/a.txt'])
  })

  it('the "." root works locally; a remote listing of it is refused (a "." component)', () => {
    const b3 = tempDir()
    writeFileSync(`${b3}/x`, 'x')
    expect(kinds(walkLocal(b3, ['.'], []))).toEqual(['d .', 'f ./x'])
    expect(() => listRemote(b3, ['.'], [])).toThrow(/bad path: "\." component/)
  })

  it('the fifo is kept as "other" in the parse, not as a file', () => {
    const r = sh(remoteFindScript(['ws'], [], shq), { cwd: base })
    const l = parseRemoteListing(r.stdout, { roots: ['ws'], maxEntries: 1000, tree: true })
    expect([...l.other]).toEqual([['ws/fifo', 'p']])
    expect(l.snap.has('ws/fifo')).toBe(false)
  })

  it('remote regular files carry the size the listing announced', () => {
    expect(remote.get('ws/sub/b.bin')!.size).toBe(1000)
  })
})

describe('parseRemoteListing (strict: the listing comes from a machine the job controls)', () => {
  const rec = (y: string, path: string, link = '', size = '5', mtime = '1700000000.5000000000', mode = '644'): string[] => [
    y,
    size,
    mtime,
    mode,
    link,
    path
  ]
  const buf = (...recs: string[][]): Buffer =>
    Buffer.from(
      recs
        .flat()
        .map((f) => f + '\0')
        .join(''),
      'utf8'
    )
  const rules = { roots: ['a', 'b'], maxEntries: 100, tree: true }
  const parse = (b: Buffer, r: Partial<typeof rules> = {}) => parseRemoteListing(b, { ...rules, ...r })

  it('parses files, folders, symlinks, and keeps fifos, sockets and devices as "other"', () => {
    const l = parse(
      buf(
        rec('d', 'a', '', '4096'),
        rec('f', 'a/b'),
        rec('l', 'a/l', '../x y', '7', '1', '777'),
        rec('p', 'a/fifo', '', '0'),
        rec('s', 'a/sock', '', '0'),
        rec('c', 'a/dev', '', '0')
      )
    )
    expect([...l.snap]).toEqual([
      ['a', { t: 'd', fp: 'd' }],
      ['a/b', { t: 'f', fp: 'f:5:1700000000.5000000000:420', size: 5 }],
      ['a/l', { t: 'l', fp: 'l:../x y' }]
    ])
    expect([...l.other]).toEqual([
      ['a/fifo', 'p'],
      ['a/sock', 's'],
      ['a/dev', 'c']
    ])
  })

  it('an empty buffer is an empty listing', () => {
    expect(parse(Buffer.alloc(0)).snap.size).toBe(0)
  })

  it('a cut-off tail is an error, never a shorter listing (which would read as deletions)', () => {
    const whole = buf(rec('d', 'a', '', '4096'), rec('f', 'a/b'))
    expect(parse(whole).snap.size).toBe(2) // positive control
    expect(() => parse(whole.subarray(0, whole.length - 1))).toThrow(/cut off/)
    expect(() => parse(whole.subarray(0, whole.length - 5))).toThrow(/cut off/)
    expect(() => parse(Buffer.concat([whole, Buffer.from('f\0' + '1\0')]))).toThrow(/cut off/)
  })

  it.each([
    ['../etc/passwd', /"\.\." component/],
    ['a/../../x', /"\.\." component/],
    ['/etc/passwd', /absolute/],
    ['a//b', /empty component/],
    ['a/./b', /"\." component/],
    ['a/', /empty component/],
    ['', /empty/],
    [`a/${'n'.repeat(256)}`, /longer than 255/],
    [`a/${'n/'.repeat(2100)}x`, /longer than 4096/]
  ])('refuses the path %j', (path, why) => {
    expect(() => parse(buf(rec('f', path)), { tree: false })).toThrow(why)
  })

  // A VM's listing counts UTF-8 bytes, not characters: names of 3- and 4-byte characters just over
  // the limits are refused, the same names just under them are accepted (the parser's byte count is
  // skipped only where the limit cannot be reached).
  it.each([
    ['a name of 86 three-byte characters (258 bytes)', `a/${'€'.repeat(86)}`, `a/${'€'.repeat(85)}`, /longer than 255/],
    ['a name of 64 four-byte characters (256 bytes)', `a/${'😀'.repeat(64)}`, `a/${'😀'.repeat(63)}`, /longer than 255/],
    [
      'a path of 4098 bytes in three-byte names',
      `a/${`${'€'.repeat(80)}/`.repeat(16)}${'€'.repeat(80)}`,
      `a/${`${'€'.repeat(80)}/`.repeat(16)}${'€'.repeat(79)}`,
      /longer than 4096/
    ]
  ])('refuses %s; accepts it one character shorter', (_what, over, under, why) => {
    expect(parse(buf(rec('f', under)), { tree: false }).snap.has(under)).toBe(true) // positive control
    expect(() => parse(buf(rec('f', over)), { tree: false })).toThrow(why)
  })

  it('refuses paths outside the requested roots (a root name as a prefix is not enough)', () => {
    expect(() => parse(buf(rec('f', 'c/x')), { tree: false })).toThrow(/outside the requested folders/)
    expect(() => parse(buf(rec('f', 'ab/x')), { tree: false })).toThrow(/outside the requested folders/)
    expect(parse(buf(rec('f', 'b/x')), { tree: false }).snap.size).toBe(1)
  })

  it('in a tree walk, an entry must follow its folder, listed as a folder', () => {
    expect(() => parse(buf(rec('f', 'a/b'), rec('d', 'a', '', '0')))).toThrow(/listed before its folder/)
    expect(() => parse(buf(rec('l', 'a', 'x'), rec('f', 'a/b')))).toThrow(/listed before its folder/)
    expect(parse(buf(rec('d', 'a', '', '0'), rec('f', 'a/b'))).snap.size).toBe(2)
    // The parent just checked does not vouch for a folder below it, listed or not.
    const a = rec('d', 'a', '', '0')
    expect(() => parse(buf(a, rec('f', 'a/b'), rec('f', 'a/c/d')))).toThrow(/listed before its folder/)
    expect(() => parse(buf(a, rec('d', 'a/c', '', '0'), rec('f', 'a/c/x'), rec('f', 'a/y'), rec('f', 'a/c2/x')))).toThrow(
      /listed before its folder \(entry 5 "a\/c2\/x"\)/
    )
    expect(parse(buf(a, rec('d', 'a/c', '', '0'), rec('f', 'a/c/x'), rec('f', 'a/y'), rec('f', 'a/c/z'))).snap.size).toBe(5)
  })

  it.each([
    ['size', rec('f', 'a', '', '12a')],
    ['size', rec('f', 'a', '', '-1')],
    ['size', rec('f', 'a', '', '')],
    ['mtime', rec('f', 'a', '', '1', '1.2.3')],
    ['mtime', rec('f', 'a', '', '1', 'now')],
    ['mode', rec('f', 'a', '', '1', '1', '648')],
    ['mode', rec('f', 'a', '', '1', '1', '')],
    ['mode', rec('f', 'a', '', '1', '1', '123456')],
    ['mode', rec('f', 'a', '', '1', '1', ' 644')]
  ])('refuses a malformed %s', (_f, r) => {
    expect(() => parse(buf(r))).toThrow(/malformed size, mtime or mode/)
  })

  it('refuses unknown types, duplicates, link targets on non-links and links without one', () => {
    expect(() => parse(buf(rec('x', 'a')))).toThrow(/unknown type "x"/)
    expect(() => parse(buf(rec('N', 'a')))).toThrow(/unknown type "N"/)
    expect(() => parse(buf(rec('d', 'a', '', '0'), rec('d', 'a', '', '0')))).toThrow(/listed twice/)
    expect(() => parse(buf(rec('f', 'a', 'x')))).toThrow(/link target on something that is not a symlink/)
    expect(() => parse(buf(rec('l', 'a', '')))).toThrow(/symlink without a target/)
  })

  it('keeps a leading U+FEFF in names and link targets, whether or not another entry is not UTF-8', () => {
    const bom = [rec('d', 'a', '', '0'), rec('f', 'a/\uFEFFb'), rec('l', 'a/l', '\uFEFFt')]
    const notUtf8 = Buffer.concat([Buffer.from('f\x005\x001\x00644\x00\x00a/'), Buffer.from([0xff]), Buffer.from('\0')])
    for (const b of [buf(...bom), Buffer.concat([buf(...bom), notUtf8])]) {
      const l = parse(b)
      expect(l.snap.get('a/\uFEFFb')?.t).toBe('f')
      expect(l.snap.get('a/l')?.fp).toBe('l:\uFEFFt')
    }
    // At the very start it is not a byte-order mark to skip: the first type is then unknown.
    expect(() => parse(Buffer.concat([Buffer.from('\uFEFF'), buf(...bom)]))).toThrow(/unknown type "\uFEFFd"/)
  })

  it('keeps entries named (or linking) in bytes that are not UTF-8 as "other": never fetched, never deleted', () => {
    const b = Buffer.concat([
      buf(rec('d', 'a', '', '0')),
      Buffer.from('f\x005\x001\x00644\x00\x00a/'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('\0'),
      Buffer.from('l\x001\x001\x00777\x00'),
      Buffer.from([0xff]),
      Buffer.from('\0a/l\0'),
      buf(rec('f', 'a/ok'))
    ])
    const l = parse(b)
    expect([...l.snap.keys()]).toEqual(['a', 'a/ok'])
    expect([...l.other]).toEqual([
      ['a/\ufffd\ufffd', 'n'],
      ['a/l', 'n']
    ])
    // the path rules still hold for them
    expect(() =>
      parse(Buffer.concat([Buffer.from('f\x005\x001\x00644\x00\x00../'), Buffer.from([0xff]), Buffer.from('\0')]), { tree: false })
    ).toThrow(/"\.\." component/)
  })

  it('more entries than listingEntries is an error naming the key', () => {
    const b = buf(rec('d', 'a', '', '0'), rec('f', 'a/1'), rec('f', 'a/2'))
    expect(parse(b, { maxEntries: 3 }).snap.size).toBe(3)
    expect(() => parse(b, { maxEntries: 2 })).toThrow(/^sync\.limits\.listingEntries: .* 3 entries, over the limit of 2/)
  })

  it('a listing of a million fields, one of them not UTF-8, is refused by its count before any of it is decoded', () => {
    // Root on the VM can print this from a planted `find`: decoded field by field, it became an
    // array of every field before the count was checked (256 MiB of NULs: past V8's array limit).
    const decode = jest.spyOn(TextDecoder.prototype, 'decode')
    try {
      const big = Buffer.alloc(6 * 200_000)
      big[17] = 0xff
      expect(() => parse(big, { maxEntries: 1000 })).toThrow(
        /^sync\.limits\.listingEntries: the remote listing has more than 2000 entries, over the limit of 1000$/
      )
      expect(decode).not.toHaveBeenCalled()
      // Control: a listing within the limit is decoded (the spy sees the parser's decoder).
      expect(parse(buf(rec('d', 'a', '', '0')), { maxEntries: 1000 }).snap.size).toBe(1)
      expect(decode).toHaveBeenCalled()
    } finally {
      decode.mockRestore()
    }
  })
})

describe('isExcluded', () => {
  const ex = ['ws/node_modules/.cache', 'tmp']
  it.each([
    ['ws/node_modules/.cache', true],
    ['ws/node_modules/.cache/x/y', true],
    ['tmp', true],
    ['tmp/a', true],
    ['ws/node_modules/.cache2', false],
    ['ws/node_modules', false],
    ['tmpfile', false],
    ['x/tmp', false],
    ['', false]
  ])('%j → %s', (rel, want) => {
    expect(isExcluded(rel, ex)).toBe(want)
  })

  it('excludes nothing without excludes', () => {
    expect(isExcluded('a', [])).toBe(false)
  })
})

describe('remoteListScript (a stamp first; with `since`, only what changed) against the real find', () => {
  /**
   * ctime cannot be set back, so `since` is the next whole second after a stamp: everything made
   * before the stamp is older, and this waits until the clock is past it, so what changes next is newer.
   */
  const pastStamp = (stamp: number): number => {
    const since = Math.floor(stamp) + 1
    while (Date.now() / 1000 < since + 0.02) sh('sleep 0.05')
    return since
  }
  const run = (base: string, roots: string[], since: number | null, excludes: string[] = []) => {
    const r = sh(remoteListScript(roots, excludes, shq, since), { cwd: `${base}/w` })
    expect(r.stderr.toString()).toBe('')
    expect(r.status).toBe(0)
    return parseRemoteListing(r.stdout, { roots, maxEntries: 1000, stamped: true, delta: since !== null })
  }

  it('without `since` it lists what remoteFindScript lists, after a stamp of the file system clock, and leaves no file behind', () => {
    const base = makeTree()
    mkdirSync(`${base}/w`)
    for (const r of ['ws', 'tmp']) execFileSync('mv', [`${base}/${r}`, `${base}/w/${r}`])
    const before = Date.now() / 1000
    const l = run(base, ['ws', 'tmp', 'missing'], null, EXCLUDES)
    expect(l.stamp).toBeGreaterThanOrEqual(Math.floor(before) - 1)
    expect(l.stamp).toBeLessThanOrEqual(Date.now() / 1000)
    expect(l.changedDirs).toBeUndefined()
    const old = sh(remoteFindScript(['ws', 'tmp', 'missing'], EXCLUDES, shq), { cwd: `${base}/w` })
    expect(kinds(l.snap)).toEqual(kinds(parseRemoteListing(old.stdout, { roots: ['ws', 'tmp'], maxEntries: 1000, tree: true }).snap))
    const left = execFileSync('ls', ['-A', base]).toString().split('\n')
    expect(left.filter((n) => n.startsWith('.rch'))).toEqual([])
    expect(left).toContain('w') // control: the folder the stamp was made in
  })

  it('with `since`: every folder, what changed, and every entry of a folder whose entries changed', () => {
    const base = tempDir()
    const w = `${base}/w`
    mkdirSync(`${w}/ws/old/deep`, { recursive: true })
    mkdirSync(`${w}/ws/busy`, { recursive: true })
    for (const f of ['ws/old/a', 'ws/old/b', 'ws/old/deep/c', 'ws/busy/d', 'ws/busy/e']) writeFileSync(`${w}/${f}`, f)
    const since = pastStamp(run(base, ['ws'], null).stamp!)
    writeFileSync(`${w}/ws/old/a`, 'changed in place') // its folder did not change
    utimesSync(`${w}/ws/old/a`, 1_000_000_000, 1_000_000_000) // an old mtime does not hide it
    writeFileSync(`${w}/ws/busy/new`, 'n') // its folder changed: every entry there is listed
    const l = run(base, ['ws'], since)
    expect([...l.changedDirs!].sort()).toEqual(['ws/busy'])
    expect(kinds(l.snap)).toEqual([
      'd ws',
      'd ws/busy',
      'd ws/old',
      'd ws/old/deep',
      'f ws/busy/d',
      'f ws/busy/e',
      'f ws/busy/new',
      'f ws/old/a'
    ])
    // control: the same files are all there in a full listing
    expect(run(base, ['ws'], null).snap.size).toBe(l.snap.size + 2)
  })

  it('a changed folder with a newline in its name is marked changed but its entries are not listed (the pull lists everything then)', () => {
    const base = tempDir()
    mkdirSync(`${base}/w/ws/a\nb`, { recursive: true })
    writeFileSync(`${base}/w/ws/a\nb/f`, 'f')
    const since = pastStamp(run(base, ['ws'], null).stamp!)
    writeFileSync(`${base}/w/ws/a\nb/g`, 'g')
    writeFileSync(`${base}/w/ws/h`, 'h')
    const l = run(base, ['ws'], since)
    expect([...l.changedDirs!].sort()).toEqual(['ws', 'ws/a\nb'])
    expect(l.snap.has('ws/a\nb/f')).toBe(false)
    expect(l.snap.has('ws/h')).toBe(true) // control: the other changed folder's entries are listed
  })
})

describe('parseRemoteListing: a delta listing (strict)', () => {
  const rec = (y: string, path: string): string[] => [
    y,
    '5',
    '1700000000.5',
    '644',
    y.endsWith('l') ? 't' : y[0] === 'd' ? '8:1' : '',
    path
  ]
  /** The uptime and the stamp, the records, and the trailer with the number of changed folders listed. */
  const buf = (stamp: string, ...recs: string[][]): Buffer => {
    const changed = recs.filter((r) => r[0] === 'd+').length
    const trailer = recs.some((r) => r[0] === '#') ? [] : [['#', String(changed), '', '', '', '']]
    return Buffer.from(['12.5', stamp, ...[...recs, ...trailer].flat()].map((f) => f + '\0').join(''), 'utf8')
  }
  const parse = (b: Buffer, delta = true) => parseRemoteListing(b, { roots: ['a'], maxEntries: 100, stamped: true, delta })

  it('reads the stamp, the changed folders, and lets the entries of a changed folder replace what the walk said of them', () => {
    const l = parse(
      buf('1700000123.75', rec('d+', 'a'), rec('d', 'a/s'), rec('f', 'a/x'), rec('=f', 'a/x'), rec('=l', 'a/y'), rec('=p', 'a/z'))
    )
    expect(l.stamp).toBe(1700000123.75)
    expect(l.up).toBe(12.5)
    expect([...l.changedDirs!]).toEqual(['a'])
    expect(kinds(l.snap)).toEqual(['d a', 'd a/s', 'f a/x', 'l a/y'])
    expect([...l.other]).toEqual([['a/z', 'p']])
  })

  it.each([
    ['no stamp', buf('x', rec('d', 'a')), /no listing time at its start/],
    ['an entry of a folder that did not change', buf('1', rec('d+', 'a'), rec('d', 'a/s'), rec('=f', 'a/s/x')), /not in a changed folder/],
    ['a root as an entry of a changed folder', buf('1', rec('=f', 'a')), /not in a changed folder/],
    [
      'a folder among the entries of a changed folder',
      buf('1', rec('d+', 'a'), rec('=d', 'a/s')),
      /a folder in the entries of a changed folder/
    ],
    [
      'the walk again after the entries',
      buf('1', rec('d+', 'a'), rec('=f', 'a/x'), rec('f', 'a/y')),
      /listed after the entries of the changed folders/
    ],
    ['an entry listed twice among the entries', buf('1', rec('d+', 'a'), rec('=f', 'a/x'), rec('=f', 'a/x')), /path listed twice/],
    ['a folder of the walk as an entry', buf('1', rec('d+', 'a'), rec('d', 'a/s'), rec('=f', 'a/s')), /path listed twice/],
    ['a file listed twice by the walk', buf('1', rec('d+', 'a'), rec('f', 'a/x'), rec('f', 'a/x')), /path listed twice/],
    ['an entry outside the roots', buf('1', rec('d+', 'a'), rec('=f', 'b/x')), /outside the requested folders/],
    ['an entry with a bad path', buf('1', rec('d+', 'a'), rec('=f', 'a/../x')), /bad path/]
  ])('refuses %s', (_what, b, err) => {
    expect(() => parse(b)).toThrow(err)
  })

  it('a full listing knows none of its kinds of record', () => {
    const full = (...recs: string[][]): Buffer => Buffer.from(['12.5', '1', ...recs.flat()].map((f) => f + '\0').join(''), 'utf8')
    expect(() => parse(full(rec('d+', 'a')), false)).toThrow(/unknown type "d\+"/)
    expect(() => parse(full(rec('d', 'a'), rec('=f', 'a/x')), false)).toThrow(/unknown type "=f"/)
    expect(() => parse(full(rec('d', 'a'), ['#', '0', '', '', '', '']), false)).toThrow(/bad path: empty/)
    expect(parse(full(rec('d', 'a'), rec('f', 'a/x')), false).snap.size).toBe(2) // control
  })

  it('a folder carries its device and inode, and a delta listing ends with its trailer', () => {
    expect(parse(buf('1', rec('d', 'a'))).snap.get('a')).toEqual({ t: 'd', fp: 'd:8:1' })
    const noId = Buffer.from(['12.5', '1', 'd', '5', '1', '644', '', 'a', '#', '0', '', '', '', ''].map((f) => f + '\0').join(''))
    expect(() => parse(noId)).toThrow(/a folder without its device and inode/)
    const noTrailer = Buffer.from(['12.5', '1', ...rec('d', 'a')].map((f) => f + '\0').join(''))
    expect(() => parse(noTrailer)).toThrow(/no trailer/)
    expect(() => parse(Buffer.from('12.5\x001\x00'))).toThrow(/no trailer/)
  })

  it('an entry named in bytes that are not UTF-8 is left alone, but only in a changed folder', () => {
    const raw = (...fields: Array<string | Buffer>): Buffer =>
      Buffer.concat(fields.map((f) => Buffer.concat([Buffer.from(f), Buffer.from([0])])))
    const bad = Buffer.concat([Buffer.from('a/s/x'), Buffer.from([0xff])])
    const head = ['12.5', '1', 'd+', '5', '1', '644', '8:1', 'a', 'd', '5', '1', '644', '8:2', 'a/s']
    const entry = (parent: string): Array<string | Buffer> => [
      '=f',
      '5',
      '1',
      '644',
      '',
      parent === 'a/s' ? bad : Buffer.concat([Buffer.from('a/x'), Buffer.from([0xff])])
    ]
    expect(() => parse(raw(...head, ...entry('a/s'), '#', '1', '', '', '', ''))).toThrow(/not in a changed folder/)
    const ok = parse(raw(...head, ...entry('a'), '#', '1', '', '', '', '')) // control: in the changed folder
    expect([...ok.other.values()]).toEqual(['n'])
  })

  it('says when the entries of the changed folders are not all there', () => {
    expect(parse(buf('1', rec('d+', 'a'), rec('d+', 'a/s'))).partial).toBeUndefined() // control
    expect(parse(buf('1', rec('d+', 'a'), rec('d+', 'a/s'), ['#', '1', '', '', '', ''])).partial).toBe(
      '1 of the 2 changed folders were read back'
    )
    expect(parse(buf('1', rec('d+', 'a'), ['#', '-', '', '', '', ''])).partial).toBe('more than 256 folders changed')
    expect(parse(buf('1', rec('d+', 'a'), rec('d+', 'a/x\ny'), ['#', '1', '', '', '', ''])).partial).toBe(
      'a changed folder has a newline in its name'
    )
    expect(() => parse(buf('1', rec('d', 'a'), ['#', 'x', '', '', '', '']))).toThrow(/no trailer/)
  })
})

// Out of descriptors, an I/O error, a folder not readable: a read that fails must not read as
// "nothing there", or a push deletes on the VM what it could not list.
describe('a local folder that cannot be read', () => {
  const fail = (dir: string, code: string): jest.SpyInstance => failingFs('readdirSync', (p) => p === dir, code)
  const tree = (): { src: string; dir: string } => {
    const src = tempDir()
    mkdirSync(join(src, 'r', 'a'), { recursive: true })
    writeFileSync(join(src, 'r', 'a', 'f'), 'x')
    return { src, dir: join(src, 'r', 'a') }
  }

  it('fails the walk naming it (EMFILE, EIO, EACCES), never lists it as empty', () => {
    for (const code of ['EMFILE', 'EIO', 'EACCES']) {
      const { src, dir } = tree()
      const spy = fail(dir, code)
      try {
        expect(() => walkLocal(src, ['r'], [])).toThrow(`cannot read ${dir} on the runner host (${code})`)
      } finally {
        spy.mockRestore()
      }
    }
  })

  it('control: one gone since it was seen (ENOENT) is left out, the walk goes on', () => {
    const { src, dir } = tree()
    const spy = fail(dir, 'ENOENT')
    try {
      expect([...walkLocal(src, ['r'], []).keys()]).toEqual(['r', 'r/a'])
    } finally {
      spy.mockRestore()
    }
    expect([...walkLocal(src, ['r'], []).keys()]).toEqual(['r', 'r/a', 'r/a/f'])
  })
})
