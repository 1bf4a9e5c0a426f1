// What the step log says of an EC2 instance after a step lost its connection: EC2's state reason in
// words an operator can act on, polled while EC2 still calls the instance live. Fake clock, scripted
// DescribeInstances answers.
import type * as Ec2 from '@aws-sdk/client-ec2'
import { FATE_LOOKS, fateOf, instanceFate, lostMachineOf, type InstanceFate } from '../../src/providers/instance-fate'
import type { Clock } from '../../src/retry'

const ID = 'i-0123456789abcdef0'
const NOW = Date.UTC(2026, 11, 4, 15, 0, 0)

function fakeClock(): Clock & { pauses: number[] } {
  let t = 1_000_000
  const c = {
    pauses: [] as number[],
    now: () => t,
    sleep: async (ms: number) => {
      c.pauses.push(ms)
      t += ms
    }
  }
  return c
}

const answer = (state: string, code?: string, message?: string, launched?: Date): Ec2.DescribeInstancesCommandOutput => ({
  $metadata: {},
  Reservations: [
    {
      Instances: [
        {
          InstanceId: ID,
          State: { Name: state as never },
          StateReason: code ? { Code: code, Message: message } : undefined,
          LaunchTime: launched
        }
      ]
    }
  ]
})

const env = () => ({
  log: { progress: () => undefined, warn: () => undefined, debug: () => undefined },
  signal: new AbortController().signal
})

describe('lostMachineOf', () => {
  const say = (f: InstanceFate, maxLifetimeMinutes?: number) => lostMachineOf(ID, f, { maxLifetimeMinutes, now: NOW }).says
  const cause = (f: InstanceFate, maxLifetimeMinutes?: number) => lostMachineOf(ID, f, { maxLifetimeMinutes, now: NOW }).cause

  test('the cause the fleet ledger records, one per kind of end', () => {
    const inside = { state: 'terminated', reasonCode: 'Client.InstanceInitiatedShutdown' }
    expect(cause({ state: 'shutting-down', reasonCode: 'Server.SpotInstanceTermination' })).toBe('spot')
    expect(cause({ state: 'stopped', reasonCode: 'Server.SpotInstanceShutdown' })).toBe('spot')
    expect(cause({ ...inside, launchedAt: NOW - 30 * 60_000 }, 360)).toBe('inside')
    expect(cause({ ...inside, launchedAt: NOW - 360 * 60_000 }, 360)).toBe('lifetime')
    expect(cause({ state: 'terminated', reasonCode: 'Client.UserInitiatedShutdown' })).toBe('api')
    expect(cause({ state: 'terminated', reasonCode: 'Server.InternalError' })).toBe('other')
    expect(cause({ state: 'stopped', reasonCode: 'Client.SomethingNew' })).toBe('other')
    expect(cause({ state: 'stopped' })).toBe('other')
    expect(cause({ state: 'running' })).toBe('running')
    expect(cause({ state: 'pending' })).toBe('running')
    expect(cause({ state: 'gone' })).toBe('gone')
  })

  test('a Spot interruption is named as one, with EC2 own words', () => {
    expect(
      say({
        state: 'shutting-down',
        reasonCode: 'Server.SpotInstanceTermination',
        reasonMessage: 'Server.SpotInstanceTermination: Spot instance termination'
      })
    ).toBe(
      `the job's machine ${ID} is shutting-down: a Spot interruption: EC2 took the capacity back (EC2: Server.SpotInstanceTermination: Spot instance termination)`
    )
  })

  test('a shutdown from inside names the job as a possible cause; the lifetime limit is told apart by the launch time', () => {
    const inside = {
      state: 'terminated',
      reasonCode: 'Client.InstanceInitiatedShutdown',
      reasonMessage: 'Client.InstanceInitiatedShutdown: Instance initiated shutdown'
    }
    expect(say({ ...inside, launchedAt: NOW - 30 * 60_000 }, 360)).toMatch(
      /is terminated: it was shut down from inside \(a shutdown or poweroff on the machine; a job can/
    )
    expect(say({ ...inside, launchedAt: NOW - 360 * 60_000 }, 360)).toMatch(
      /is terminated: it reached provider\.maxLifetimeMinutes \(360\) and shut itself down/
    )
    // a pool member has no lifetime limit of ours: always "from inside"
    expect(say({ ...inside, launchedAt: NOW - 360 * 60_000 })).toMatch(/shut down from inside/)
  })

  test('a termination through the API, an unknown reason, no reason, a forgotten id', () => {
    expect(
      say({
        state: 'terminated',
        reasonCode: 'Client.UserInitiatedShutdown',
        reasonMessage: 'Client.UserInitiatedShutdown: User initiated shutdown'
      })
    ).toMatch(
      /is terminated: it was ended through the EC2 API \(by a person, a script, an Auto Scaling group or a reaper\) \(EC2: Client\.UserInitiatedShutdown: User initiated shutdown\)$/
    )
    expect(say({ state: 'stopped', reasonCode: 'Client.SomethingNew' })).toBe(
      `the job's machine ${ID} is stopped: EC2 gives the reason Client.SomethingNew`
    )
    expect(say({ state: 'stopped' })).toBe(`the job's machine ${ID} is stopped: EC2 gives no reason`)
    expect(say({ state: 'gone' })).toMatch(/is no longer known to EC2/)
  })

  test('a live instance: the connection failed, not the machine', () => {
    expect(say({ state: 'running' })).toBe(`the job's machine ${ID} is still running in EC2: the connection to it failed, not the machine`)
  })

  test("the API's text is one printable line of bounded length (control characters and line breaks become ?)", () => {
    const s = say({ state: 'terminated', reasonCode: 'X\u001b[31m', reasonMessage: `a\nb\r\u0007c\u2028${'z'.repeat(500)}` })
    expect(s).toContain('EC2 gives the reason X?[31m')
    expect(s).toContain('(EC2: a?b??c?zz')
    expect(s).not.toMatch(/[^\x20-\x7e]/)
    expect(s.length).toBeLessThan(400)
    // positive control: the same text in plain ASCII passes as it is
    expect(say({ state: 'terminated', reasonCode: 'X[31m', reasonMessage: 'abc' })).toContain('reason X[31m (EC2: abc)')
  })
})

describe('fateOf', () => {
  test('reads state, reason and launch time; an empty answer is a forgotten instance', () => {
    const launched = new Date(NOW - 60_000)
    expect(fateOf(answer('terminated', 'C', 'M', launched))).toEqual({
      state: 'terminated',
      reasonCode: 'C',
      reasonMessage: 'M',
      launchedAt: NOW - 60_000
    })
    expect(fateOf({ $metadata: {}, Reservations: [] })).toEqual({ state: 'gone' })
    expect(fateOf(null)).toEqual({ state: 'gone' })
  })
})

describe('instanceFate on a fake clock', () => {
  const cfg = { region: 'eu-west-1', endpoint: undefined }

  test('EC2 still calling the instance running is asked again, and its later word is taken', async () => {
    const clock = fakeClock()
    const answers = [answer('running'), answer('shutting-down', 'Server.SpotInstanceTermination', 'Spot instance termination')]
    const asked: string[] = []
    const f = await instanceFate(cfg, ID, env(), clock, async (id) => (asked.push(id), answers.shift() ?? answer('terminated')))
    expect(asked).toEqual([ID, ID])
    expect(clock.pauses).toEqual([1500])
    expect(f.state).toBe('shutting-down')
    expect(f.reasonCode).toBe('Server.SpotInstanceTermination')
  })

  test('an instance that stays running is reported running after a bounded number of looks', async () => {
    const clock = fakeClock()
    let n = 0
    const f = await instanceFate(cfg, ID, env(), clock, async () => (n++, answer('running')))
    expect(f.state).toBe('running')
    expect(n).toBe(FATE_LOOKS)
    expect(clock.pauses).toEqual(Array(FATE_LOOKS - 1).fill(1500))
  })

  test('an instance EC2 no longer knows (InvalidInstanceID.NotFound) is gone; throttling is retried; other errors are final', async () => {
    const notFound = Object.assign(new Error('The instance ID does not exist'), { name: 'InvalidInstanceID.NotFound' })
    expect((await instanceFate(cfg, ID, env(), fakeClock(), () => Promise.reject(notFound))).state).toBe('gone')

    const throttled = Object.assign(new Error('Rate exceeded'), { name: 'RequestLimitExceeded' })
    const script: (() => Promise<Ec2.DescribeInstancesCommandOutput>)[] = [
      () => Promise.reject(throttled),
      async () => answer('terminated')
    ]
    expect((await instanceFate(cfg, ID, env(), fakeClock(), () => script.shift()!())).state).toBe('terminated')

    const denied = Object.assign(new Error('not authorized'), { name: 'UnauthorizedOperation' })
    let calls = 0
    await expect(instanceFate(cfg, ID, env(), fakeClock(), () => (calls++, Promise.reject(denied)))).rejects.toThrow('not authorized')
    expect(calls).toBe(1)
  })
})
