// Attack: the job is root on the VM (docker.sock), so it can change what the SSH user's commands
// run: a start-up file that puts its own `tar` and `find` first on PATH, or prints text before every
// command's output. Everything the hook reads back is then chosen by the job: archive members
// (`../` names, absolute names, hardlinks, devices, FIFOs, types other than announced), listings
// with paths of its choosing, and command output that looks like paths. Defense: the VM's answers
// are parsed strictly and every value is checked against exactly what was asked for; anything else
// is an error, never a write, a deletion or an argument to `rm`.
//
// The hostile VM is a separate loopback sshd ("adv") that runs a wrapper before every remote command,
// as a start-up file of the SSH user would. What it does is switched per test through a mode file.
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { errors, HostileJob, type Mode } from './harness'
import { archive, type Member } from './tar-craft'
import type { HookRun } from '../helpers/fake-runner'
import { loadVm, repoRoot } from '../helpers/testenv'
import { staticProvider } from '../helpers/conformance'
import { running, waitUntil } from '../helpers/wait'

const PORT = 2240
const DIR = '/var/tmp/rch-adv'
const RC = `${DIR}/rc`
const MODE = `${DIR}/mode`

/** Positive control: the hostile tool ran; the hook's output says why when it did not. */
function expectRan(marker: 'ran-tar' | 'ran-find' | 'ran-rc', r: HookRun): void {
  if (!existsSync(join(DIR, marker)))
    throw new Error(`${marker} is missing: the hook never ran it (exit ${r.code})\n${r.stdout}\n${r.stderr}`)
}

/** Switches the hostile behaviour; turning one on clears the markers of the last one. */
function setMode(mode: '' | 'noise' | 'tools'): void {
  if (mode) for (const m of ['ran-tar', 'ran-find', 'ran-rc']) rmSync(join(DIR, m), { force: true })
  writeFileSync(MODE, mode)
}

function vmScript(...args: string[]): void {
  execFileSync('bash', [join(repoRoot, 'scripts/testenv/vm.sh'), ...args], { env: { ...process.env, VM_FORCE_COMMAND: RC }, stdio: 'pipe' })
}

beforeAll(() => {
  rmSync(DIR, { recursive: true, force: true })
  mkdirSync(`${DIR}/bin`, { recursive: true })
  // The SSH user leaves its markers here; sticky, so that no other user can swap the tools in bin/.
  chmodSync(DIR, 0o1777)
  // The rc and the fake tools are root's: the job could write them (it is root on the VM), the
  // test only needs the SSH user to run them.
  writeFileSync(
    RC,
    [
      '#!/bin/bash',
      `case "$(cat ${MODE} 2>/dev/null)" in`,
      `  noise) touch ${DIR}/ran-rc; echo ${DIR}/victim; echo "${DIR}/victim/../victim" ;;`,
      `  tools) PATH=${DIR}/bin:$PATH ;;`,
      'esac',
      'exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"',
      ''
    ].join('\n')
  )
  writeFileSync(
    `${DIR}/bin/tar`,
    // With `endless` set it goes on with zeros for ever, as its own process (pid in tar.pid).
    `#!/bin/sh\ncase " $* " in *" -c "*) if [ -f ${DIR}/archive.tar ]; then touch ${DIR}/ran-tar; cat >/dev/null; cat ${DIR}/archive.tar; if [ -f ${DIR}/endless ]; then echo $$ > ${DIR}/tar.pid; exec cat /dev/zero; fi; exit 0; fi ;; esac\nexec /usr/bin/tar "$@"\n`
  )
  writeFileSync(
    `${DIR}/bin/find`,
    // A pull's listing starts with the stamp file's ctime, which find prints: a hostile find prints
    // one too, so that its records are read (and refused) rather than its start.
    `#!/bin/sh\nif [ -f ${DIR}/listing ]; then touch ${DIR}/ran-find; case "$*" in *rch-list-stamp*) printf '%s.0\\0' "$(date +%s)" ;; esac; cat ${DIR}/listing; exit 0; fi\nexec /usr/bin/find "$@"\n`
  )
  chmodSync(RC, 0o755)
  chmodSync(`${DIR}/bin/tar`, 0o755)
  chmodSync(`${DIR}/bin/find`, 0o755)
  setMode('')
  vmScript('start', 'adv', String(PORT))
})

afterAll(() => {
  vmScript('stop', 'adv')
  if (!process.env.KEEP_ADV) rmSync(DIR, { recursive: true, force: true })
})

function advJob(mode: Mode = 'agent'): HostileJob {
  const vm = loadVm('adv')
  return new HostileJob(mode, {
    config: { provider: staticProvider(vm, { slots: 4 }, { acquireTimeoutSeconds: 30 }), remote: { workRoot: vm.workRoot } }
  })
}

/** Anything named pwned* on the runner side, anywhere under the runner's root or /tmp. */
function pwnedFiles(root: string): string[] {
  const hits: string[] = []
  const walk = (d: string, depth: number): void => {
    let names: string[]
    try {
      names = readdirSync(d)
    } catch {
      return
    }
    for (const n of names) {
      if (n.startsWith('pwned')) hits.push(join(d, n))
      if (depth > 0) walk(join(d, n), depth - 1)
    }
  }
  walk(root, 6)
  walk('/tmp', 0)
  return hits
}

describe.each(['agent', 'no-agent'] as Mode[])('a hostile tar on the VM (%s)', (mode) => {
  let job: HostileJob
  beforeAll(async () => {
    job = advJob(mode)
    await job.prepare()
  })
  afterAll(async () => {
    setMode('')
    rmSync(`${DIR}/archive.tar`, { force: true })
    await job.finish()
  })

  // Each with the refusal it must meet (not just any error).
  const cases: [string, Member[], RegExp][] = [
    [
      'a member that climbs out of _work',
      [{ name: '../pwned-climb', type: '0', data: 'x' }],
      /refused member name "\.\.\/pwned-climb": "\.\." component/
    ],
    [
      'a member that climbs out through the workspace',
      [{ name: 'repo/repo/../../../pwned-climb2', type: '0', data: 'x' }],
      /refused member name ".*pwned-climb2": "\.\." component/
    ],
    ['an absolute member name', [{ name: '/tmp/pwned-abs', type: '0', data: 'x' }], /refused member name "\/tmp\/pwned-abs": absolute/],
    [
      'a member that was not asked for',
      [{ name: 'repo/repo/pwned-unasked', type: '0', data: 'x' }],
      /"repo\/repo\/pwned-unasked" was not asked for/
    ],
    [
      'a hardlink to a runner secret',
      [{ name: 'repo/repo/changed.txt', type: '1', linkname: '../.credentials' }],
      /refused member type: a hardlink/
    ],
    [
      'a symlink where a file was announced',
      [{ name: 'repo/repo/changed.txt', type: '2', linkname: '../../../.credentials' }],
      /"repo\/repo\/changed.txt" is not of the type the listing announced/
    ],
    ['a FIFO', [{ name: 'repo/repo/changed.txt', type: '6' }], /refused member type: a fifo/],
    ['a character device', [{ name: 'repo/repo/changed.txt', type: '3' }], /refused member type: a character device/]
  ]

  test.each(cases)('%s is refused and nothing outside _work changes', async (_what, members, why) => {
    writeFileSync(`${DIR}/archive.tar`, archive(members))
    setMode('tools')
    const { r } = await job.step('echo changed > /__w/repo/repo/changed.txt\n')
    setMode('')
    // Positive control: the hook read the hostile archive.
    expectRan('ran-tar', r)
    expect(r.code).not.toBe(0)
    expect(errors(r)).toEqual([expect.stringMatching(why)])
    expect(job.canaries.changes()).toEqual([])
    expect(pwnedFiles(job.runner.root)).toEqual([])
    const changed = join(job.runner.workspace, 'changed.txt')
    if (existsSync(changed)) {
      const { lstatSync } = await import('node:fs')
      const st = lstatSync(changed)
      expect(st.isFile() && st.nlink === 1).toBe(true)
    }
  })

  const endless: [string, Member[], RegExp][] = [
    ['a refused member', [{ name: 'repo/repo/pwned-unasked', type: '0', data: 'x' }], /was not asked for/],
    [
      'the asked-for file and the end of the archive',
      [{ name: 'repo/repo/changed.txt', type: '0', data: 'changed\n' }],
      /after the end-of-archive marker/
    ]
  ]
  test.each(endless)(
    "%s, then zeros for ever: the step fails, and the VM's tar ends once the channel is closed",
    async (_what, members, why) => {
      writeFileSync(`${DIR}/archive.tar`, archive(members))
      writeFileSync(`${DIR}/endless`, '')
      rmSync(`${DIR}/tar.pid`, { force: true })
      setMode('tools')
      try {
        const { r } = await job.step('echo changed > /__w/repo/repo/changed.txt\n')
        expectRan('ran-tar', r)
        expect(r.code).not.toBe(0)
        expect(errors(r).join('\n')).toMatch(why)
        const pid = Number(readFileSync(`${DIR}/tar.pid`, 'utf8'))
        expect(pid).toBeGreaterThan(0)
        // sshd ends it the way it ends any command whose channel closed: its next write fails.
        expect(await waitUntil(() => !running(pid), 10_000, 50)).toBe(true)
        expect(pwnedFiles(job.runner.root)).toEqual([])
      } finally {
        setMode('')
        rmSync(`${DIR}/endless`, { force: true })
      }
    }
  )

  test('a member larger than announced is not written (the next pull fetches it again; its bytes against the cap: unit/pull.test.ts)', async () => {
    writeFileSync(`${DIR}/archive.tar`, archive([{ name: 'repo/repo/changed.txt', type: '0', data: 'y'.repeat(3000) }]))
    setMode('tools')
    const { r } = await job.step('echo changed > /__w/repo/repo/changed.txt\n')
    setMode('')
    expectRan('ran-tar', r)
    expect(errors(r)).toEqual([])
    expect(r.stdout).toContain('changed on the remote while it was being copied')
    const changed = join(job.runner.workspace, 'changed.txt')
    expect(existsSync(changed) ? readFileSync(changed, 'utf8') : '').not.toContain('yyy')
    expect(job.canaries.changes()).toEqual([])
  })
})

describe.each(['agent', 'no-agent'] as Mode[])('a hostile listing on the VM (%s)', (mode) => {
  let job: HostileJob
  beforeAll(async () => {
    job = advJob(mode)
    await job.prepare()
  })
  afterAll(async () => {
    setMode('')
    rmSync(`${DIR}/listing`, { force: true })
    await job.finish()
  })

  const rec = (type: string, path: string, size = 1, link = ''): string =>
    `${type}\0${size}\0${Math.floor(Date.now() / 1000)}.0\x00644\x00${link}\0${path}\0`
  // Each with the refusal it must meet (not just any error).
  const cases: [string, string, RegExp][] = [
    [
      'a path that climbs out of _work',
      rec('f', '../outside/secret.txt'),
      /bad path: "\.\." component \(entry 1 "\.\.\/outside\/secret.txt"\)/
    ],
    ['a path that climbs out through the workspace', rec('d', 'repo/../../outside'), /bad path: "\.\." component/],
    ['an absolute path', rec('f', '/etc/passwd'), /bad path: absolute \(entry 1 "\/etc\/passwd"\)/],
    [
      'a path outside the synced roots',
      rec('f', '_actions/pwned-root'),
      /path outside the requested folders \(entry 1 "_actions\/pwned-root"\)/
    ],
    ['an empty path component', rec('f', 'repo//repo/x'), /bad path: empty component/],
    ['a malformed record', 'f\0not-a-size\0x\0y\0\0_temp/x\0', /malformed size, mtime or mode \(entry 1 "_temp\/x"\)/]
  ]

  test.each(cases)('%s is an error, not a copy or a deletion', async (_what, listing, why) => {
    writeFileSync(`${DIR}/listing`, listing)
    setMode('tools')
    const { r } = await job.step('true\n')
    setMode('')
    rmSync(`${DIR}/listing`, { force: true })
    expectRan('ran-find', r)
    expect(r.code).not.toBe(0)
    expect(errors(r)).toEqual([expect.stringMatching(why)])
    expect(job.canaries.changes()).toEqual([])
    expect(pwnedFiles(job.runner.root)).toEqual([])
  })
})

describe('command output that looks like paths', () => {
  test('a state-less cleanup_job never removes a path the shell start-up printed', async () => {
    const job = advJob()
    const victim = `${DIR}/victim`
    mkdirSync(victim, { recursive: true })
    writeFileSync(`${victim}/keep.txt`, 'keep\n')
    // The SSH user could delete it: a loose parse would.
    execFileSync('chown', ['-R', 'rchvm:', victim])
    // A real leftover of this runner's lost job, which the cleanup must still find and remove.
    const leftover = `${loadVm('adv').workRoot}/jobs/${job.runner.owner}-${'0a'.repeat(8)}`
    mkdirSync(`${leftover}/w`, { recursive: true })
    execFileSync('chown', ['-R', 'rchvm:', leftover])
    setMode('noise')
    try {
      const r = await job.runner.call('cleanup_job', {}, { state: null })
      expectRan('ran-rc', r)
      expect(existsSync(`${victim}/keep.txt`)).toBe(true)
      expect(existsSync(leftover)).toBe(false)
      // The answers are framed: the noise around them is ignored, not taken for job folders.
      expect(errors(r)).toEqual([])
      expect(r.code).toBe(0)
    } finally {
      setMode('')
      job.runner.dispose()
    }
  })

  test('prepare_job fails at once, naming the output, instead of waiting for a "busy" host', async () => {
    const job = advJob()
    setMode('noise')
    try {
      const t0 = Date.now()
      const r = await job.runner.prepare({ container: job.runner.jobContainer('rch-test/tiny:1'), services: [] })
      expectRan('ran-rc', r)
      expect(r.code).not.toBe(0)
      expect(Date.now() - t0).toBeLessThan(15000)
      expect(errors(r).join('\n')).not.toMatch(/leased by another job/)
      expect(errors(r).join('\n')).toMatch(/printed output of its own .*victim.*start-up files/)
    } finally {
      setMode('')
      await job.runner.cleanup()
      job.runner.dispose()
    }
  })
})
