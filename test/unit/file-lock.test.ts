// The lock between processes of one runner host (the local fleet ledger's): a dead owner's lock is
// taken over, and breaking it never moves a live owner's lock, even for a breaker that read the
// dead one just before a live process took its place.
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, watch, writeFileSync, readFileSync, readlinkSync, existsSync, rmSync, utimesSync } from 'node:fs'
import { join } from 'node:path'
import { breakStale, withFileLock } from '../../src/file-lock'
import { workerProcess } from '../../src/worker-process'
import { bundle, cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

const deadPid = (): string => spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString()

/**
 * The names of the changes under `dir` while `act` runs: those between two sentinel files written
 * before and after it (inotify keeps their order; a watch may also see earlier changes late).
 */
async function changesDuring(dir: string, act: () => void): Promise<string[]> {
  const names: string[] = []
  const tag = Math.random().toString(16).slice(2)
  const [begin, end] = [`begin-${tag}`, `end-${tag}`]
  let on = false
  const w = watch(dir)
  try {
    const seen = new Promise<void>((done) =>
      w.on('change', (_e, f) => {
        if (String(f) === begin) on = true
        else if (String(f) === end) done()
        else if (on) names.push(String(f))
      })
    )
    writeFileSync(join(dir, begin), '')
    act()
    writeFileSync(join(dir, end), '')
    await seen
  } finally {
    w.close()
  }
  return names
}

test("a breaker that read a dead owner's lock leaves the live lock that replaced it untouched", async () => {
  const dir = tempDir()
  const lock = join(dir, 'ledger.lock')
  const dead = `${deadPid()} deadtoken\n`
  const live = `${process.pid} livetoken\n`
  // positive control: the watch sees the lock file change when a breaker does remove it
  writeFileSync(lock, dead)
  expect(await changesDuring(dir, () => breakStale(lock, dead))).toContain('ledger.lock')
  expect(existsSync(lock)).toBe(false)

  // the breaker read `dead`; meanwhile another process broke it and took the lock itself
  writeFileSync(lock, live)
  const changed = await changesDuring(dir, () => breakStale(lock, dead))
  // not moved aside and back either: a third process could have taken the lock in between
  expect(changed).not.toContain('ledger.lock')
  expect(readFileSync(lock, 'utf8')).toBe(live)
})

test("breakers take turns: a live breaker's guard holds others off; a dead breaker's is cleared", async () => {
  const dir = tempDir()
  const lock = join(dir, 'ledger.lock')
  writeFileSync(lock, `${deadPid()} deadtoken\n`)
  writeFileSync(`${lock}.break`, `${process.pid} breaking\n`)
  await expect(withFileLock(lock, () => 'got', 300)).rejects.toThrow(`fleet ledger: lock ${lock} still held after 0 s`)
  // the guard's breaker died mid-break: its guard goes, then the dead owner's lock
  writeFileSync(`${lock}.break`, `${deadPid()} breaking\n`)
  expect(await withFileLock(lock, () => 'got', 5000)).toBe('got')
  expect(existsSync(lock)).toBe(false)
  expect(existsSync(`${lock}.break`)).toBe(false)
})

test('the lock is exclusive: concurrent holders in one process run one at a time', async () => {
  const lock = join(tempDir(), 'ledger.lock')
  let inside = 0
  let most = 0
  const hold = (): Promise<void> =>
    withFileLock(lock, async () => {
      most = Math.max(most, ++inside)
      await new Promise((r) => setImmediate(r))
      inside--
    })
  await Promise.all(Array.from({ length: 20 }, hold))
  expect(most).toBe(1)
  rmSync(lock, { force: true })
})

test("an empty lock is broken only while it is old: a new owner's, not yet named, reads the same", () => {
  const dir = tempDir()
  const lock = join(dir, 'ledger.lock')
  // the breaker read an old empty lock (its creator died before writing); meanwhile it was broken and
  // a live process has just created its own, which is empty until that process writes its pid
  writeFileSync(lock, '')
  breakStale(lock, '')
  expect(existsSync(lock)).toBe(true)
  expect(existsSync(`${lock}.break`)).toBe(false)
  // positive control: an empty lock past the grace is a dead creator's, and goes
  const old = new Date(Date.now() - 60_000)
  utimesSync(lock, old, old)
  breakStale(lock, '')
  expect(existsSync(lock)).toBe(false)
})

test('a breaker killed between creating its guard and naming itself leaves an empty guard, cleared once old', async () => {
  const dir = tempDir()
  const lock = join(dir, 'ledger.lock')
  writeFileSync(lock, `${deadPid()} deadtoken\n`)
  writeFileSync(`${lock}.break`, '')
  await expect(withFileLock(lock, () => 'got', 300)).rejects.toThrow('still held')
  const old = new Date(Date.now() - 60_000)
  utimesSync(`${lock}.break`, old, old)
  expect(await withFileLock(lock, () => 'got', 5000)).toBe('got')
  expect(existsSync(`${lock}.break`)).toBe(false)
})

// Run as another user (nobody) so that pid 1 is a live process it may not signal, as a dead owner's
// pid reused by another user's process is.
;(process.getuid?.() === 0 ? test : test.skip)(
  "a lock naming a pid now used by another user's process is broken, not waited on until the timeout",
  () => {
    const dir = tempDir()
    chmodSync(dir, 0o777)
    const worker = join(dir, 'worker.js')
    writeFileSync(
      join(dir, 'worker.ts'),
      `import { withFileLock } from ${JSON.stringify(join(__dirname, '..', '..', 'src', 'file-lock'))}\n` +
        `withFileLock(process.argv[2], () => 'taken', 3000).then((r) => console.log(r), (e) => console.log(e.message))\n`
    )
    bundle(join(dir, 'worker.ts'), worker)
    const asNobody = (lock: string): string =>
      spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, worker, lock], {
        encoding: 'utf8',
        timeout: 20_000
      }).stdout.trim()
    const lock = join(dir, 'ledger.lock')
    // control: a lock naming a live process of nobody's own holds it off
    const holder = spawn('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'sleep', '30'])
    try {
      writeFileSync(lock, `${holder.pid} livetoken\n`)
      chmodSync(lock, 0o666)
      expect(asNobody(lock)).toBe(`fleet ledger: lock ${lock} still held after 3 s`)
    } finally {
      holder.kill('SIGKILL')
    }
    // pid 1 runs as root: nobody may not signal it
    writeFileSync(lock, '1 roottoken\n')
    chmodSync(lock, 0o666)
    expect(asNobody(lock)).toBe('taken')
  },
  60_000
)

// Several runners on one host run as one user: a lock holder killed mid-update (a cancelled job's
// hook) leaves its lock, and its pid may be given to another process of that same user (another
// runner's hook or agent, which may live for hours) before any hook comes to break it. Signalling
// it then succeeds: only the start time the lock names tells the two apart. Before, every ledger
// operation of every runner of the host waited out the lock's timeout and failed while that
// process lived.
test('a lock naming a pid now used by another process of this user is broken; the process it names holds it', async () => {
  const lock = join(tempDir(), 'ledger.lock')
  const other = spawn('sleep', ['30'])
  try {
    const now = workerProcess(other.pid!)
    expect(now?.start).toMatch(/^[0-9]+$/)
    // control: the very process the lock names holds it
    writeFileSync(lock, `${other.pid} livetoken ${now!.start}\n`)
    await expect(withFileLock(lock, () => 'got', 300)).rejects.toThrow('still held')
    // a lock of an older build names no start time: the pid alone says whether its owner runs
    writeFileSync(lock, `${other.pid} oldtoken\n`)
    await expect(withFileLock(lock, () => 'got', 300)).rejects.toThrow('still held')
    // the owner that wrote the lock started at another time: its pid is now someone else's
    writeFileSync(lock, `${other.pid} deadtoken ${Number(now!.start) - 1}\n`)
    expect(await withFileLock(lock, () => 'got', 5000)).toBe('got')
    expect(existsSync(lock)).toBe(false)
  } finally {
    other.kill('SIGKILL')
  }
})

test("a holder's lock names its pid, token, start time and pid namespace, and is removed at the end", async () => {
  const lock = join(tempDir(), 'ledger.lock')
  const inside = await withFileLock(lock, () => readFileSync(lock, 'utf8'))
  const ns = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1]
  expect(inside).toMatch(new RegExp(`^${process.pid} [0-9a-f]{16} ${workerProcess(process.pid)!.start} ns:${ns}\\n$`))
  expect(existsSync(lock)).toBe(false)
})

// The holder runs out of descriptors by the time it gives the lock back (the agent serves the
// job's steps; its lock holds its live pid, which no one else would break): the work's result
// stands, and the holder's next withFileLock takes the lock again instead of waiting for itself.
test('a lock the holder could not remove is taken again by its next holder in the process, the work done stands', async () => {
  const lock = join(tempDir(), 'tree.lock')
  const fs = jest.requireActual<typeof import('node:fs')>('node:fs')
  const real = fs.readFileSync
  let failing = false
  const spy = jest.spyOn(fs, 'readFileSync').mockImplementation(((p: unknown, ...rest: unknown[]) => {
    if (failing && p === lock) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' })
    return (real as (...a: unknown[]) => unknown)(p, ...rest)
  }) as never)
  try {
    const done = await withFileLock(lock, () => {
      failing = true
      return 'pulled'
    })
    expect(done).toBe('pulled')
    expect(existsSync(lock)).toBe(true) // still there: it could not be read to be checked
    failing = false
    // The next command of the process: at once, not after the lock's wait.
    expect(await withFileLock(lock, () => 'next', 300)).toBe('next')
    expect(existsSync(lock)).toBe(false)
  } finally {
    spy.mockRestore()
  }
})

test('control: a lock another process holds is not taken, even by a process that once failed to remove its own there', async () => {
  const lock = join(tempDir(), 'tree.lock')
  writeFileSync(lock, `${process.ppid} 0123456789abcdef\n`)
  await expect(withFileLock(lock, () => 'got', 300)).rejects.toThrow('still held')
})

test("a lock from another pid namespace is not broken by its pid here; only by age, where the caller gives one (the ledger: 10 minutes); the wait's end says why", async () => {
  const dir = tempDir()
  const lock = join(dir, 'ledger.lock')
  const mine = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1]
  // A pid that is dead here names, in its own namespace, a process that may well run.
  const dead = deadPid()
  writeFileSync(lock, `${dead} foreigntoken 12345 ns:${Number(mine) + 1}\n`)
  await expect(withFileLock(lock, () => 'got', 300)).rejects.toThrow(
    `fleet ledger: lock ${lock} still held after 0 s (by pid ${dead} of another pid namespace, ns:${Number(mine) + 1}:`
  )
  expect(readFileSync(lock, 'utf8')).toContain('foreigntoken')
  // Old, without an age given by the caller: still never broken (the ledger and the tree lock give theirs).
  const old = Date.now() / 1000 - 11 * 60
  utimesSync(lock, old, old)
  await expect(withFileLock(lock, () => 'got', 300)).rejects.toThrow('; remove the file once it does not)')
  // With the ledger's 10 minutes, it is taken for a dead holder's (a container killed, restarted in a namespace of its own).
  await expect(withFileLock(lock, () => 'got', 300, { foreignStaleMs: 20 * 60_000 })).rejects.toThrow(
    'so its lock is broken only once 20 minutes old)'
  )
  expect(await withFileLock(lock, () => 'got', 5000, { foreignStaleMs: 10 * 60_000 })).toBe('got')
  // Controls: the same dead pid in this namespace, and in a lock of an older build (no namespace), is broken.
  writeFileSync(lock, `${dead} deadtoken 12345 ns:${mine}\n`)
  expect(await withFileLock(lock, () => 'got', 5000)).toBe('got')
  writeFileSync(lock, `${dead} oldtoken\n`)
  expect(await withFileLock(lock, () => 'got', 5000)).toBe('got')
  // This process's own lock names its namespace.
  await withFileLock(lock, () => expect(readFileSync(lock, 'utf8')).toMatch(new RegExp(` ns:${mine}\n$`)))
})
