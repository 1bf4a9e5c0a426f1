import { utils } from 'ssh2'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { keyModeProblem, loadConfig, privateKeyProblem, systemConfigIo, type ConfigIo } from '../../src/config'
import { ConfigError } from '../../src/errors'
import { TAG_KEEP, tagsFor } from '../../src/providers/ec2-plan'
import { encryptedTestKey, testKeyPair } from '../helpers/keys'

const KEY = '/etc/rch/id_ed25519'
const KNOWN = '/etc/rch/known_hosts'
const PRIVATE_KEY = testKeyPair().private
/** Every path under /k/ or the usual KEY holds a usable private key unless a test says otherwise. */
const isKeyPath = (p: string): boolean => p === KEY || p.startsWith('/k/')

function io(files: Record<string, string>, unreadable: Record<string, string> = {}): ConfigIo & { canReadCalls: string[] } {
  const canReadCalls: string[] = []
  return {
    canReadCalls,
    readFile(path) {
      if (path in files) return files[path]
      if (isKeyPath(path)) return PRIVATE_KEY
      throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' })
    },
    canRead(path) {
      canReadCalls.push(path)
      return unreadable[path] ?? null
    }
  }
}

const MINIMAL_YAML = `
provider:
  kind: static
  hosts:
    - host: build1.example.com
      user: runner
      identityFile: ${KEY}
      knownHostsFile: ${KNOWN}
remote:
  workRoot: /srv/rch
`

function load(text: string, path = '/etc/rch/config.yml', unreadable: Record<string, string> = {}) {
  return loadConfig({ REMOTE_HOOKS_CONFIG: path }, io({ [path]: text }, unreadable))
}

/** Runs fn, expects a ConfigError, returns its issues. */
function issuesOf(fn: () => unknown): string[] {
  try {
    fn()
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    const err = e as ConfigError
    expect(err.message).toBe(`invalid configuration: ${err.issues.join('; ')}`)
    expect(err.message).not.toMatch(/\n/)
    return err.issues
  }
  throw new Error('expected a ConfigError')
}

function withHost(extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}): string {
  return JSON.stringify({
    provider: {
      kind: 'static',
      hosts: [{ host: 'build1.example.com', user: 'runner', identityFile: KEY, knownHostsFile: KNOWN, ...extra }]
    },
    remote: { workRoot: '/srv/rch' },
    ...top
  })
}

describe('loadConfig: valid files', () => {
  it('loads minimal YAML and applies every default', () => {
    const cfg = load(MINIMAL_YAML)
    expect(cfg).toEqual({
      provider: {
        kind: 'static',
        hosts: [{ host: 'build1.example.com', port: 22, user: 'runner', identityFile: KEY, knownHostsFile: KNOWN, slots: 1 }],
        acquireTimeoutSeconds: 600
      },
      remote: { workRoot: '/srv/rch', dockerSocket: '/var/run/docker.sock', externalsKeepDays: 14 },
      images: { pullPolicy: 'missing', pullTimeoutSeconds: 1800 },
      sync: {
        toolCache: true,
        excludeFromPullBack: [],
        earlyPush: true,
        deltaListing: true,
        limits: {
          stepBytes: 10 * 1024 ** 3,
          stepFiles: 1_000_000,
          jobBytes: 50 * 1024 ** 3,
          jobFiles: 1_000_000,
          listingEntries: 1_000_000,
          listingBytes: 256 * 1024 ** 2,
          fileCommandBytes: 16 * 1024 ** 2
        }
      },
      timeouts: { connectSeconds: 20, keepaliveSeconds: 90, healthSeconds: 600, cancelGraceSeconds: 2, cleanupSeconds: 600 },
      agent: { enabled: true, idleSeconds: 1800, warmShell: true, lowMemory: true },
      tools: {},
      log: { level: 'info' },
      fleet: {
        ledger: { kind: 'local' },
        caps: { perRepository: {} },
        reap: { deadAfterMinutes: 15, graceMinutes: 2, maxJobMinutes: 7200 }
      }
    })
    expect(Object.isFrozen(cfg)).toBe(true)
  })

  it('loads JSON from a .json file and keeps explicit values', () => {
    const text = withHost(
      { port: 2231, slots: 4, user: 'ci_1' },
      {
        images: { pullPolicy: 'always' },
        sync: { toolCache: false, excludeFromPullBack: ['node_modules/.cache'] },
        timeouts: { connectSeconds: 5, cancelGraceSeconds: 0 },
        agent: { enabled: false },
        log: { file: '/var/log/rch.log', level: 'debug' }
      }
    )
    const cfg = load(text, '/etc/rch/config.json')
    expect(cfg.provider.kind === 'static' && cfg.provider.hosts[0]).toMatchObject({ port: 2231, slots: 4, user: 'ci_1' })
    expect(cfg.images.pullPolicy).toBe('always')
    expect(cfg.sync).toMatchObject({ toolCache: false, excludeFromPullBack: ['node_modules/.cache'] })
    expect(cfg.timeouts).toEqual({
      connectSeconds: 5,
      keepaliveSeconds: 90,
      healthSeconds: 600,
      cancelGraceSeconds: 0,
      cleanupSeconds: 600
    })
    expect(cfg.agent).toEqual({ enabled: false, idleSeconds: 1800, warmShell: true, lowMemory: true })
    expect(cfg.log).toEqual({ file: '/var/log/rch.log', level: 'debug' })
  })

  it('refuses an excludeFromPullBack entry the sync would never match, naming it (the folder would come back after all)', () => {
    const bad = ['repo/repo/node_modules/.cache/', './repo/x', '/home/runner/_work/repo/x', 'repo//x', 'repo/../x', '..', '']
    const text = withHost({}, { sync: { excludeFromPullBack: ['repo/repo/node_modules/.cache', ...bad] } })
    const issues = issuesOf(() => load(text, '/etc/rch/config.json'))
    expect(issues.map((i) => i.slice(0, i.indexOf(':')))).toEqual(bad.map((_b, i) => `sync.excludeFromPullBack.${i + 1}`))
    // control: plain relative prefixes, odd characters and all, are kept
    const good = ['repo/repo/node_modules/.cache', '_temp/x', 'r/r/a b/.c..d', 'r/r/@scope/#1']
    expect(load(withHost({}, { sync: { excludeFromPullBack: good } }), '/etc/rch/config.json').sync.excludeFromPullBack).toEqual(good)
  })

  it('checks that every identityFile and knownHostsFile is readable', () => {
    const files = { '/c.yml': MINIMAL_YAML }
    const fake = io(files)
    loadConfig({ REMOTE_HOOKS_CONFIG: '/c.yml' }, fake)
    expect(fake.canReadCalls.sort()).toEqual([KEY, KNOWN].sort())
  })
})

describe('remote.externalsKeepDays', () => {
  test.each([-1, 2.5, 3, 5, 3651])('%p gets one line naming the field', (d) => {
    const remote = { workRoot: '/srv/rch', externalsKeepDays: d }
    expect(issuesOf(() => load(withHost({}, { remote }), '/c.json'))).toEqual([
      'remote.externalsKeepDays: must be 0 (keep every copy) or a whole number of days from 6 (longer than the longest job) to 3650'
    ])
  })
  test.each([0, 6, 14, 3650])('%p is taken', (d) => {
    expect(load(withHost({}, { remote: { workRoot: '/srv/rch', externalsKeepDays: d } }), '/c.json').remote.externalsKeepDays).toBe(d)
  })
})

describe('loadConfig: the file itself', () => {
  it('reports an unset or empty REMOTE_HOOKS_CONFIG', () => {
    expect(issuesOf(() => loadConfig({}, io({})))).toEqual([
      'REMOTE_HOOKS_CONFIG: not set (it must name the YAML or JSON configuration file)'
    ])
    expect(issuesOf(() => loadConfig({ REMOTE_HOOKS_CONFIG: '' }, io({})))).toEqual([
      'REMOTE_HOOKS_CONFIG: not set (it must name the YAML or JSON configuration file)'
    ])
  })

  it("refuses a relative REMOTE_HOOKS_CONFIG without reading it (the hook's working folder is the job's workspace)", () => {
    const files = { 'config.yml': MINIMAL_YAML, '/c.yml': MINIMAL_YAML }
    const read: string[] = []
    const fake = { ...io(files), readFile: (p: string) => (read.push(p), io(files).readFile(p)) }
    for (const path of ['config.yml', './config.yml', '../etc/rch/config.yml'])
      expect(issuesOf(() => loadConfig({ REMOTE_HOOKS_CONFIG: path }, fake))).toEqual([
        `REMOTE_HOOKS_CONFIG: ${JSON.stringify(path)} is not an absolute path (a relative one would be read from the job's workspace)`
      ])
    expect(read).toEqual([])
    // control: the same file by its absolute path
    expect(loadConfig({ REMOTE_HOOKS_CONFIG: '/c.yml' }, fake).remote.workRoot).toBe('/srv/rch')
  })

  it('reports an unreadable file with its errno code', () => {
    expect(issuesOf(() => loadConfig({ REMOTE_HOOKS_CONFIG: '/nope.yml' }, io({})))).toEqual([
      'REMOTE_HOOKS_CONFIG: cannot read /nope.yml (ENOENT)'
    ])
  })

  it('reports a read error without a code by its message', () => {
    const fake: ConfigIo = {
      readFile: () => {
        throw new Error('boom')
      },
      canRead: () => null
    }
    expect(issuesOf(() => loadConfig({ REMOTE_HOOKS_CONFIG: '/x.yml' }, fake))).toEqual(['REMOTE_HOOKS_CONFIG: cannot read /x.yml (boom)'])
  })

  it('reports invalid YAML on one line', () => {
    const issues = issuesOf(() => load('provider: [unclosed\n  kind: static\n', '/c.yml'))
    expect(issues).toHaveLength(1)
    expect(issues[0]).toMatch(/^\/c\.yml: not valid YAML \(.+\)$/)
  })

  it('reports invalid JSON for a .json file', () => {
    const issues = issuesOf(() => load('{"provider": ', '/c.json'))
    expect(issues).toHaveLength(1)
    expect(issues[0]).toMatch(/^\/c\.json: not valid JSON \(.+\)$/)
  })

  it('an empty file reports the missing sections', () => {
    expect(issuesOf(() => load('')).sort()).toEqual(['provider: Required', 'remote: Required'])
  })

  it('a top-level list is not an object', () => {
    expect(issuesOf(() => load('- a\n- b\n'))).toEqual(['(root): Expected object, received array'])
  })
})

describe('loadConfig: validation', () => {
  it('reports every problem together, each with its field path', () => {
    const text = JSON.stringify({
      provider: {
        kind: 'static',
        hosts: [
          { host: '', port: 0, user: 'bad user', identityFile: 'id_ed25519', knownHostsFile: KNOWN, slots: 1.5 },
          { host: 'ok', user: 'runner', identityFile: KEY }
        ]
      },
      remote: { workRoot: '/srv/rch', dockerSocket: 'docker.sock' },
      images: { pullPolicy: 'sometimes' },
      timeouts: { connectSeconds: 0, cancelGraceSeconds: 31 },
      agent: { idleSeconds: 'long' },
      log: { file: 'rch.log' }
    })
    const issues = issuesOf(() => load(text, '/c.json'))
    const paths = issues.map((i) => i.split(': ')[0]).sort()
    expect(paths).toEqual(
      [
        'provider.hosts.0.host',
        'provider.hosts.0.port',
        'provider.hosts.0.user',
        'provider.hosts.0.identityFile',
        'provider.hosts.0.slots',
        'provider.hosts.1.knownHostsFile',
        'remote.dockerSocket',
        'images.pullPolicy',
        'timeouts.connectSeconds',
        'timeouts.cancelGraceSeconds',
        'agent.idleSeconds',
        'log.file'
      ].sort()
    )
    expect(issues).toContain('provider.hosts.0.identityFile: must be an absolute path')
    expect(issues).toContain('provider.hosts.0.user: must be a plain user name ([a-z_][a-z0-9_.-]*)')
    expect(issues).toContain('remote.dockerSocket: must be an absolute path')
    expect(issues).toContain('log.file: must be an absolute path')
    expect(issues).toContain('provider.hosts.1.knownHostsFile: Required')
  })

  it('sync.limits: takes given caps, keeps the defaults of the others, and names a bad or unknown key', () => {
    const cfg = load(withHost({}, { sync: { limits: { stepBytes: 1024, jobFiles: 10 } } }))
    expect(cfg.sync.limits).toEqual({
      stepBytes: 1024,
      stepFiles: 1_000_000,
      jobBytes: 50 * 1024 ** 3,
      jobFiles: 10,
      listingEntries: 1_000_000,
      listingBytes: 256 * 1024 ** 2,
      fileCommandBytes: 16 * 1024 ** 2
    })
    const issues = issuesOf(() =>
      load(withHost({}, { sync: { limits: { stepBytes: -1, stepFiles: 1.5, listingBytes: 10, stepbytes: 1 } } }))
    )
    expect(issues.map((i) => i.slice(0, i.indexOf(':'))).sort()).toEqual([
      'sync.limits.listingBytes',
      'sync.limits.stepBytes',
      'sync.limits.stepFiles',
      'sync.limits.stepbytes'
    ])
    expect(issues).toContain('sync.limits.stepbytes: unknown key (did you mean `stepBytes`?)')
  })

  it('rejects unknown keys at every level, naming the object', () => {
    const issues = issuesOf(() => load(withHost({ password: 'hunter2' }, { extra: 1, sync: { toolcache: false } })))
    expect(issues).toHaveLength(3)
    expect(issues).toContain('extra: unknown key')
    expect(issues).toContain('provider.hosts.0.password: unknown key')
    expect(issues).toContain('sync.toolcache: unknown key (did you mean `toolCache`?)')
  })

  // timeouts.pullSeconds was removed (it was never enforced); the strict schema now refuses it
  // like any other unknown key instead of silently accepting a limit that does nothing.
  it('rejects the removed timeouts.pullSeconds as an unknown key', () => {
    const issues = issuesOf(() => load(withHost({}, { timeouts: { connectSeconds: 5, pullSeconds: 1800 } })))
    expect(issues).toEqual(['timeouts.pullSeconds: unknown key'])
  })

  it('never prints the value of a misplaced secret', () => {
    let msg = ''
    try {
      load(withHost({ password: 'hunter2-very-secret' }))
    } catch (e) {
      msg = (e as Error).message
    }
    expect(msg).toMatch(/password/)
    expect(msg).not.toMatch(/hunter2/)
  })

  const WORKROOT_RULE = 'must be a normalised absolute path other than / (or ~/path for pools), without .. and only of A-Z a-z 0-9 . _ / -'
  it.each([
    'srv/rch',
    '/',
    '/srv/my work',
    "/srv/it's",
    '/srv/$HOME',
    '/..',
    '/srv/../etc',
    '/srv/rch/..',
    '/srv/./rch',
    '/srv//rch',
    '/srv/rch/',
    '/srv/rch\0x',
    '/srv/rch\nx',
    '/srv/-$(id)',
    ''
  ])('refuses remote.workRoot %j', (workRoot) => {
    const text = JSON.stringify({ ...JSON.parse(withHost()), remote: { workRoot } })
    expect(issuesOf(() => load(text))).toContain(`remote.workRoot: ${WORKROOT_RULE}`)
  })

  it.each(['~', '~/', '~/../x', '~user/x', '~/a b'])('refuses remote.workRoot %j', (workRoot) => {
    const text = JSON.stringify({ ...JSON.parse(withHost()), remote: { workRoot } })
    expect(issuesOf(() => load(text))).toContain(`remote.workRoot: ${WORKROOT_RULE}`)
  })

  it('takes remote.workRoot ~/path for pools only (resolved on each member)', () => {
    const text = JSON.stringify({ ...JSON.parse(withHost()), remote: { workRoot: '~/rch' } })
    expect(issuesOf(() => load(text))).toEqual([
      "remote.workRoot: ~/path (under each machine's home) is for provider.kind ec2-pool only; give an absolute path"
    ])
  })

  it.each(['/srv/rch', '/var/tmp/rch-vm-a/work', '/home/ci.user/rch_2', '/a'])('accepts remote.workRoot %j', (workRoot) => {
    const text = JSON.stringify({ ...JSON.parse(withHost()), remote: { workRoot } })
    expect(load(text).remote.workRoot).toBe(workRoot)
  })

  it.each(['-oProxyCommand=x', 'host name', 'a;b', 'h\nx', '$(id)', 'a..b', '.a', 'a_b.example.com', 'x'.repeat(254)])(
    'refuses provider.hosts.0.host %j',
    (host) => {
      expect(issuesOf(() => load(withHost({ host })))).toContain(
        'provider.hosts.0.host: must be a DNS name ([A-Za-z0-9.-]) or an IP address'
      )
    }
  )

  it.each(['build1.example.com', '10.0.0.5', '::1', 'fe80::1', 'localhost', 'my-vm'])('accepts provider.hosts.0.host %j', (host) => {
    expect(load(withHost({ host })).provider).toMatchObject({ hosts: [{ host }] })
  })

  it.each(['Root', '-oops', 'a b', 'ci$', '1abc', 'a\nb', ''])('refuses provider.hosts.0.user %j', (user) => {
    expect(issuesOf(() => load(withHost({ user }))).some((i) => i.startsWith('provider.hosts.0.user: '))).toBe(true)
  })

  it('refuses an identityFile that is not a usable private key, naming the field (config error, not a transport error)', () => {
    const pub = testKeyPair().public
    const enc = encryptedTestKey()
    const text = JSON.stringify({
      provider: {
        kind: 'static',
        hosts: [
          { host: 'a', user: 'runner', identityFile: '/k/garbage', knownHostsFile: '/k/known' },
          { host: 'b', user: 'runner', identityFile: '/k/pub', knownHostsFile: '/k/known' },
          { host: 'c', user: 'runner', identityFile: '/k/enc', knownHostsFile: '/k/known' },
          { host: 'd', user: 'runner', identityFile: '/k/good', knownHostsFile: '/k/known' }
        ]
      },
      remote: { workRoot: '/srv/rch' }
    })
    const issues = issuesOf(() =>
      loadConfig({ REMOTE_HOOKS_CONFIG: '/c.json' }, io({ '/c.json': text, '/k/garbage': 'hello\n', '/k/pub': pub, '/k/enc': enc }))
    )
    expect(issues).toHaveLength(3)
    expect(issues[0]).toMatch(/^provider\.hosts\.0\.identityFile: \/k\/garbage is not a usable private key/)
    expect(issues[1]).toMatch(/^provider\.hosts\.1\.identityFile: \/k\/pub is not a private key$/)
    expect(issues[2]).toMatch(/^provider\.hosts\.2\.identityFile: \/k\/enc is an encrypted private key/)
  })

  it('privateKeyProblem: a usable key passes', () => {
    expect(privateKeyProblem(PRIVATE_KEY)).toBeNull()
    expect(privateKeyProblem(utils.generateKeyPairSync('ecdsa', { bits: 256 }).private)).toBeNull()
  })

  it('reports an unknown provider.kind with the allowed kinds', () => {
    const text = JSON.stringify({ provider: { kind: 'aws', hosts: [] }, remote: { workRoot: '/srv/rch' } })
    expect(issuesOf(() => load(text))).toEqual(['provider.kind: kind must be one of: static, ec2, ec2-pool (got "aws")'])
  })

  it('reports a provider.kind that is no name, however deeply nested, as a config issue (its text once overflowed the stack)', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000)
    const text = `{"provider":{"kind":${deep},"hosts":[]},"remote":{"workRoot":"/srv/rch"}}`
    expect(issuesOf(() => load(text, '/etc/rch/config.json'))).toEqual([
      'provider.kind: kind must be one of: static, ec2, ec2-pool (got an array)'
    ])
  })

  it('reports a missing provider.kind', () => {
    const text = JSON.stringify({ provider: { hosts: [] }, remote: { workRoot: '/srv/rch' } })
    expect(issuesOf(() => load(text))).toEqual(['provider.kind: kind must be one of: static, ec2, ec2-pool (got undefined)'])
  })

  it('requires at least one host', () => {
    const text = JSON.stringify({ provider: { kind: 'static', hosts: [] }, remote: { workRoot: '/srv/rch' } })
    expect(issuesOf(() => load(text))).toEqual(['provider.hosts: at least one host is required'])
  })

  it('reports unreadable key files of every host via io.canRead', () => {
    const text = JSON.stringify({
      provider: {
        kind: 'static',
        hosts: [
          { host: 'a', user: 'runner', identityFile: '/k/a', knownHostsFile: '/k/known' },
          { host: 'b', user: 'runner', identityFile: '/k/b', knownHostsFile: '/k/known' }
        ]
      },
      remote: { workRoot: '/srv/rch' }
    })
    const issues = issuesOf(() => load(text, '/c.yml', { '/k/a': 'EACCES', '/k/known': 'ENOENT' }))
    expect(issues).toEqual([
      'provider.hosts.0.identityFile: cannot read /k/a (EACCES)',
      'provider.hosts.0.knownHostsFile: cannot read /k/known (ENOENT)',
      'provider.hosts.1.knownHostsFile: cannot read /k/known (ENOENT)'
    ])
  })

  // config.ts promises "Every problem is reported together": an operator with a typo elsewhere
  // and an unreadable key should learn about both at once.
  it('reports an unreadable identityFile together with schema problems elsewhere', () => {
    const text = withHost({}, { timeouts: { connectSeconds: 0 } })
    const issues = issuesOf(() => load(text, '/c.yml', { [KEY]: 'EACCES' }))
    expect(issues).toContain(`provider.hosts.0.identityFile: cannot read ${KEY} (EACCES)`)
    expect(issues.some((i) => i.startsWith('timeouts.connectSeconds: '))).toBe(true)
  })

  it('does not check a key path the schema already rejected (relative), nor report it twice', () => {
    const text = withHost({ identityFile: 'relative/id' }, { timeouts: { connectSeconds: 0 } })
    const fake = io({ '/c.yml': text })
    const issues = issuesOf(() => loadConfig({ REMOTE_HOOKS_CONFIG: '/c.yml' }, fake))
    expect(issues.filter((i) => i.startsWith('provider.hosts.0.identityFile'))).toHaveLength(1)
    expect(fake.canReadCalls).not.toContain('relative/id')
  })
})

describe('loadConfig: provider.kind ec2-pool', () => {
  const pool = (extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}): string =>
    JSON.stringify({
      provider: { kind: 'ec2-pool', region: 'eu-west-1', autoScalingGroup: 'ci-pool', identityFile: '/k/pool', ...extra },
      remote: { workRoot: '/home/ec2-user/rch' },
      ...top
    })

  it('takes the minimal pool and fills the defaults', () => {
    const cfg = load(pool(), '/etc/rch/c.json')
    expect(cfg.provider).toEqual({
      kind: 'ec2-pool',
      region: 'eu-west-1',
      autoScalingGroup: 'ci-pool',
      identityFile: '/k/pool',
      user: 'ec2-user',
      sshPort: 22,
      connect: { address: 'private-ip' },
      lease: { ttlSeconds: 120 },
      reuse: { maxJobsPerVm: 1, maxVmAgeMinutes: 720, maxDiskPercent: 90 },
      scaleOut: { enabled: true },
      waitTimeoutSeconds: 600
    })
  })

  it('names each bad field on its own line', () => {
    expect(
      issuesOf(() =>
        load(pool({ user: 'root', lease: { ttlSeconds: 5 }, autoScalingGroup: 'a b', reuse: { maxJobsPerVm: 0 } }), '/etc/rch/c.json')
      )
    ).toEqual([
      'provider.autoScalingGroup: must be an Auto Scaling group name',
      'provider.user: must not be root (releasing a member ends all processes of this user)',
      'provider.lease.ttlSeconds: Number must be greater than or equal to 15',
      'provider.reuse.maxJobsPerVm: Number must be greater than or equal to 1'
    ])
  })

  it('needs the agent (it renews the lease) and a readable pool key', () => {
    expect(issuesOf(() => load(pool({}, { agent: { enabled: false } }), '/etc/rch/c.json'))).toEqual([
      "agent.enabled: provider.kind ec2-pool needs the job's agent (it renews the member's lease while the job runs)"
    ])
    expect(issuesOf(() => load(pool({ identityFile: '/etc/rch/nokey' }), '/etc/rch/c.json', { '/etc/rch/nokey': 'EACCES' }))).toEqual([
      'provider.identityFile: cannot read /etc/rch/nokey (EACCES)'
    ])
  })
})

describe('loadConfig: provider.kind ec2 tags', () => {
  const ec2 = (tags: Record<string, string>): string =>
    JSON.stringify({
      provider: { kind: 'ec2', region: 'eu-west-1', imageId: 'ami-0123456789abcdef0', instanceTypes: ['t3.micro'], tags },
      remote: { workRoot: '/srv/rch' }
    })
  const many = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`team-${i}`, 'x']))

  // EC2 refuses these in RunInstances, after the launch was reserved in the fleet ledger.
  it('refuses what EC2 would refuse at launch, naming the tag', () => {
    expect(issuesOf(() => load(ec2({ 'aws:cloudformation:stack-name': 'ci' }), '/etc/rch/c.json'))).toEqual([
      'provider.tags.aws:cloudformation:stack-name: tag keys are 1 to 128 characters, not starting with aws:'
    ])
    expect(issuesOf(() => load(ec2({ ['k'.repeat(129)]: 'x' }), '/etc/rch/c.json'))[0]).toMatch(
      /^provider\.tags\.k+: tag keys are 1 to 128/
    )
    expect(issuesOf(() => load(ec2({ team: 'x'.repeat(257) }), '/etc/rch/c.json'))).toEqual([
      'provider.tags.team: tag values are at most 256 characters'
    ])
    expect(issuesOf(() => load(ec2(many(37)), '/etc/rch/c.json'))).toEqual([
      'provider.tags: at most 36 tags besides Name (EC2 allows 50 per instance; the hook sets 13 at launch and reap marks with one more)'
    ])
  })

  // The runner-iam policy denies writing the keep tag (NeverWriteTheKeepTag): every launch would be refused.
  it("refuses reap's keep tag, which is the operator's to set by hand", () => {
    expect(issuesOf(() => load(ec2({ [TAG_KEEP]: 'yes' }), '/etc/rch/c.json'))).toEqual([
      `provider.tags.${TAG_KEEP}: ${TAG_KEEP} is set by hand on an instance reap must leave alone, never at launch (terraform/modules/runner-iam's policy denies writing it, so every launch would fail)`
    ])
  })

  // An instance at EC2's 50 cannot be marked by reap (CreateTags fails), so it is never ended, even
  // once a job has disabled its shutdown timer.
  it("every accepted set of tags leaves room at launch for the reservation and later for reap's mark", () => {
    const facts = {
      owner: 'o'.repeat(16),
      jobId: 'j'.repeat(16),
      runner: { runnerName: 'r', github: { repository: 'a/b', workflow: 'w', runId: '1', runAttempt: '1', job: 'j' } },
      runnerHost: 'h',
      launchedAt: new Date(0)
    }
    const tried = [
      many(36),
      many(37),
      { ...many(35), 'remote-container-hooks:team': 'x', Name: 'n' },
      { ...many(36), 'remote-container-hooks:team': 'x' }
    ]
    let accepted = 0
    for (const tags of tried) {
      let cfg
      try {
        cfg = load(ec2(tags), '/etc/rch/c.json')
      } catch {
        continue
      }
      accepted++
      if (cfg.provider.kind !== 'ec2') throw new Error('not ec2')
      // + remote-container-hooks:reservation at launch, + remote-container-hooks:reap-candidate later
      expect(tagsFor(cfg.provider, facts).length + 2).toBeLessThanOrEqual(50)
    }
    expect(accepted).toBe(2) // control: the check above ran, on the largest sets still allowed
  })

  it('control: 36 tags and a Name, 256 characters counted as EC2 counts them (an emoji is one)', () => {
    const tags = { ...many(34), Name: 'ci-box', emoji: '🚀'.repeat(256), ['k'.repeat(128)]: 'x' }
    const cfg = load(ec2(tags), '/etc/rch/c.json')
    expect(cfg.provider.kind === 'ec2' && cfg.provider.tags).toEqual(tags)
  })
})

describe('private key files other users can read', () => {
  const ME = 1000
  it('keyModeProblem: this user’s own key with a group or other bit is refused (as OpenSSH); another user’s key is theirs to guard', () => {
    expect(keyModeProblem(0o100600, ME, ME)).toBeNull()
    expect(keyModeProblem(0o100400, ME, ME)).toBeNull()
    expect(keyModeProblem(0o100644, ME, ME)).toBe('is readable by other users (mode 0644): chmod 600 it (it logs in to the machines)')
    expect(keyModeProblem(0o100640, ME, ME)).toMatch(/mode 0640/)
    expect(keyModeProblem(0o100604, ME, ME)).toMatch(/mode 0604/)
    // Controls: root's key shared with the runner's group; a secret volume's root-owned 0644 file.
    expect(keyModeProblem(0o100640, 0, ME)).toBeNull()
    expect(keyModeProblem(0o100644, 0, ME)).toBeNull()
  })

  it("loadConfig on this machine's files: a key of mode 0644 fails naming its field; control: 0600 loads", () => {
    const dir = mkdtempSync(join(tmpdir(), 'rch-keymode-'))
    try {
      const key = join(dir, 'id')
      writeFileSync(key, PRIVATE_KEY, { mode: 0o600 })
      chmodSync(key, 0o644)
      writeFileSync(join(dir, 'kh'), '')
      const cfg = join(dir, 'c.yaml')
      writeFileSync(cfg, MINIMAL_YAML.replace(KEY, key).replace(KNOWN, join(dir, 'kh')))
      const env = { REMOTE_HOOKS_CONFIG: cfg }
      expect(() => loadConfig(env, systemConfigIo)).toThrow(
        `provider.hosts.0.identityFile: ${key} is readable by other users (mode 0644): chmod 600 it (it logs in to the machines)`
      )
      chmodSync(key, 0o600)
      expect(loadConfig(env, systemConfigIo).provider.kind).toBe('static')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

test('one machine listed twice in provider.hosts (same host and port) is refused, naming both entries; another port is another machine (control)', () => {
  const hosts = (second: string) => `
provider:
  kind: static
  hosts:
    - { host: build1.example.com, user: runner, identityFile: ${KEY}, knownHostsFile: ${KNOWN}, slots: 2 }
    - { host: build2.example.com, user: runner, identityFile: ${KEY}, knownHostsFile: ${KNOWN} }
    - { ${second}, user: other, identityFile: ${KEY}, knownHostsFile: ${KNOWN} }
remote:
  workRoot: /srv/rch
`
  expect(issuesOf(() => load(hosts('host: build1.example.com')))).toEqual([
    'provider.hosts.2: build1.example.com:22 is listed already (provider.hosts.0): give that entry more slots'
  ])
  // In any case, as SSH matches host names.
  expect(issuesOf(() => load(hosts('host: BUILD1.example.com')))).toEqual([
    'provider.hosts.2: BUILD1.example.com:22 is listed already (provider.hosts.0): give that entry more slots'
  ])
  expect(load(hosts('host: build1.example.com, port: 2222')).provider).toMatchObject({ hosts: [{}, {}, { port: 2222 }] })
})
