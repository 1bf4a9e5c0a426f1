// Two pulls of one job at once (background steps run hook commands of one job side by side). The
// VM times both tar streams: it holds pull A after its folders, lets pull B turn one of those
// folders into a link, then sends A's next member. A had looked at that folder already, so its
// write went through B's link. The job's host-side lock makes the second pull wait for the first.
import { execFileSync } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { pull, type SyncTarget } from '../../src/sync/sync'
import { settlesWithin } from '../../src/retry'
import { LocalRemote } from './local-remote'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

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

test('a second pull of the job waits while the first is held mid-stream: the first one’s write never goes through a folder the second made a link', async () => {
  const top = tempDir()
  const host = `${top}/host`
  const local = `${top}/local`
  // What the VM shows each pull: to A a folder ws/a/b with a link in it; to B ws/a/b as a link to _temp.
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
  const target = (remoteWork: string, stubs: Record<string, string> = {}): SyncTarget => ({
    remote: new LocalRemote(tempDir(), {}, stubs),
    hostWork: host,
    remoteWork,
    manifestFile: `${local}/base.json`,
    excludes: [],
    limits: {
      stepBytes: 1e9,
      stepFiles: 1e6,
      jobBytes: 1e10,
      jobFiles: 1e7,
      listingEntries: 1e6,
      listingBytes: 1e7,
      fileCommandBytes: 1e9
    }
  })
  const a = pull(target(vmA, { tar: heldTar }), ROOTS)
  a.catch(() => undefined)
  try {
    expect(await waitUntil(() => existsSync(held) && existsSync(`${host}/ws/a/b`), 10_000)).toBe(true)
    expect(lstatSync(`${host}/ws/a/b`).isDirectory()).toBe(true)
    const b = pull(target(vmB), ROOTS)
    b.catch(() => undefined)
    // B does not touch the tree while A is under way (the previous code: B ran to its end, and
    // A's next member went through B's link into _temp, a link that from there points outside _work).
    const bWhileAHeld = await settlesWithin(b, 1500)
    writeFileSync(go, '')
    await a.catch(() => undefined)
    await b.catch(() => undefined)
    expect({ bWhileAHeld, throughLink: lexists(`${host}/_temp/L`) }).toEqual({ bWhileAHeld: false, throughLink: false })
  } finally {
    writeFileSync(go, '')
    await a.catch(() => undefined)
  }
})
