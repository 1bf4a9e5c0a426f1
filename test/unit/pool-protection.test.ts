// Scale-in protection of a member a job holds (ec2-pool.ts protect, lift): what is sent, and what a
// refused call gives. What the lease does with a refusal is in pool-acquire-local.test.ts; the
// call's effect on a group (moto) in test/integration/pool.test.ts.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Ec2PoolProvider } from '../../src/providers/ec2-pool'
import type { ProviderEnv } from '../../src/providers/provider'
import { ConfigSchema, type Ec2PoolConfig } from '../../src/config'
import { TransportError } from '../../src/errors'

process.env.AWS_ACCESS_KEY_ID = 'testing'
process.env.AWS_SECRET_ACCESS_KEY = 'testing'
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'

let server: Server
let endpoint: string
const bodies: string[] = []
let status = 200
/** The Date header of the stand-in's answers (none: the server's own, now). */
let dateHeader: string | undefined
/** The member's recycle tag in the stand-in's DescribeInstances answer (null: none). */
let recycleTag: string | null = null
const describeAnswer = (): string =>
  '<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>1</requestId><reservationSet><item>' +
  '<reservationId>r-1</reservationId><instancesSet><item><instanceId>i-0123456789abcdef0</instanceId>' +
  '<instanceState><code>16</code><name>running</name></instanceState><tagSet>' +
  '<item><key>aws:autoscaling:groupName</key><value>rch-pool</value></item>' +
  (recycleTag === null ? '' : `<item><key>remote-container-hooks:recycle</key><value>${recycleTag}</value></item>`) +
  '</tagSet></item></instancesSet></item></reservationSet></DescribeInstancesResponse>'
beforeAll(async () => {
  // A stand-in for the Auto Scaling Query API on loopback: records each request's body.
  server = createServer((req, res) => {
    let body = ''
    req.on('data', (c) => (body += c))
    req.on('end', () => {
      bodies.push(body)
      res.writeHead(status, { 'content-type': 'text/xml', ...(dateHeader ? { date: dateHeader } : {}) })
      if (status === 200 && new URLSearchParams(body).get('Action') === 'DescribeInstances') return void res.end(describeAnswer())
      res.end(
        status === 200
          ? '<SetInstanceProtectionResponse><SetInstanceProtectionResult/><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></SetInstanceProtectionResponse>'
          : '<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform: autoscaling:SetInstanceProtection</Message></Error><RequestId>1</RequestId></ErrorResponse>'
      )
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(() => new Promise<void>((r) => server.close(() => r())))
beforeEach(() => {
  bodies.length = 0
  status = 200
  dateHeader = undefined
  recycleTag = null
})

function provider(reuse: object = {}): {
  protect: (id: string, on: boolean, env: Pick<ProviderEnv, 'signal' | 'log'>) => Promise<unknown>
  lift: (id: string, env: Pick<ProviderEnv, 'signal' | 'log'>) => Promise<void>
} {
  const cfg = ConfigSchema.parse({
    provider: { kind: 'ec2-pool', region: 'eu-west-1', autoScalingGroup: 'rch-pool', identityFile: '/k', endpoint, reuse },
    remote: { workRoot: '~/rch' }
  }).provider as Ec2PoolConfig
  return new Ec2PoolProvider(cfg, '~/rch') as unknown as ReturnType<typeof provider>
}
const envOf = (signal = new AbortController().signal) => {
  const warned: string[] = []
  return { warned, env: { signal, log: { progress: () => undefined, debug: () => undefined, warn: (m: string) => void warned.push(m) } } }
}

test('protection set and lifted as asked, on the member, in its group: nothing warned', async () => {
  const { warned, env } = envOf()
  expect(await provider().protect('i-0123456789abcdef0', true, env)).toBeNull()
  await provider().lift('i-0123456789abcdef0', env)
  const asked = bodies.map((b) => Object.fromEntries(new URLSearchParams(b)))
  expect(asked).toEqual([
    expect.objectContaining({
      Action: 'SetInstanceProtection',
      AutoScalingGroupName: 'rch-pool',
      'InstanceIds.member.1': 'i-0123456789abcdef0',
      ProtectedFromScaleIn: 'true'
    }),
    expect.objectContaining({ Action: 'SetInstanceProtection', ProtectedFromScaleIn: 'false' })
  ])
  expect(warned).toEqual([])
})

test("a refused call is answered with AWS's error, never thrown; a refused lift is warned about, naming the permission", async () => {
  status = 403
  const { warned, env } = envOf()
  const e = await provider().protect('i-0123456789abcdef0', true, env)
  expect((e as Error).message).toContain('not authorized to perform: autoscaling:SetInstanceProtection')
  expect(warned).toEqual([])
  await provider().lift('i-0123456789abcdef0', env)
  expect(warned).toEqual([
    expect.stringMatching(
      /^could not lift the scale-in protection of i-0123456789abcdef0 \(autoscaling:SetInstanceProtection\): .*not authorized.*; the group cannot end it to scale in until a later job gives it back$/
    )
  ])
})

test('after a cancel nothing is sent, and the answer is an error', async () => {
  const ac = new AbortController()
  ac.abort('SIGINT')
  const { env } = envOf(ac.signal)
  expect(await provider().protect('i-0123456789abcdef0', true, env)).toBeTruthy()
  expect(bodies).toEqual([])
})

test('a member the job cannot reach at release is marked for replacement and its protection lifted, so reap may replace it', async () => {
  const { env } = envOf()
  const p = provider() as unknown as Ec2PoolProvider
  const lease = {
    kind: 'ec2-pool',
    instanceId: 'i-0123456789abcdef0',
    token: 'a'.repeat(32),
    connect: { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }
  }
  const unreachable = {
    ...env,
    connect: async () => {
      throw new TransportError('cannot connect to u@127.0.0.1:1: connect ECONNREFUSED', 'network')
    }
  } as unknown as ProviderEnv
  await expect(p.release(lease as never, null, 'fedcba9876543210', unreachable)).rejects.toThrow('ECONNREFUSED')
  const asked = bodies.map((b) => Object.fromEntries(new URLSearchParams(b)))
  // Marked first (EC2's CreateTags), then the protection lifted: before, it stayed protected, and reap
  // (which cannot read its lease either) left it alone until it was older than any job.
  expect(asked.map((a) => a.Action)).toEqual(['CreateTags', 'SetInstanceProtection'])
  expect(asked[0]).toMatchObject({ 'Tag.1.Key': 'remote-container-hooks:recycle', 'Tag.1.Value': 'unreachable at release' })
  expect(asked[1]).toMatchObject({ 'InstanceIds.member.1': 'i-0123456789abcdef0', ProtectedFromScaleIn: 'false' })
})

// A job root on its member (maxJobsPerVm 1) leaves a daemon that rewrites the lease record as
// another holder's: at release the renewal answers "lost". Marked only, the member ran on, protected
// and counted in the pool, until reap found it older than any job (days). No other job may use a
// member that served its one job, so it is ended here; with reuse, another job may hold it (control).
describe('a release whose renewal answers "lost"', () => {
  /** A member whose lease calls answer as another holder's record makes them: renew lost, release not-holder. */
  const member = (seen: string[]) => ({
    openExec: async (command: string) => {
      seen.push(command)
      const { PassThrough } = await import('node:stream')
      const nonce = /RCH-BEGIN-([0-9a-f]+)/.exec(command)?.[1]
      const word = /renewed/.test(command) ? 'lost' : 'not-holder'
      const stdout = new PassThrough()
      const stderr = new PassThrough()
      const stdin = new PassThrough()
      stdin.resume()
      stdout.end(`RCH-BEGIN-${nonce}\0${word}\0RCH-END-${nonce}\0`)
      stderr.end()
      return { stdin, stdout, stderr, done: new Promise((r) => setImmediate(() => r({ code: 0, signal: null }))) }
    },
    openSocket: () => Promise.reject(new Error('no sockets')),
    close: () => undefined
  })
  const lease = {
    kind: 'ec2-pool',
    instanceId: 'i-0123456789abcdef0',
    token: 'a'.repeat(32),
    connect: { host: '127.0.0.1', port: 1, user: 'u', identityFile: '/k', knownHostsFile: '/kh' }
  }

  // Whether it was leased for one job is the member's tag, whatever this host's config says: runner
  // hosts of one pool may be set differently (an upgrade under way).
  test.each([1, 5])(
    'leased for one job (its tag), this host at maxJobsPerVm %i: marked, its protection lifted and ended in its group, though the record names another holder',
    async (maxJobsPerVm) => {
      recycleTag = 'served its one job'
      const { warned, env } = envOf()
      const seen: string[] = []
      const p = provider({ maxJobsPerVm }) as unknown as Ec2PoolProvider
      await p.release(lease as never, member(seen) as never, 'fedcba9876543210', env as unknown as ProviderEnv)
      const asked = bodies.map((b) => Object.fromEntries(new URLSearchParams(b)))
      expect(asked.map((a) => a.Action)).toEqual([
        'DescribeInstances',
        'CreateTags',
        'SetInstanceProtection',
        'TerminateInstanceInAutoScalingGroup'
      ])
      expect(asked[1]).toMatchObject({
        'Tag.1.Key': 'remote-container-hooks:recycle',
        'Tag.1.Value': 'lease lost at release (served its one job)'
      })
      expect(asked[2]).toMatchObject({ ProtectedFromScaleIn: 'false' })
      expect(asked[3]).toMatchObject({ InstanceId: 'i-0123456789abcdef0', ShouldDecrementDesiredCapacity: 'false' })
      expect(warned).toContainEqual(
        "i-0123456789abcdef0 is no longer this job's (not-holder), but it was leased for one job and no other may use it: it is ended"
      )
      // the renewal, then the give-back as retired (refused: not the holder)
      expect(seen.map((c) => (/renewed/.test(c) ? 'renew' : /note release/.test(c) ? 'release' : 'other'))).toEqual(['renew', 'release'])
    }
  )

  // Leased under reuse: another job may have taken over its lapsed lease and hold it rightly.
  test.each([1, 5])(
    'control: leased under reuse (no such tag), this host at maxJobsPerVm %i: only marked, left to its holder',
    async (maxJobsPerVm) => {
      const { env } = envOf()
      const p = provider({ maxJobsPerVm }) as unknown as Ec2PoolProvider
      await p.release(lease as never, member([]) as never, 'fedcba9876543210', env as unknown as ProviderEnv)
      const asked = bodies.map((b) => Object.fromEntries(new URLSearchParams(b)))
      expect(asked.map((a) => a.Action)).toEqual(['DescribeInstances', 'CreateTags'])
      expect(asked[1]).toMatchObject({ 'Tag.1.Value': 'lease lost at release' })
    }
  )
})

test("EC2's answers set the provider's reading of AWS's clock, which judges a member's age (control: an answer dated now reads about 0)", async () => {
  const p = provider() as unknown as { members(env: unknown): Promise<unknown>; awsOffsetMs: number }
  const { env } = envOf()
  dateHeader = new Date(Date.now() + 10 * 60_000).toUTCString()
  await p.members(env).catch(() => undefined)
  expect(Math.abs(p.awsOffsetMs - 10 * 60_000)).toBeLessThan(2_000)
  dateHeader = undefined
  await p.members(env).catch(() => undefined)
  expect(Math.abs(p.awsOffsetMs)).toBeLessThan(2_000)
})
