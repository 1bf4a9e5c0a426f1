import { spawn, spawnSync } from 'node:child_process'
import { appendFileSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  earliest,
  listingTimes,
  loadBase,
  manifestLockOf,
  recordSince,
  saveBase,
  underRoots,
  type BaseEntry,
  type BaseUpdate,
  type ListingTime
} from '../../src/sync/manifest'
import { SRC, bundle, cleanupTempDirs, tempDir } from './_helpers'
import { systemClock } from '../../src/retry'
import { failingFs } from './_fs-faults'

afterEach(() => jest.restoreAllMocks())
afterAll(cleanupTempDirs)

const e = (l: string, r = l, t: BaseEntry['t'] = 'f'): BaseEntry => ({ t, l, r })
const upd = (set: Record<string, BaseEntry> = {}, remove: string[] = []): BaseUpdate => ({
  set: new Map(Object.entries(set)),
  remove: new Set(remove)
})
const asObj = (m: ReadonlyMap<string, BaseEntry>): Record<string, BaseEntry> => Object.fromEntries(m)
/** The base as another process reads it from the files: a fresh copy of the module, with no cache. */
const onDisk = (file: string): Record<string, BaseEntry> => {
  let fresh!: typeof import('../../src/sync/manifest')
  jest.isolateModules(() => {
    fresh = require('../../src/sync/manifest') as typeof import('../../src/sync/manifest')
  })
  return asObj(fresh.loadBase(file))
}

describe('loadBase', () => {
  it('is empty when the file is missing; one that is not JSON is an error naming it, not an empty base', () => {
    const dir = tempDir()
    expect(loadBase(join(dir, 'none.json')).size).toBe(0)
    writeFileSync(join(dir, 'bad.json'), '{not json')
    expect(() => loadBase(join(dir, 'bad.json'))).toThrow(`cannot read the sync base ${join(dir, 'bad.json')}`)
  })
})

describe('loadBase cache (the agent reads the base every step)', () => {
  it('sees a base another process wrote after this one cached it', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1') }))
    expect(asObj(loadBase(file))).toEqual({ a: e('1') })
    // Another process: a new file renamed over the old one, as saveBase does.
    writeFileSync(`${file}.other`, JSON.stringify({ a: e('1'), b: e('2') }))
    require('node:fs').renameSync(`${file}.other`, file)
    expect(asObj(loadBase(file))).toEqual({ a: e('1'), b: e('2') })
  })

  it("a save after another process replaced the file keeps the other process's entries, not stale cached text", async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1'), b: e('2') }))
    await saveBase(file, upd({ a: e('3') }))
    writeFileSync(`${file}.other`, JSON.stringify({ b: e('5'), c: e('6') }))
    require('node:fs').renameSync(`${file}.other`, file)
    await saveBase(file, upd({ d: e('7') }, ['c']))
    const saved = onDisk(file)
    expect(saved).toEqual({ b: e('5'), d: e('7') })
    expect(asObj(loadBase(file))).toEqual(saved)
  })

  it("a save after the base was read from the file keeps the base's order", async () => {
    const file = join(tempDir(), 'base.json')
    writeFileSync(`${file}.other`, JSON.stringify({ a: e('1'), b: e('2'), c: e('3') }))
    require('node:fs').renameSync(`${file}.other`, file)
    expect([...loadBase(file).keys()]).toEqual(['a', 'b', 'c']) // read from the file, not written here
    // As many entries changed as the base holds: no entry is left without its text.
    await saveBase(file, upd({ c: e('7'), b: e('5'), a: e('8') }))
    expect(Object.keys(onDisk(file))).toEqual(['a', 'b', 'c'])
    await saveBase(file, upd({ d: e('9'), b: e('6') }, ['a']))
    expect(Object.keys(onDisk(file))).toEqual(['b', 'c', 'd'])
    expect(onDisk(file)).toEqual(asObj(loadBase(file)))
  })

  it('a failed read is an error, not kept: the next load reads the file again, and a save refuses to replace a base it could not read', async () => {
    const file = join(tempDir(), 'base.json')
    writeFileSync(`${file}.other`, JSON.stringify({ a: e('1'), b: e('2') }))
    require('node:fs').renameSync(`${file}.other`, file)
    const fs = require('node:fs') as typeof import('node:fs')
    const real = fs.openSync
    const failing = jest.spyOn(fs, 'openSync').mockImplementation(((p: unknown, ...rest: unknown[]) => {
      if (p === file) throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' })
      return (real as (...a: unknown[]) => unknown)(p, ...rest)
    }) as never)
    // Not an empty base: a pull against one would miss what the VM deleted, for good.
    expect(() => loadBase(file)).toThrow(/cannot read the sync base .*EIO/)
    await expect(saveBase(file, upd({ c: e('3') }))).rejects.toThrow(/cannot read the sync base .*EIO/)
    failing.mockRestore()
    expect(asObj(loadBase(file))).toEqual({ a: e('1'), b: e('2') }) // read again, not the empty base
    await saveBase(file, upd({ c: e('3') }))
    expect(onDisk(file)).toEqual({ a: e('1'), b: e('2'), c: e('3') })
  })

  it('a lock that cannot be made (its folder gone) fails at once with the reason, not as "stayed locked"', async () => {
    const file = join(tempDir(), 'gone', 'base.json')
    const t0 = Date.now()
    const err = (await saveBase(file, upd({ a: e('1') })).catch((x: unknown) => x)) as Error
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(err.message).toMatch(/ENOENT/)
    expect(err.message).not.toMatch(/stayed locked/)
  })

  it('a save whose write fails leaves the next load equal to the file', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1') }))
    const privateFs = require('../../src/private-fs') as typeof import('../../src/private-fs')
    const failing = jest.spyOn(privateFs, 'writePrivateFile').mockImplementation(() => {
      throw new Error('ENOSPC: no space left on device')
    })
    await expect(saveBase(file, upd({ b: e('2') }, ['a']))).rejects.toThrow(/ENOSPC/)
    failing.mockRestore()
    expect(asObj(loadBase(file))).toEqual({ a: e('1') })
    await saveBase(file, upd({ c: e('3') }))
    expect(onDisk(file)).toEqual({ a: e('1'), c: e('3') })
  })

  it("the saved text follows the entry as it was given, not a later change to the caller's object", async () => {
    const file = join(tempDir(), 'base.json')
    const entry = e('1')
    await saveBase(file, upd({ a: entry }))
    entry.l = 'changed later'
    await saveBase(file, upd({ b: e('2') }))
    expect(onDisk(file)).toEqual({ a: e('1'), b: e('2') })
    expect(asObj(loadBase(file))).toEqual({ a: e('1'), b: e('2') })
  })

  it('the files always hold the whole base, in its order, across many small saves', async () => {
    const file = join(tempDir(), 'base.json')
    const want = new Map<string, BaseEntry>()
    for (let i = 0; i < 50; i++) want.set(`d/f${i}`, e(`l${i}`, `r${i}`))
    await saveBase(file, { set: new Map(want), remove: new Set() })
    for (let round = 0; round < 5; round++) {
      const set = new Map([
        [`d/f${round * 7}`, e(`new${round}`)],
        [`n/${round}`, e(`n${round}`, `n${round}`, 'd')]
      ])
      const remove = [`d/f${round * 3 + 1}`]
      for (const p of remove) want.delete(p)
      for (const [p, v] of set) want.set(p, v)
      await saveBase(file, { set, remove: new Set(remove) })
      const saved = onDisk(file)
      expect(Object.keys(saved)).toEqual([...want.keys()])
      expect(saved).toEqual(asObj(want))
    }
  })

  it('a base handed out is a snapshot: later saves, set or remove, do not change it', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1'), b: e('2') }))
    const first = loadBase(file)
    await saveBase(file, upd({ c: e('3'), a: e('9') }))
    await saveBase(file, { set: new Map(), remove: new Set(['b']) })
    expect(asObj(first)).toEqual({ a: e('1'), b: e('2') })
    expect(asObj(loadBase(file))).toEqual({ a: e('9'), c: e('3') })
  })
})

describe('the journal beside the snapshot (base.json.log)', () => {
  const snapId = (file: string): [number, number] => [statSync(file).ino, statSync(file).mtimeMs]
  const lines = (file: string): string[] => readFileSync(`${file}.log`, 'utf8').split('\n').slice(0, -1)

  it('a small save appends one line and leaves the snapshot as it was; another process reads the whole base', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1'), b: e('2'), c: e('3') }))
    expect(existsSync(`${file}.log`)).toBe(false)
    const snap = snapId(file)
    await saveBase(file, upd({ d: e('4') }, ['a']))
    await saveBase(file, upd({ b: e('5') }))
    expect(snapId(file)).toEqual(snap)
    expect(lines(file)).toHaveLength(3) // the snapshot it applies to, then one line per save
    expect(onDisk(file)).toEqual({ b: e('5'), c: e('3'), d: e('4') })
    expect(asObj(loadBase(file))).toEqual({ b: e('5'), c: e('3'), d: e('4') })
    expect(statSync(`${file}.log`).mode & 0o777).toBe(0o600)
  })

  it("paths the job chooses go through the journal as they are: none splits a line, forges one, or reaches an object's prototype; control: a plain path", async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ 'ws/plain': e('0') }))
    const hostile = [
      'ws/a\nb',
      'ws/"]],[["ws/forged","f","1","1"]]]\n[[],[["ws/forged","f","2","2"]]]',
      'ws/\u2028line\u2029',
      '__proto__',
      'ws/{"snapshot":"1:2:3"}',
      'ws/back\\slash',
      'ws/\ud800lone'
    ]
    for (const [i, p] of hostile.entries()) await saveBase(file, { set: new Map([[p, e(`${i}`)]]), remove: new Set() })
    // The snapshot's name, then one line per save: no path split a line or added one.
    expect(lines(file)).toHaveLength(1 + hostile.length)
    let fresh!: typeof import('../../src/sync/manifest')
    jest.isolateModules(() => {
      fresh = require('../../src/sync/manifest') as typeof import('../../src/sync/manifest')
    })
    const saved = fresh.loadBase(file)
    expect(saved.get('ws/plain')).toEqual(e('0'))
    expect(hostile.map((p) => saved.get(p))).toEqual(hostile.map((_, i) => e(`${i}`)))
    expect([saved.size, saved.has('ws/forged'), ({} as Record<string, unknown>).t]).toEqual([1 + hostile.length, false, undefined])
    // And out again, each by its own name.
    await saveBase(file, { set: new Map(), remove: new Set(hostile) })
    expect(Object.keys(onDisk(file))).toEqual(['ws/plain'])
  })

  it('a cached reader reads only what another process appended, not the snapshot again', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1') }))
    await saveBase(file, upd({ b: e('2') }))
    expect(asObj(loadBase(file))).toEqual({ a: e('1'), b: e('2') })
    let other!: typeof import('../../src/sync/manifest')
    jest.isolateModules(() => {
      other = require('../../src/sync/manifest') as typeof import('../../src/sync/manifest')
    })
    await other.saveBase(file, upd({ c: e('3') }, ['a']))
    const fs = require('node:fs') as typeof import('node:fs')
    const opens = jest.spyOn(fs, 'openSync')
    expect(asObj(loadBase(file))).toEqual({ b: e('2'), c: e('3') })
    expect(opens.mock.calls.filter(([p]) => p === file)).toHaveLength(0)
    opens.mockRestore()
    // Control: once the snapshot is replaced, it is read again.
    writeFileSync(`${file}.new`, JSON.stringify({ z: e('9') }))
    renameSync(`${file}.new`, file)
    expect(asObj(loadBase(file))).toEqual({ z: e('9') })
  })

  it('once the journal reaches a quarter of the snapshot (at least 64 KiB), a save writes a new snapshot and removes the journal', async () => {
    const file = join(tempDir(), 'base.json')
    const want: Record<string, BaseEntry> = { a: e('1') }
    await saveBase(file, upd(want))
    const snap = snapId(file)
    let i = 0
    while (snapId(file)[0] === snap[0]) {
      const set = { [`p/${i}`]: e(`l${i}`.padEnd(200, 'x')) }
      Object.assign(want, set)
      await saveBase(file, upd(set))
      i++
      expect(i).toBeLessThan(1000)
    }
    expect(i).toBeGreaterThan(100) // 64 KiB of ~430-byte lines
    expect(existsSync(`${file}.log`)).toBe(false)
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(want)
    expect(onDisk(file)).toEqual(want)
    // and journals again from there
    await saveBase(file, upd({ b: e('2') }))
    expect(lines(file)).toHaveLength(2)
    expect(onDisk(file)).toEqual({ ...want, b: e('2') })
  })

  it('a journal left for an older snapshot (a save killed between its two writes) is ignored, and the next save replaces it', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1') }))
    await saveBase(file, upd({ b: e('2') }))
    const stale = readFileSync(`${file}.log`, 'utf8')
    // A new snapshot that already holds b; the journal still names the one before.
    writeFileSync(`${file}.new`, JSON.stringify({ a: e('1'), b: e('2'), x: e('7') }))
    renameSync(`${file}.new`, file)
    expect(readFileSync(`${file}.log`, 'utf8')).toBe(stale)
    // A line that removes x, in the stale journal: it would show if the journal were applied (it is, for
    // its own snapshot: the first test).
    appendFileSync(`${file}.log`, `${JSON.stringify([['x'], []])}\n`)
    expect(onDisk(file)).toEqual({ a: e('1'), b: e('2'), x: e('7') })
    await saveBase(file, upd({ c: e('3') }))
    expect(onDisk(file)).toEqual({ a: e('1'), b: e('2'), x: e('7'), c: e('3') })
    expect(lines(file)).toHaveLength(2)
  })

  it("a half line at the journal's end (a save killed while appending) is passed over, and the next save cuts it off", async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1') }))
    await saveBase(file, upd({ b: e('2') }))
    appendFileSync(`${file}.log`, JSON.stringify([['a'], [['z', 'f', '9', '9']]]).slice(0, -3))
    expect(onDisk(file)).toEqual({ a: e('1'), b: e('2') })
    await saveBase(file, upd({ c: e('3') }))
    expect(onDisk(file)).toEqual({ a: e('1'), b: e('2'), c: e('3') })
    expect(
      lines(file)
        .slice(1)
        .map((l) => JSON.parse(l) as unknown)
    ).toHaveLength(2)
  })

  it('an append whose write fails takes back what it wrote; the base stays as saved', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1') }))
    await saveBase(file, upd({ b: e('2') }))
    const size = statSync(`${file}.log`).size
    const fs = require('node:fs') as typeof import('node:fs')
    const real = fs.writeSync
    let calls = 0
    // The first write lands half the line, the next fails: a disk that fills mid-write.
    const failing = jest.spyOn(fs, 'writeSync').mockImplementation(((fd: number, buf: Buffer, off = 0) => {
      if (calls++ > 0) throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })
      return (real as (...a: unknown[]) => number)(fd, buf, off, Math.floor((buf.length - off) / 2))
    }) as never)
    await expect(saveBase(file, upd({ c: e('3') }, ['a']))).rejects.toThrow(/ENOSPC/)
    failing.mockRestore()
    expect(calls).toBe(2)
    expect(statSync(`${file}.log`).size).toBe(size)
    expect(onDisk(file)).toEqual({ a: e('1'), b: e('2') })
    expect(asObj(loadBase(file))).toEqual({ a: e('1'), b: e('2') })
    await saveBase(file, upd({ d: e('4') }))
    expect(onDisk(file)).toEqual({ a: e('1'), b: e('2'), d: e('4') })
  })

  it('a cached reader with no journal ignores one that appears for another snapshot (left by a crash), and reads one for its own', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1') }))
    expect(asObj(loadBase(file))).toEqual({ a: e('1') })
    writeFileSync(`${file}.log`, `${JSON.stringify({ snapshot: '1:2:3' })}\n${JSON.stringify([['a'], []])}\n`)
    expect(asObj(loadBase(file))).toEqual({ a: e('1') })
    // Control: the same line under this snapshot's name is read.
    let other!: typeof import('../../src/sync/manifest')
    jest.isolateModules(() => {
      other = require('../../src/sync/manifest') as typeof import('../../src/sync/manifest')
    })
    await other.saveBase(file, upd({}, ['a']))
    expect(asObj(loadBase(file))).toEqual({})
  })

  it('a journal replaced beside the same snapshot, or removed, makes a cached reader read everything again', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1') }))
    await saveBase(file, upd({ b: e('2') }))
    expect(asObj(loadBase(file))).toEqual({ a: e('1'), b: e('2') })
    const head = readFileSync(`${file}.log`, 'utf8').split('\n')[0]
    // Longer than what the reader has read: only the new file's identity tells it apart.
    writeFileSync(
      `${file}.new`,
      `${head}\n${JSON.stringify([[], [['c', 'f', '3', '3']]])}\n${JSON.stringify([[], [['d', 'f', '4', '4']]])}\n`
    )
    renameSync(`${file}.new`, `${file}.log`)
    expect(asObj(loadBase(file))).toEqual({ a: e('1'), c: e('3'), d: e('4') })
    require('node:fs').rmSync(`${file}.log`)
    expect(asObj(loadBase(file))).toEqual({ a: e('1') })
  })

  it('a journal is read as one update, not one new version per line', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd(Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`p/${i}`, e(`${i}`)]))))
    for (let i = 0; i < 300; i++) await saveBase(file, upd({ [`n/${i}`]: e(`${i}`) }, [`p/${i}`]))
    // Another process's read, with that module's own LayeredMap watched.
    let fresh!: typeof import('../../src/sync/manifest')
    let versions!: jest.SpyInstance
    jest.isolateModules(() => {
      const { LayeredMap } = require('../../src/sync/layered-map') as typeof import('../../src/sync/layered-map')
      versions = jest.spyOn(LayeredMap.prototype, 'with')
      fresh = require('../../src/sync/manifest') as typeof import('../../src/sync/manifest')
    })
    const saved = asObj(fresh.loadBase(file))
    expect(Object.keys(saved)).toHaveLength(2000)
    expect([saved['p/0'], saved['p/300'], saved['n/299']]).toEqual([undefined, e('300'), e('299')])
    expect(versions).toHaveBeenCalledTimes(1)
  })

  it('holds the snapshot it read open, and only that one: a replaced one is let go', async () => {
    const file = join(tempDir(), 'base.json')
    const held = (): string[] =>
      require('node:fs')
        .readdirSync('/proc/self/fd')
        .map((fd: string) => {
          try {
            return require('node:fs').readlinkSync(`/proc/self/fd/${fd}`) as string
          } catch {
            return ''
          }
        })
        .filter((l: string) => l.startsWith(file) && !l.startsWith(`${file}.`))
    await saveBase(file, upd({ a: e('1') }))
    expect(held()).toEqual([file])
    for (let i = 0; i < 3; i++) {
      writeFileSync(`${file}.new`, JSON.stringify({ [`z${i}`]: e('9') }))
      renameSync(`${file}.new`, file)
      expect(asObj(loadBase(file))).toEqual({ [`z${i}`]: e('9') })
      expect(held()).toEqual([file])
    }
  })
})

describe('saveBase', () => {
  it('an empty update writes nothing (no file created, an existing one left as it was)', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd())
    expect(existsSync(file)).toBe(false)
    await saveBase(file, upd({ a: e('1') }))
    const before = statSync(file)
    await saveBase(file, upd())
    const after = statSync(file)
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs])
  })

  it('creates the file (0600) and leaves no lock or temp file behind', async () => {
    const dir = tempDir()
    const file = join(dir, 'base.json')
    await saveBase(file, upd({ 'ws/a': e('f:1:1:420', 'f:1:1.0:420') }))
    expect(asObj(loadBase(file))).toEqual({ 'ws/a': e('f:1:1:420', 'f:1:1.0:420') })
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(existsSync(`${file}.lock`)).toBe(false)
    expect(existsSync(`${file}.${process.pid}.tmp`)).toBe(false)
  })

  it('merges two updates and applies removals', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1'), b: e('2'), d: e('d', 'd', 'd') }))
    await saveBase(file, upd({ c: e('3'), b: e('2b') }, ['a', 'not-there']))
    expect(asObj(loadBase(file))).toEqual({ b: e('2b'), c: e('3'), d: e('d', 'd', 'd') })
  })

  it('applies removals before sets within one update', async () => {
    const file = join(tempDir(), 'base.json')
    await saveBase(file, upd({ a: e('1') }))
    await saveBase(file, upd({ a: e('new') }, ['a']))
    expect(asObj(loadBase(file))).toEqual({ a: e('new') })
  })

  it('keeps paths with odd characters', async () => {
    const file = join(tempDir(), 'base.json')
    const odd = 'ws/new\nline/it\'s "q" ü'
    await saveBase(file, upd({ [odd]: e('x') }))
    expect(loadBase(file).get(odd)).toEqual(e('x'))
  })

  it('takes over at once a lock whose holder died (a hook the runner killed)', async () => {
    const file = join(tempDir(), 'base.json')
    // A holder that has exited, its lock as withFileLock writes it (pid, token, start time).
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString()
    writeFileSync(manifestLockOf(file), `${dead} deadtoken 1\n`, { mode: 0o600 })
    const t = Date.now()
    await saveBase(file, upd({ a: e('1') }))
    // Before, a lock went by its age: younger than 30 s, it failed the save after 10 s.
    expect(Date.now() - t).toBeLessThan(2_000)
    expect(asObj(loadBase(file))).toEqual({ a: e('1') })
    expect(existsSync(manifestLockOf(file))).toBe(false)
  })

  it('waits for a live holder and gives up after 10 s without removing its lock', async () => {
    const file = join(tempDir(), 'base.json')
    writeFileSync(manifestLockOf(file), `${process.pid} held-by-test\n`, { mode: 0o600 })
    // Let the wait's (monotonic) clock jump: the first reading is the start, every later one is 10.5 s on.
    const t0 = systemClock.now()
    let calls = 0
    const jumped = jest.spyOn(systemClock, 'now').mockImplementation(() => (calls++ === 0 ? t0 : t0 + 10_500))
    const started = Date.now()
    await expect(saveBase(file, upd({ a: e('1') }))).rejects.toThrow(`sync manifest lock ${manifestLockOf(file)} still held after 10 s`)
    expect(jumped).toHaveBeenCalled()
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(readFileSync(manifestLockOf(file), 'utf8')).toBe(`${process.pid} held-by-test\n`)
    expect(existsSync(file)).toBe(false)
  })

  it('proceeds once the holder releases the lock', async () => {
    const file = join(tempDir(), 'base.json')
    // The holder is another process: it takes the lock as withFileLock does and removes it after 200 ms.
    const lock = JSON.stringify(manifestLockOf(file))
    const holder = spawn(process.execPath, [
      '-e',
      `const fs = require('fs'); fs.writeFileSync(${lock}, process.pid + ' holder\\n'); process.stdout.write('held'); setTimeout(() => fs.rmSync(${lock}), 200)`
    ])
    const closed = new Promise((res) => holder.on('close', res))
    await new Promise((res) => holder.stdout.once('data', res))
    const t = Date.now()
    await saveBase(file, upd({ a: e('1') }))
    expect(Date.now() - t).toBeGreaterThanOrEqual(100)
    expect(asObj(loadBase(file))).toEqual({ a: e('1') })
    await closed
  })

  it('merges concurrent updates from several processes without losing any', async () => {
    const dir = tempDir()
    const file = join(dir, 'base.json')
    const script = join(dir, 'writer.ts')
    writeFileSync(
      script,
      `import { readFileSync } from 'node:fs'
import { saveBase } from ${JSON.stringify(join(SRC, 'sync', 'manifest'))}
const [file, who, n, tick] = process.argv.slice(2)
const reads = () => Number(readFileSync(tick, 'utf8')) || 0
void (async () => {
  let seen = -1
  for (let i = 0; i < Number(n); i++) {
    // Paced by the reader: one read at least between two writes of this writer.
    while (reads() <= seen) await new Promise((r) => setTimeout(r, 1))
    seen = reads()
    await saveBase(file, { set: new Map([[who + '/' + i, { t: 'f', l: 'l' + i, r: 'r' + i + 'x'.repeat(1500) }]]), remove: new Set() })
  }
})()
`
    )
    const js = bundle(script, join(dir, 'writer.js'))
    const WRITERS = 6
    const EACH = 40
    const tick = join(dir, 'reads')
    writeFileSync(tick, '0')
    let running = true
    const writers = Promise.all(
      Array.from(
        { length: WRITERS },
        (_, w) =>
          new Promise<number | null>((res) =>
            spawn(process.execPath, [js, file, `w${w}`, String(EACH), tick], { stdio: 'inherit' }).on('close', res)
          )
      )
    ).finally(() => (running = false))
    // Meanwhile this process reads as the agent does (cached, the tail only): each writer's entries
    // arrive in order, so what it sees of one is always a prefix. The entries (~1.5 KB) pass the
    // journal's 64 KiB several times over: snapshots are replaced while it reads. The writers wait
    // for a read between two writes of their own, so at most six writes (~9 KB) fall between two
    // reads and every snapshot is seen however slow this process is.
    const snapshots = new Set<string>()
    let reads = 0
    while (running) {
      const base = loadBase(file)
      for (let w = 0; w < WRITERS; w++) {
        let n = 0
        while (base.has(`w${w}/${n}`)) n++
        expect(base.has(`w${w}/${n + 1}`) || base.has(`w${w}/${n + 2}`)).toBe(false)
      }
      if (existsSync(file)) snapshots.add(`${statSync(file).size}`)
      reads++
      writeFileSync(`${tick}.new`, String(reads))
      renameSync(`${tick}.new`, tick)
      await new Promise((r) => setImmediate(r))
    }
    expect(await writers).toEqual(Array(WRITERS).fill(0))
    expect(reads).toBeGreaterThan(10)
    expect(snapshots.size).toBeGreaterThan(2)
    const base = loadBase(file)
    expect(base.size).toBe(WRITERS * EACH)
    for (let w = 0; w < WRITERS; w++)
      for (let i = 0; i < EACH; i++) expect(base.get(`w${w}/${i}`)).toEqual({ t: 'f', l: `l${i}`, r: `r${i}${'x'.repeat(1500)}` })
    expect(onDisk(file)).toEqual(asObj(base))
    expect(existsSync(`${file}.lock`)).toBe(false)
  })
})

describe("the cached base's keys", () => {
  it('hold nothing of the listing text they were cut from (V8 keeps a substring as a view of it)', () => {
    // Measured in a node of its own (--expose-gc): V8 flags other test files set in a shared worker
    // change what its heap counts.
    const dir = tempDir()
    const script = join(dir, 'keys.ts')
    writeFileSync(
      script,
      `import { loadBase, saveBase } from ${JSON.stringify(join(SRC, 'sync', 'manifest'))}
const gc = (globalThis as unknown as { gc: () => void }).gc
const heap = (): number => (gc(), process.memoryUsage().heapUsed)
const file = process.argv[2]
// A listing's text (~24 MB) and paths cut from it, as pull keeps them for a folder that changed.
const cut = (text: string) => {
  const set = new Map<string, { t: 'd'; l: string; r: string }>()
  for (let i = 0; i < 100; i++) {
    const from = text.indexOf('ws/some/folder/entry-' + i * 7000 + '\\0')
    set.set(text.slice(from, text.indexOf('\\0', from)), { t: 'd', l: 'l', r: '1:' + i })
  }
  return set
}
void (async () => {
  await saveBase(file, { set: new Map([['seed', { t: 'f', l: 'l', r: 'r' }]]), remove: new Set() })
  const before = heap()
  const held: { listing: string | null } = { listing: Array.from({ length: 800_000 }, (_, i) => 'ws/some/folder/entry-' + i).join('\\0') }
  const set = cut(held.listing!)
  await saveBase(file, { set, remove: new Set() })
  const referenced = heap() - before
  held.listing = null
  set.clear()
  const dropped = heap() - before
  process.stdout.write(JSON.stringify({ referenced, dropped, entry: loadBase(file).get('ws/some/folder/entry-693000') }))
})()
`
    )
    const js = bundle(script, join(dir, 'keys.js'))
    const r = spawnSync(process.execPath, ['--expose-gc', js, join(dir, 'base.json')], { encoding: 'utf8' })
    expect(r.stderr).toBe('')
    const got = JSON.parse(r.stdout) as { referenced: number; dropped: number; entry: unknown }
    // Control: while the listing is referenced it is on the heap.
    expect(got.referenced).toBeGreaterThan(20e6)
    expect(got.dropped).toBeLessThan(4e6)
    expect(got.entry).toEqual({ t: 'd', l: 'l', r: '1:99' })
  })
})

describe('underRoots', () => {
  it.each([
    ['ws', true],
    ['ws/a/b', true],
    ['_temp/x', true],
    ['ws2', false],
    ['w', false],
    ['x/ws', false]
  ])('%j → %s', (p, want) => {
    expect(underRoots(p, ['ws', '_temp'])).toBe(want)
  })
})

describe('the delta listing times (since.json)', () => {
  const t = (since: number): ListingTime => ({ since, stamp: since + 2, up: 100 + since })

  it('a pull moves every root to its time, whatever time each had', async () => {
    const file = `${tempDir()}/base.json`
    await recordSince(file, ['a'], [], t(10), listingTimes(file, ['a'], []))
    await recordSince(file, ['b'], [], t(20), listingTimes(file, ['b'], []))
    const seen = listingTimes(file, ['a', 'b'], [])
    expect(earliest(['a', 'b'], seen)).toEqual(t(10))
    await recordSince(file, ['a', 'b'], [], t(30), seen)
    expect(listingTimes(file, ['a', 'b'], [])).toEqual({ a: t(30), b: t(30) })
  })

  it('a root another pull moved meanwhile keeps the earlier of the two times', async () => {
    const file = `${tempDir()}/base.json`
    await recordSince(file, ['a', 'b'], [], t(10), {})
    const seen = listingTimes(file, ['a', 'b'], [])
    await recordSince(file, ['a'], [], t(5), listingTimes(file, ['a'], [])) // earlier than ours
    await recordSince(file, ['b'], [], t(50), listingTimes(file, ['b'], [])) // later than ours
    await recordSince(file, ['a', 'b'], [], t(30), seen)
    expect(listingTimes(file, ['a', 'b'], [])).toEqual({ a: t(5), b: t(30) })
  })

  it('times recorded under other excludes, or missing, are none', async () => {
    const file = `${tempDir()}/base.json`
    await recordSince(file, ['a'], ['x'], t(10), {})
    expect(earliest(['a'], listingTimes(file, ['a'], ['x']))).toEqual(t(10)) // control
    expect(earliest(['a'], listingTimes(file, ['a'], ['y']))).toBeNull()
    expect(earliest(['a', 'b'], listingTimes(file, ['a', 'b'], ['x']))).toBeNull()
  })
})

describe("the job's pulled totals (the caps sync.limits.jobFiles and jobBytes count on them)", () => {
  it('none yet: zero; one that cannot be read (out of descriptors) is an error, not a new start of the caps', async () => {
    const file = join(tempDir(), 'base.json')
    const { loadPulled: pulled, reservePull } = jest.requireActual<typeof import('../../src/sync/manifest')>('../../src/sync/manifest')
    expect(pulled(file)).toEqual({ files: 0, bytes: 0 })
    await reservePull(file, { files: 3, bytes: 30 }, { jobFiles: 10, jobBytes: 100 })
    const spy = failingFs('readFileSync', (p) => p.endsWith('pulled.json'), 'EMFILE')
    try {
      expect(() => pulled(file)).toThrow(/cannot read the job's pulled totals .*pulled\.json \(EMFILE\)/)
    } finally {
      spy.mockRestore()
    }
    expect(pulled(file)).toEqual({ files: 3, bytes: 30 })
  })
})
