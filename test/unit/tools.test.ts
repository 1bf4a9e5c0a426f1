// The runner-host programs the hook spawns: found in a fixed system PATH or at a configured absolute
// path outside the job's folders, never on the inherited PATH (which the job extends with
// GITHUB_PATH), and started with a minimal environment.
import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError } from '../../src/errors'
import { loadConfig } from '../../src/config'
import { requireTool, resolveTools, SYSTEM_PATH, tools, useTools } from '../../src/tools'
import { rsyncUp, agentTransport } from '../../src/sync/rsync'
import { bundle, cleanupTempDirs, sh, SRC, tempDir } from './_helpers'
import { testKeyPair } from '../helpers/keys'

afterAll(cleanupTempDirs)

/** A runner layout (`_work/_temp`) and a folder of "evil" tar/rsync/ssh that leave a marker and then run the real tool. */
function setup() {
  const root = tempDir('rch-tools-')
  const work = join(root, '_work')
  const temp = join(work, '_temp')
  const evil = join(temp, 'evilbin')
  const markers = join(root, 'markers')
  mkdirSync(evil, { recursive: true })
  mkdirSync(markers)
  for (const name of ['tar', 'rsync', 'ssh']) {
    const real = `/usr/bin/${name}`
    writeFileSync(join(evil, name), `#!/bin/sh\necho "$0" > ${markers}/${name}\nenv > ${markers}/${name}.env\nexec ${real} "$@"\n`)
    chmodSync(join(evil, name), 0o755)
  }
  return { root, work, temp, evil, markers, folders: { workDir: work, runnerTemp: temp } }
}

/** Runs fn with process.env.PATH = the job's PATH (evil folder first), as the runner starts the hook. */
async function withPath<T>(path: string, fn: () => Promise<T> | T): Promise<T> {
  const saved = process.env.PATH
  process.env.PATH = path
  try {
    return await fn()
  } finally {
    process.env.PATH = saved
  }
}

describe('resolveTools', () => {
  test('an evil tar/rsync/ssh first on PATH is ignored: each comes from the fixed system PATH', async () => {
    const s = setup()
    const path = `${s.evil}:${process.env.PATH}`
    // positive control: a shell with that PATH picks the evil ones
    expect(
      sh('for n in tar rsync ssh; do command -v $n; done', { env: { PATH: path } })
        .stdout.toString()
        .trim()
        .split('\n')
    ).toEqual(['tar', 'rsync', 'ssh'].map((n) => join(s.evil, n)))
    const t = await withPath(path, () => resolveTools({}, s.folders))
    for (const n of ['tar', 'rsync', 'ssh'] as const) {
      expect(t[n]).not.toBeNull()
      expect(SYSTEM_PATH.split(':')).toContain(t[n]!.slice(0, t[n]!.lastIndexOf('/')))
    }
  })

  test('a configured absolute path outside the job folders is used as given', () => {
    const s = setup()
    const own = join(s.root, 'opt', 'tar')
    mkdirSync(join(s.root, 'opt'))
    copyFileSync('/usr/bin/tar', own)
    chmodSync(own, 0o755)
    expect(resolveTools({ tar: own }, s.folders).tar).toBe(own)
  })

  test.each([
    ['under _work', (s: ReturnType<typeof setup>) => join(s.work, 'repo', 'tar')],
    ['under RUNNER_TEMP', (s: ReturnType<typeof setup>) => join(s.evil, 'tar')],
    ['_work itself via ..', (s: ReturnType<typeof setup>) => join(s.root, 'x', '..', '_work', '_temp', 'evilbin', 'tar')]
  ])('a configured path %s is refused with a config error naming the key', (_what, pick) => {
    const s = setup()
    mkdirSync(join(s.work, 'repo'), { recursive: true })
    copyFileSync(join(s.evil, 'tar'), join(s.work, 'repo', 'tar'))
    chmodSync(join(s.work, 'repo', 'tar'), 0o755)
    const p = pick(s)
    expect(existsSync(p)).toBe(true) // it exists and is executable: refused for where it is, nothing else
    let err: unknown
    try {
      resolveTools({ tar: p }, s.folders)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).issues).toEqual([expect.stringMatching(/^tools\.tar: .*work folder/)])
  })

  test('a configured symlink outside _work whose target is inside it is refused (checked after realpath)', () => {
    const s = setup()
    const link = join(s.root, 'looks-fine-tar')
    symlinkSync(join(s.evil, 'tar'), link)
    expect(() => resolveTools({ tar: link }, s.folders)).toThrow(/tools\.tar: .*work folder/)
  })

  test('a _work reached through a symlinked runner folder is still refused', () => {
    const s = setup()
    const alias = join(s.root, 'alias-work')
    symlinkSync(s.work, alias)
    // RUNNER_TEMP given through the alias; the tool named by the real path
    expect(() => resolveTools({ rsync: join(s.evil, 'rsync') }, { workDir: alias, runnerTemp: join(alias, '_temp') })).toThrow(
      /tools\.rsync/
    )
  })

  test('relative, missing and non-executable paths are refused, every key reported', () => {
    const s = setup()
    const plain = join(s.root, 'plain')
    writeFileSync(plain, 'x')
    try {
      resolveTools({ tar: 'bin/tar', rsync: join(s.root, 'missing'), ssh: plain }, s.folders)
      throw new Error('not refused')
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError)
      const issues = (e as ConfigError).issues
      expect(issues).toEqual([
        expect.stringMatching(/^tools\.tar: must be an absolute path/),
        expect.stringMatching(/^tools\.rsync: .*not an executable file \(ENOENT\)/),
        expect.stringMatching(/^tools\.ssh: .*not an executable file \(EACCES\)/)
      ])
    }
  })

  test('requireTool names the key to set when a tool is not installed', () => {
    useTools({ tar: null, rsync: '/usr/bin/rsync', ssh: null })
    try {
      expect(() => requireTool('tar')).toThrow(/tar is not installed on the runner host .*tools\.tar/)
      expect(requireTool('rsync')).toBe('/usr/bin/rsync')
    } finally {
      useTools(resolveTools({}, { workDir: '/nonexistent', runnerTemp: '/nonexistent/_temp' }))
    }
  })
})

describe('spawns use the resolved tool and a minimal environment', () => {
  beforeEach(() => useTools(resolveTools({}, { workDir: '/nonexistent', runnerTemp: '/nonexistent/_temp' })))

  test("rsyncUp and the push's local tar never run a program found on the inherited PATH", () => {
    const s = setup()
    mkdirSync(join(s.work, 'repo'))
    writeFileSync(join(s.work, 'repo', 'a.txt'), 'hello')
    const dest = tempDir('rch-rsync-dest-')
    const sent = join(s.root, 'sent.tar')
    // A local rsync transport (`sh -c`, the host argument dropped): the copy really happens.
    const rsh = join(s.root, 'rsh')
    writeFileSync(rsh, '#!/bin/sh\nshift\nexec /bin/sh -c "$*"\n')
    chmodSync(rsh, 0o755)
    // In a child process: the PATH a spawn searches is the real process's, which jest does not let a test set.
    const entry = join(s.root, 'run.ts')
    writeFileSync(
      entry,
      `import { rsyncUp } from ${JSON.stringify(join(SRC, 'sync/rsync'))}
import { push } from ${JSON.stringify(join(SRC, 'sync/sync'))}
import { PassThrough } from 'node:stream'
import { createWriteStream } from 'node:fs'
const remote = {
  openExec: async () => {
    const stdin = new PassThrough(), stdout = new PassThrough(), stderr = new PassThrough()
    let done: (s: unknown) => void = () => undefined
    const finished = new Promise((r) => (done = r))
    stdin.on('data', () => undefined)
    stdin.pipe(createWriteStream(${JSON.stringify(sent)}))
    stdin.on('end', () => { stdout.end(); stderr.end(); done({ code: 0, signal: null }) })
    return { stdin, stdout, stderr, done: finished }
  },
  openSocket: async () => { throw new Error('unused') },
  close: () => undefined
}
;(async () => {
  await rsyncUp({ rsh: ${JSON.stringify(rsh)}, host: 'x' }, ${JSON.stringify(s.work)}, ['repo'], ${JSON.stringify(dest)})
  await push({ remote, hostWork: ${JSON.stringify(s.work)}, remoteWork: '/r', manifestFile: ${JSON.stringify(join(s.root, 'base.json'))}, excludes: [] } as never, ['repo'])
})().catch((e) => { console.error(e); process.exit(1) })
`
    )
    const js = bundle(entry, join(s.root, 'run.js'))
    const r = spawnSync(process.execPath, [js], { env: { PATH: `${s.evil}:${process.env.PATH}` }, encoding: 'utf8', timeout: 20_000 })
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    // positive controls: rsync copied the file, and the push sent a tar archive holding it
    expect(readFileSync(join(dest, 'repo', 'a.txt'), 'utf8')).toBe('hello')
    expect(readFileSync(sent).includes(Buffer.from('repo/a.txt'))).toBe(true)
    expect(readdirSync(s.markers)).toEqual([])
  })

  test("rsync gets only PATH (the fixed one) and LANG, never the hook's variables", async () => {
    const s = setup()
    mkdirSync(join(s.work, 'src'))
    const spy = join(s.root, 'opt', 'rsync')
    mkdirSync(join(s.root, 'opt'))
    writeFileSync(spy, `#!/bin/sh\nenv > ${s.markers}/spy.env\nexit 0\n`)
    chmodSync(spy, 0o755)
    useTools(resolveTools({ rsync: spy }, s.folders))
    process.env.AWS_SECRET_ACCESS_KEY = 'canary-secret-1234'
    try {
      await rsyncUp(agentTransport(process.execPath, '/hook.js', '/sock'), s.work, ['src'], '/d')
    } finally {
      delete process.env.AWS_SECRET_ACCESS_KEY
    }
    const env = readFileSync(join(s.markers, 'spy.env'), 'utf8')
    expect(env).toContain(`PATH=${SYSTEM_PATH}\n`) // positive control: the spy ran and dumped its env
    const names = env
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(0, l.indexOf('=')))
    expect(names.filter((n) => !['PATH', 'LANG', 'PWD', 'SHLVL', '_'].includes(n))).toEqual([])
    expect(env).not.toContain('canary-secret-1234')
  })

  test('tools() without a config searches only the system PATH', async () => {
    const s = setup()
    useTools(null as never)
    const t = await withPath(`${s.evil}:${process.env.PATH}`, () => tools())
    expect(t.tar?.startsWith(s.evil)).toBe(false)
    expect(t.tar).toMatch(/^\/(usr\/)?(local\/)?s?bin\/tar$/)
  })
})

describe('the tools block of the config file', () => {
  const base = {
    provider: { kind: 'static', hosts: [{ host: 'h', user: 'u', identityFile: '/k', knownHostsFile: '/kh' }] },
    remote: { workRoot: '/srv/rch' }
  }
  // The identity file must hold a usable private key (config.ts checks it).
  const key = testKeyPair().private
  const load = (tools: unknown) =>
    loadConfig(
      { REMOTE_HOOKS_CONFIG: '/c.json' },
      { readFile: (p) => (p === '/k' ? key : JSON.stringify({ ...base, tools })), canRead: () => null }
    )

  test('absolute paths are accepted, each key optional', () => {
    expect(load({ tar: '/opt/gnu/bin/tar' }).tools).toEqual({ tar: '/opt/gnu/bin/tar' })
    expect(load(undefined).tools).toEqual({})
  })

  test('a relative path or an unknown tool is a config error naming the key', () => {
    expect(() => load({ tar: 'tar' })).toThrow(/tools\.tar: must be an absolute path/)
    expect(() => load({ docker: '/usr/bin/docker' })).toThrow(/tools\.docker: unknown key/)
  })
})
