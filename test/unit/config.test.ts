import { loadConfig, type ConfigIo } from '../../src/config'
import { ConfigError } from '../../src/errors'

const KEY = '/etc/rch/id_ed25519'
const KNOWN = '/etc/rch/known_hosts'

function io(files: Record<string, string>, unreadable: Record<string, string> = {}): ConfigIo & { canReadCalls: string[] } {
  const canReadCalls: string[] = []
  return {
    canReadCalls,
    readFile(path) {
      if (path in files) return files[path]
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
    provider: { kind: 'static', hosts: [{ host: 'build1.example.com', user: 'runner', identityFile: KEY, knownHostsFile: KNOWN, ...extra }] },
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
      remote: { workRoot: '/srv/rch', dockerSocket: '/var/run/docker.sock' },
      images: { pullPolicy: 'missing', pullTimeoutSeconds: 1800 },
      sync: { toolCache: true, excludeFromPullBack: [] },
      timeouts: { connectSeconds: 20, healthSeconds: 600, cancelGraceSeconds: 2 },
      agent: { enabled: true, idleSeconds: 1800 },
      log: { level: 'info' }
    })
    expect(Object.isFrozen(cfg)).toBe(true)
  })

  it('loads JSON from a .json file and keeps explicit values', () => {
    const text = withHost(
      { port: 2231, slots: 4, user: 'ci$' },
      {
        images: { pullPolicy: 'always' },
        sync: { toolCache: false, excludeFromPullBack: ['node_modules/.cache'] },
        timeouts: { connectSeconds: 5, cancelGraceSeconds: 0 },
        agent: { enabled: false },
        log: { file: '/var/log/rch.log', level: 'debug' }
      }
    )
    const cfg = load(text, '/etc/rch/config.json')
    expect(cfg.provider.kind === 'static' && cfg.provider.hosts[0]).toMatchObject({ port: 2231, slots: 4, user: 'ci$' })
    expect(cfg.images.pullPolicy).toBe('always')
    expect(cfg.sync).toEqual({ toolCache: false, excludeFromPullBack: ['node_modules/.cache'] })
    expect(cfg.timeouts).toEqual({ connectSeconds: 5, healthSeconds: 600, cancelGraceSeconds: 0 })
    expect(cfg.agent).toEqual({ enabled: false, idleSeconds: 1800 })
    expect(cfg.log).toEqual({ file: '/var/log/rch.log', level: 'debug' })
  })

  it('checks that every identityFile and knownHostsFile is readable', () => {
    const files = { '/c.yml': MINIMAL_YAML }
    const fake = io(files)
    loadConfig({ REMOTE_HOOKS_CONFIG: '/c.yml' }, fake)
    expect(fake.canReadCalls.sort()).toEqual([KEY, KNOWN].sort())
  })
})

describe('loadConfig: the file itself', () => {
  it('reports an unset or empty REMOTE_HOOKS_CONFIG', () => {
    expect(issuesOf(() => loadConfig({}, io({})))).toEqual(['REMOTE_HOOKS_CONFIG: not set (it must name the YAML or JSON configuration file)'])
    expect(issuesOf(() => loadConfig({ REMOTE_HOOKS_CONFIG: '' }, io({})))).toEqual([
      'REMOTE_HOOKS_CONFIG: not set (it must name the YAML or JSON configuration file)'
    ])
  })

  it('reports an unreadable file with its errno code', () => {
    expect(issuesOf(() => loadConfig({ REMOTE_HOOKS_CONFIG: '/nope.yml' }, io({})))).toEqual(['REMOTE_HOOKS_CONFIG: cannot read /nope.yml (ENOENT)'])
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
    expect(issues).toContain('provider.hosts.0.user: must be a plain user name')
    expect(issues).toContain('remote.dockerSocket: must be an absolute path')
    expect(issues).toContain('log.file: must be an absolute path')
    expect(issues).toContain('provider.hosts.1.knownHostsFile: Required')
  })

  it('rejects unknown keys at every level, naming the object', () => {
    const issues = issuesOf(() => load(withHost({ password: 'hunter2' }, { extra: 1, sync: { toolcache: false } })))
    expect(issues).toHaveLength(3)
    expect(issues).toContain("(root): Unrecognized key(s) in object: 'extra'")
    expect(issues).toContain("provider.hosts.0: Unrecognized key(s) in object: 'password'")
    expect(issues).toContain("sync: Unrecognized key(s) in object: 'toolcache'")
  })

  // timeouts.pullSeconds was removed (it was never enforced); the strict schema now refuses it
  // like any other unknown key instead of silently accepting a limit that does nothing.
  it('rejects the removed timeouts.pullSeconds as an unknown key', () => {
    const issues = issuesOf(() => load(withHost({}, { timeouts: { connectSeconds: 5, pullSeconds: 1800 } })))
    expect(issues).toEqual(["timeouts: Unrecognized key(s) in object: 'pullSeconds'"])
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

  it.each([
    ['srv/rch', 'must be an absolute path'],
    ['/', 'must not be / or contain spaces, quotes or $'],
    ['/srv/my work', 'must not be / or contain spaces, quotes or $'],
    ["/srv/it's", 'must not be / or contain spaces, quotes or $'],
    ['/srv/$HOME', 'must not be / or contain spaces, quotes or $']
  ])('refuses remote.workRoot %j', (workRoot, why) => {
    const text = JSON.stringify({ ...JSON.parse(withHost()), remote: { workRoot } })
    expect(issuesOf(() => load(text))).toContain(`remote.workRoot: ${why}`)
  })

  it('reports an unknown provider.kind with the allowed kinds', () => {
    const text = JSON.stringify({ provider: { kind: 'aws', hosts: [] }, remote: { workRoot: '/srv/rch' } })
    expect(issuesOf(() => load(text))).toEqual(['provider.kind: kind must be one of: static, ec2 (got "aws")'])
  })

  it('reports a missing provider.kind', () => {
    const text = JSON.stringify({ provider: { hosts: [] }, remote: { workRoot: '/srv/rch' } })
    expect(issuesOf(() => load(text))).toEqual(['provider.kind: kind must be one of: static, ec2 (got undefined)'])
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
