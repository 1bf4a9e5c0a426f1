// check-config through the entry point (main.ts bundled as the build does, spawned like a shell
// would): exit codes, one problem per line, the JSON shape; and the offline checks it adds.
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { SRC, cleanupTempDirs, tempDir } from './_helpers'
import { readConfig } from '../../src/ops/config-file'
import { knownHostsProblems } from '../../src/ops/known-hosts-check'
import { problemOf } from '../../src/ops/problem'

const dir = tempDir('rch-ops-cc-')
afterAll(cleanupTempDirs)
const main = join(dir, 'index.js')
// The libraries stay outside the bundle (ssh2's optional native parts cannot be bundled) and are found through NODE_PATH.
;(require('esbuild') as typeof import('esbuild')).buildSync({
  entryPoints: [join(SRC, 'main.ts')],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  packages: 'external',
  outfile: main,
  logLevel: 'silent'
})

execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')])
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host')])
const hostKey = readFileSync(join(dir, 'host.pub'), 'utf8').split(' ').slice(0, 2).join(' ')
writeFileSync(join(dir, 'known_hosts'), `[10.0.0.5]:2222 ${hostKey}\n`)

function config(name: string, host: Record<string, unknown> = {}, top: Record<string, unknown> = {}): string {
  const f = join(dir, `${name}.json`)
  const h = {
    host: '10.0.0.5',
    port: 2222,
    user: 'runner',
    identityFile: join(dir, 'id'),
    knownHostsFile: join(dir, 'known_hosts'),
    ...host
  }
  writeFileSync(f, JSON.stringify({ provider: { kind: 'static', hosts: [h] }, remote: { workRoot: '/srv/rch' }, ...top }))
  return f
}

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [main, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, NODE_PATH: join(SRC, '..', 'node_modules'), ...env },
    timeout: 20_000
  })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

describe('check-config through the entry point', () => {
  it('exits 0 on a valid file and says what it found', () => {
    const f = config('good')
    const r = cli(['check-config', f])
    expect(r).toEqual({ code: 0, out: `${f}: valid (provider static, 1 host; remote.workRoot /srv/rch)\n`, err: '' })
  })

  it("takes a FILE relative to the operator's folder (only the hook insists on an absolute path)", () => {
    const f = config('good-relative')
    const rel = relative(process.cwd(), f)
    expect(rel.startsWith('/')).toBe(false)
    expect(readConfig(rel).problems).toEqual([])
  })

  it('reads $REMOTE_HOOKS_CONFIG when no file is given', () => {
    expect(cli(['check-config'], { REMOTE_HOOKS_CONFIG: config('good') }).code).toBe(0)
    const none = cli(['check-config', '--json'])
    expect(none.code).toBe(78)
    expect(JSON.parse(none.out)).toEqual({
      ok: false,
      file: null,
      problems: [{ field: 'REMOTE_HOOKS_CONFIG', message: 'not set (it must name the YAML or JSON configuration file)' }]
    })
  })

  it('exits 78 with one problem per line, every problem of the file at once', () => {
    const f = config('bad', { port: 0, identityFile: join(dir, 'missing') }, { timeouts: { connectSecondz: 5 } })
    const r = cli(['check-config', f])
    expect(r.code).toBe(78)
    const lines = r.out.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^FIELD\s+PROBLEM$/)
    expect(lines.slice(1, -1).map((l) => l.split(/\s{2,}/)[0])).toEqual([
      'provider.hosts.0.port',
      'timeouts.connectSecondz',
      'provider.hosts.0.identityFile'
    ])
    expect(lines[lines.length - 1]).toBe(`3 problems in ${f}`)
  })

  it('--json gives {ok, problems: [{field, message}]}', () => {
    const f = config('bad-json', { user: 'Bad User' })
    const r = cli(['check-config', f, '--json'])
    expect(r.code).toBe(78)
    const doc = JSON.parse(r.out) as { ok: boolean; problems: { field: string; message: string }[] }
    expect(doc.ok).toBe(false)
    expect(doc.problems).toEqual([{ field: 'provider.hosts.0.user', message: 'must be a plain user name ([a-z_][a-z0-9_.-]*)' }])
    expect(JSON.parse(cli(['check-config', config('good'), '--json']).out)).toEqual({
      ok: true,
      file: join(dir, 'good.json'),
      problems: []
    })
  })

  it('--help exits 0; a bad command line exits 64 with the reason on stderr', () => {
    const h = cli(['check-config', '--help'])
    expect(h.code).toBe(0)
    expect(h.out).toMatch(/^usage: remote-hooks check-config \[FILE \| --config FILE\] \[--json\]/)
    expect(h.out).toContain('78 (EX_CONFIG)')
    const u = cli(['check-config', 'a', 'b'])
    expect(u.code).toBe(64)
    expect(u.err).toBe('check-config: unexpected argument "b"\n(see: remote-hooks check-config --help)\n')
    expect(cli(['doctor', '--frobnicate']).code).toBe(64)
  })

  it('the hook --help lists the operator commands', () => {
    const r = cli(['--help'])
    expect(r.out).toContain('node index.js check-config [FILE]')
    expect(r.out).toContain('node index.js doctor [FILE]')
    expect(r.out).toContain('node index.js reap [FILE] [--dry-run]')
  })
})

describe('offline checks beyond the hook', () => {
  it('a known_hosts file must pin a key for the host and port', () => {
    writeFileSync(join(dir, 'kh-other'), `[10.0.0.5]:22 ${hostKey}\nother.example ${hostKey}\n`)
    expect(knownHostsProblems('f', join(dir, 'kh-other'), '10.0.0.5', 2222)).toEqual([
      {
        field: 'f',
        message: `${join(dir, 'kh-other')} pins no key for [10.0.0.5]:2222: the hook never trusts a key on first use (add the host's key, checked out of band)`
      }
    ])
    expect(knownHostsProblems('f', join(dir, 'known_hosts'), '10.0.0.5', 2222)).toEqual([])
  })

  it('damaged known_hosts lines are named by line number', () => {
    const [type, b64] = hostKey.split(' ')
    writeFileSync(join(dir, 'kh-bad'), `# comment\n[10.0.0.5]:2222 ${hostKey}\njunk\n[10.0.0.5]:2222 ssh-rsa ${b64}\n`)
    const p = knownHostsProblems('f', join(dir, 'kh-bad'), '10.0.0.5', 2222)
    expect(type).toBe('ssh-ed25519')
    expect(p.map((x) => x.message)).toEqual([
      `${join(dir, 'kh-bad')} line 3 is not a known_hosts entry (hosts, key type, base64 key)`,
      `${join(dir, 'kh-bad')} line 4 is not a known_hosts entry (hosts, key type, base64 key)`
    ])
  })

  it('is part of readConfig, with configured tools and the work root', () => {
    writeFileSync(join(dir, 'notexec'), '')
    chmodSync(join(dir, 'notexec'), 0o644)
    const r = readConfig(
      config(
        'extra',
        { knownHostsFile: join(dir, 'kh-other') },
        { remote: { workRoot: '/etc/rch' }, tools: { rsync: join(dir, 'notexec') } }
      )
    )
    expect(r.config).toBeNull()
    expect(r.problems.map((p) => p.field)).toEqual(['provider.hosts.0.knownHostsFile', 'tools.rsync', 'remote.workRoot'])
    expect(r.problems[2].message).toBe('/etc/rch is inside the system folder /etc; give a folder of its own')
  })

  it("are reported with the hook's own problems of other hosts, all at once", () => {
    const f = join(dir, 'two.json')
    const good = { host: '10.0.0.5', port: 2222, user: 'runner', identityFile: join(dir, 'id'), knownHostsFile: join(dir, 'known_hosts') }
    writeFileSync(
      f,
      JSON.stringify({
        provider: {
          kind: 'static',
          hosts: [
            { ...good, user: 'Bad User' },
            { ...good, host: '10.0.0.6' }
          ]
        },
        remote: { workRoot: '/srv/rch' }
      })
    )
    expect(readConfig(f).problems.map((p) => p.field)).toEqual(['provider.hosts.0.user', 'provider.hosts.1.knownHostsFile'])
    // A host whose key file is flagged still has its known_hosts judged; one whose port is flagged does not.
    writeFileSync(
      f,
      JSON.stringify({
        provider: {
          kind: 'static',
          hosts: [
            { ...good, host: '10.0.0.7', identityFile: join(dir, 'none') },
            { ...good, host: '10.0.0.8', port: 0 }
          ]
        },
        remote: { workRoot: '/srv/rch' }
      })
    )
    expect(readConfig(f).problems.map((p) => p.field)).toEqual([
      'provider.hosts.1.port',
      'provider.hosts.0.identityFile',
      'provider.hosts.0.knownHostsFile'
    ])
  })

  it('splits an issue at its first ": " outside a quoted key', () => {
    expect(problemOf('a.b: must be: this')).toEqual({ field: 'a.b', message: 'must be: this' })
    expect(problemOf('no field')).toEqual({ field: '(root)', message: 'no field' })
    expect(problemOf('provider.tags."team: x": at most 256 characters')).toEqual({
      field: 'provider.tags."team: x"',
      message: 'at most 256 characters'
    })
    expect(problemOf('a."q\\": b": c')).toEqual({ field: 'a."q\\": b"', message: 'c' })
  })

  it('a key holding ": " is named whole (it was cut there: field `"a`, message `b": unknown key`)', () => {
    const f = config('colon-key', {}, { 'a: b': 1, remote: { workRoot: '/srv/rch', 'x: y': 2 } })
    expect(readConfig(f).problems).toEqual(
      expect.arrayContaining([
        { field: '"a: b"', message: 'unknown key' },
        { field: 'remote."x: y"', message: 'unknown key' }
      ])
    )
  })
})
