// Hook commands of one job at once (background steps run them side by side). The VM times the tar
// streams: it holds pull A after its folders, lets pull B turn one of those folders into a link,
// then sends A's next member. A had looked at that folder already, so its write went through B's
// link. The job's host-side lock (host-tree.lock) makes the others wait for the first.
import { execFileSync } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs'
import { pull, push, type SyncTarget } from '../../src/sync/sync'
import { Cancelled } from '../../src/errors'
import type { Remote } from '../../src/remote/remote'
import { settlesWithin } from '../../src/retry'
import { LocalRemote } from './local-remote'
import { cleanupTempDirs, tempDir, LOOSE_SYNC_LIMITS } from './_helpers'
import { waitUntil } from '../helpers/wait'
import { syncTarget } from '../../src/job'
import { workerProcess } from '../../src/worker-process'

afterAll(cleanupTempDirs)
jest.setTimeout(30_000)

const ROOTS = ['_temp', 'ws']

/** Whether `p` exists, itself: a link counts whatever it points at. */
const lexists = (p: string): boolean => {
  try {
    lstatSync(p)
    return true
  } catch {
    return false
  }
}
const realTar = execFileSync('/bin/sh', ['-c', 'command -v tar']).toString().trim()

function world() {
  const top = tempDir()
  const host = `${top}/host`
  const local = `${top}/local`
  // What the VM shows each command: to A a folder ws/a/b with a link in it; to B ws/a/b as a link to _temp.
  const vmA = `${top}/vm-a`
  const vmB = `${top}/vm-b`
  for (const d of [`${host}/_temp`, `${host}/ws`, local, `${vmA}/_temp`, `${vmA}/ws/a/b`, `${vmB}/_temp`, `${vmB}/ws/a`])
    mkdirSync(d, { recursive: true })
  symlinkSync('../../x', `${vmA}/ws/a/b/L`)
  symlinkSync('../../_temp', `${vmB}/ws/a/b`)
  const go = `${top}/go`
  const held = `${top}/held`
  // A's tar: its first four members (the folders _temp, ws, ws/a and ws/a/b), then nothing until `go`.
  const heldTar =
    `case "$1" in -c*) ${realTar} "$@" > ${top}/a.tar || exit $?; head -c 2048 ${top}/a.tar; : > ${held}; ` +
    `while [ ! -e ${go} ]; do sleep 0.05; done; tail -c +2049 ${top}/a.tar; exit 0;; esac\nexec ${realTar} "$@"`
  const target = (remoteWork: string, stubs: Record<string, string> = {}, remote?: Remote): SyncTarget => ({
    remote: remote ?? new LocalRemote(tempDir(), {}, stubs),
    hostWork: host,
    remoteWork,
    manifestFile: `${local}/base.json`,
    excludes: [],
    limits: LOOSE_SYNC_LIMITS
  })
  /** Pull A, held after its folders: resolves once it has written ws/a/b and waits. */
  // In an object: a promise returned by an async function would be waited for with it.
  const heldPull = async (): Promise<{ a: Promise<unknown> }> => {
    const a = pull(target(vmA, { tar: heldTar }), ROOTS)
    a.catch(() => undefined)
    expect(await waitUntil(() => existsSync(held) && existsSync(`${host}/ws/a/b`), 10_000)).toBe(true)
    expect(lstatSync(`${host}/ws/a/b`).isDirectory()).toBe(true)
    return { a }
  }
  return { top, host, local, vmA, vmB, go, held, heldTar, target, heldPull }
}

test('a second pull of the job waits while the first is held mid-stream: the first one’s write never goes through a folder the second made a link', async () => {
  const w = world()
  const { a } = await w.heldPull()
  try {
    const b = pull(w.target(w.vmB), ROOTS)
    b.catch(() => undefined)
    // B does not touch the tree while A is under way (the previous code: B ran to its end, and
    // A's next member went through B's link into _temp, a link that from there points outside _work).
    const bWhileAHeld = await settlesWithin(b, 1500)
    writeFileSync(w.go, '')
    await a.catch(() => undefined)
    await b.catch(() => undefined)
    expect({ bWhileAHeld, throughLink: lexists(`${w.host}/_temp/L`) }).toEqual({ bWhileAHeld: false, throughLink: false })
  } finally {
    writeFileSync(w.go, '')
    await a.catch(() => undefined)
  }
})

test('a push of the job waits while a pull is held mid-stream, then sends what the host has', async () => {
  const w = world()
  writeFileSync(`${w.host}/ws/new.txt`, 'from the host\n')
  const { a } = await w.heldPull()
  try {
    const b = push(w.target(w.vmB), ROOTS)
    b.catch(() => undefined)
    const bWhileAHeld = await settlesWithin(b, 1500)
    writeFileSync(w.go, '')
    await a
    await b
    expect(bWhileAHeld).toBe(false)
    expect(readFileSync(`${w.vmB}/ws/new.txt`, 'utf8')).toBe('from the host\n')
  } finally {
    writeFileSync(w.go, '')
    await a.catch(() => undefined)
  }
})

test('a pull whose tar channel the VM never opens ends at its cancel and lets the lock go: the next pull runs', async () => {
  const w = world()
  const real = new LocalRemote(tempDir())
  // The pull has reached its tar channel (which never opens): the moment to cancel it.
  let reachedTar!: () => void
  const atTar = new Promise<void>((r) => (reachedTar = r))
  const neverOpens: Remote = {
    openExec: (c) => (c.includes('tar -c') ? (reachedTar(), new Promise(() => undefined)) : real.openExec(c)),
    openSocket: (p) => real.openSocket(p),
    close: () => undefined
  }
  const cancel = new AbortController()
  const t = { ...w.target(w.vmA, {}, neverOpens), signal: cancel.signal }
  const stuck = pull(t, ROOTS)
  stuck.catch(() => undefined)
  await atTar
  cancel.abort('SIGINT')
  expect(await settlesWithin(stuck, 1000)).toBe(true)
  await expect(stuck).rejects.toBeInstanceOf(Cancelled)
  expect(existsSync(`${w.local}/host-tree.lock`)).toBe(false)
  const next = pull(w.target(w.vmA), ROOTS)
  expect(await settlesWithin(next, 10_000)).toBe(true)
  await next
  expect(lstatSync(`${w.host}/ws/a/b/L`).isSymbolicLink()).toBe(true)
})

test('the first copy (a push with nothing recorded yet) takes no lock: it has no job folder to lock in, and the hook runs in /', async () => {
  const w = world()
  writeFileSync(`${w.host}/ws/f.txt`, 'first\n')
  // Something named host-tree.lock where a relative lock would go: a copy that tried it would wait there.
  const cwd = process.cwd()
  const here = tempDir()
  mkdirSync(`${here}/host-tree.lock`)
  process.chdir(here)
  try {
    const copy = push({ ...w.target(w.vmB), manifestFile: '' }, ['ws'], {
      fresh: new Map([['ws/f.txt', { t: 'f', fp: 'x', size: 6 }]]) as never
    })
    expect(await settlesWithin(copy, 10_000)).toBe(true)
    await copy
  } finally {
    process.chdir(cwd)
  }
  expect(readFileSync(`${w.vmB}/ws/f.txt`, 'utf8')).toBe('first\n')
  // A push of a step without a job folder is refused, naming it, rather than locking in the working folder.
  await expect(push({ ...w.target(w.vmB), manifestFile: 'base.json' }, ROOTS)).rejects.toThrow(/no job folder to hold the lock/)
})

test("a tree lock left by the runner's earlier life in another pid namespace (its container restarted) is taken; control: a live holder's in this namespace is waited for", async () => {
  const w = world()
  writeFileSync(`${w.host}/ws/new.txt`, 'from the host\n')
  const lock = `${tempDir()}/tree.lock`
  const mine = /\[(\d+)\]/.exec(readlinkSync('/proc/self/ns/pid'))![1]
  const t = { ...w.target(w.vmB), treeLock: lock }
  // Control: this process holds it (a live holder of this namespace): the push waits.
  writeFileSync(lock, `${process.pid} livetoken ${workerProcess(process.pid)!.start} ns:${mine}\n`)
  const waiting = push(t, ROOTS)
  waiting.catch(() => undefined)
  expect(await settlesWithin(waiting, 1500)).toBe(false)
  // A lock of another namespace, just written (the previous code waited for it for 24 hours).
  writeFileSync(lock, `${process.pid} oldlife 12345 ns:${Number(mine) + 1}\n`)
  expect(await settlesWithin(waiting, 5000)).toBe(true)
  await waiting
  expect(readFileSync(`${w.vmB}/ws/new.txt`, 'utf8')).toBe('from the host\n')
  expect(existsSync(lock)).toBe(false)
})

test('commands with job folders of their own (container actions without state) and one _work take one lock: syncTarget names it by the _work', async () => {
  const w = world()
  const lock = `${tempDir()}/tree.lock`
  const withLock = (t: SyncTarget, manifestDir: string): SyncTarget => ({ ...t, manifestFile: `${manifestDir}/base.json`, treeLock: lock })
  const a = pull(withLock(w.target(w.vmA, { tar: w.heldTar }), tempDir()), ROOTS)
  a.catch(() => undefined)
  try {
    expect(await waitUntil(() => existsSync(w.held), 10_000)).toBe(true)
    const b = pull(withLock(w.target(w.vmB), tempDir()), ROOTS)
    b.catch(() => undefined)
    expect(await settlesWithin(b, 1500)).toBe(false)
    writeFileSync(w.go, '')
    await a
    await b.catch(() => undefined)
    expect(lexists(`${w.host}/_temp/L`)).toBe(false)
  } finally {
    writeFileSync(w.go, '')
    await a.catch(() => undefined)
  }
  // The lock syncTarget gives: one per _work, whatever the job folder.
  const ctx = { config: { sync: { excludeFromPullBack: [], limits: {}, deltaListing: false } }, log: {}, localRoot: '/tmp/rch-0' } as never
  const remote = {} as Remote
  const one = syncTarget(ctx, { hostWork: '/w/_work', jobRoot: '/srv/j1', localDir: '/tmp/rch-0/o-j1' }, remote).treeLock
  expect(syncTarget(ctx, { hostWork: '/w/_work', jobRoot: '/srv/j2', localDir: '/tmp/rch-0/o-j2' }, remote).treeLock).toBe(one)
  expect(one).toMatch(/^\/tmp\/rch-0\/tree-[0-9a-f]{16}\.lock$/)
  expect(syncTarget(ctx, { hostWork: '/other/_work', jobRoot: '/srv/j1', localDir: '/tmp/rch-0/o-j1' }, remote).treeLock).not.toBe(one)
})
