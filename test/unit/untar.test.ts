import { execFileSync } from 'node:child_process'
import { linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { TarReader, type TarEntry } from '../../src/sync/untar'
import { cleanupTempDirs, tempDir } from './_helpers'
import { body, END, header, member, pax, tarOf } from './_tar'

afterAll(cleanupTempDirs)

interface Got {
  entries: TarEntry[]
  data: Map<string, Buffer>
}

/** Reads a whole archive, `chunk` bytes at a time. */
function read(archive: Buffer, chunk = archive.length || 1): Got {
  const got: Got = { entries: [], data: new Map() }
  const parts: Buffer[] = []
  const r = new TarReader({
    entry: (e) => void got.entries.push(e),
    data: (c) => void parts.push(Buffer.from(c)),
    endEntry: (e) => void got.data.set(e.name, Buffer.concat(parts.splice(0)))
  })
  for (let i = 0; i < archive.length; i += chunk) r.write(archive.subarray(i, i + chunk))
  r.finish()
  return got
}

describe('TarReader on archives made by the real tar', () => {
  const dir = tempDir()
  const long = `d/${'long-folder-name-'.repeat(5)}/${'file-'.repeat(30)}.txt`
  const longTarget = `../${'t'.repeat(150)}`
  mkdirSync(`${dir}/d/${'long-folder-name-'.repeat(5)}`, { recursive: true })
  mkdirSync(`${dir}/d/empty-dir`)
  writeFileSync(`${dir}/${long}`, 'long name content')
  writeFileSync(`${dir}/d/empty`, '')
  writeFileSync(`${dir}/d/big`, Buffer.alloc(70_000, 7))
  writeFileSync(`${dir}/d/ünï cødé`, 'u')
  symlinkSync('empty', `${dir}/d/link`)
  symlinkSync(longTarget, `${dir}/d/longlink`)
  const names = ['d', `d/${'long-folder-name-'.repeat(5)}`, long, 'd/empty-dir', 'd/empty', 'd/big', 'd/ünï cødé', 'd/link', 'd/longlink']
  const make = (format: string): Buffer =>
    execFileSync('tar', ['-c', '-f', '-', `--format=${format}`, '--no-recursion', '--null', '-T', '-'], {
      cwd: dir,
      input: names.map((n) => n + '\0').join(''),
      maxBuffer: 1 << 26
    })

  it.each(['gnu', 'pax'])('reads a %s archive: long names, folders, empty files, symlinks, content', (format) => {
    const archive = make(format)
    if (format === 'gnu') expect(archive.includes(Buffer.from('././@LongLink'))).toBe(true) // really uses 'L'/'K'
    if (format === 'pax') expect(archive.includes(Buffer.from(` path=${long}\n`))).toBe(true) // really uses pax path
    for (const chunk of [archive.length, 513, 7]) {
      const got = read(archive, chunk)
      expect(got.entries.map((e) => `${e.type} ${e.name}`)).toEqual([
        'dir d',
        `dir d/${'long-folder-name-'.repeat(5)}`,
        `file ${long}`,
        'dir d/empty-dir',
        'file d/empty',
        'file d/big',
        'file d/ünï cødé',
        'symlink d/link',
        'symlink d/longlink'
      ])
      expect(got.data.get(long)!.toString()).toBe('long name content')
      expect(got.data.get('d/empty')!.length).toBe(0)
      expect(got.data.get('d/big')!.equals(Buffer.alloc(70_000, 7))).toBe(true)
      expect(got.entries.find((e) => e.name === 'd/longlink')!.linkname).toBe(longTarget)
      expect(got.entries.find((e) => e.name === 'd/link')!.linkname).toBe('empty')
    }
  })

  it('reads a ustar archive with a name split into prefix and name', () => {
    const split = `d/${'long-folder-name-'.repeat(7)}/short.txt`
    mkdirSync(`${dir}/d/${'long-folder-name-'.repeat(7)}`)
    writeFileSync(`${dir}/${split}`, 's')
    const archive = execFileSync('tar', ['-c', '-f', '-', '--format=ustar', '--no-recursion', split], { cwd: dir })
    expect(archive.subarray(345, 350).toString()).toBe('d/lon') // really uses the prefix field
    expect(read(archive).entries.map((e) => e.name)).toEqual([split])
  })

  it('refuses a hardlink the real tar makes, and takes it as a file with --hard-dereference', () => {
    const h = tempDir()
    writeFileSync(`${h}/a`, 'x')
    linkSync(`${h}/a`, `${h}/b`)
    const plain = execFileSync('tar', ['-c', '-f', '-', 'a', 'b'], { cwd: h })
    expect(() => read(plain)).toThrow(/refused member type: a hardlink/)
    const deref = execFileSync('tar', ['-c', '-f', '-', '--hard-dereference', 'a', 'b'], { cwd: h })
    expect(read(deref).entries.map((e) => `${e.type} ${e.name} ${e.size}`)).toEqual(['file a 1', 'file b 1'])
  })

  it('refuses a fifo and a sparse file the real tar makes', () => {
    const h = tempDir()
    execFileSync('mkfifo', [`${h}/p`])
    writeFileSync(`${h}/plain`, 'x')
    execFileSync('truncate', ['-s', '10M', `${h}/sparse`])
    expect(read(execFileSync('tar', ['-c', '-f', '-', 'plain'], { cwd: h })).entries).toHaveLength(1) // control
    expect(() => read(execFileSync('tar', ['-c', '-f', '-', 'p'], { cwd: h }))).toThrow(/a fifo/)
    expect(() => read(execFileSync('tar', ['-c', '-f', '-', '--sparse', 'sparse'], { cwd: h }))).toThrow(/a sparse file/)
    expect(() => read(execFileSync('tar', ['-c', '-f', '-', '--sparse', '--format=pax', 'sparse'], { cwd: h }))).toThrow(
      /a sparse file \(pax\)/
    )
  })
})

describe('TarReader on crafted archives', () => {
  it('positive control: a hand-made file member is read', () => {
    const got = read(tarOf(member({ name: 'a/f', mode: 0o4755 }, 'hi')))
    expect(got.entries).toEqual([{ name: 'a/f', type: 'file', size: 2, mode: 0o4755, mtime: 1_700_000_000, linkname: '' }])
    expect(got.data.get('a/f')!.toString()).toBe('hi')
  })

  it.each([
    ['1', 'a hardlink'],
    ['3', 'a character device'],
    ['4', 'a block device'],
    ['6', 'a fifo'],
    ['7', 'a contiguous file'],
    ['S', 'a sparse file'],
    ['M', 'a multi-volume continuation'],
    ['V', 'a volume label'],
    ['D', 'a GNU dump folder'],
    ['Z', 'unknown type "Z"']
  ])('refuses type %j (%s)', (type, what) => {
    expect(() => read(tarOf(member({ type, linkname: type === '1' ? '/etc/shadow' : '' })))).toThrow(`refused member type: ${what}`)
  })

  it.each([
    ['../x', /"\.\." component/],
    ['a/../../x', /"\.\." component/],
    ['/etc/passwd', /absolute/],
    ['./a', /"\." component/],
    ['a/./b', /"\." component/],
    ['a//b', /empty component/],
    ['a/', /empty component/]
  ])('refuses the name %j', (name, why) => {
    expect(() => read(tarOf(member({ name })))).toThrow(why)
  })

  it('refuses bad names from a GNU long name, a pax path and a ustar prefix', () => {
    expect(() => read(tarOf(member({ name: '././@LongLink', type: 'L' }, '../../../etc/x\0'), member({ name: 'a/f' })))).toThrow(
      /"\.\." component/
    )
    expect(() => read(tarOf(pax({ path: '/etc/cron.d/x' }), member({ name: 'a/f' })))).toThrow(/absolute/)
    expect(() => read(tarOf(member({ name: 'f', prefix: '../a', magic: 'ustar\x0000' })))).toThrow(/"\.\." component/)
    // controls: the same mechanisms with clean names
    expect(read(tarOf(member({ name: '././@LongLink', type: 'L' }, 'a/long\0'), member({ name: 'a/f' }))).entries[0].name).toBe('a/long')
    expect(read(tarOf(pax({ path: 'a/p' }), member({ name: 'a/f' }))).entries[0].name).toBe('a/p')
    expect(read(tarOf(member({ name: 'f', prefix: 'a/b', magic: 'ustar\x0000' }))).entries[0].name).toBe('a/b/f')
  })

  it('keeps a leading U+FEFF in a member name, a pax path and a link target (the listing keeps it too)', () => {
    expect(read(tarOf(member({ name: '\uFEFFb' }))).entries[0].name).toBe('\uFEFFb')
    expect(read(tarOf(pax({ path: '\uFEFFp' }), member({ name: 'a/f' }))).entries[0].name).toBe('\uFEFFp')
    expect(read(tarOf(member({ name: 'a/l', type: '2', linkname: '\uFEFFt' }))).entries[0].linkname).toBe('\uFEFFt')
  })

  it('a folder may end in "/" (tar adds it); a file may not', () => {
    expect(read(tarOf(member({ name: 'a/d/', type: '5' }))).entries[0].name).toBe('a/d')
    expect(() => read(tarOf(member({ name: 'a/d/', type: '0' })))).toThrow(/empty component/)
  })

  it('honours a pax size and linkpath, ignores a global header, refuses GNU.sparse keys', () => {
    const got = read(
      tarOf(
        member({ name: 'g', type: 'g' }, '20 path=/etc/shadow\n'),
        pax({ size: '3', linkpath: '' }),
        member({ name: 'a/f', size: 0 }, 'abc').subarray(0, 512),
        body('abc')
      )
    )
    expect(got.data.get('a/f')!.toString()).toBe('abc')
    expect(read(tarOf(pax({ linkpath: 'x/y' }), member({ name: 'a/l', type: '2', linkname: 'z' }))).entries[0].linkname).toBe('x/y')
    expect(() => read(tarOf(pax({ 'GNU.sparse.major': '1' }), member({ name: 'a/f' })))).toThrow(/sparse/)
    expect(() => read(tarOf(pax({ size: '12x' }), member({ name: 'a/f' })))).toThrow(/malformed pax size/)
  })

  it('refuses malformed pax records', () => {
    const withPax = (text: string): Buffer => tarOf(member({ name: 'p', type: 'x' }, text), member({ name: 'a/f' }))
    expect(read(withPax('10 path=a\n')).entries[0].name).toBe('a') // control
    expect(() => read(withPax('99 path=a\n'))).toThrow(/malformed pax record/)
    expect(() => read(withPax('path=a\n'))).toThrow(/malformed pax record length/)
    expect(() => read(withPax('8 patha\n'))).toThrow(/malformed pax record/)
    expect(() => read(withPax('10 path=a!'))).toThrow(/malformed pax record/)
  })

  it('refuses a checksum mismatch, a foreign magic and malformed numbers', () => {
    expect(() => read(tarOf(member({ badChecksum: true })))).toThrow(/checksum mismatch/)
    expect(() => read(tarOf(member({ magic: 'xxxxx\0\0\0' })))).toThrow(/not a ustar or GNU tar header/)
    expect(() => read(tarOf(member({ sizeField: Buffer.from('0000000001x\0', 'latin1') })))).toThrow(/malformed size field/)
    expect(() => read(tarOf(member({ sizeField: Buffer.from([0xff, ...Buffer.alloc(11, 0xff)]) })))).toThrow(/negative or oversized size/)
    const b256 = Buffer.alloc(12)
    b256[0] = 0x80
    b256[11] = 3
    expect(
      read(tarOf(header({ sizeField: b256 }), body('abc')))
        .data.get('a/f')!
        .toString()
    ).toBe('abc') // base-256 is fine
  })

  it('refuses folders or symlinks with content, symlinks without a target, link names on files', () => {
    expect(() => read(tarOf(member({ name: 'a/d', type: '5' }, 'x')))).toThrow(/a dir with content/)
    expect(() => read(tarOf(member({ name: 'a/l', type: '2', linkname: 't' }, 'x')))).toThrow(/a symlink with content/)
    expect(() => read(tarOf(member({ name: 'a/l', type: '2' })))).toThrow(/a symlink without a target/)
    expect(() => read(tarOf(member({ name: 'a/f', linkname: '/etc/passwd' })))).toThrow(/link name on a member that is not a symlink/)
  })

  it('refuses oversized long names and pax headers, and a long name without its member', () => {
    expect(() => read(tarOf(member({ name: '././@LongLink', type: 'L' }, 'a'.repeat(9000))))).toThrow(/extended header of 9000 bytes/)
    expect(() => read(tarOf(member({ name: 'p', type: 'x' }, 'x'.repeat(70_000))))).toThrow(/extended header of 70000 bytes/)
    expect(() => read(tarOf(member({ name: '././@LongLink', type: 'L' }, 'a/x\0')))).toThrow(/extended header without its member/)
  })

  it('refuses an archive cut off mid-member or without the end marker, and a zero block inside', () => {
    const whole = tarOf(member({}, 'x'.repeat(600)))
    expect(read(whole).entries).toHaveLength(1) // control
    expect(() => read(whole.subarray(0, 700))).toThrow(/cut off/)
    expect(() => read(whole.subarray(0, 1536))).toThrow(/cut off/)
    expect(() => read(Buffer.concat([member({}), Buffer.alloc(512), member({ name: 'a/g' }), END]))).toThrow(/zero block inside/)
  })

  it('takes the zero padding after the end marker (tar pads to its record size), up to 1 MiB of it', () => {
    expect(read(Buffer.concat([tarOf(member({})), Buffer.alloc(9216)])).entries).toHaveLength(1)
    expect(read(Buffer.concat([tarOf(member({})), Buffer.alloc(1024 * 1024)]), 4096).entries).toHaveLength(1) // control
    expect(() => read(Buffer.concat([tarOf(member({})), Buffer.alloc(1024 * 1024 + 1)]), 4096)).toThrow(
      /over 1048576 bytes after the end-of-archive marker/
    )
    expect(() => read(Buffer.concat([tarOf(member({})), Buffer.alloc(100), Buffer.from('x')]))).toThrow(
      /data after the end-of-archive marker/
    )
  })

  it('refuses a repeated extended header, which would let headers come for ever without content', () => {
    const long = (n: string): Buffer => member({ name: '././@LongLink', type: 'L' }, `${n}\0`)
    const link = (n: string): Buffer => member({ name: '././@LongLink', type: 'K' }, `${n}\0`)
    const glob = member({ name: 'g', type: 'g' }, '20 path=/etc/shadow\n')
    // controls: one of each before a member, and one global header, are read
    expect(read(tarOf(long('a/long'), member({ name: 'x' }))).entries[0].name).toBe('a/long')
    expect(
      read(tarOf(glob, long('a/l1'), link('t1'), pax({ mtime: '1' }), member({ name: 'x', type: '2', linkname: 'y' }))).entries[0]
    ).toMatchObject({
      name: 'a/l1',
      linkname: 't1'
    })
    expect(read(tarOf(long('a/l1'), member({ name: 'x' }), long('a/l2'), member({ name: 'y' }))).entries.map((e) => e.name)).toEqual([
      'a/l1',
      'a/l2'
    ])
    expect(() => read(tarOf(long('a/l1'), long('a/l2'), member({ name: 'x' })))).toThrow(/a repeated extended header \(type L\)/)
    expect(() => read(tarOf(link('t1'), link('t2'), member({ name: 'x', type: '2', linkname: 'y' })))).toThrow(/type K/)
    expect(() => read(tarOf(pax({ mtime: '1' }), pax({ mtime: '2' }), member({ name: 'x' })))).toThrow(/type x/)
    expect(() => read(tarOf(glob, member({ name: 'x' }), glob, member({ name: 'y' })))).toThrow(/type g/)
  })
})
