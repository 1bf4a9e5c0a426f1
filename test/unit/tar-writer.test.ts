import { execFileSync } from 'node:child_process'
import { lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { tarOf } from '../../src/sync/tar-writer'
import { TarReader, type TarEntry } from '../../src/sync/untar'
import { cleanupTempDirs, tempDir } from './_helpers'
import { failingFs } from './_fs-faults'

afterAll(cleanupTempDirs)

function collect(s: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    s.on('data', (c: Buffer) => parts.push(c))
    s.on('end', () => resolve(Buffer.concat(parts)))
    s.on('error', reject)
  })
}

const long = `d/${'long-folder-name-'.repeat(5)}/${'file-é-'.repeat(20)}.txt`
const bigSize = 3 * 64 * 1024 + 123

/** A tree of every kind the local walk lists, with names and sizes that need more than plain ustar. */
function makeTree(): string {
  const src = tempDir()
  mkdirSync(join(src, 'd', 'sub'), { recursive: true })
  mkdirSync(join(src, 'd', 'long-folder-name-'.repeat(5)), { recursive: true })
  writeFileSync(join(src, 'd', 'empty'), '')
  writeFileSync(join(src, 'd', 'one'), 'x')
  writeFileSync(join(src, 'd', 'block'), Buffer.alloc(512, 7))
  writeFileSync(join(src, 'd', 'big'), Buffer.alloc(bigSize, 'abc'))
  writeFileSync(join(src, long), 'long name\n')
  writeFileSync(join(src, 'd', 'script.sh'), '#!/bin/sh\ntrue\n')
  chmodSync(join(src, 'd', 'script.sh'), 0o750)
  utimesSync(join(src, 'd', 'one'), 1_600_000_000, 1_600_000_000)
  symlinkSync('one', join(src, 'd', 'link'))
  symlinkSync(`../${'t'.repeat(150)}`, join(src, 'd', 'longlink'))
  execFileSync('mkfifo', [join(src, 'd', 'fifo')])
  return src
}

const PATHS = ['d', 'd/sub', 'd/empty', 'd/one', 'd/block', 'd/big', long, 'd/script.sh', 'd/link', 'd/longlink', 'd/missing', 'd/fifo']

describe('tarOf', () => {
  it('makes an archive GNU tar extracts to the same tree (names, content, modes, mtimes, symlinks)', async () => {
    const src = makeTree()
    const out = tempDir()
    const archive = await collect(tarOf(src, PATHS))
    expect(archive.length % 512).toBe(0)
    execFileSync('tar', ['-x', '-f', '-', '-C', out], { input: archive })
    for (const p of ['d/empty', 'd/one', 'd/block', 'd/big', long, 'd/script.sh']) {
      expect(readFileSync(join(out, p))).toEqual(readFileSync(join(src, p)))
      expect(lstatSync(join(out, p)).mode).toBe(lstatSync(join(src, p)).mode)
      expect(Math.floor(lstatSync(join(out, p)).mtimeMs / 1000)).toBe(Math.floor(lstatSync(join(src, p)).mtimeMs / 1000))
    }
    expect(lstatSync(join(out, 'd/sub')).isDirectory()).toBe(true)
    expect(readlinkSync(join(out, 'd/link'))).toBe('one')
    expect(readlinkSync(join(out, 'd/longlink'))).toBe(`../${'t'.repeat(150)}`)
    // What the walk could not have sent is left out: a path gone since, and anything not a file, folder or symlink.
    expect(() => lstatSync(join(out, 'd/missing'))).toThrow()
    expect(() => lstatSync(join(out, 'd/fifo'))).toThrow()
  })

  it('lists the same members, in order, as the hook reads them back', async () => {
    const src = makeTree()
    const archive = await collect(tarOf(src, PATHS))
    const got: TarEntry[] = []
    const sizes = new Map<string, number>()
    const r = new TarReader({
      entry: (e) => void got.push(e),
      data: () => undefined,
      endEntry: (e) => void sizes.set(e.name, e.size)
    })
    r.write(archive)
    r.finish()
    expect(got.map((e) => [e.name, e.type])).toEqual([
      ['d', 'dir'],
      ['d/sub', 'dir'],
      ['d/empty', 'file'],
      ['d/one', 'file'],
      ['d/block', 'file'],
      ['d/big', 'file'],
      [long, 'file'],
      ['d/script.sh', 'file'],
      ['d/link', 'symlink'],
      ['d/longlink', 'symlink']
    ])
    expect(sizes.get('d/big')).toBe(bigSize)
    expect(got.find((e) => e.name === 'd/one')!.mtime).toBe(1_600_000_000)
  })

  it('pads a file that shrank after its header was written to the size it announced', async () => {
    const src = tempDir()
    writeFileSync(join(src, 'grows-then-shrinks'), Buffer.alloc(1_000_000, 1))
    const stream = tarOf(src, ['grows-then-shrinks'])
    const parts: Buffer[] = []
    await new Promise<void>((resolve, reject) => {
      let cut = false
      stream.on('data', (c: Buffer) => {
        parts.push(c)
        if (!cut) {
          cut = true
          writeFileSync(join(src, 'grows-then-shrinks'), Buffer.alloc(10, 2))
        }
      })
      stream.on('end', resolve)
      stream.on('error', reject)
    })
    const archive = Buffer.concat(parts)
    const out = tempDir()
    execFileSync('tar', ['-x', '-f', '-', '-C', out], { input: archive })
    expect(lstatSync(join(out, 'grows-then-shrinks')).size).toBe(1_000_000)
  })
})

// A file that cannot be opened for a reason other than being gone (out of descriptors, an I/O
// error) fails the stream: left out, the VM would keep its old copy, recorded as sent.
describe('a file that cannot be opened', () => {
  const failOpen = (file: string, code: string): jest.SpyInstance => failingFs('openSync', (p) => p === file, code)
  const twoFiles = (): string => {
    const src = tempDir()
    writeFileSync(join(src, 'a'), 'old')
    writeFileSync(join(src, 'b'), 'kept')
    return src
  }

  it('out of descriptors: the stream fails naming the file', async () => {
    const src = twoFiles()
    const spy = failOpen(join(src, 'a'), 'EMFILE')
    try {
      await expect(collect(tarOf(src, ['a', 'b']))).rejects.toThrow(`cannot read ${join(src, 'a')} on the runner host (EMFILE)`)
    } finally {
      spy.mockRestore()
    }
  })

  it('control: one gone since the walk (ENOENT) is left out, the others go', async () => {
    const src = twoFiles()
    const spy = failOpen(join(src, 'a'), 'ENOENT')
    let tar: Buffer
    try {
      tar = await collect(tarOf(src, ['a', 'b']))
    } finally {
      spy.mockRestore()
    }
    const names = execFileSync('tar', ['-t'], { input: tar }).toString().trim().split('\n')
    expect(names).toEqual(['b'])
  })
})
