import { chmodSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { shq } from '../../src/remote/quote'
import { isExcluded, localNode, parseRemoteListing, remoteFindScript, walkLocal, type Snapshot } from '../../src/sync/tree'
import { cleanupTempDirs, sh, tempDir } from './_helpers'

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
  w("ws/spaced name it's \"q\".txt", 'odd')
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
  return parseRemoteListing(r.stdout)
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
        "f ws/spaced name it's \"q\".txt",
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
    expect(parseRemoteListing(r.stdout).size).toBe(0)
    expect(walkLocal(base, ['missing', 'also/missing'], []).size).toBe(0)
  })

  it('a root that is a file is listed as that file', () => {
    expect(kinds(listRemote(base, ['ws/a.txt'], []))).toEqual(['f ws/a.txt'])
    expect(kinds(walkLocal(base, ['ws/a.txt'], []))).toEqual(['f ws/a.txt'])
  })

  it('the "." root works on both sides', () => {
    const b3 = tempDir()
    writeFileSync(`${b3}/x`, 'x')
    expect(kinds(listRemote(b3, ['.'], []))).toEqual(kinds(walkLocal(b3, ['.'], [])))
    expect(kinds(walkLocal(b3, ['.'], []))).toEqual(['d .', 'f ./x'])
  })

  it('localNode returns one node or null', () => {
    expect(localNode(base, 'ws/link')).toEqual({ t: 'l', fp: 'l:a.txt' })
    expect(localNode(base, 'ws/sub')).toEqual({ t: 'd', fp: 'd' })
    expect(localNode(base, 'nope')).toBeNull()
  })
})

describe('parseRemoteListing', () => {
  it('parses records and ignores other types and a truncated tail', () => {
    const buf = Buffer.from(
      ['f', '5', '1700000000.5000000000', '644', '', 'a/b', 'd', '4096', '1', '755', '', 'a', 'l', '7', '1', '777', '../x y', 'a/l', 'p', '0', '1', '644', '', 'a/fifo', 'f', '1']
        .join('\0'),
      'utf8'
    )
    expect([...parseRemoteListing(buf)]).toEqual([
      ['a/b', { t: 'f', fp: 'f:5:1700000000.5000000000:420' }],
      ['a', { t: 'd', fp: 'd' }],
      ['a/l', { t: 'l', fp: 'l:../x y' }]
    ])
  })

  it('an empty buffer is an empty snapshot', () => {
    expect(parseRemoteListing(Buffer.alloc(0)).size).toBe(0)
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
