// The copy back from the VM through dist/index.js, with a step that behaves like a hostile job.
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeRunner } from '../helpers/fake-runner'
import { testImages } from '../helpers/testenv'
import { errorLines } from '../helpers/conformance'

describe('pull-back from a hostile step', () => {
  const runner = new FakeRunner()
  beforeAll(async () => {
    writeFileSync(join(runner.root, '.credentials'), 'RUNNER-TOKEN')
    const r = await runner.prepare({ container: runner.jobContainer(testImages.glibc), services: [] })
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
  })
  afterAll(async () => {
    await runner.cleanup()
    runner.dispose()
  })

  test('GITHUB_PATH replaced by a symlink to the runner credentials fails the step; nothing comes back', async () => {
    const { args, fc } = runner.scriptStep(
      'echo changed > changed.txt\nln -sf ../../../.credentials "$GITHUB_PATH"\nls -l "$GITHUB_PATH"\n'
    )
    const r = await runner.call('run_script_step', args)
    expect(r.stdout).toContain('-> ../../../.credentials') // the attack really ran on the VM
    expect(r.code).not.toBe(0)
    const name = fc.files.GITHUB_PATH.split('/').pop()!
    expect(errorLines(r)).toEqual([expect.stringContaining(`_temp/_runner_file_commands/${name} is a symlink on the remote`)])
    expect(lstatSync(fc.files.GITHUB_PATH).isFile()).toBe(true)
    expect(readFileSync(fc.files.GITHUB_PATH, 'utf8')).toBe('')
    expect(existsSync(join(runner.workspace, 'changed.txt'))).toBe(false)
  })

  test('a symlink target starting with U+FEFF comes back as it is, beside a name that is not UTF-8', async () => {
    // Both decoders (listing and tar) once dropped a leading U+FEFF from a field: the tar reader from
    // every link target, the listing when another entry was not UTF-8 (as the one made here).
    const { args } = runner.scriptStep(
      'ln -s "$(printf \'\\357\\273\\277t\')" bomlink\nln -s t plainlink\nprintf bom > "$(printf \'\\357\\273\\277b\')"\ntouch "$(printf \'bad\\377\')"\n'
    )
    const r = await runner.call('run_script_step', args)
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expect(readlinkSync(join(runner.workspace, 'bomlink'))).toBe('\uFEFFt')
    expect(readFileSync(join(runner.workspace, '\uFEFFb'), 'utf8')).toBe('bom')
    // positive control: the plain link comes back as it is
    expect(readlinkSync(join(runner.workspace, 'plainlink'))).toBe('t')
  })

  test('symlinks leaving _work are not created on the host (a warning names them) and are not deleted on the VM by the next step', async () => {
    const { args } = runner.scriptStep('ln -s ../../.. esc\nln -s /etc abs\nln -s changed.txt inside\n')
    const r = await runner.call('run_script_step', args)
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expect(r.stdout + r.stderr).toMatch(/::warning::.*repo\/repo\/esc is a symlink to "\.\.\/\.\.\/\.\."/)
    expect(r.stdout + r.stderr).toMatch(/::warning::.*repo\/repo\/abs is a symlink to "\/etc"/)
    expect(() => lstatSync(join(runner.workspace, 'esc'))).toThrow()
    expect(() => lstatSync(join(runner.workspace, 'abs'))).toThrow()
    expect(readlinkSync(join(runner.workspace, 'inside'))).toBe('changed.txt')
    const { args: next } = runner.scriptStep('readlink esc abs\n')
    const r2 = await runner.call('run_script_step', next)
    expect(r2.code).toBe(0)
    expect(r2.stdout).toContain('../../..\n/etc')
  })

  // A step that deletes one file in each of many folders it keeps: the pull once compared every
  // deletion with every entry of the sync base, and each removal with every folder it had checked
  // (work growing with the square of the tree, in the job's agent, which reads no cancel meanwhile).
  test('a file deleted in each of 50,000 folders comes back as deleted, in time linear in the tree', async () => {
    const n = 50_000
    const made = await runner.call(
      'run_script_step',
      runner.scriptStep(`mkdir many && cd many && seq -f d%g 1 ${n} | xargs mkdir && for d in d*; do : > $d/f; : > $d/keep; done\n`).args
    )
    expect({ code: made.code, errors: errorLines(made) }).toEqual({ code: 0, errors: [] })
    // positive control: the host has every file the next step deletes
    expect(existsSync(join(runner.workspace, 'many', `d${n}`, 'f'))).toBe(true)
    const t0 = Date.now()
    const r = await runner.call('run_script_step', runner.scriptStep('cd many && rm d*/f && ls d1\n').args)
    const ms = Date.now() - t0
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    expect(r.stdout).toContain('keep') // the VM kept the folders
    expect([1, 7_777, n].map((i) => existsSync(join(runner.workspace, 'many', `d${i}`, 'f')))).toEqual([false, false, false])
    expect(existsSync(join(runner.workspace, 'many', `d${n}`, 'keep'))).toBe(true)
    if (process.env.RCH_TEST_VERBOSE) console.log(`deleting ${n} files in ${n} folders: ${ms} ms`)
    // A bound, not a target, between the linear work and the old one (the same step took seconds
    // against most of a minute here).
    expect(ms).toBeLessThan(25_000)
  }, 240_000)
})

// What a job's root makes on the VM is 0644/0755; the runner host keeps what its own umask allows,
// so a runner kept private with umask 077 (other local users must not read its _work: checkout's
// token, the file commands) stays private after the pull-back.
describe("pull-back modes follow the runner's umask", () => {
  const runners: FakeRunner[] = []
  afterAll(async () => {
    for (const r of runners) {
      await r.cleanup()
      r.dispose()
    }
  })

  test.each([
    ['077', '600', '700'],
    ['022', '644', '755'] // control: the runner's usual umask keeps the job's modes
  ])('umask %s: a 0644 file and a 0755 folder come back as 0%s and 0%s', async (umask, fileMode, dirMode) => {
    const mask = parseInt(umask, 8)
    const before = process.umask(mask)
    try {
      // The hook, and the job's agent it starts, inherit the runner's umask.
      const runner = new FakeRunner({ name: `umask-${umask}-${process.pid}` })
      runners.push(runner)
      const p = await runner.prepare({ container: runner.jobContainer(testImages.glibc), services: [] })
      expect({ code: p.code, errors: errorLines(p) }).toEqual({ code: 0, errors: [] })
      const { args } = runner.scriptStep('umask 022\necho token > open.txt\nchmod 0644 open.txt\nmkdir -p opendir\nchmod 0755 opendir\n')
      const r = await runner.call('run_script_step', args)
      expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
      expect((lstatSync(join(runner.workspace, 'open.txt')).mode & 0o777).toString(8)).toBe(fileMode)
      expect((lstatSync(join(runner.workspace, 'opendir')).mode & 0o777).toString(8)).toBe(dirMode)
      // The next step finds nothing changed on either side: the modes the host gave are in the base.
      const again = await runner.call('run_script_step', runner.scriptStep('test "$(stat -c %a open.txt)" = 644\n').args)
      expect({ code: again.code, errors: errorLines(again) }).toEqual({ code: 0, errors: [] })
    } finally {
      process.umask(before)
    }
  })
})

// Each link the pull-back refuses used to be one warning in the step log and one line in hook.log,
// which every job of the runner user shares and nothing rotates: a job making as many links as
// sync.limits.stepFiles allows added that many lines on every step.
describe('a step making thousands of links the pull-back refuses', () => {
  const logDir = mkdtempSync(join(tmpdir(), 'rch-flood-log-'))
  const logFile = join(logDir, 'hook.log')
  const runner = new FakeRunner({ name: `flood-${process.pid}`, config: { log: { file: logFile } } })
  beforeAll(async () => {
    const r = await runner.prepare({ container: runner.jobContainer(testImages.glibc), services: [] })
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
  })
  afterAll(async () => {
    await runner.cleanup()
    runner.dispose()
    rmSync(logDir, { recursive: true, force: true })
  })

  test('five are named in the step log and in hook.log, the rest counted in one line each', async () => {
    const { args } = runner.scriptStep('mkdir links && cd links && for i in $(seq 1 3000); do ln -s /etc l$i; done\nls | wc -l\n')
    const r = await runner.call('run_script_step', args)
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    // positive control: the job really made them on the VM
    expect(r.stdout).toMatch(/^3000$/m)
    const lines = (r.stdout + r.stderr).split('\n')
    expect(lines.filter((l) => /^::warning::.*links\/l\d+ is a symlink to "\/etc"/.test(l))).toHaveLength(5)
    const more = '... and 2995 more symlinks not copied back (absolute, or pointing outside the folders synced back)'
    expect(lines.filter((l) => l.startsWith('::warning::... and '))).toEqual([`::warning::${more}`])
    const log = readFileSync(logFile, 'utf8').split('\n')
    expect(log.filter((l) => /links\/l\d+ is a symlink to "\/etc"/.test(l))).toHaveLength(5)
    expect(log.filter((l) => l.endsWith(more))).toHaveLength(1)
    // and none of them was made on the runner host
    expect(readdirSync(join(runner.workspace, 'links'))).toEqual([])
  })

  test("a link named with terminal escapes: the hook's warning shows them as ?, the step's own output as the job wrote it", async () => {
    const { args } = runner.scriptStep(
      'rm -rf links\nname=$(printf \'x\\033[2K\\033]0;t\\007\\342\\200\\256red\')\nln -s /etc "$name"\nls\n'
    )
    const r = await runner.call('run_script_step', args)
    expect({ code: r.code, errors: errorLines(r) }).toEqual({ code: 0, errors: [] })
    const warning = (r.stdout + r.stderr).split('\n').filter((l) => l.startsWith('::warning::'))
    expect(warning).toEqual([expect.stringContaining('repo/repo/x?[2K?]0;t??red is a symlink to "/etc"')])
    // positive control: the name really holds them (the step's own output passes as the job wrote it)
    expect(r.stdout).toContain('x\u001b[2K\u001b]0;t\u0007\u202ered')
    // hook.log writes control characters as spaces, as before
    expect(readFileSync(logFile, 'utf8')).not.toContain('\u001b')
  })
})
