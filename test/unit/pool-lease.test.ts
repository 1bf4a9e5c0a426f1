// The pool member's lease record, run by a real local shell (flock, awk, date) through LocalRemote:
// grants, queue order, renewal, lapse, hostile records, and one winner under a race.
import { execFileSync } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ask, oneWord } from '../../src/remote/answer'
import {
  acquireScript,
  leaveScript,
  parseAcquire,
  QUEUE_STALE_SECONDS,
  releaseScript,
  renewScript,
  takeOverScript,
  type AcquireAnswer,
  type ReleaseAs
} from '../../src/providers/pool-lease'
import { LocalRemote } from './local-remote'
import { settlesWithin } from '../helpers/wait'

const OWNER = 'aaaaaaaaaaaaaaaa'
const JOB = '1111111111111111'
const HOST = 'cccccccccccccccc'
const tok = (c: string): string => c.repeat(32)

let dir: string
let work: string
let remote: LocalRemote

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'rch-pool-lease-'))
  work = join(dir, 'work')
  // docker answers its version (a healthy member); df sees the temp file system.
  remote = new LocalRemote(dir, { before: 'motd\\n', after: 'bye\\n' }, { docker: 'echo 27.3.1' })
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const acquire = async (token: string, since: number, queue = false, ttl = 120): Promise<AcquireAnswer> =>
  parseAcquire(
    await ask(remote, acquireScript(work, { token, since, queue, ttlSeconds: ttl, owner: OWNER, jobId: JOB, host: HOST }), {
      label: 'lease'
    }),
    'lease'
  )
const one = async (script: string, words: readonly string[]): Promise<string> =>
  oneWord(await ask(remote, script, { label: 'op' }), words, 'op')
const release = (token: string, how: ReleaseAs): Promise<string> => one(releaseScript(work, token, how), ['released', 'not-holder'])
const record = (): string => readFileSync(join(work, 'pool', 'lease'), 'utf8')
const nowS = (): number => Math.floor(Date.now() / 1000)

test('a fresh member is granted once, reported dirty (never scrubbed yet) and healthy', async () => {
  const a = await acquire(tok('a'), 1000)
  expect(a).toEqual({
    granted: true,
    clean: false,
    lapsed: false,
    diskPercent: expect.any(Number),
    docker: '27.3.1',
    dockerError: null,
    workRoot: work
  })
  expect(record()).toMatch(new RegExp(`^held ${tok('a')} \\d+ ${OWNER} ${JOB} ${HOST}\\n$`))
  // Busy for anyone else, without queueing unless asked.
  expect(await acquire(tok('b'), 2000)).toMatchObject({ granted: false, state: 'held', ahead: 0, waiting: 0 })
  expect(await acquire(tok('b'), 2000, true)).toMatchObject({ granted: false, state: 'queued', ahead: 0, waiting: 0 })
  expect(await acquire(tok('c'), 3000, true)).toMatchObject({ granted: false, state: 'queued', ahead: 1, waiting: 1 })
})

test('given back clean, the member goes to the oldest live waiter, not to a newer one', async () => {
  await acquire(tok('a'), 1000)
  await acquire(tok('b'), 2000, true)
  await acquire(tok('c'), 3000, true)
  expect(await release(tok('a'), { as: 'clean' })).toBe('released')
  expect(record()).toBe('free clean\n')
  // c is younger than b, and a newcomer younger still: neither gets it.
  expect(await acquire(tok('c'), 3000, true)).toMatchObject({ granted: false, ahead: 1 })
  expect(await acquire(tok('d'), 4000)).toMatchObject({ granted: false, ahead: 2 })
  expect(await acquire(tok('b'), 2000, true)).toMatchObject({ granted: true, clean: true, lapsed: false })
  // b left the queue with its grant: c is next.
  expect(await release(tok('b'), { as: 'dirty' })).toBe('released')
  expect(await acquire(tok('c'), 3000, true)).toMatchObject({ granted: true, clean: false })
})

test('a waiter that stopped polling stops blocking others; leaving the queue does so at once', async () => {
  await acquire(tok('a'), 1000)
  await acquire(tok('b'), 2000, true)
  await release(tok('a'), { as: 'clean' })
  // b's heartbeat is made older than the stale limit, as if its runner died.
  const q = join(work, 'pool', 'queue')
  writeFileSync(q, readFileSync(q, 'utf8').replace(/ (\d+)\n$/, ` ${nowS() - QUEUE_STALE_SECONDS - 5}\n`))
  expect(await acquire(tok('c'), 3000)).toMatchObject({ granted: true })
  await release(tok('c'), { as: 'clean' })
  // Free, and nobody older waits: granted even when asking to queue.
  expect(await acquire(tok('d'), 4000, true)).toMatchObject({ granted: true })
  await release(tok('d'), { as: 'clean' })
  await acquire(tok('e'), 5000)
  await acquire(tok('f'), 6000, true)
  await release(tok('e'), { as: 'clean' })
  expect(await acquire(tok('g'), 7000)).toMatchObject({ granted: false, ahead: 1 })
  expect(await one(leaveScript(work, tok('f')), ['left'])).toBe('left')
  expect(await acquire(tok('g'), 7000)).toMatchObject({ granted: true })
})

test('only the holder renews or releases; a lapsed lease is granted to the next job as lapsed and dirty', async () => {
  await acquire(tok('a'), 1000, false, 60)
  expect(await one(renewScript(work, tok('a'), 60), ['renewed', 'lost'])).toBe('renewed')
  expect(await one(renewScript(work, tok('b'), 60), ['renewed', 'lost'])).toBe('lost')
  expect(await release(tok('b'), { as: 'clean' })).toBe('not-holder')
  expect(record()).toMatch(/^held a/)
  // Its expiry passes (the runner died and nothing renewed it).
  writeFileSync(join(work, 'pool', 'lease'), `held ${tok('a')} ${nowS() - 1} ${OWNER} ${JOB}\n`)
  expect(await acquire(tok('b'), 2000)).toMatchObject({ granted: true, clean: false, lapsed: true })
  // The old holder finds out.
  expect(await one(renewScript(work, tok('a'), 60), ['renewed', 'lost'])).toBe('lost')
})

test("freeOnly (reap's brief hold of a free member) is granted from free alone: never a lapsed, live, unreadable, missing or retired record", async () => {
  const take = async (token: string): Promise<AcquireAnswer> =>
    parseAcquire(
      await ask(
        remote,
        acquireScript(work, { token, since: 0, queue: false, ttlSeconds: 60, owner: OWNER, jobId: JOB, host: HOST, freeOnly: true }),
        {
          label: 'take'
        }
      ),
      'take'
    )
  // No record yet (a member never leased): not granted, though a job would be.
  expect(await take(tok('r'))).toMatchObject({ granted: false })
  await acquire(tok('a'), 1000)
  // Live, then lapsed.
  expect(await take(tok('r'))).toMatchObject({ granted: false, state: 'held' })
  writeFileSync(join(work, 'pool', 'lease'), `held ${tok('a')} ${nowS() - 1} ${OWNER} ${JOB}\n`)
  expect(await take(tok('r'))).toMatchObject({ granted: false, state: 'held' })
  writeFileSync(join(work, 'pool', 'lease'), `held ${tok('z')} ${nowS() + 10 ** 9} ${OWNER} ${JOB}\n`)
  expect(await take(tok('r'))).toMatchObject({ granted: false, state: 'held' })
  for (const garbage of ['garbage here', '']) {
    writeFileSync(join(work, 'pool', 'lease'), `${garbage}\n`)
    expect(await take(tok('r'))).toMatchObject({ granted: false })
  }
  writeFileSync(join(work, 'pool', 'lease'), 'retired disk-full\n')
  expect(await take(tok('r'))).toMatchObject({ granted: false, state: 'retired' })
  // Positive control: free, clean or dirty, is granted, not lapsed, and given back as it was.
  for (const how of ['clean', 'dirty'] as const) {
    writeFileSync(join(work, 'pool', 'lease'), `free ${how}\n`)
    expect(await take(tok('r'))).toMatchObject({ granted: true, lapsed: false, clean: how === 'clean' })
    expect(await release(tok('r'), { as: how })).toBe('released')
    expect(record()).toBe(`free ${how}\n`)
  }
})

test('records a job could have forged: garbage is dirty, an expiry beyond reach is lapsed, retired is never granted', async () => {
  await acquire(tok('a'), 1000)
  for (const garbage of ['free', 'garbage here', `free clean; rm -rf /`, '']) {
    writeFileSync(join(work, 'pool', 'lease'), `${garbage}\n`)
    const a = await acquire(tok('b'), 2000)
    expect(a).toMatchObject({ granted: true, clean: false })
    await release(tok('b'), { as: 'dirty' })
  }
  writeFileSync(join(work, 'pool', 'lease'), `held ${tok('z')} ${nowS() + 10 ** 9} ${OWNER} ${JOB}\n`)
  expect(await acquire(tok('b'), 2000, false, 60)).toMatchObject({ granted: true, lapsed: true, clean: false })
  expect(await release(tok('b'), { as: 'retired', reason: 'disk 95 % full; $(reboot)' })).toBe('released')
  expect(record()).toBe('retired disk-95-full-reboot-\n')
  expect(await acquire(tok('c'), 3000, true)).toMatchObject({ granted: false, state: 'retired' })
})

// A member's clock is the job's to set (root there): numbers a runner never writes must not break
// the lease's shell. An expiry of 20 digits passed the digits test, then the shell's -lt failed on
// it (dash: "Illegal number") and the call with it; a queue entry stamped in the future stayed a
// live waiter for ever, ahead of everyone.
test('an expiry of more digits than any time, and a waiter stamped in the future, are taken as nothing', async () => {
  await acquire(tok('a'), 500)
  writeFileSync(join(work, 'pool', 'lease'), `held ${tok('z')} ${'9'.repeat(20)} ${OWNER} ${JOB}\n`)
  expect(await acquire(tok('b'), 2000, false, 60)).toMatchObject({ granted: true, lapsed: true, clean: false })
  await release(tok('b'), { as: 'clean' })
  await acquire(tok('c'), 3000)
  await acquire(tok('d'), 1000, true)
  await release(tok('c'), { as: 'clean' })
  // d (older than e) stopped polling, its last poll stamped an hour ahead by a clock set forward.
  const q = join(work, 'pool', 'queue')
  writeFileSync(q, readFileSync(q, 'utf8').replace(/ (\d+)\n$/, ` ${nowS() + 3600}\n`))
  expect(await acquire(tok('e'), 4000)).toMatchObject({ granted: true })
  // Control: a waiter polling now still goes first.
  await acquire(tok('f'), 1000, true)
  await release(tok('e'), { as: 'clean' })
  expect(await acquire(tok('g'), 5000)).toMatchObject({ granted: false, ahead: 1 })
})

test("a member whose Docker does not answer is granted with docker null and Docker's own words (the caller replaces it)", async () => {
  remote = new LocalRemote(
    dir,
    {},
    {
      docker: `printf 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\\nIs the docker daemon running? \\033[31m\\n' >&2; exit 1`
    }
  )
  expect(await acquire(tok('a'), 1000)).toMatchObject({
    granted: true,
    docker: null,
    dockerError: 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?  [31m'
  })
  remote = new LocalRemote(dir, {}, { docker: 'exit 1' })
  await release(tok('a'), { as: 'clean' })
  expect(await acquire(tok('b'), 2000)).toMatchObject({ granted: true, docker: null, dockerError: 'no version and no error within 10 s' })
})

test("a member's answer about Docker is checked: not printable, too long, or beside a version, it is refused", () => {
  const granted = (docker: string, said: string) => ['granted', '1', '0', '10', docker, '/w', said]
  expect(parseAcquire(granted('27.3.1', '-'), 'lease')).toMatchObject({ docker: '27.3.1', dockerError: null })
  expect(() => parseAcquire(granted('-', 'bad\u0007bell'), 'lease')).toThrow(/lease/)
  expect(() => parseAcquire(granted('-', 'x'.repeat(301)), 'lease')).toThrow(/lease/)
  expect(() => parseAcquire(granted('-', ''), 'lease')).toThrow(/lease/)
  // the six records of before are not an answer
  expect(() => parseAcquire(granted('27.3.1', '-').slice(0, 6), 'lease')).toThrow(/lease/)
})

test('a cleanup without state takes over only its own runner’s lease, from its own runner host', async () => {
  await acquire(tok('a'), 1000)
  const takeOver = (owner: string, host: string, token: string) =>
    one(takeOverScript(work, owner, [host], token, 60), ['taken', 'not-owner'])
  expect(await takeOver('bbbbbbbbbbbbbbbb', HOST, tok('x'))).toBe('not-owner')
  // The same runner name on another host: its lease is that runner's live job, not a lost one.
  expect(await takeOver(OWNER, 'dddddddddddddddd', tok('x'))).toBe('not-owner')
  expect(record()).toMatch(new RegExp(`^held ${tok('a')} \\d+ ${OWNER} ${JOB} ${HOST}\\n$`))
  expect(await takeOver(OWNER, HOST, tok('x'))).toBe('taken')
  // the record keeps its runner host through the take-over and a renewal
  expect(record()).toMatch(new RegExp(`^held ${tok('x')} \\d+ ${OWNER} ${JOB} ${HOST}\\n$`))
  expect(await one(renewScript(work, tok('x'), 60), ['renewed', 'lost'])).toBe('renewed')
  expect(record()).toMatch(new RegExp(`^held ${tok('x')} \\d+ ${OWNER} ${JOB} ${HOST}\\n$`))
  expect(await release(tok('a'), { as: 'clean' })).toBe('not-holder')
  expect(await release(tok('x'), { as: 'clean' })).toBe('released')
})

test('a runner-host field a job forged on the member (the job was root there) is compared, never run, and takes over nothing', async () => {
  const marker = join(dir, 'ran')
  const takeOver = () => one(takeOverScript(work, OWNER, [HOST], tok('x'), 60), ['taken', 'not-owner'])
  mkdirSync(join(work, 'pool'), { recursive: true, mode: 0o700 })
  for (const forged of [`$(touch ${marker})`, `\`touch ${marker}\``, `${HOST} ${HOST}`, `${HOST} -o x`, `-o x = x`, '*']) {
    writeFileSync(join(work, 'pool', 'lease'), `held ${tok('a')} ${nowS() + 600} ${OWNER} ${JOB} ${forged}\n`)
    expect(await takeOver()).toBe('not-owner')
    expect(existsSync(marker)).toBe(false)
  }
  // positive control: the same record naming this runner host is taken over
  writeFileSync(join(work, 'pool', 'lease'), `held ${tok('a')} ${nowS() + 600} ${OWNER} ${JOB} ${HOST}\n`)
  expect(await takeOver()).toBe('taken')
})

test('a lease record of an older hook (no runner host) is taken over by its owner alone', async () => {
  mkdirSync(join(work, 'pool'), { recursive: true, mode: 0o700 })
  writeFileSync(join(work, 'pool', 'lease'), `held ${tok('a')} ${nowS() + 600} ${OWNER} ${JOB}\n`)
  expect(await one(takeOverScript(work, 'bbbbbbbbbbbbbbbb', ['dddddddddddddddd'], tok('x'), 60), ['taken', 'not-owner'])).toBe('not-owner')
  expect(await one(takeOverScript(work, OWNER, ['dddddddddddddddd'], tok('x'), 60), ['taken', 'not-owner'])).toBe('taken')
})

test("a cleanup without state takes over its host's lease under either of its ids (the key, or an older build's hostname id), no other", async () => {
  const OLD = 'eeeeeeeeeeeeeeee'
  mkdirSync(join(work, 'pool'), { recursive: true, mode: 0o700 })
  const takeOver = (hosts: string[]) => one(takeOverScript(work, OWNER, hosts, tok('x'), 60), ['taken', 'not-owner'])
  for (const [written, taken] of [
    [HOST, 'taken'],
    [OLD, 'taken'],
    ['dddddddddddddddd', 'not-owner']
  ]) {
    writeFileSync(join(work, 'pool', 'lease'), `held ${tok('a')} ${nowS() + 600} ${OWNER} ${JOB} ${written}\n`)
    expect(await takeOver([HOST, OLD])).toBe(taken)
  }
  // Ids are written into the script unquoted: anything but 16 hex digits is refused before it is sent.
  for (const bad of [[], ['x'], [HOST, '$(id)'], [`${HOST} `]])
    expect(() => takeOverScript(work, OWNER, bad, tok('x'), 60)).toThrow('16 hex digits')
})

test('twenty jobs racing for one free member: exactly one is granted', async () => {
  const all = await Promise.all(Array.from({ length: 20 }, (_, i) => acquire(i.toString(16).padStart(32, '0'), 1000 + i)))
  expect(all.filter((a) => a.granted)).toHaveLength(1)
})

test('answers that are not ours are refused', () => {
  expect(() => parseAcquire(['granted', '1', '0', '12', '27'], 'x')).toThrow(/unexpected answer/)
  expect(() => parseAcquire(['granted', '1', '0', '12', '27; rm', '/w', '-'], 'x')).toThrow(/unexpected value/)
  expect(() => parseAcquire(['granted', '2', '0', '12', '27', '/w', '-'], 'x')).toThrow(/unexpected value/)
  for (const w of ['/home/u/../x', 'rel', '/w;rm', '/'])
    expect(() => parseAcquire(['granted', '1', '0', '12', '27', w, '-'], 'x')).toThrow(/not a plain absolute path/)
  expect(parseAcquire(['granted', '1', '0', '12', '27', '/home/u/rch', '-'], 'x')).toMatchObject({ workRoot: '/home/u/rch' })
  expect(() => parseAcquire(['held', '0', '0'], 'x')).toThrow(/unexpected answer/)
  expect(() => parseAcquire(['busy', '0', '0', '5'], 'x')).toThrow(/unexpected answer/)
  expect(() => oneWord(['renewed', 'x'], ['renewed'], 'x')).toThrow(/unexpected answer/)
})

test('the member keeps a history of grants and releases (what the audits and the double-lease check read)', async () => {
  await acquire(tok('a'), 1000)
  await release(tok('a'), { as: 'clean' })
  await acquire(tok('b'), 2000)
  writeFileSync(join(work, 'pool', 'lease'), `held ${tok('b')} ${nowS() - 1} ${OWNER} ${JOB}\n`)
  await acquire(tok('c'), 3000)
  await one(takeOverScript(work, OWNER, [HOST], tok('d'), 60), ['taken', 'not-owner'])
  const lines = readFileSync(join(work, 'pool', 'log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' ').slice(1).join(' '))
  expect(lines).toEqual([
    `grant ${tok('a')} none 0`,
    `release ${tok('a')} free`,
    `grant ${tok('b')} free 0`,
    `grant ${tok('c')} held 1`,
    `takeover ${tok('d')} ${tok('c')}`
  ])
})

test('a FIFO or a symlink planted in the lease folder is replaced, never opened (an ask would hang on it)', async () => {
  await acquire(tok('a'), 1000)
  await release(tok('a'), { as: 'clean' })
  const P = join(work, 'pool')
  rmSync(join(P, 'lock'))
  execFileSync('mkfifo', [join(P, 'lock')])
  rmSync(join(P, 'queue'), { force: true })
  execFileSync('mkfifo', [join(P, 'queue')])
  writeFileSync(join(dir, 'victim'), 'keep\n')
  rmSync(join(P, 'lease'))
  symlinkSync(join(dir, 'victim'), join(P, 'lease'))
  expect(statSync(join(P, 'lock')).isFIFO()).toBe(true) // positive control: the traps are set
  const asked = acquire(tok('b'), 2000)
  expect(await settlesWithin(asked, 10_000)).toBe(true) // opening the FIFO would hang
  const a = await asked
  expect(a).toMatchObject({ granted: true, clean: false })
  expect(readFileSync(join(dir, 'victim'), 'utf8')).toBe('keep\n')
  expect(lstatSync(join(P, 'lease')).isFile()).toBe(true)
})

test('a holder with a longer ttl is not taken for lapsed by a runner with a shorter one', async () => {
  await acquire(tok('a'), 1000, false, 900)
  expect(await acquire(tok('b'), 2000, false, 120)).toMatchObject({ granted: false, state: 'held' })
})

test('a member claiming an absurd line is refused (it would drive a scale-out to MaxSize)', () => {
  expect(() => parseAcquire(['queued', '0', '1001', '5'], 'x')).toThrow(/more than 1000/)
  expect(parseAcquire(['queued', '0', '1000', '5'], 'x')).toMatchObject({ waiting: 1000 })
})

// A member an earlier job was root on answers its lines as it likes: a negative sum held back every
// scale-out, and its line looked the shortest, drawing every waiting job to it.
test('a member claiming a negative line is refused; a lease already past its time is not (control)', () => {
  for (const [ahead, waiting] of [
    ['-1', '0'],
    ['0', '-5'],
    ['0', '-999999999999']
  ])
    expect(() => parseAcquire(['held', ahead, waiting, '30'], 'x')).toThrow(/x/)
  expect(parseAcquire(['held', '0', '3', '-30'], 'x')).toMatchObject({ ahead: 0, waiting: 3, expiresIn: -30 })
})
