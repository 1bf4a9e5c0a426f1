// Static-host leasing on a local shell: operator errors fail at once with the command's own words
// (never "all slots busy" and a wait for acquireTimeoutSeconds), no failure leaves a slot taken, and
// the wait for a free slot runs on the wait primitive (progress note, deadline, cancel).
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { StaticHostProvider, freeJobSlotScript, leaseDir, leaseScript } from '../../src/providers/static-host'
import { CONNECT_GRACE_MS } from '../../src/providers/host-links'
import { ownerId } from '../../src/labels'
import { HookError, TransportError } from '../../src/errors'
import { UnexpectedAnswer } from '../../src/remote/answer'
import type { ProviderEnv } from '../../src/providers/provider'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'
import { LocalRemote } from './local-remote'
import { shq } from '../../src/remote/quote'
import { recordingFleetGate } from '../helpers/fleet-gate'
import { runnerFacts } from '../helpers/runner-facts'
import { unexpectedScrub } from '../helpers/runner-facts'

afterAll(cleanupTempDirs)

const OWNER = ownerId('r', '/home/r/_work')
const JOB = 'fedcba9876543210'

function env(remote: Remote, signal = new AbortController().signal): ProviderEnv & { logged: string[] } {
  const logged: string[] = []
  const log = { debug: () => undefined, progress: (m: string) => void logged.push(m), warn: (m: string) => void logged.push(`warn: ${m}`) }
  return {
    runner: runnerFacts(),
    log,
    signal,
    connect: async () => remote,
    discard: async () => undefined,
    fleet: recordingFleetGate(),
    scrub: unexpectedScrub,
    logged
  }
}

function provider(workRoot: string, acquireTimeoutSeconds = 600, slots = 1): StaticHostProvider {
  return new StaticHostProvider(
    {
      kind: 'static',
      acquireTimeoutSeconds,
      hosts: [{ host: '127.0.0.1', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh', slots }]
    },
    workRoot
  )
}

/** A remote whose commands run with a file size limit of 0: any write into a file kills the shell. */
function noWrites(dir: string): Remote {
  const local = new LocalRemote(dir)
  return { openExec: (c) => local.openExec(`ulimit -f 0; ${c}`), openSocket: (p) => local.openSocket(p), close: () => undefined }
}

const job = (dir: string) => ({ jobId: JOB, owner: OWNER, localDir: dir })

test("a slot's owner line names the runner host and worker the hook gave (a provider reads neither itself)", async () => {
  const dir = tempDir()
  const workRoot = join(dir, 'work')
  const e = env(new LocalRemote(dir))
  e.runner = runnerFacts({ host: { hostname: 'runner 9', name: 'runner_9', key: '0a1b2c3d4e5f6071' }, worker: { pid: 4242, start: '99' } })
  await provider(workRoot).acquire(job(dir), e)
  const line = readFileSync(join(workRoot, 'leases', 'slot-0', 'owner'), 'utf8')
  expect(line).toMatch(new RegExp(`^${OWNER} ${JOB} r runner_9/0a1b2c3d4e5f6071 \\S+Z 4242 99\\n$`))
})

describe('a lease that cannot be completed fails at once and leaves no slot taken', () => {
  test('the owner file cannot be written (the shell dies half-way): no slot-N is left behind', async () => {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    const t0 = Date.now()
    await expect(provider(workRoot).acquire(job(dir), env(noWrites(dir)))).rejects.toThrow(/lease slot 0 on 127\.0\.0\.1:22 failed/)
    expect(Date.now() - t0).toBeLessThan(5000)
    // positive control: the lease root was made, so the script got as far as taking a slot
    expect(existsSync(join(workRoot, 'leases'))).toBe(true)
    expect(readdirSync(join(workRoot, 'leases')).filter((n) => n.startsWith('slot-'))).toEqual([])
    // and the slot is free for the next job (the half-made lease of this runner is swept)
    const got = await provider(workRoot).acquire(job(dir), env(new LocalRemote(dir)))
    expect(got.lease).toMatchObject({ kind: 'static', slot: 0 })
    expect(readdirSync(join(workRoot, 'leases'))).toEqual(['slot-0'])
  })

  test('a work root that cannot be created names remote.workRoot and the reason, at once', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'file'), '')
    const workRoot = join(dir, 'file', 'work')
    const e = env(new LocalRemote(dir))
    const t0 = Date.now()
    const err = await provider(workRoot)
      .acquire(job(dir), e)
      .catch((x: Error) => x)
    expect(Date.now() - t0).toBeLessThan(5000)
    expect((err as Error).message).toMatch(/Not a directory/)
    expect((err as Error).message).toContain(`cannot create ${workRoot}/leases and ${workRoot}/jobs (remote.workRoot)`)
    expect((err as Error).message).not.toMatch(/busy|leased by another job/)
    expect(e.logged.filter((l) => l.includes('waiting'))).toEqual([])
  })

  test('a slot that cannot be made (not "taken by another job") is an error naming it, not a wait', async () => {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    mkdirSync(join(workRoot, 'leases'), { recursive: true })
    // Not a lease folder: a file where the slot's folder would go.
    writeFileSync(leaseDir(workRoot, 0), 'junk')
    const e = env(new LocalRemote(dir))
    const t0 = Date.now()
    const err = await provider(workRoot)
      .acquire(job(dir), e)
      .catch((x: Error) => x)
    expect(Date.now() - t0).toBeLessThan(5000)
    expect((err as Error).message).toMatch(/lease slot 0 on 127\.0\.0\.1:22 failed \(exit code 5\): .*slot-0/)
    expect(e.logged.filter((l) => l.includes('waiting'))).toEqual([])
    expect(readFileSync(leaseDir(workRoot, 0), 'utf8')).toBe('junk')
  })
})

describe('waiting for a free slot', () => {
  /** A work root whose only slot another runner holds. */
  function busy(): { dir: string; workRoot: string } {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    mkdirSync(leaseDir(workRoot, 0), { recursive: true })
    writeFileSync(join(leaseDir(workRoot, 0), 'owner'), '0000000000000000 1111111111111111 other-runner h 2026-01-01T00:00:00Z\n')
    return { dir, workRoot }
  }

  test('says so once when the wait starts and fails at the deadline naming the busy slots', async () => {
    const { dir, workRoot } = busy()
    const e = env(new LocalRemote(dir))
    const t0 = Date.now()
    await expect(provider(workRoot, 2).acquire(job(dir), e)).rejects.toThrow(
      'no free host after 2 s: every slot of provider.hosts is leased by another job'
    )
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000)
    expect(e.logged).toEqual(['waiting for a free host (all 1 slots busy)'])
    expect(readFileSync(join(leaseDir(workRoot, 0), 'owner'), 'utf8')).toContain('other-runner')
  })

  test('a cancel ends the wait at once', async () => {
    const { dir, workRoot } = busy()
    const cancel = new AbortController()
    const e = env(new LocalRemote(dir), cancel.signal)
    // The cancel comes once the wait has started (its note is the event), not after a guessed delay.
    let t0 = 0
    const progress = e.log.progress
    e.log = {
      ...e.log,
      progress: (m: string) => {
        progress(m)
        if (!m.startsWith('waiting')) return
        t0 = Date.now()
        cancel.abort(new Error('cancelled by the runner'))
      }
    }
    const p = provider(workRoot, 600).acquire(job(dir), e)
    await expect(p).rejects.toThrow('cancelled by the runner')
    expect(Date.now() - t0).toBeLessThan(10_000)
    // positive control: it was waiting when the cancel came
    expect(e.logged).toEqual(['waiting for a free host (all 1 slots busy)'])
  })

  test('a cancel while connecting is the cancel, not an unreachable host', async () => {
    const { dir, workRoot } = busy()
    const cancel = new AbortController()
    const e = env(new LocalRemote(dir), cancel.signal)
    let attempts = 0
    // The connection attempt is what the cancel interrupts (as the agent start wait does).
    e.connect = () => {
      attempts++
      const connecting = new Promise<Remote>((_, reject) =>
        cancel.signal.addEventListener('abort', () => reject(new Error('aborted (SIGINT)')), { once: true })
      )
      // The cancel comes while this attempt is under way.
      setImmediate(() => cancel.abort('SIGINT'))
      return connecting
    }
    const p = provider(workRoot, 600).acquire(job(dir), e)
    await expect(p).rejects.toThrow('aborted (SIGINT)')
    expect(attempts).toBe(1)
    expect(e.logged.filter((l) => l.startsWith('warn:') || l.startsWith('waiting'))).toEqual([])
  })

  test('a connect that comes in after the cancel sends no lease call: no slot names the cancelled job', async () => {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    const cancel = new AbortController()
    const local = new LocalRemote(dir)
    const e = env(local, cancel.signal)
    e.connect = async () => {
      cancel.abort(new Error('cancelled by the runner'))
      return local
    }
    await expect(provider(workRoot).acquire(job(dir), e)).rejects.toThrow('cancelled by the runner')
    expect(local.commands.filter((c) => c.includes('/leases/.new-'))).toEqual([])
    expect(existsSync(leaseDir(workRoot, 0))).toBe(false)
    // positive control: the same connect without the cancel leases the slot with that call
    const ok = new LocalRemote(dir)
    await provider(workRoot).acquire(job(dir), env(ok))
    expect(ok.commands.filter((c) => c.includes('/leases/.new-'))).toHaveLength(1)
  })

  test('a failure on this side of the connection (the agent could not be started) fails at once, not as an unreachable host', async () => {
    const { dir, workRoot } = busy()
    const e = env(new LocalRemote(dir))
    let attempts = 0
    e.connect = () => {
      attempts++
      return Promise.reject(new HookError("could not start the job's agent: spawn /nonexistent/node ENOENT"))
    }
    const t0 = Date.now()
    await expect(provider(workRoot, 600).acquire(job(dir), e)).rejects.toThrow("could not start the job's agent")
    expect(attempts).toBe(1)
    expect(Date.now() - t0).toBeLessThan(10_000)
    expect(e.logged.filter((l) => l.startsWith('warn:') || l.startsWith('waiting'))).toEqual([])
    // positive control: a network failure is an unreachable host, warned about and tried again
    const n = env(new LocalRemote(dir))
    let tries = 0
    n.connect = () => {
      tries++
      return Promise.reject(new TransportError('connection refused', 'network'))
    }
    await expect(provider(workRoot, 1).acquire(job(dir), n)).rejects.toThrow()
    expect(tries).toBeGreaterThan(1)
    expect(n.logged.some((l) => l.startsWith('warn: host 127.0.0.1:22 unreachable'))).toBe(true)
  })

  test('one host unreachable, the others busy: the timeout names the unreachable host, not only busy slots', async () => {
    const { dir, workRoot } = busy()
    const two = new StaticHostProvider(
      {
        kind: 'static',
        acquireTimeoutSeconds: 1,
        hosts: [
          { host: '10.0.0.9', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh', slots: 2 },
          { host: '127.0.0.1', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh', slots: 1 }
        ]
      },
      workRoot
    )
    const e = env(new LocalRemote(dir))
    e.connect = async (c) => {
      if (c.host === '10.0.0.9') throw new TransportError('cannot connect to u@10.0.0.9:22: connect EHOSTUNREACH 10.0.0.9:22', 'network')
      return new LocalRemote(dir)
    }
    const err = (await two.acquire(job(dir), e).catch((x: unknown) => x)) as Error
    expect(err.message).toContain('EHOSTUNREACH')
    expect(err.message).not.toContain('every slot of provider.hosts is leased by another job')
  })

  test('a slot released between a failed rename and its checks is taken, not an error', async () => {
    const { dir, workRoot } = busy()
    const flag = join(dir, 'stub-ran')
    const slot = leaseDir(workRoot, 0)
    // The first rename fails on the held slot; the other job releases it right after (a race seen in a soak).
    const stub = `mv() { if [ ! -e '${flag}' ]; then printf '%s\\n' "$*" > '${flag}'; command mv "$@"; s=$?; rm -rf '${slot}'; return $s; fi; command mv "$@"; }; `
    const local = new LocalRemote(dir)
    const racing: Remote = { openExec: (c) => local.openExec(stub + c), openSocket: (p) => local.openSocket(p), close: () => undefined }
    const e = env(racing)
    const t0 = Date.now()
    const got = await provider(workRoot, 30).acquire(job(dir), e)
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(got.lease.slot).toBe(0)
    expect(readFileSync(join(slot, 'owner'), 'utf8')).toMatch(new RegExp(`^${OWNER} ${JOB} r `))
    // positive control: the stub ran on the lease's rename, so that rename did meet the other job's slot
    expect(readFileSync(flag, 'utf8')).toMatch(new RegExp(`^-T \\S+/leases/\\.new-\\S+ ${slot.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n$`))
    expect(e.logged.filter((l) => l.includes('waiting') || l.startsWith('warn:'))).toEqual([])
    expect(readdirSync(join(workRoot, 'leases'))).toEqual(['slot-0'])
  })

  test('a slot freed during the wait is taken', async () => {
    const { dir, workRoot } = busy()
    const e = env(new LocalRemote(dir))
    // The other job lets its slot go once this one is waiting (its note is the event).
    const progress = e.log.progress
    e.log = {
      ...e.log,
      progress: (m: string) => {
        progress(m)
        if (m.startsWith('waiting')) rmSync(leaseDir(workRoot, 0), { recursive: true })
      }
    }
    const got = await provider(workRoot, 30).acquire(job(dir), e)
    // positive control: the slot was busy at first, so the job did wait for it
    expect(e.logged).toEqual(['waiting for a free host (all 1 slots busy)'])
    expect(got.lease.slot).toBe(0)
    expect(readFileSync(join(leaseDir(workRoot, 0), 'owner'), 'utf8')).toMatch(new RegExp(`^${OWNER} ${JOB} r `))
  })
})

// Several runners share a static host's slots: one job's release and another job's lease of the
// same slot meet. Whatever the order of their steps, the release succeeds and the lease gets the
// slot (at once, or as "busy" on one pass and then on the next).
describe("a slot changing hands between two runners' jobs", () => {
  const OTHER = '0000000000000000'
  const OTHER_JOB = '1111111111111111'
  const held = (workRoot: string): void => {
    mkdirSync(leaseDir(workRoot, 0), { recursive: true })
    writeFileSync(join(leaseDir(workRoot, 0), 'owner'), `${OTHER} ${OTHER_JOB} other-runner h 2026-01-01T00:00:00Z\n`)
  }
  /** A remote whose commands run in bash after `prelude` (bash lets a function stand for `[`). */
  const inBash = (dir: string, prelude: string): Remote => {
    const local = new LocalRemote(dir)
    return {
      openExec: (c) => local.openExec(`exec bash --norc --noprofile -c ${shq(prelude + c)}`),
      openSocket: (p) => local.openSocket(p),
      close: () => undefined
    }
  }

  // The other job's release lands right after this job's rename failed on its slot, before the
  // n-th test of the slot that follows (each n a fresh try, until no test of the held slot is
  // left). Before, a release landing between the loop's "it exists" and the "is it a folder"
  // after it was read as something else in the slot's place: exit 5, and prepare_job failed.
  test('a release landing before any test of the slot that follows a failed rename: the slot is taken, never an error', async () => {
    const injected: number[] = []
    for (let n = 1; n <= 10; n++) {
      const dir = tempDir()
      const workRoot = join(dir, 'work')
      held(workRoot)
      const slot = leaseDir(workRoot, 0)
      const [failed, done] = [join(dir, 'rename-failed'), join(dir, 'released')]
      const prelude =
        `mv() { command mv "$@"; s=$?; if test $s -ne 0 && test "$3" = ${shq(slot)}; then : > ${shq(failed)}; fi; return $s; }; n=0; ` +
        `function [ { case " $* " in *" ${slot} "*) if test -e ${shq(failed)} && grep -qs '^${OTHER} ' ${shq(slot)}/owner; then ` +
        `n=$((n + 1)); if test $n -eq ${n}; then rm -rf ${shq(slot)}; : > ${shq(done)}; fi; fi;; esac; builtin [ "$@"; }; `
      const e = env(inBash(dir, prelude))
      // No n-th test came (the slot was judged busy before it): the other job ends after all.
      const progress = e.log.progress
      e.log = {
        ...e.log,
        progress: (m: string) => (progress(m), m.startsWith('waiting') && !existsSync(done) && rmSync(slot, { recursive: true }))
      }
      const got = await provider(workRoot, 30).acquire(job(dir), e)
      expect(got.lease.slot).toBe(0)
      expect(readFileSync(join(slot, 'owner'), 'utf8')).toMatch(new RegExp(`^${OWNER} ${JOB} r `))
      expect(readdirSync(join(workRoot, 'leases'))).toEqual(['slot-0'])
      // positive control: the rename did meet the other job's slot
      expect(existsSync(failed)).toBe(true)
      if (!existsSync(done)) break
      injected.push(n)
    }
    // positive control: the release did land before the first tests (the loop's own, then the judgement's)
    expect(injected).toEqual(expect.arrayContaining([1, 2]))
  }, 60_000)

  // `rm -rf` empties a folder before it removes it, and `mv -T` replaces an empty folder: a lease
  // landing in between held the slot, and the release's last step (removing the folder by name)
  // failed on that lease ("Directory not empty"), failing the other job's cleanup_job.
  test("a lease coming while the release removes the slot's folder: both succeed, the lease after the release", async () => {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    held(workRoot)
    const slot = leaseDir(workRoot, 0)
    const [emptied, go] = [join(dir, 'emptied'), join(dir, 'go')]
    // rm -rf as it goes: the folder's entries first, then the folder by its name
    const prelude =
      `rm() { if test "$1" = -rf && test -d "$2" && test ! -L "$2" && test -e "$2"/owner; then command rm -f "$2"/*; : > ${shq(emptied)}; ` +
      `while test ! -e ${shq(go)}; do sleep 0.02; done; command rmdir "$2"; return; fi; command rm "$@"; }; `
    const releasing = new StaticHostProvider(
      {
        kind: 'static',
        acquireTimeoutSeconds: 30,
        hosts: [{ host: '127.0.0.1', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh', slots: 1 }]
      },
      workRoot
    )
      .release(
        {
          kind: 'static',
          index: 0,
          slot: 0,
          connect: { host: '127.0.0.1', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }
        },
        inBash(dir, prelude),
        OTHER_JOB
      )
      .then(
        () => 'released',
        (x: Error) => x.message
      )
    expect(await waitUntil(() => existsSync(emptied), 10_000, 10)).toBe(true)
    // This job leases the slot while the other's release is under way: its lease waits for the
    // release's lease lock, and lands once the release has ended.
    const leasing = provider(workRoot, 30).acquire(job(dir), env(new LocalRemote(dir)))
    writeFileSync(go, '')
    const got = await leasing
    expect(await releasing).toBe('released')
    expect(got.lease.slot).toBe(0)
    expect(readFileSync(join(slot, 'owner'), 'utf8')).toMatch(new RegExp(`^${OWNER} ${JOB} r `))
    expect(readdirSync(join(workRoot, 'leases'))).toEqual(['slot-0'])
  }, 30_000)

  // A release tests its job in the slot's owner file, then renames the slot away. The same runner's
  // next job may take the slot over in between (a lease that finds its runner's dead job's slot puts
  // its own owner file in place): renamed away whole, that job's lease was removed, and a third
  // runner could then lease the slot beside it. Now the renamed lease is looked at, and put back
  // when it is no longer the releasing job's.
  test("the same runner's next job taking the slot over between a release's test and its rename keeps the slot", async () => {
    const NEXT_JOB = '2222222222222222'
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    held(workRoot)
    const slot = leaseDir(workRoot, 0)
    // The take-over lands right before the release's rename of the slot.
    const prelude =
      `mv() { if test "$1" = -T && test "$2" = ${shq(slot)}; then ` +
      `printf '%s\\n' ${shq(`${OTHER} ${NEXT_JOB} other-runner h 2026-01-01T00:00:01Z`)} > ${shq(slot)}/owner.t && command mv -f ${shq(slot)}/owner.t ${shq(slot)}/owner; fi; command mv "$@"; }; `
    const lease = {
      kind: 'static' as const,
      index: 0,
      slot: 0,
      connect: { host: '127.0.0.1', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }
    }
    await provider(workRoot, 30).release(lease, inBash(dir, prelude), OTHER_JOB)
    expect(readFileSync(join(slot, 'owner'), 'utf8')).toMatch(new RegExp(`^${OTHER} ${NEXT_JOB} `))
    expect(readdirSync(join(workRoot, 'leases'))).toEqual(['slot-0'])
    // Control: without the take-over, the release frees the slot.
    const dir2 = tempDir()
    held(join(dir2, 'work'))
    await provider(join(dir2, 'work'), 30).release(lease, new LocalRemote(dir2), OTHER_JOB)
    expect(readdirSync(join(dir2, 'work', 'leases'))).toEqual([])
  })

  // cleanup_job could not reach the host (releaseUnreached): the release connects on its own, and
  // closes that connection; before, it refused without the caller's.
  test('a release without the caller connection makes its own, and closes it', async () => {
    const dir = tempDir()
    held(join(dir, 'work'))
    const lease = {
      kind: 'static' as const,
      index: 0,
      slot: 0,
      connect: { host: '127.0.0.1', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }
    }
    let closed = 0
    const own = new LocalRemote(dir)
    const close = own.close.bind(own)
    own.close = () => (closed++, close())
    await provider(join(dir, 'work'), 30).release(lease, null, OTHER_JOB, env(own))
    expect({ leases: readdirSync(join(dir, 'work', 'leases')), closed }).toEqual({ leases: [], closed: 1 })
    // Control: one that cannot connect fails with the connection's error.
    const refused = { ...env(own), connect: () => Promise.reject(new Error('connect ECONNREFUSED')) }
    held(join(dir, 'work'))
    await expect(provider(join(dir, 'work'), 30).release(lease, null, OTHER_JOB, refused)).rejects.toThrow('ECONNREFUSED')
  })
})

// A job is root on the host it ran on: it can stall that host's lease calls (a FIFO where a slot's
// owner file is read, a shell start-up that sleeps) or break its logins (host keys, authorized_keys).
// Other runners' jobs must still get the other hosts' slots.
describe('one host a job stalled or broke does not hold the jobs the other hosts can take', () => {
  const HOSTS = ['10.0.0.1', '10.0.0.2', '10.0.0.3']
  /** Hosts on this machine (two unless said), each with a work root of its own (the provider's path, mapped per host). */
  function twoHosts(callMs: number, n = 2, acquireTimeoutSeconds = 30) {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    const roots = HOSTS.slice(0, n).map((_, i) => join(dir, `work-h${i}`))
    const p = new StaticHostProvider(
      {
        kind: 'static',
        acquireTimeoutSeconds,
        hosts: HOSTS.slice(0, n).map((host) => ({ host, port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh', slots: 1 }))
      },
      workRoot,
      callMs
    )
    const locals = roots.map((_, i) => new LocalRemote(join(dir, `h${i}`)))
    /** Host i's remote: the provider's work root is that host's own; `prelude` runs before each command. */
    const remoteOf = (i: number, prelude = ''): Remote => ({
      openExec: (c) => locals[i].openExec(prelude + c.split(workRoot).join(roots[i])),
      openSocket: (s) => locals[i].openSocket(s),
      close: () => undefined
    })
    const e = env(remoteOf(1))
    e.connect = async (c) => remoteOf(HOSTS.indexOf(c.host))
    return { dir, roots, p, e, locals, remoteOf }
  }
  const warnings = (e: { logged: string[] }) => e.logged.filter((l) => l.startsWith('warn:'))

  test("a FIFO at a held slot's owner file: that slot is busy, not a call that never ends", async () => {
    const { dir, roots, p, e, locals } = twoHosts(30_000)
    mkdirSync(leaseDir(roots[0], 0), { recursive: true })
    execFileSync('mkfifo', [join(leaseDir(roots[0], 0), 'owner')])
    const t0 = Date.now()
    const got = await p.acquire(job(dir), e)
    expect(Date.now() - t0).toBeLessThan(10_000)
    expect(got.lease).toMatchObject({ index: 1, slot: 0 })
    expect(warnings(e)).toEqual([])
    // positive control: host 0 was asked (its lease script ran) and its slot holds the FIFO still
    expect(locals[0].commands.some((c) => c.includes('/leases/.new-'))).toBe(true)
    expect(statSync(join(leaseDir(roots[0], 0), 'owner')).isFIFO()).toBe(true)
    expect(readdirSync(join(roots[0], 'leases'))).toEqual(['slot-0'])
  })

  test('a host whose lease call never answers is left after the call bound, and the next host is leased', async () => {
    const { dir, p, e, locals, remoteOf } = twoHosts(1000)
    e.connect = async (c) => (c.host === HOSTS[0] ? remoteOf(0, 'sleep 30; ') : remoteOf(1))
    const t0 = Date.now()
    const got = await p.acquire(job(dir), e)
    expect(got.lease.index).toBe(1)
    expect(Date.now() - t0).toBeLessThan(10_000)
    expect(warnings(e)).toEqual([
      expect.stringMatching(/^warn: host 10\.0\.0\.1:22: lease slot 0 on 10\.0\.0\.1:22: no result after 1 s; trying again later$/)
    ])
    // positive control: host 0 got the lease call
    expect(locals[0].commands.some((c) => c.includes('/leases/.new-'))).toBe(true)
  })

  test('a host whose answer no lease script gives (a forced command) is left; alone, it fails at once with that answer', async () => {
    const { dir, p, e, remoteOf } = twoHosts(30_000)
    // A forced command in authorized_keys: whatever is asked, the same unframed reply.
    const forced = (i: number): Remote => ({ ...remoteOf(i), openExec: (c) => remoteOf(i).openExec(`echo welcome; exit 0; ${c}`) })
    e.connect = async (c) => (c.host === HOSTS[0] ? forced(0) : remoteOf(1))
    const got = await p.acquire(job(dir), e)
    expect(got.lease.index).toBe(1)
    expect(warnings(e)).toEqual([expect.stringMatching(/^warn: host 10\.0\.0\.1:22: lease slot 0 .*; not tried again for this job$/)])
    // alone: at once, with the answer's own error, not a wait for acquireTimeoutSeconds
    const only = twoHosts(30_000)
    only.e.connect = async () => forced(0)
    const t0 = Date.now()
    const err = (await provider(join(only.dir, 'work'))
      .acquire(job(only.dir), only.e)
      .catch((x: unknown) => x)) as Error
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(err).toBeInstanceOf(UnexpectedAnswer)
    expect(only.e.logged.filter((l) => l.startsWith('waiting'))).toEqual([])
  })

  test('a cancel while a lease call hangs ends the acquire within seconds, its slot release bounded too', async () => {
    const { dir, p, e, locals, remoteOf } = twoHosts(30_000)
    const cancel = new AbortController()
    e.signal = cancel.signal
    e.connect = async () => remoteOf(0, 'sleep 30; ')
    const acquiring = p.acquire(job(dir), e)
    // The cancel comes once the lease call is under way (it is recorded when it starts).
    while (!locals[0].commands.some((c) => c.includes('/leases/.new-'))) await new Promise((r) => setTimeout(r, 20))
    const t0 = Date.now()
    cancel.abort(new Error('cancelled by the runner'))
    await expect(acquiring).rejects.toThrow('cancelled by the runner')
    expect(Date.now() - t0).toBeLessThan(6000)
  })

  test("a host that refuses the login (its host key changed) is left for this job, not every job's failure", async () => {
    const { dir, p, e, remoteOf } = twoHosts(30_000)
    let tries = 0
    e.connect = async (c) => {
      if (c.host !== HOSTS[0]) return remoteOf(1)
      tries++
      throw new TransportError('host key mismatch for 10.0.0.1:22', 'hostkey')
    }
    const got = await p.acquire(job(dir), e)
    expect(got.lease.index).toBe(1)
    expect(tries).toBe(1)
    expect(warnings(e)).toEqual(['warn: host 10.0.0.1:22: host key mismatch for 10.0.0.1:22; not tried again for this job'])
    // control: with that host the only one, the job fails at once with its own error and kind
    const only = twoHosts(30_000)
    only.e.connect = async () => {
      throw new TransportError('host key mismatch for 10.0.0.1:22', 'hostkey')
    }
    const err = (await provider(join(only.dir, 'work'))
      .acquire(job(only.dir), only.e)
      .catch((x: unknown) => x)) as TransportError
    expect([err.message, err.kind]).toEqual(['host key mismatch for 10.0.0.1:22', 'hostkey'])
  })

  test('a host whose lease script refuses (its work root cannot be made) is left; when every host refuses, the job fails at once naming each', async () => {
    const { dir, roots, p, e } = twoHosts(30_000)
    writeFileSync(roots[0], 'not a folder')
    const got = await p.acquire(job(dir), e)
    expect(got.lease.index).toBe(1)
    expect(warnings(e)).toEqual([
      expect.stringMatching(/^warn: host 10\.0\.0\.1:22: lease slot 0 on 10\.0\.0\.1:22 failed \(exit code 3\): .*cannot create/)
    ])
    // both refuse: at once, each host named, no wait
    const both = twoHosts(30_000)
    for (const r of both.roots) writeFileSync(r, 'not a folder')
    const t0 = Date.now()
    const err = (await both.p.acquire(job(both.dir), both.e).catch((x: unknown) => x)) as Error
    expect(Date.now() - t0).toBeLessThan(5000)
    expect(err.message).toMatch(
      /^no host can be leased: 10\.0\.0\.1:22: lease slot 0 .*exit code 3.*; 10\.0\.0\.2:22: lease slot 0 .*exit code 3/
    )
    expect(both.e.logged.filter((l) => l.startsWith('waiting'))).toEqual([])
  })

  test("a host that does not answer its connect holds each acquire for the grace, not the connect's own timeout", async () => {
    const { dir, p, e, locals, remoteOf } = twoHosts(30_000)
    // Packets dropped: the connect fails only at timeouts.connectSeconds (8 s here).
    let timer: NodeJS.Timeout | undefined
    e.connect = (c) =>
      c.host === HOSTS[0]
        ? new Promise<Remote>((_, reject) => (timer = setTimeout(() => reject(new TransportError('timed out', 'timeout')), 8000)))
        : Promise.resolve(remoteOf(1))
    const t0 = Date.now()
    const got = await p.acquire(job(dir), e)
    const took = Date.now() - t0
    clearTimeout(timer)
    expect(got.lease.index).toBe(1)
    expect(took).toBeLessThan(CONNECT_GRACE_MS + 3000)
    // positive control: host 0 came first in the list, and the acquire waited for it the grace
    expect(took).toBeGreaterThanOrEqual(CONNECT_GRACE_MS - 50)
    expect(locals[1].commands.filter((c) => c.includes('/leases/.new-'))).toHaveLength(1)
  })

  test('list order still decides between hosts that connect within the grace; a connection that comes after the lease is closed', async () => {
    const { dir, p, e, remoteOf } = twoHosts(30_000)
    const closed: string[] = []
    e.discard = async (c) => void closed.push(c.host)
    const after = (ms: number, r: Remote): Promise<Remote> => new Promise((resolve) => setTimeout(() => resolve(r), ms))
    e.connect = (c) => (c.host === HOSTS[0] ? after(300, remoteOf(0)) : Promise.resolve(remoteOf(1)))
    expect((await p.acquire(job(dir), e)).lease.index).toBe(0)
    const late = twoHosts(30_000)
    late.e.discard = async (c) => void closed.push(c.host)
    late.e.connect = (c) => (c.host === HOSTS[0] ? after(CONNECT_GRACE_MS + 1000, late.remoteOf(0)) : Promise.resolve(late.remoteOf(1)))
    expect((await late.p.acquire(job(late.dir), late.e)).lease.index).toBe(1)
    expect(closed).toEqual([])
    expect(await waitUntil(() => closed.length > 0, 5000)).toBe(true)
    expect(closed).toEqual([HOSTS[0]])
    // positive control: it sent no lease call on it
    expect(late.locals[0].commands).toEqual([])
  })

  test('a host whose lease call stalled is asked after the others on the next round', async () => {
    const { dir, roots, p, e, locals, remoteOf } = twoHosts(1000)
    e.connect = async (c) => (c.host === HOSTS[0] ? remoteOf(0, 'sleep 30; ') : remoteOf(1))
    // Host 1's only slot is another runner's until the first round has ended (its note is the event).
    mkdirSync(leaseDir(roots[1], 0), { recursive: true })
    writeFileSync(join(leaseDir(roots[1], 0), 'owner'), '0000000000000000 1111111111111111 other-runner h 2026-01-01T00:00:00Z\n')
    const progress = e.log.progress
    e.log = {
      ...e.log,
      progress: (m: string) => {
        progress(m)
        if (m.startsWith('waiting')) rmSync(leaseDir(roots[1], 0), { recursive: true })
      }
    }
    const got = await p.acquire(job(dir), e)
    expect(got.lease.index).toBe(1)
    expect(locals[0].commands.filter((c) => c.includes('/leases/.new-'))).toHaveLength(1)
    // positive control: host 1 was asked in both rounds (busy, then leased)
    expect(locals[1].commands.filter((c) => c.includes('/leases/.new-'))).toHaveLength(2)
  })

  test("a round that outlives the acquire's deadline sends no more lease calls", async () => {
    const { dir, p, e, locals, remoteOf } = twoHosts(1000, 3, 1)
    e.connect = async (c) => remoteOf(HOSTS.indexOf(c.host), 'sleep 30; ')
    const t0 = Date.now()
    await expect(p.acquire(job(dir), e)).rejects.toThrow(
      /^no free host after 1 s: unreachable or refused: 10\.0\.0\.1:22: .*; not asked before the deadline: 10\.0\.0\.2:22, 10\.0\.0\.3:22$/
    )
    expect(Date.now() - t0).toBeLessThan(4000)
    const calls = locals.map((l) => l.commands.filter((c) => c.includes('/leases/.new-')).length)
    expect(calls).toEqual([1, 0, 0])
  })

  test('acquireTimeoutSeconds 0 asks every host once, and waits a slow connect out: a busy first host, then a free second; a connect of 1.5 s', async () => {
    const { dir, roots, p, e } = twoHosts(30_000, 2, 0)
    mkdirSync(leaseDir(roots[0], 0), { recursive: true })
    writeFileSync(join(leaseDir(roots[0], 0), 'owner'), '0000000000000000 1111111111111111 other-runner h 2026-01-01T00:00:00Z\n')
    expect((await p.acquire(job(dir), e)).lease.index).toBe(1)
    const slow = twoHosts(30_000, 2, 0)
    slow.e.connect = (c) => new Promise((resolve) => setTimeout(() => resolve(slow.remoteOf(HOSTS.indexOf(c.host))), 1500))
    expect((await slow.p.acquire(job(slow.dir), slow.e)).lease.index).toBe(0)
  })
})

// A host a job was root on answers the lease and release scripts as it likes: the slots it names
// as released are only ones that can exist, and each is said once.
// A runner's next job takes its dead job's slot over (stale) while reap (or the dead job's own late
// release) frees that slot and another runner leases it: the takeover then wrote its owner over
// the other runner's lease, and two jobs held one slot of a `slots: 1` host. Every check-then-act
// on the slots now holds the host's lease lock.
describe('a stale lease taken over while the slot is freed and leased by another runner', () => {
  test.each([
    ['the lease lock keeps them apart: the takeover holds the slot, the other runner is told busy', true],
    ['control: with a flock that locks nothing, the other runner gets the slot too (the race, shown)', false]
  ])(
    '%s',
    async (_what, withFlock) => {
      const dir = tempDir()
      const workRoot = join(dir, 'work')
      const slot = leaseDir(workRoot, 0)
      const DEAD = '2222222222222222'
      mkdirSync(slot, { recursive: true })
      writeFileSync(join(slot, 'owner'), `${OWNER} ${DEAD} r h/k 2026-01-01T00:00:00Z - -\n`)
      const S_OWNER = ownerId('s', '/home/s/_work')
      const S_JOB = '3333333333333333'
      writeFileSync(join(dir, 'free.sh'), freeJobSlotScript(workRoot, shq(slot), DEAD))
      writeFileSync(
        join(dir, 'lease3.sh'),
        leaseScript(workRoot, [slot], S_OWNER, S_JOB, `${S_OWNER} ${S_JOB} s h/k2 2026-01-01T00:00:00Z - -`)
      )
      // At the takeover's write of its owner: reap's free of the dead job, then the other runner's
      // lease, in a session of their own (the channel's close ends this one's process group), without
      // the lock's descriptor (a process holding it holds the lock).
      const both = `sh ${dir}/free.sh; sh ${dir}/lease3.sh > ${dir}/lease3.out 2>&1; : > ${dir}/done`
      const mv = `if [ "$1" = -f ]; then setsid sh -c ${shq(both)} < /dev/null > /dev/null 2>&1 9>&- & sleep 1; fi; exec /usr/bin/mv "$@"`
      // The control's flock locks nothing (it answers at once): the scripts run as without the lock.
      const stubs: Record<string, string> = withFlock ? { mv } : { mv, flock: 'exit 0' }
      const got = await provider(workRoot, 30).acquire(job(dir), env(new LocalRemote(dir, {}, stubs)))
      expect(got.lease.slot).toBe(0)
      expect(await waitUntil(() => existsSync(`${dir}/done`), 20_000, 20)).toBe(true)
      const other = readFileSync(`${dir}/lease3.out`, 'utf8')
      if (withFlock) {
        expect(other).toContain('busy')
        expect(readFileSync(join(slot, 'owner'), 'utf8')).toMatch(new RegExp(`^${OWNER} ${JOB} `))
      } else {
        // The race this guards against, shown: the other runner's lease was new, and the takeover wrote over it.
        expect(other).toContain('new')
      }
    },
    30_000
  )
})

describe('the slots a host names as released', () => {
  /** A host that answers every command with these records (inside the call's frame, as its shell would). */
  const answering = (dir: string, records: string[]): Remote => {
    const local = new LocalRemote(dir)
    const reply = records.map((r) => `${r}\\0`).join('')
    return {
      openExec: (c) => local.openExec(c.replace(/\( [\s\S]*\n\)/, () => `( printf ${shq(reply)}\n)`)),
      openSocket: (p) => local.openSocket(p),
      close: () => undefined
    }
  }
  const releasedLines = (e: { logged: string[] }): string[] => e.logged.filter((l) => l.startsWith("released this runner's stale lease"))

  test('one slot named 5,000 times is said once (before, a line each in the step log)', async () => {
    const dir = tempDir()
    const e = env(answering(dir, [...Array<string>(5000).fill('released-slot-3'), 'slot-0', 'new']))
    await provider(join(dir, 'work')).acquire(job(dir), e)
    expect(releasedLines(e)).toEqual(["released this runner's stale lease of slot 3 on 127.0.0.1:22"])
    const released = await provider(join(dir, 'work')).releaseOwned(answering(dir, Array<string>(5000).fill('released-slot-3')), OWNER)
    expect(released).toEqual(['slot-3'])
  })

  test('a slot no host can have is refused; the last one a host can have is not (control)', async () => {
    const dir = tempDir()
    const e = env(answering(dir, ['released-slot-64', 'slot-0', 'new']))
    await expect(provider(join(dir, 'work')).acquire(job(dir), e)).rejects.toThrow(/the host named slot 64, and a host has at most 64/)
    await expect(provider(join(dir, 'work')).releaseOwned(answering(dir, ['released-slot-007']), OWNER)).rejects.toThrow(UnexpectedAnswer)
    const ok = env(answering(dir, ['released-slot-63', 'released-slot-0', 'slot-0', 'new']))
    await provider(join(dir, 'work')).acquire(job(dir), ok)
    expect(releasedLines(ok)).toHaveLength(2)
  })

  test('a slot the host names that was not asked for (or none) is no lease; the slot asked for is (control)', async () => {
    const dir = tempDir()
    for (const answer of [['slot-5', 'new'], ['new'], ['slot-0', 'slot-0', 'busy']]) {
      const e = env(answering(dir, answer))
      await expect(provider(join(dir, 'work')).acquire(job(dir), e)).rejects.toThrow(UnexpectedAnswer)
    }
    expect((await provider(join(dir, 'work')).acquire(job(dir), env(answering(dir, ['slot-0', 'stale'])))).lease.slot).toBe(0)
  })
})

// One call a host a round, for all its slots: a host with eight busy slots cost eight round trips
// (each holding the host's lease lock) every round of every waiting job.
describe("a host's slots are asked in one call", () => {
  const other = '0000000000000000 1111111111111111 other-runner h 2026-01-01T00:00:00Z\n'
  test('four busy slots: one lease call for the round; a free third slot is taken in that call (control)', async () => {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    for (const n of [0, 1, 2, 3]) {
      mkdirSync(leaseDir(workRoot, n), { recursive: true })
      writeFileSync(join(leaseDir(workRoot, n), 'owner'), other)
    }
    const local = new LocalRemote(dir)
    const cancel = new AbortController()
    const e = env(local, cancel.signal)
    // The first round's end (its note) cancels the wait: what that round sent is what is counted.
    const progress = e.log.progress
    e.log = { ...e.log, progress: (m: string) => (progress(m), m.startsWith('waiting') && cancel.abort(new Error('counted'))) }
    await expect(provider(workRoot, 600, 4).acquire(job(dir), e)).rejects.toThrow('counted')
    const calls = local.commands.filter((c) => c.includes('/leases/.new-'))
    expect(calls).toHaveLength(1)
    expect([0, 1, 2, 3].every((n) => calls[0].includes(`slot-${n}`))).toBe(true)
    rmSync(leaseDir(workRoot, 2), { recursive: true })
    const free = new LocalRemote(dir)
    expect((await provider(workRoot, 600, 4).acquire(job(dir), env(free))).lease.slot).toBe(2)
    expect(free.commands.filter((c) => c.includes('/leases/.new-'))).toHaveLength(1)
  })
})

// The owner line is the runner's words (its name among them); dash's echo read backslashes in it:
// `\c` ended the line, and reap could then never judge the slot (fewer than its fields).
test("a runner name with a backslash is written into the slot's owner line as it is", async () => {
  const dir = tempDir()
  const workRoot = join(dir, 'work')
  const mark = `${OWNER} ${JOB} a\\cb\\nc h/k 2026-01-01T00:00:00Z - -`
  const ch = await new LocalRemote(dir).openExec(leaseScript(workRoot, [leaseDir(workRoot, 0)], OWNER, JOB, mark))
  ch.stdout.resume()
  ch.stderr.resume()
  expect(await ch.done).toEqual({ code: 0, signal: null })
  // Control: the line has all seven fields, the name among them unchanged.
  expect(readFileSync(join(leaseDir(workRoot, 0), 'owner'), 'utf8')).toBe(`${mark}\n`)
})

// A lease call the hook gave up on (past its bound) may run on, on the host, and sshd does not end
// it. One that finished late took its slot and released this runner's other leases, among them
// the lease its job (or the runner's next job) had taken since: that slot then looked free to
// every runner, two jobs on one slot. A late call now gives up without acting.
describe('a lease call that runs past the time it may act (a stalled file system) acts no more', () => {
  const NEXT = '0123456789abcdef'
  /** A work root where this runner's next job holds slot 1; the lease call for slot 0 runs with `stubs`. */
  async function leaseLate(stubs: Record<string, string>) {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    mkdirSync(leaseDir(workRoot, 1), { recursive: true })
    writeFileSync(join(leaseDir(workRoot, 1), 'owner'), `${OWNER} ${NEXT} r h/k 2026-01-01T00:00:00Z - -\n`)
    const mark = `${OWNER} ${JOB} r h/k 2026-01-01T00:00:00Z - -`
    const { ask } = await import('../../src/remote/answer')
    const call = ask(new LocalRemote(dir, {}, stubs), leaseScript(workRoot, [leaseDir(workRoot, 0)], OWNER, JOB, mark, 2), {
      label: 'lease slot 0',
      timeoutMs: 20_000
    })
    const out = await call.then(
      (r) => ({ records: r, error: '' }),
      (e: Error) => ({ records: [] as string[], error: e.message })
    )
    const next = existsSync(join(leaseDir(workRoot, 1), 'owner')) ? readFileSync(join(leaseDir(workRoot, 1), 'owner'), 'utf8') : null
    return { ...out, slots: readdirSync(join(workRoot, 'leases')).sort(), next }
  }
  const slow = (match: string, tool: string, marker: string): string =>
    `case "$*" in *${match}*) [ -e ${shq(marker)} ] || { : > ${shq(marker)}; sleep 3; } ;; esac; exec /bin/${tool} "$@"`

  test('stalled in its take (the rename): the slot it took is given up, the next lease of this runner stays', async () => {
    const r = await leaseLate({ mv: slow('/leases/.new-', 'mv', join(tempDir(), 'once')) })
    expect(r.error).toMatch(/exit code 8.*the lease call ran past its 2 s and gave up/s)
    expect(r.slots).toEqual(['slot-1'])
    expect(r.next).toContain(NEXT)
  })

  // An NTP step back during the stall, or a job root on the host setting its clock back: counted
  // on the wall clock, the call was never late, and acted.
  test('stalled in its take while the wall clock is set back: still given up (it counts time since boot)', async () => {
    const marker = join(tempDir(), 'once')
    const clock = join(tempDir(), 'clock')
    const r = await leaseLate({
      mv: slow('/leases/.new-', 'mv', marker),
      date: `[ -e ${shq(clock)} ] && { echo 1000000000; exit 0; }; : > ${shq(clock)}; echo 2000000000`
    })
    expect(r.error).toMatch(/exit code 8.*the lease call ran past its 2 s and gave up/s)
    expect(r.slots).toEqual(['slot-1'])
    expect(r.next).toContain(NEXT)
  })

  test('stalled before it (making its lease): it takes nothing', async () => {
    const r = await leaseLate({ mkdir: slow('/leases/.new-', 'mkdir', join(tempDir(), 'once')) })
    expect(r.error).toMatch(/exit code 8.*ran past its 2 s/s)
    expect(r.slots).toEqual(['slot-1'])
  })

  test("control: a call in time takes the slot and releases this runner's other lease, as a dead job's", async () => {
    const r = await leaseLate({})
    expect(r).toMatchObject({ error: '', records: ['released-slot-1', 'slot-0', 'new'], slots: ['slot-0'] })
  })
})

describe('the deadline and a late lease call, as this session left them', () => {
  test('acquireTimeoutSeconds 0 is one try: a free slot is leased (before, no lease call went out at all); a busy one fails after that call (control)', async () => {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    const local = new LocalRemote(dir)
    expect((await provider(workRoot, 0).acquire(job(dir), env(local))).lease.slot).toBe(0)
    expect(local.commands.filter((c) => c.includes('/leases/.new-'))).toHaveLength(1)
    const busy = tempDir()
    const busyRoot = join(busy, 'work')
    mkdirSync(leaseDir(busyRoot, 0), { recursive: true })
    writeFileSync(join(leaseDir(busyRoot, 0), 'owner'), '0000000000000000 1111111111111111 other-runner h 2026-01-01T00:00:00Z\n')
    const other = new LocalRemote(busy)
    await expect(provider(busyRoot, 0).acquire(job(busy), env(other))).rejects.toThrow('no free host after 0 s')
    expect(other.commands.filter((c) => c.includes('/leases/.new-'))).toHaveLength(1)
  })

  test('a lease call that stalled, then gave up as late (exit 8), is tried again, not the host given up for the job', async () => {
    const dir = tempDir()
    const workRoot = join(dir, 'work')
    const once = join(tempDir(), 'once')
    const mkdir = `case "$*" in *.new-*) [ -e ${shq(once)} ] || { : > ${shq(once)}; sleep 3; } ;; esac; exec /bin/mkdir "$@"`
    const p = new StaticHostProvider(
      {
        kind: 'static',
        acquireTimeoutSeconds: 60,
        hosts: [{ host: '127.0.0.1', port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh', slots: 1 }]
      },
      workRoot,
      5000
    )
    const e = env(new LocalRemote(dir, {}, { mkdir }))
    const got = await p.acquire(job(dir), e)
    expect(got.lease.slot).toBe(0)
    expect(e.logged.filter((l) => l.startsWith('warn:'))).toEqual([
      expect.stringMatching(/^warn: host 127\.0\.0\.1:22: .*ran past its 2 s and gave up.*; trying again later$/s)
    ])
  })
})
