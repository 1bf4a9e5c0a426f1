// The runner-host programs the hook spawns: found in a fixed system PATH or at a configured absolute
// path outside the job's folders, never on the inherited PATH (which the job extends with
// GITHUB_PATH), and started with a minimal environment.
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { ConfigError } from '../../src/errors'
import { requireTool, resolveTools, SYSTEM_PATH, tools, useTools } from '../../src/tools'
import { rsyncUp, agentTransport } from '../../src/sync/rsync'
import { push } from '../../src/sync/sync'
import type { Remote } from '../../src/remote/remote'
import { cleanupTempDirs, sh, tempDir } from './_helpers'

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
    expect(sh('for n in tar rsync ssh; do command -v $n; done', { env: { PATH: path } }).stdout.toString().trim().split('\n')).toEqual(['tar', 'rsync', 'ssh'].map((n) => join(s.evil, n)))
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
    expect(() => resolveTools({ rsync: join(s.evil, 'rsync') }, { workDir: alias, runnerTemp: join(alias, '_temp') })).toThrow(/tools\.rsync/)
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

  test('rsyncUp never runs an rsync found on the inherited PATH', async () => {
    const s = setup()
    mkdirSync(join(s.work, 'src'))
    const dest = tempDir('rch-rsync-dest-')
    // A local transport (`sh -c` ignores the host argument): the copy really happens.
    const local = { rsh: `${join(s.root, 'rsh')}`, host: 'x' }
    writeFileSync(local.rsh, '#!/bin/sh\nshift\nexec /bin/sh -c "$*"\n')
    chmodSync(local.rsh, 0o755)
    writeFileSync(join(s.work, 'src', 'f'), 'data')
    await withPath(`${s.evil}:${process.env.PATH}`, () => rsyncUp(local, s.work, ['src'], dest))
    expect(readFileSync(join(dest, 'src', 'f'), 'utf8')).toBe('data') // positive control: the copy ran
    expect(existsSync(join(s.markers, 'rsync'))).toBe(false)
  })

  test('rsync gets only PATH (the fixed one) and LANG, never the hook\'s variables', async () => {
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
    const names = env.split('\n').filter(Boolean).map((l) => l.slice(0, l.indexOf('=')))
    expect(names.filter((n) => !['PATH', 'LANG', 'PWD', 'SHLVL', '_'].includes(n))).toEqual([])
    expect(env).not.toContain('canary-secret-1234')
  })

  test('the push\'s local tar never comes from the inherited PATH', async () => {
    const s = setup()
    mkdirSync(join(s.work, 'repo'))
    writeFileSync(join(s.work, 'repo', 'a.txt'), 'hello')
    const got = new PassThrough()
    const chunks: Buffer[] = []
    got.on('data', (c: Buffer) => chunks.push(c))
    const remote: Remote = {
      openExec: async () => {
        const stdout = new PassThrough()
        const stderr = new PassThrough()
        let done!: (s: { code: number | null; signal: string | null }) => void
        const finished = new Promise<{ code: number | null; signal: string | null }>((r) => (done = r))
        const stdin = new PassThrough()
        stdin.pipe(got)
        stdin.on('end', () => {
          stdout.end()
          stderr.end()
          done({ code: 0, signal: null })
        })
        return { stdin, stdout, stderr, done: finished } as never
      },
      openSocket: async () => {
        throw new Error('unused')
      },
      close: () => undefined
    }
    process.env.AWS_SECRET_ACCESS_KEY = 'canary-secret-5678'
    try {
      await withPath(`${s.evil}:${process.env.PATH}`, () => push({ remote, hostWork: s.work, remoteWork: '/r', manifestFile: join(s.root, 'base.json'), excludes: [] }, ['repo']))
    } finally {
      delete process.env.AWS_SECRET_ACCESS_KEY
    }
    // positive control: a tar archive holding the file was sent
    expect(Buffer.concat(chunks).includes(Buffer.from('repo/a.txt'))).toBe(true)
    expect(existsSync(join(s.markers, 'tar'))).toBe(false)
  })

  test('tools() without a config searches only the system PATH', async () => {
    const s = setup()
    useTools(null as never)
    const t = await withPath(`${s.evil}:${process.env.PATH}`, () => tools())
    expect(t.tar?.startsWith(s.evil)).toBe(false)
    expect(t.tar).toMatch(/^\/(usr\/)?(local\/)?s?bin\/tar$/)
  })
})
