// A job that cannot connect to a pool member because of something on the runner's side (the job's
// agent could not be started) fails at once: every member would fail alike, and waiting for
// provider.waitTimeoutSeconds does not mend it. A member's own failure (unreachable) is still that
// member's: it is warned about and the job goes on waiting.
import { Ec2PoolProvider } from '../../src/providers/ec2-pool'
import type { Member } from '../../src/providers/pool-plan'
import type { ProviderEnv } from '../../src/providers/provider'
import { ConfigSchema, type Ec2PoolConfig } from '../../src/config'
import { HookError, TransportError } from '../../src/errors'
import { PassThrough } from 'node:stream'
import { writeFileSync } from 'node:fs'
import { recordingFleetGate } from '../helpers/fleet-gate'
import { join } from 'node:path'
import { createLog } from '../../src/log'
import { runnerCommands } from './_runner-commands'
import { cleanupTempDirs, tempDir } from './_helpers'
import { runnerFacts } from '../helpers/runner-facts'
import { thisRunnerHost } from '../../src/runner-host'
import { scrubMachine } from '../../src/docker/machine-scrub'
import type { Remote } from '../../src/remote/remote'
import { readyMember } from './_pool-member'
import { bootMs } from '../../src/mono-clock'

afterAll(cleanupTempDirs)

const cfg = ConfigSchema.parse({
  provider: {
    kind: 'ec2-pool',
    region: 'eu-west-1',
    autoScalingGroup: 'rch-pool',
    identityFile: '/k',
    waitTimeoutSeconds: 2,
    reuse: { maxJobsPerVm: 20 }
  },
  remote: { workRoot: '~/rch' }
}).provider as Ec2PoolConfig
// For "fails at once": a wait long enough that no loaded machine's delay could pass for it (the
// bound is a third of it, the test's own timeout twice it).
const longWait: Ec2PoolConfig = { ...cfg, waitTimeoutSeconds: 60 }
const AT_ONCE_MS = 20_000

const ready: Member = readyMember()

/** A grant whose Docker check failed: no version, and Docker's own words. */
const DOCKER_DENIED = [
  'granted',
  '1',
  '0',
  '10',
  '-',
  '/home/ec2-user/rch',
  'permission denied while trying to connect to the Docker daemon socket'
]

/**
 * A member's SSH session answering each framed command with `records` (or what they give for it;
 * a list answers the lease's renewals `renewed`, as a member does while the lease is held);
 * commands seen go to `seen`.
 */
function answering(records: string[] | ((command: string) => string[]), seen?: string[]) {
  return {
    openExec: async (command: string) => {
      seen?.push(command)
      const nonce = /RCH-BEGIN-([0-9a-f]+)/.exec(command)?.[1]
      const out = typeof records === 'function' ? records(command) : /renewed/.test(command) ? ['renewed'] : records
      const stdout = new PassThrough()
      const stderr = new PassThrough()
      const stdin = new PassThrough()
      stdin.resume()
      stdout.end(nonce ? `RCH-BEGIN-${nonce}\0${out.map((r) => `${r}\0`).join('')}RCH-END-${nonce}\0` : '')
      stderr.end()
      return { stdin, stdout, stderr, done: new Promise((r) => setImmediate(() => r({ code: 0, signal: null }))) }
    },
    openSocket: () => Promise.reject(new Error('no sockets')),
    close: () => undefined
  }
}

/** A command that prints nothing and ends with `code` (or is ended by `signal`), `err` on its stderr. */
function ending(code: number | null, signal: string | null, err = '') {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const stdin = new PassThrough()
  stdin.resume()
  stdout.end('')
  stderr.end(err)
  return { stdin, stdout, stderr, done: new Promise((r) => setImmediate(() => r({ code, signal }))) }
}

/** The provider with EC2 stood in for: one ready member, no scale-out; `connect` fails as given. */
function harness(fail: () => Error, localDir = '/nonexistent', config = cfg) {
  const p = new Ec2PoolProvider(config, '~/rch')
  const fake = p as unknown as {
    members(env: unknown, ids?: string[]): Promise<Member[]>
    grow(): Promise<{ cap: null }>
    connectInfo(m: Member): unknown
  }
  fake.members = async () => [ready]
  fake.grow = async () => ({ cap: null })
  fake.connectInfo = () => ({ host: '127.0.0.1', port: 22, user: 'ec2-user', identityFile: '/k', knownHostsFile: '/kh' })
  // Scale-in protection calls, recorded (`on` per call) and answered with `protectAnswer` (a list: one
  // answer per call, the last one kept).
  const protects: boolean[] = []
  let protectAnswer: unknown = null
  ;(p as unknown as { protect(id: string, on: boolean): Promise<unknown> }).protect = async (_id, on) => {
    protects.push(on)
    return Array.isArray(protectAnswer) ? (protectAnswer.length > 1 ? protectAnswer.shift() : protectAnswer[0]) : protectAnswer
  }
  const warned: string[] = []
  let connects = 0
  const env = {
    fleet: recordingFleetGate(),
    scrub: (remote: Remote, machine: string) => scrubMachine(remote, '~/rch', machine).then(() => undefined),
    log: { progress: () => undefined, warn: (m: string) => void warned.push(m), debug: () => undefined },
    signal: new AbortController().signal,
    runner: runnerFacts(),
    connect: async () => {
      connects++
      throw fail()
    },
    discard: async () => undefined
  } as unknown as ProviderEnv
  const job = { jobId: 'fedcba9876543210', owner: '0123456789abcdef', localDir }
  return {
    acquire: () => p.acquire(job, env),
    warned,
    connects: () => connects,
    env,
    provider: p,
    protects,
    answerProtect: (a: unknown) => void (protectAnswer = a)
  }
}

test('the agent could not be started: the job fails at once with that reason, no member is blamed', async () => {
  const h = harness(() => new HookError("could not start the job's agent: spawn /nonexistent/node ENOENT"), undefined, longWait)
  const t0 = Date.now()
  await expect(h.acquire()).rejects.toThrow("could not start the job's agent: spawn /nonexistent/node ENOENT")
  expect(Date.now() - t0).toBeLessThan(AT_ONCE_MS)
  expect(h.connects()).toBe(1)
  expect(h.warned).toEqual([])
})

test('positive control: an unreachable member is warned about and the job waits for another, up to waitTimeoutSeconds', async () => {
  const h = harness(() => new TransportError('cannot connect to ec2-user@127.0.0.1:22: connect ECONNREFUSED', 'network'))
  const t0 = Date.now()
  await expect(h.acquire()).rejects.toThrow('no member free after 2 s (provider.waitTimeoutSeconds)')
  expect(Date.now() - t0).toBeGreaterThanOrEqual(2000)
  expect(h.warned[0]).toMatch(/^pool member i-a: cannot connect .*ECONNREFUSED; trying the others$/)
  // tried again after a pause (1 s, then 2 s: past the 2 s wait), and said once
  expect(h.connects()).toBe(2)
  expect(h.warned).toHaveLength(1)
})

test('a member that does not answer yet (started from stopped: running in EC2 before its sshd listens) is tried again and leased', async () => {
  const h = harness(() => new Error('unused'))
  const granting = answering(DOCKER_DENIED)
  let connects = 0
  h.env.connect = async () => {
    if (++connects === 1) throw new TransportError('cannot connect to ec2-user@127.0.0.1:22: connect ECONNREFUSED', 'network')
    return granting as never
  }
  const leased = { kind: 'ec2-pool', instanceId: 'i-a', connect: { host: '127.0.0.1', port: 22 } }
  ;(h.provider as unknown as { usable(): Promise<unknown> }).usable = async () => leased
  const got = await h.acquire()
  expect(got.lease).toBe(leased)
  expect(connects).toBe(2)
  expect(h.warned).toEqual([expect.stringMatching(/^pool member i-a: cannot connect .*ECONNREFUSED; trying the others$/)])
})

test("a lease call ended by a signal (a releasing job's scrub of the SSH user's processes) is tried again, and the member leased", async () => {
  const h = harness(() => new Error('unused'))
  const granting = answering(DOCKER_DENIED)
  let calls = 0
  const killedOnce = {
    ...granting,
    openExec: async (command: string) => {
      if (++calls > 1) return granting.openExec(command)
      return ending(null, 'KILL')
    }
  }
  h.env.connect = async () => killedOnce as never
  const leased = { kind: 'ec2-pool', instanceId: 'i-a', connect: { host: '127.0.0.1', port: 22 } }
  ;(h.provider as unknown as { usable(): Promise<unknown> }).usable = async () => leased
  const got = await h.acquire()
  expect(got.lease).toBe(leased)
  expect(calls).toBe(2)
  expect(h.warned).toEqual([expect.stringMatching(/^pool member i-a: lease i-a failed \(killed by signal KILL\); trying the others$/)])
})

test('a member whose every lease call is ended by a signal (a job root there ending waiters on purpose) is tried four times, then no more', async () => {
  const h = harness(() => new Error('unused'), '/nonexistent', { ...cfg, waitTimeoutSeconds: 12 })
  let calls = 0
  const killing = {
    openExec: async () => {
      calls++
      return ending(null, 'KILL')
    },
    openSocket: () => Promise.reject(new Error('no sockets')),
    close: () => undefined
  }
  h.env.connect = async () => killing as never
  await expect(h.acquire()).rejects.toThrow('no member free after 12 s')
  // Tried again after 1, 2 and 4 s; the fourth killed call drops it for the job.
  expect(calls).toBe(4)
}, 30_000)

describe('what a member failed this job with is named, not "no member free"', () => {
  test('the key file (provider.identityFile, the same for every member) cannot be used: fails at once naming it', async () => {
    const h = harness(
      () => new TransportError('cannot use the SSH key /k: Cannot parse privateKey: Unsupported key format', 'keyfile'),
      undefined,
      longWait
    )
    const t0 = Date.now()
    const err = (await h.acquire().catch((e: unknown) => e)) as Error
    expect(Date.now() - t0).toBeLessThan(AT_ONCE_MS)
    expect(err.message).toContain('cannot use the SSH key /k')
    expect(h.connects()).toBe(1)
  })

  test('a refused login on every member: the timeout names it', async () => {
    const h = harness(
      () => new TransportError('cannot connect to ec2-user@127.0.0.1:22: All configured authentication methods failed', 'auth')
    )
    const err = (await h.acquire().catch((e: unknown) => e)) as Error
    expect(err.message).toContain('no member free after 2 s (provider.waitTimeoutSeconds)')
    expect(err.message).toContain('i-a: cannot connect to ec2-user@127.0.0.1:22: All configured authentication methods failed')
    // a refused login does not mend by waiting: the member is not tried again
    expect(h.connects()).toBe(1)
  })

  test("the lease script's own failure on every member (remote.workRoot not writable): the timeout names it", async () => {
    const h = harness(() => new Error('unused'))
    const failing = {
      openExec: async () => {
        return ending(3, null, 'mkdir: cannot create directory /home/ec2-user/rch: Read-only file system\n')
      },
      openSocket: () => Promise.reject(new Error('no sockets')),
      close: () => undefined
    }
    h.env.connect = async () => failing as never
    const err = (await h.acquire().catch((e: unknown) => e)) as Error
    expect(err.message).toContain('no member free after 2 s')
    expect(err.message).toContain(
      'i-a: lease i-a failed (exit code 3): mkdir: cannot create directory /home/ec2-user/rch: Read-only file system'
    )
  })
})

test('a member replaced on grant (its Docker does not answer): the timeout says which and why', async () => {
  const h = harness(() => new Error('unused'))
  const p = h.provider as unknown as { recycle(): Promise<void> }
  const recycled: string[] = []
  p.recycle = async (...a: unknown[]) => void recycled.push(String(a[2]))
  h.env.connect = async () => answering(DOCKER_DENIED) as never
  const err = (await h.acquire().catch((e: unknown) => e)) as Error
  expect(recycled).toEqual(['Docker does not answer: permission denied while trying to connect to the Docker daemon socket'])
  expect(err.message).toContain('failed for this job: i-a: replaced: Docker does not answer: permission denied while trying')
})

test("Docker's words on a member (a job before had root there) reach the step log as text, never as a command", async () => {
  const h = harness(() => new Error('unused'))
  const p = h.provider as unknown as { give(): Promise<never>; tag(): Promise<void> }
  // The replacement itself is not what this test is about: the member is not given back.
  p.give = async () => Promise.reject(new Error('not held'))
  p.tag = async () => undefined
  const out: string[] = []
  h.env.log = createLog({ file: join(tempDir(), 'logs', 'hook.log'), level: 'info', debugToStepLog: false, out: (l) => void out.push(l) })
  h.env.connect = async () => answering([...DOCKER_DENIED.slice(0, -1), 'x ##[stop-commands]pwned']) as never
  await h.acquire().catch(() => undefined)
  // control: the words were printed, on the hook's progress line
  expect(out).toContain('[remote-hooks] i-a is replaced: Docker does not answer: x ## [stop-commands]pwned')
  // the job's own ::add-mask:: after it still counts
  expect(runnerCommands([...out, '::add-mask::job-token'])).toContain('add-mask:job-token')
})

describe('members whose Docker fails alike (the pool, not one member)', () => {
  /** Members i-a and i-b that grant, with Docker failing on each as `said` gives. */
  function twoGranting(said: (id: string) => string, config = cfg) {
    const h = harness(() => new Error('unused'), undefined, config)
    const p = h.provider as unknown as { recycle(): Promise<void>; members(): Promise<Member[]>; connectInfo(m: Member): unknown }
    p.members = async () => [ready, { ...ready, id: 'i-b' }]
    let target = ''
    p.connectInfo = (m: Member) => (
      (target = m.id),
      { host: '127.0.0.1', port: 22, user: 'ec2-user', identityFile: '/k', knownHostsFile: '/kh' }
    )
    const recycled: string[] = []
    p.recycle = async (...a: unknown[]) => void recycled.push(`${(a[1] as { instanceId: string }).instanceId}: ${String(a[2])}`)
    h.env.connect = async () => {
      const id = target
      return answering(['granted', '1', '0', '10', '-', '/home/ec2-user/rch', said(id)]) as never
    }
    return { ...h, recycled }
  }

  test('two members failing the Docker check alike: both replaced, and the job stops at once naming what Docker said', async () => {
    const h = twoGranting(() => 'sh: 1: docker: not found', longWait)
    const t0 = Date.now()
    const err = (await h.acquire().catch((e: unknown) => e)) as Error
    expect(Date.now() - t0).toBeLessThan(AT_ONCE_MS)
    expect(err.message).toMatch(
      /^pool rch-pool: members i-[ab] and i-[ab] both failed the Docker check alike \(Docker does not answer: sh: 1: docker: not found\)/
    )
    expect(h.recycled.sort()).toEqual([
      'i-a: Docker does not answer: sh: 1: docker: not found',
      'i-b: Docker does not answer: sh: 1: docker: not found'
    ])
  })

  test('positive control: failing differently (one member a job broke), the job waits on as before', async () => {
    const h = twoGranting((id) =>
      id === 'i-a' ? 'sh: 1: docker: not found' : 'permission denied while trying to connect to the Docker daemon socket'
    )
    const err = (await h.acquire().catch((e: unknown) => e)) as Error
    expect(err.message).toContain('no member free after 2 s')
    expect(h.recycled).toHaveLength(2)
  })
})

describe('a lease taken over because it lapsed counts the job that died holding it', () => {
  /** One member that has served `jobs` jobs and grants with its last lease lapsed (`lapsed`). */
  function lapsedGrant(jobs: number, lapsed: boolean) {
    const h = harness(() => new Error('unused'))
    const p = h.provider as unknown as {
      recycle(): Promise<void>
      members(): Promise<Member[]>
      tag(id: string, tags: Record<string, string>): Promise<void>
    }
    p.members = async () => [{ ...ready, jobs, launchedAt: new Date() }]
    const events: string[] = []
    p.recycle = async (...a: unknown[]) => void events.push(`replaced: ${String(a[2])}`)
    p.tag = async (id: string, tags: Record<string, string>) => void events.push(`tag ${id} ${JSON.stringify(tags)}`)
    // The scrub a lapsed member gets first fails here: the events up to it are what is checked.
    h.env.scrub = async () => {
      events.push('scrub')
      throw new Error('stop here')
    }
    h.env.connect = async () => answering(['granted', '0', lapsed ? '1' : '0', '10', '24.0.7', '/home/ec2-user/rch', '-']) as never
    return { ...h, events }
  }

  test('one job short of reuse.maxJobsPerVm (20): the dead job makes it 20, so the member is replaced, not used', async () => {
    const h = lapsedGrant(19, true)
    await h.acquire().catch(() => undefined)
    expect(h.events[0]).toBe('replaced: served 20 jobs (reuse.maxJobsPerVm 20)')
    expect(h.events).not.toContain('scrub')
  })

  test('below the limit: the count is recorded (5 → 6) before the scrub and the job', async () => {
    const h = lapsedGrant(5, true)
    await h.acquire().catch(() => undefined)
    expect(h.events.slice(0, 2)).toEqual(['tag i-a {"remote-container-hooks:jobs":"6"}', 'scrub'])
  })

  test('positive control: a member given back dirty, not lapsed, is neither counted again nor replaced', async () => {
    const h = lapsedGrant(19, false)
    await h.acquire().catch(() => undefined)
    expect(h.events[0]).toBe('scrub')
  })
})

describe('a pool with no member, whose group cannot be read or grown', () => {
  /** No member; the group's capacity read (scale-out) fails with `err`. */
  function empty(err: () => Error, config = cfg) {
    const h = harness(() => new Error('no member to connect to'), undefined, config)
    const fake = h.provider as unknown as { members(): Promise<Member[]>; capacity(): Promise<unknown>; grow: unknown }
    fake.members = async () => []
    // the provider's own scale-out, which reads the group's capacity
    fake.grow = Object.getPrototypeOf(h.provider).grow
    let reads = 0
    fake.capacity = async () => {
      reads++
      throw err()
    }
    return { acquire: h.acquire, warned: h.warned, reads: () => reads }
  }

  test('no such Auto Scaling group: fails at once naming it, not "no member free" after waitTimeoutSeconds', async () => {
    const h = empty(() => new HookError('provider.autoScalingGroup: no Auto Scaling group named rch-pool in eu-west-1'), longWait)
    const t0 = Date.now()
    const err = (await h.acquire().catch((e: unknown) => e)) as Error
    expect(Date.now() - t0).toBeLessThan(AT_ONCE_MS)
    expect(err.message).toContain('no Auto Scaling group named rch-pool')
  })

  test('AccessDenied on the group: fails at once naming the AWS error', async () => {
    const h = empty(
      () =>
        Object.assign(new Error('User is not authorized to perform: autoscaling:DescribeAutoScalingGroups'), {
          name: 'AccessDenied',
          $metadata: { httpStatusCode: 403 }
        }),
      longWait
    )
    const t0 = Date.now()
    const err = (await h.acquire().catch((e: unknown) => e)) as Error
    expect(Date.now() - t0).toBeLessThan(AT_ONCE_MS)
    expect(err.message).toContain('autoscaling:DescribeAutoScalingGroups')
  })

  test('positive control: throttling on the group is waited through, and named when the wait ends', async () => {
    const h = empty(() => Object.assign(new Error('Rate exceeded'), { name: 'Throttling', $metadata: { httpStatusCode: 400 } }))
    const err = (await h.acquire().catch((e: unknown) => e)) as Error
    expect(err.message).toContain('no member free after 2 s')
    expect(err.message).toContain('Rate exceeded')
  })
})

describe('a member granted, then not made ready (a cancel, a failed EC2 call)', () => {
  /** A member that grants its lease; `describeFails` is what DescribeInstances of that one member throws. */
  function granted(describeFails: Error | null, o: { maxJobsPerVm?: number; clean?: boolean; cancel?: AbortController } = {}) {
    const one = ConfigSchema.parse({
      provider: {
        kind: 'ec2-pool',
        region: 'eu-west-1',
        autoScalingGroup: 'rch-pool',
        identityFile: '/k',
        reuse: { maxJobsPerVm: o.maxJobsPerVm ?? 1 }
      },
      remote: { workRoot: '~/rch' }
    }).provider as Ec2PoolConfig
    const p = new Ec2PoolProvider(one, '~/rch')
    const fake = p as unknown as {
      members(env: unknown, ids?: string[]): Promise<Member[]>
      grow(): Promise<{ cap: null }>
      connectInfo(m: Member): unknown
    }
    fake.members = async (_env, ids) => {
      if (ids && describeFails) throw describeFails
      // Launched now: not worn out by age (that would retire it before anything else is looked at).
      return [{ ...ready, launchedAt: new Date() }]
    }
    fake.grow = async () => ({ cap: null })
    fake.connectInfo = () => ({ host: '127.0.0.1', port: 22, user: 'ec2-user', identityFile: '/k', knownHostsFile: '/kh' })
    const protects: boolean[] = []
    ;(p as unknown as { protect(id: string, on: boolean): Promise<unknown> }).protect = async (_id, on) => {
      protects.push(on)
      return null
    }
    const commands: string[] = []
    const answer = (command: string): string[] =>
      command.includes('note grant')
        ? ['granted', o.clean === false ? '0' : '1', '0', '10', '24.0.7', '/home/ec2-user/rch', '-']
        : command.includes('note release')
          ? ['released']
          : /renewed/.test(command)
            ? ['renewed']
            : []
    const remote = answering(answer, commands)
    const env = {
      fleet: recordingFleetGate(),
      scrub: (remote: Remote, machine: string) => scrubMachine(remote, '~/rch', machine).then(() => undefined),
      log: { progress: () => undefined, warn: () => undefined, debug: () => undefined },
      signal: (o.cancel ?? new AbortController()).signal,
      runner: runnerFacts(),
      connect: async () => remote,
      discard: async () => undefined
    } as unknown as ProviderEnv
    const job = { jobId: 'fedcba9876543210', owner: '0123456789abcdef', localDir: '/nonexistent' }
    return { acquire: () => p.acquire(job, env), commands, protects, env }
  }

  // The runner kills the hook 10 s after its SIGINT: a member is not made ready for a job that is over.
  describe('a cancel while a member is being got', () => {
    test('during the scrub before use (maxJobsPerVm 5, given back dirty): the scrub ends, the member goes back not clean, protection lifted', async () => {
      const cancel = new AbortController()
      const h = granted(null, { maxJobsPerVm: 5, clean: false, cancel })
      let scrubSignal: AbortSignal | undefined
      h.env.scrub = async (_r, _m, signal) => {
        scrubSignal = signal
        cancel.abort('SIGINT')
        // A scrub that would go on: it ends with the cancel it was given.
        if (signal?.aborted) throw new Error('scrub stopped by its signal')
      }
      await expect(h.acquire()).rejects.toThrow('scrub stopped by its signal')
      expect(scrubSignal).toBe(h.env.signal)
      expect(h.protects).toEqual([true, false])
      const releases = h.commands.filter((c) => c.includes('note release'))
      expect(releases).toHaveLength(1)
      expect(releases[0]).toContain('put free dirty')
    })

    test('a scrub that ignores the cancel and finishes: the member is still given back, not used', async () => {
      const cancel = new AbortController()
      const h = granted(null, { maxJobsPerVm: 5, clean: false, cancel })
      h.env.scrub = async () => void cancel.abort('SIGINT')
      await expect(h.acquire()).rejects.toThrow('cancelled by SIGINT')
      expect(h.commands.filter((c) => c.includes('note release'))[0]).toContain('put free dirty')
    })

    // (Control: without the cancel, the test below sees the lease call sent.)
    test('a connect that comes in after the cancel: no lease call is sent', async () => {
      const cancel = new AbortController()
      const h = granted(null, { maxJobsPerVm: 5, cancel })
      const connect = h.env.connect
      h.env.connect = async (c) => {
        cancel.abort('SIGINT')
        return connect(c)
      }
      await expect(h.acquire()).rejects.toThrow('cancelled by SIGINT')
      expect(h.commands.filter((c) => c.includes('note grant'))).toEqual([])
    })
  })

  test('the lease is given back (to be scrubbed first), not left held by nobody until it lapses', async () => {
    const h = granted(new Error('DescribeInstances: AccessDenied'))
    await expect(h.acquire()).rejects.toThrow('AccessDenied')
    // its scale-in protection, asked for at the grant, is lifted before the give-back
    expect(h.protects).toEqual([true, false])
    // positive control: the member really was granted to this job
    expect(h.commands.filter((c) => c.includes('note grant'))).toHaveLength(1)
    const releases = h.commands.filter((c) => c.includes('note release'))
    expect(releases).toHaveLength(1)
    expect(releases[0]).toContain('put free dirty')
  })
})

describe('a member replaced on grant while the job is being cancelled', () => {
  test('its replacement still goes out (tagged, then terminated in the group): retired, it would otherwise run unused until reap', async () => {
    const h = harness(() => new Error('unused'))
    const cancel = new AbortController()
    ;(h.env as { signal: AbortSignal }).signal = cancel.signal
    const sent: string[] = []
    // The protection calls go through send() here, as in the provider.
    ;(h.provider as unknown as { protect: unknown }).protect = (Ec2PoolProvider.prototype as unknown as { protect: unknown }).protect
    ;(h.provider as unknown as { send(env: ProviderEnv, what: string): Promise<unknown> }).send = async (env, what) => {
      sent.push(`${what}${env.signal.aborted ? ' (signal fired)' : ''}`)
      // As retry() does: a call whose signal has fired is not sent.
      if (env.signal.aborted) throw new Error(`${what}: not sent (cancelled)`)
      return {}
    }
    const commands: string[] = []
    h.env.connect = async () =>
      answering((command) => {
        // The runner's SIGINT lands while the member answers the grant (its Docker is down).
        if (command.includes('note grant')) return (cancel.abort('SIGINT'), DOCKER_DENIED)
        return command.includes('note release') ? ['released'] : /renewed/.test(command) ? ['renewed'] : []
      }, commands) as never
    await expect(h.acquire()).rejects.toThrow('SIGINT')
    // positive control: the member was given back as retired (nobody leases it again)
    expect(commands.filter((c) => c.includes('note release'))).toEqual([expect.stringContaining('retired')])
    // the protection asked for at the grant is cut short by the cancel; lifted before the terminate
    // all the same, as cleanup
    expect(sent).toEqual([
      'SetInstanceProtection (signal fired)',
      'CreateTags',
      'SetInstanceProtection',
      'TerminateInstanceInAutoScalingGroup'
    ])
  })
})

test('a cancel during a pass over the pool: no further member is asked (one granted now would be held for a job that is over)', async () => {
  const h = harness(() => new Error('unused'))
  const p = h.provider as unknown as { members(): Promise<Member[]>; usable(): Promise<unknown> }
  p.members = async () => [ready, { ...ready, id: 'i-b' }]
  p.usable = async () => ({ kind: 'ec2-pool', instanceId: 'i-?', connect: { host: '127.0.0.1', port: 22 } })
  const cancel = new AbortController()
  ;(h.env as { signal: AbortSignal }).signal = cancel.signal
  let connects = 0
  h.env.connect = async () =>
    connects++ === 0
      ? // The first member asked is held by another job; the runner's SIGINT lands while it answers.
        (answering(() => (cancel.abort('SIGINT'), ['held', '0', '0', '30'])) as never)
      : (answering(['granted', '1', '0', '10', '24.0.7', '/home/ec2-user/rch', '-']) as never)
  await expect(h.acquire()).rejects.toThrow('cancelled by SIGINT')
  expect(connects).toBe(1)
})

describe("a granted member's scale-in protection", () => {
  /** One healthy member granted; its known_hosts file where the lease expects it. */
  function healthy() {
    const dir = tempDir()
    const kh = join(dir, 'pinned')
    writeFileSync(kh, '')
    const h = harness(() => new Error('unused'), dir)
    const p = h.provider as unknown as {
      connectInfo(): unknown
      recycle(...a: unknown[]): Promise<void>
      members(): Promise<Member[]>
      lifecycleOf(): Promise<string | null>
      inServiceWaitMs: number
    }
    p.members = async () => [{ ...ready, launchedAt: new Date() }]
    // The member's lifecycle state in the group, as DescribeAutoScalingInstances gives it.
    const group = { state: 'InService' as string | null }
    p.lifecycleOf = async () => group.state
    p.inServiceWaitMs = 2_500
    p.connectInfo = () => ({ host: '127.0.0.1', port: 22, user: 'ec2-user', identityFile: '/k', knownHostsFile: kh })
    const recycled: string[] = []
    p.recycle = async (...a: unknown[]) => void recycled.push(String(a[2]))
    const commands: string[] = []
    // The grant, then renewals of it (the keeper's), answered as the member does.
    h.env.connect = async () =>
      answering(
        (command) => (command.includes('note grant') ? ['granted', '1', '0', '10', '24.0.7', '/home/ec2-user/rch', '-'] : ['renewed']),
        commands
      ) as never
    const renewals = (): number => commands.filter((c) => /renewed/.test(c)).length
    return { ...h, recycled, group, renewals, commands }
  }
  /** The grant, then every renewal refused (another job holds the member now). */
  const refusedAfterGrant = (h: ReturnType<typeof healthy>): void => {
    h.env.connect = async () =>
      answering(
        (command) => (command.includes('note grant') ? ['granted', '1', '0', '10', '24.0.7', '/home/ec2-user/rch', '-'] : ['lost']),
        h.commands
      ) as never
  }
  const notInService = (): Error =>
    Object.assign(new Error('The instance i-a is not in InService or EnteringStandby or Standby.'), { name: 'ValidationError' })

  // The checks after a grant (AWS calls, each retried for up to a minute) may outlast the lease's
  // ttl: renewed from the grant on, not only during a scrub.
  test("granted clean: the lease is renewed while the member is made ready, and the job's agent counts its ttl from the grant", async () => {
    const h = healthy()
    const before = bootMs()
    const got = await h.acquire()
    expect(h.renewals()).toBeGreaterThan(0)
    const { renewedAt } = (h.provider as unknown as { keeper(l: unknown): { renewedAt?: number } }).keeper(got.lease)
    expect(renewedAt).toBeGreaterThanOrEqual(before)
    expect(renewedAt).toBeLessThanOrEqual(bootMs())
    // control: a lease this process did not grant (a later hook's) has no such time
    expect(
      (h.provider as unknown as { keeper(l: unknown): { renewedAt?: number } }).keeper({ ...got.lease, token: 'other' }).renewedAt
    ).toBeUndefined()
  })

  // A container action leases its own member, runs its step, and releases it in one process: the
  // grant's time, kept for the job's agent, was a whole step old by the release.
  test("a release in the acquiring process, a ttl after the grant: its keeper counts from the release's own renewal, not the grant", async () => {
    const h = healthy()
    const got = await h.acquire()
    const p = h.provider as unknown as { renewals: Map<string, number>; release: Ec2PoolProvider['release']; tag(): Promise<void> }
    p.tag = async () => undefined
    p.renewals.set(got.lease.token, bootMs() - 10 * cfg.lease.ttlSeconds * 1000) // the step took ten ttls
    const before = h.renewals()
    await p.release(got.lease, got.remote, 'fedcba9876543210', h.env)
    expect(h.warned.filter((w) => /lapsed/.test(w))).toEqual([])
    // the release's own renewal, then its keeper's first one
    expect(h.renewals() - before).toBeGreaterThanOrEqual(2)
  })

  test('a renewal refused while the member is made ready (another job holds it now): not used, not given back, its protection not lifted', async () => {
    const h = healthy()
    refusedAfterGrant(h)
    await expect(h.acquire()).rejects.toThrow('no member free after 2 s')
    expect(h.warned).toContainEqual(
      expect.stringMatching(/^i-a was lost while it was made ready: this machine's lease was not renewed \("lost"\)/)
    )
    expect(h.protects).toEqual([true])
    expect(h.commands.filter((c) => c.includes('note release'))).toEqual([])
    expect(h.recycled).toEqual([])
  })

  test('a renewal refused while the member is made ready, then an AWS call that fails: still not given back, its protection not lifted', async () => {
    const h = healthy()
    refusedAfterGrant(h)
    // Refused as not in service; the group's answer then fails, after the renewal's refusal came in.
    h.answerProtect(notInService())
    ;(h.provider as unknown as { lifecycleOf(): Promise<string | null> }).lifecycleOf = () =>
      new Promise((_r, reject) => setTimeout(() => reject(new Error('Throttling: rate exceeded')), 50))
    await expect(h.acquire()).rejects.toThrow('no member free after 2 s')
    expect(h.warned).toContainEqual(expect.stringMatching(/^i-a was lost while it was made ready: /))
    expect(h.protects).toEqual([true])
    expect(h.commands.filter((c) => c.includes('note release'))).toEqual([])
  })

  // A runner host whose clock is behind AWS's would judge a member younger than EC2 launched it,
  // lease it past reuse.maxVmAgeMinutes, and reap (on AWS's clock) replace it under its job.
  test("a member's age is its launch time against AWS's clock: 5 minutes short of the limit here, 10 past it on AWS's, it is replaced (control: in step, leased)", async () => {
    for (const [offset, replaced] of [
      [10 * 60_000, true],
      [0, false]
    ] as const) {
      const h = healthy()
      const p = h.provider as unknown as { members(): Promise<Member[]>; awsOffsetMs: number }
      p.members = async () => [{ ...ready, launchedAt: new Date(Date.now() - (cfg.reuse.maxVmAgeMinutes - 5) * 60_000) }]
      p.awsOffsetMs = offset
      if (replaced) {
        await expect(h.acquire()).rejects.toThrow('no member free after 2 s')
        expect(h.recycled[0]).toBe(`older than reuse.maxVmAgeMinutes (${cfg.reuse.maxVmAgeMinutes})`)
      } else expect((await h.acquire()).lease.instanceId).toBe('i-a')
    }
  })

  test('granted: the member is protected and leased', async () => {
    const h = healthy()
    const got = await h.acquire()
    expect(got.lease.instanceId).toBe('i-a')
    expect(h.protects).toEqual([true])
    expect(h.warned).toEqual([])
  })

  test('the lease is recorded under the runner host and worker the hook gave (a provider reads neither itself)', async () => {
    const h = healthy()
    const host = { hostname: 'runner-9', name: 'runner-9', key: '0a1b2c3d4e5f6071' }
    h.env.runner = runnerFacts({ host, worker: { pid: 4242, start: '99' } })
    const got = await h.acquire()
    expect(got.lease.worker).toEqual({ pid: 4242, start: '99' })
    const grant = h.commands.filter((c) => c.includes('note grant'))
    expect(grant).toHaveLength(1)
    expect(grant[0]).toContain(`0123456789abcdef fedcba9876543210 ${host.key} `)
    // positive control: this host's own key is not what was written
    expect(grant[0]).not.toContain(thisRunnerHost().key)
  })

  test.each(['Terminating', 'Terminating:Wait', 'Detaching', null])(
    'refused as not in service, the group ending it (%s): the member is not used',
    async (state) => {
      const h = healthy()
      h.group.state = state
      h.answerProtect(notInService())
      await expect(h.acquire()).rejects.toThrow('no member free after 2 s')
      expect(h.recycled[0]).toBe(`leaving its group (${state ?? 'no longer in it'})`)
    }
  )

  test('refused while still coming into service (Pending: started for this job): asked again, and leased once protected', async () => {
    const h = healthy()
    h.group.state = 'Pending'
    h.answerProtect([notInService(), null])
    const got = await h.acquire()
    expect(got.lease.instanceId).toBe('i-a')
    expect(h.protects).toEqual([true, true])
    expect({ recycled: h.recycled, warned: h.warned }).toEqual({ recycled: [], warned: [] })
  })

  test('still not in service when the wait ends: leased all the same, warned that it runs unprotected', async () => {
    const h = healthy()
    h.group.state = 'Pending:Wait'
    h.answerProtect(notInService())
    const got = await h.acquire()
    expect(got.lease.instanceId).toBe('i-a')
    expect(h.protects.length).toBeGreaterThan(2)
    // the lease was renewed while the member was waited for
    expect(h.renewals()).toBeGreaterThan(0)
    expect(h.recycled).toEqual([])
    expect(h.warned).toEqual([expect.stringMatching(/^could not protect i-a from scale-in .*not in InService.*may end it during the job$/)])
  })

  test('refused for another reason (the IAM policy lacks it): warned, naming the permission, and the member is leased', async () => {
    const h = healthy()
    h.answerProtect(Object.assign(new Error('not authorized to perform: autoscaling:SetInstanceProtection'), { name: 'AccessDenied' }))
    const got = await h.acquire()
    expect(got.lease.instanceId).toBe('i-a')
    expect(h.recycled).toEqual([])
    expect(h.warned).toEqual([
      expect.stringMatching(
        /^could not protect i-a from scale-in while this job holds it \(autoscaling:SetInstanceProtection\): not authorized/
      )
    ])
  })
})

describe("a member's release and its scale-in protection", () => {
  /** Releases a lease on `member` with the member's calls stood in; the order of what happened. */
  async function release(member: Member): Promise<string[]> {
    const h = harness(() => new Error('unused'))
    const events: string[] = []
    const p = h.provider as unknown as {
      members(): Promise<Member[]>
      recordJobs(): Promise<void>
      protect(id: string, on: boolean): Promise<unknown>
      give(r: unknown, l: unknown, how: { as: string }): Promise<string>
      recycle(...a: unknown[]): Promise<void>
      renewing<T>(r: unknown, l: unknown, env: unknown, work: () => Promise<T>): Promise<T>
    }
    p.members = async () => [member]
    h.env.scrub = async () => void events.push('scrub')
    p.recordJobs = async () => void events.push('count the job')
    p.protect = async (_id, on) => (events.push(`protect ${on}`), null)
    p.give = async (_r, _l, how) => (events.push(`give back ${how.as}`), 'released')
    p.recycle = async (...a: unknown[]) => void events.push(`replace: ${String(a[2])}`)
    p.renewing = async (_r, _l, _env, work) => {
      events.push('renewing from')
      try {
        return await work()
      } finally {
        events.push('renewing to')
      }
    }
    const lease = { kind: 'ec2-pool', instanceId: 'i-a', token: 'a'.repeat(32), connect: { host: '127.0.0.1', port: 22 } }
    await h.provider.release(lease as never, answering(['renewed']) as never, 'fedcba9876543210', h.env)
    return events
  }

  test('given back clean: the protection is lifted while the lease is still renewed, before the give-back', async () => {
    expect(await release({ ...ready, launchedAt: new Date() })).toEqual([
      'renewing from',
      'scrub',
      'count the job',
      'protect false',
      'renewing to',
      'give back clean'
    ])
  })

  test('replaced instead (worn out): not lifted there; the replacement does what it needs', async () => {
    expect(await release({ ...ready, launchedAt: new Date(), recycle: 'disk' })).toEqual([
      'renewing from',
      'scrub',
      'count the job',
      'renewing to',
      'replace: marked for replacement (disk)'
    ])
  })
})
