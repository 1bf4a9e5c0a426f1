import {
  decodeState,
  initialState,
  leaseOf,
  ownStateIssues,
  storedHost,
  storedState,
  type StateFacts,
  type StoredState
} from '../../src/state'
import { configElsewhere } from '../../src/providers/factory'
import { InputError } from '../../src/errors'
import { nameOwnerId, ownerId } from '../../src/labels'
import type { Config } from '../../src/config'

const RUNNER = 'runner-1'
const WORK = '/home/r/_work'
const OWNER = ownerId(RUNNER, WORK)
const JOB = '0123456789abcdef'
const WORK_ROOT = '/srv/rch'
const LOCAL_ROOT = '/tmp/rch-1000'
const HOST = { host: 'vm1.example.com', port: 2222, user: 'ci', identityFile: '/etc/rch/id', knownHostsFile: '/etc/rch/kh', slots: 2 }

const staticConfig = {
  provider: { kind: 'static', hosts: [HOST], acquireTimeoutSeconds: 600 },
  remote: { workRoot: WORK_ROOT, dockerSocket: '/var/run/docker.sock' }
} as unknown as Config
const ec2Config = {
  provider: { kind: 'ec2', region: 'eu-west-1', user: 'ec2-user', sshPort: 22 },
  remote: { workRoot: WORK_ROOT, dockerSocket: '/var/run/docker.sock' }
} as unknown as Config

const facts = (config: Config = staticConfig): StateFacts => ({
  config,
  runnerName: RUNNER,
  localRoot: LOCAL_ROOT,
  workDir: WORK,
  workspace: '/home/r/_work/repo/repo'
})

const ID = 'ab'.repeat(32)
function good(): Record<string, any> {
  return {
    v: 2,
    jobId: JOB,
    owner: OWNER,
    host: {
      kind: 'static',
      index: 0,
      slot: 1,
      host: HOST.host,
      port: HOST.port,
      user: HOST.user,
      identityFile: HOST.identityFile,
      knownHostsFile: HOST.knownHostsFile
    },
    jobRoot: `${WORK_ROOT}/jobs/${OWNER}-${JOB}`,
    hostWork: '/home/r/_work',
    externals: { host: '/home/r/externals', remote: `${WORK_ROOT}/externals/0123456789abcdef` },
    pullRoots: ['_temp', 'repo'],
    network: `rch-${JOB}`,
    container: { id: ID, image: 'node:22', path: '/usr/local/bin:/usr/bin:/bin' },
    services: [{ id: ID.slice(0, 12), image: 'redis' }],
    volumes: ['my_vol']
  }
}
const ec2Local = `${LOCAL_ROOT}/${OWNER}-${JOB}`
function goodEc2(): Record<string, any> {
  return {
    ...good(),
    host: {
      kind: 'ec2',
      host: '10.0.0.7',
      port: 22,
      user: 'ec2-user',
      identityFile: `${ec2Local}/id_ed25519`,
      knownHostsFile: `${ec2Local}/known_hosts`,
      instanceId: 'i-0123456789abcdef0'
    }
  }
}

function refusal(raw: Record<string, unknown>, f = facts()): string {
  try {
    decodeState(raw, f)
  } catch (e) {
    expect(e).toBeInstanceOf(InputError)
    expect((e as Error).message).not.toMatch(/\n/)
    return (e as Error).message
  }
  throw new Error('expected the state to be refused')
}

const set = (path: string, value: unknown, base = good()): Record<string, any> => {
  const copy = JSON.parse(JSON.stringify(base))
  const keys = path.split('.')
  let o = copy
  for (const k of keys.slice(0, -1)) o = o[k]
  if (value === undefined) delete o[keys[keys.length - 1]]
  else o[keys[keys.length - 1]] = value
  return copy
}

describe('the lease in the state, per provider kind', () => {
  test('a lease is stored flat beside its kind and read back as the same lease', () => {
    const lease = {
      kind: 'static' as const,
      index: 0,
      slot: 1,
      connect: { host: HOST.host, port: HOST.port, user: HOST.user, identityFile: HOST.identityFile, knownHostsFile: HOST.knownHostsFile }
    }
    expect(storedHost(lease)).toEqual(good().host)
    expect(leaseOf(storedHost(lease))).toEqual(lease)
    const e = {
      kind: 'ec2' as const,
      instanceId: 'i-0123456789abcdef0',
      connect: {
        host: '10.0.0.7',
        port: 22,
        user: 'ec2-user',
        identityFile: `${ec2Local}/id_ed25519`,
        knownHostsFile: `${ec2Local}/known_hosts`
      }
    }
    expect(storedHost(e)).toEqual(goodEc2().host)
    expect(leaseOf(storedHost(e))).toEqual(e)
  })

  test('initialState keeps no static-host fields for an EC2 lease', () => {
    const lease = leaseOf(goodEc2().host)
    const s = initialState({
      jobId: JOB,
      owner: OWNER,
      lease,
      jobRoot: `${WORK_ROOT}/jobs/${OWNER}-${JOB}`,
      hostWork: '/home/r/_work',
      repoRel: 'repo',
      localDir: ec2Local
    })
    expect(Object.keys(s.host).sort()).toEqual(['host', 'identityFile', 'instanceId', 'kind', 'knownHostsFile', 'port', 'user'])
    expect(decodeState(storedState(s) as unknown as Record<string, unknown>, facts(ec2Config))).toEqual(s)
  })
})

describe('decodeState: what this hook could have written', () => {
  test('a state this hook wrote is accepted; the local folder is derived, never read', () => {
    const s = decodeState({ ...good(), localDir: '/home/r/.ssh' }, facts())!
    expect(s.localDir).toBe(`${LOCAL_ROOT}/${OWNER}-${JOB}`)
    expect(storedState(s)).toEqual(good())
    const ec2 = decodeState(goodEc2(), facts(ec2Config))!
    expect(ec2.host.kind === 'ec2' && ec2.host.instanceId).toBe('i-0123456789abcdef0')
    expect(storedState(ec2)).toEqual(goodEc2())
  })

  test("a state of a build whose owner id was the runner's name alone is accepted, with that owner's folders", () => {
    const legacy = nameOwnerId(RUNNER)
    const s = decodeState({ ...good(), owner: legacy, jobRoot: `${WORK_ROOT}/jobs/${legacy}-${JOB}` }, facts())!
    expect(s.owner).toBe(legacy)
    expect(s.localDir).toBe(`${LOCAL_ROOT}/${legacy}-${JOB}`)
    // control: its job folder must still be that owner's
    expect(refusal({ ...good(), owner: legacy })).toContain('state.jobRoot')
  })

  test('null and {} are "no state"', () => {
    expect(decodeState(null, facts())).toBeNull()
    expect(decodeState({}, facts())).toBeNull()
  })

  test.each([
    ['jobId', '../../x', 'state.jobId'],
    ['jobId', 'ABCDEF0123456789', 'state.jobId'],
    ['owner', ownerId('other-runner', WORK), 'state.owner'],
    ['owner', ownerId(RUNNER, '/home/r2/_work'), 'state.owner'],
    ['owner', ownerId(RUNNER, WORK, 'another-host'), 'state.owner'],
    ['owner', nameOwnerId('other-runner'), 'state.owner'],
    ['owner', '../x', 'state.owner'],
    ['jobRoot', '/', 'state.jobRoot'],
    ['jobRoot', `${WORK_ROOT}/jobs/../../etc`, 'state.jobRoot'],
    ['jobRoot', `/etc/jobs/${OWNER}-${JOB}`, 'state.jobRoot'],
    ['hostWork', '/home/r', 'state.hostWork'],
    ['hostWork', '/home/r/_work/../..', 'state.hostWork'],
    ['hostWork', 'relative', 'state.hostWork'],
    ['externals.remote', '/etc', 'state.externals.remote'],
    ['externals.remote', `${WORK_ROOT}/externals/../../etc`, 'state.externals.remote'],
    ['externals.host', '/', 'state.externals.host'],
    ['pullRoots', ['_temp', '..'], 'state.pullRoots.1'],
    ['pullRoots', ['.ssh'], 'state.pullRoots.0'],
    ['pullRoots', ['a/b'], 'state.pullRoots.0'],
    ['network', 'host', 'state.network'],
    ['network', '--privileged', 'state.network'],
    ['container.id', 'xyz', 'state.container.id'],
    ['container.id', `${ID};id`, 'state.container.id'],
    ['container.image', '-v/:/x', 'state.container.image'],
    ['container.path', 'a\nb', 'state.container.path'],
    ['services', [{ id: '../../x', image: 'redis' }], 'state.services.0.id'],
    ['volumes', ['-v'], 'state.volumes.0'],
    ['host.host', '10.9.9.9', 'state.host.host'],
    ['host.port', 2223, 'state.host.port'],
    ['host.port', 70000, 'state.host.port'],
    ['host.user', 'root', 'state.host.user'],
    ['host.identityFile', '/home/r/.ssh/id_rsa', 'state.host.identityFile'],
    ['host.knownHostsFile', '/dev/null', 'state.host.knownHostsFile'],
    ['host.index', 1, 'state.host.index'],
    ['host.index', -1, 'state.host.index'],
    ['host.slot', 2, 'state.host.slot'],
    ['host.slot', -1, 'state.host.slot'],
    ['host.instanceId', 'i-0123456789abcdef0', 'state.host.instanceId'],
    ['host.kind', 'ec2', 'state.host.kind'],
    ['host.kind', 'terraform', 'state.host.kind'],
    ['host.kind', undefined, 'state.host.kind'],
    ['v', 1, 'state.v'],
    ['v', 3, 'state.v'],
    ['extra', 1, 'state']
  ])('static: %s = %j is refused, naming %s', (path, value, field) => {
    expect(refusal(set(path, value))).toContain(`${field}`)
  })

  test.each([
    ['host.instanceId', 'i-xyz', 'state.host.instanceId'],
    ['host.instanceId', 'i-0123456', 'state.host.instanceId'],
    ['host.instanceId', undefined, 'state.host.instanceId'],
    ['host.host', '-oProxyCommand=x', 'state.host.host'],
    ['host.host', 'a b', 'state.host.host'],
    ['host.user', 'root', 'state.host.user'],
    ['host.identityFile', '/home/r/.ssh/id_ed25519', 'state.host.identityFile'],
    ['host.knownHostsFile', `${LOCAL_ROOT}/other/known_hosts`, 'state.host.knownHostsFile'],
    // an EC2 lease has no static-host fields
    ['host.index', 0, 'state.host.index'],
    ['host.index', -1, 'state.host.index'],
    ['host.slot', 0, 'state.host.slot'],
    ['host.kind', 'static', 'state.host.kind']
  ])('ec2: %s = %j is refused, naming %s', (path, value, field) => {
    expect(refusal(set(path, value, goodEc2()), facts(ec2Config))).toContain(field)
  })

  test('ec2: the lease keeps the region it was launched in; a state from before that (no region) is still read', () => {
    const withRegion = set('host.region', 'eu-west-1', goodEc2())
    expect(decodeState(withRegion, facts(ec2Config))!.host).toMatchObject({ kind: 'ec2', region: 'eu-west-1' })
    expect(storedHost(leaseOf(withRegion.host))).toEqual(withRegion.host)
    expect(decodeState(goodEc2(), facts(ec2Config))).not.toBeNull()
  })

  test('ec2: provider.region changed since prepare_job: refused, naming the field (the instance cannot be reached, nor terminated, from here)', () => {
    // A terminate of the id in the new region answers "not found", which reads as "already gone":
    // cleanup_job would report success and leave the instance running.
    expect(refusal(set('host.region', 'us-east-1', goodEc2()), facts(ec2Config))).toBe(
      'invalid state from the runner: state.host.region: differs from provider.region (eu-west-1)'
    )
    expect(refusal(set('host.region', '', goodEc2()), facts(ec2Config))).toContain('state.host.region')
  })
})

describe('decodeState: an ec2-pool lease and its region', () => {
  const poolConfig = {
    provider: { kind: 'ec2-pool', region: 'eu-west-1', user: 'ec2-user', identityFile: '/etc/rch/pool_key', sshPort: 22 },
    remote: { workRoot: WORK_ROOT, dockerSocket: '/var/run/docker.sock' }
  } as unknown as Config
  const goodPool = (region?: string): Record<string, any> => ({
    ...good(),
    host: {
      kind: 'ec2-pool',
      host: '10.0.0.8',
      port: 22,
      user: 'ec2-user',
      identityFile: '/etc/rch/pool_key',
      knownHostsFile: `${ec2Local}/known_hosts`,
      instanceId: 'i-0123456789abcdef0',
      token: 'ab'.repeat(16),
      worker: null,
      workRoot: WORK_ROOT,
      ...(region === undefined ? {} : { region })
    }
  })

  test('the lease keeps the region it was leased in; a state from before that (no region) is still read', () => {
    expect(decodeState(goodPool('eu-west-1'), facts(poolConfig))!.host).toMatchObject({ kind: 'ec2-pool', region: 'eu-west-1' })
    expect(decodeState(goodPool(), facts(poolConfig))).not.toBeNull()
  })

  test('provider.region changed since prepare_job: refused, naming the field (a member retired at release would be looked for there)', () => {
    expect(refusal(goodPool('us-east-1'), facts(poolConfig))).toBe(
      'invalid state from the runner: state.host.region: differs from provider.region (eu-west-1)'
    )
  })
})

describe("ownStateIssues: prepare_job's own state, checked as the next command will check it", () => {
  const poolConfig = {
    provider: { kind: 'ec2-pool', region: 'eu-west-1', user: 'ec2-user', identityFile: '/etc/rch/pool_key', sshPort: 22 },
    remote: { workRoot: '~/rch', dockerSocket: '/var/run/docker.sock' }
  } as unknown as Config
  const pool = (workRoot: string): StoredState =>
    ({
      ...good(),
      externals: null,
      jobRoot: `${workRoot}/jobs/${OWNER}-${JOB}`,
      host: {
        kind: 'ec2-pool',
        host: '10.0.0.8',
        port: 22,
        user: 'ec2-user',
        instanceId: 'i-0123456789abcdef0',
        token: 'ab'.repeat(16),
        worker: null,
        workRoot,
        region: 'eu-west-1',
        identityFile: '/etc/rch/pool_key',
        knownHostsFile: `${ec2Local}/known_hosts`
      }
    }) as unknown as StoredState

  test('what the VM answered is refused where decodeState would: a PATH with a line break, a member work root not remote.workRoot', () => {
    const path = { ...good(), container: { ...good().container, path: '/usr/bin\n/bin' } } as unknown as StoredState
    expect(ownStateIssues(path, facts())).toEqual(['state.container.path: must not contain control characters'])
    expect(ownStateIssues(pool('/srv/elsewhere'), facts(poolConfig))).toEqual([
      'state.host.workRoot: is not remote.workRoot on this machine'
    ])
  })

  test('controls: the states decodeState accepts have no issues', () => {
    expect(ownStateIssues(good() as unknown as StoredState, facts())).toEqual([])
    expect(ownStateIssues(pool('/home/ec2-user/rch'), facts(poolConfig))).toEqual([])
    expect(decodeState(pool('/home/ec2-user/rch') as unknown as Record<string, unknown>, facts(poolConfig))).not.toBeNull()
  })
})

describe('configElsewhere: where a refused state says its machine is, when today’s config cannot reach it', () => {
  const ec2Host = (region: unknown): Record<string, unknown> => ({ ...goodEc2().host, region })

  test('an ec2 instance launched before provider.region changed: the same config in its region, nothing else from the state', () => {
    const there = configElsewhere(ec2Config, ec2Host('us-east-1'))!
    expect(there.provider).toEqual({ ...ec2Config.provider, region: 'us-east-1' })
    expect(there.remote).toBe(ec2Config.remote)
    // Today's config is left as it was.
    expect(ec2Config.provider).toMatchObject({ region: 'eu-west-1' })
    for (const r of ['us-east-1', 'ap-southeast-4', 'il-central-1', 'eu-central-2'])
      expect(configElsewhere(ec2Config, ec2Host(r))?.provider).toMatchObject({ region: r })
  })

  test("only a region of provider.region's own partition (another has other endpoints; the runner's credentials are never sent there)", () => {
    const inRegion = (region: string): Config => ({ ...ec2Config, provider: { ...ec2Config.provider, region } }) as unknown as Config
    const pairs: [string, string, boolean][] = [
      ['eu-west-1', 'cn-north-1', false],
      ['eu-west-1', 'us-gov-west-1', false],
      ['eu-west-1', 'us-isob-east-1', false],
      ['eu-west-1', 'eusc-de-east-1', false],
      ['cn-north-1', 'cn-northwest-1', true],
      ['cn-north-1', 'us-east-1', false],
      ['us-gov-west-1', 'us-gov-east-1', true],
      ['us-iso-east-1', 'us-iso-west-1', true],
      ['us-iso-east-1', 'us-isob-east-1', false],
      ['eusc-de-east-1', 'eusc-de-east-2', true]
    ]
    for (const [today, state, moves] of pairs)
      expect([today, state, configElsewhere(inRegion(today), ec2Host(state))?.provider.kind === 'ec2']).toEqual([today, state, moves])
  })

  test('none for the same region, a region that is no region name (an endpoint host could be built from it), another kind, or no host', () => {
    const refused = [
      'eu-west-1',
      '',
      'evil.example.com',
      'eu-west-1.example.com',
      'eu-west-1/x',
      'EU-WEST-1',
      'eu-west-1 ',
      'eu--1',
      42,
      null
    ]
    for (const r of refused) expect([r, configElsewhere(ec2Config, ec2Host(r))]).toEqual([r, null])
    expect(configElsewhere(ec2Config, { ...ec2Host('us-east-1'), kind: 'ec2-pool' })).toBeNull()
    expect(configElsewhere(staticConfig, ec2Host('us-east-1'))).toBeNull()
    for (const h of [undefined, null, 'ec2', []]) expect(configElsewhere(ec2Config, h)).toBeNull()
  })

  test('a pool member is not looked for elsewhere (its lease lapses; the pool stays where it is)', () => {
    const poolConfig = { ...ec2Config, provider: { ...ec2Config.provider, kind: 'ec2-pool' } } as unknown as Config
    expect(configElsewhere(poolConfig, { ...ec2Host('us-east-1'), kind: 'ec2-pool' })).toBeNull()
  })
})
