// The job's step shell (agent.warmShell) against a real local /bin/sh: the request line carries the
// step's command, environment and folder byte-exact and runs nothing else; the end markers split
// the streams exactly; a step cannot end its own step early by printing, nor make the agent read a
// shell that died as a success. The engine here only starts the exec's command as a local process
// (the conformance suites run the same shell in a real container through docker).
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import {
  EndScanner,
  JobShell,
  MAX_IDLE_OUTPUT,
  MAX_STARTS,
  WarmShell,
  shellRequest,
  shellUnfit,
  type ShellStep
} from '../../src/docker/warm-shell'
import type { Engine, Output } from '../../src/docker/engine'
import { shellStep } from '../../src/docker/steps'
import { TransportError } from '../../src/errors'
import { cleanupTempDirs, tempDir } from './_helpers'
import { waitUntil } from '../helpers/wait'

afterAll(cleanupTempDirs)

const ID = 'ab'.repeat(32)

/**
 * The image's /bin/sh, as the shells images have: dash (Debian), busybox ash (Alpine), bash in
 * POSIX mode (bash as sh: RHEL, Fedora, Amazon Linux).
 */
const SHELLS: [string, string[]][] = [
  ['dash', ['/usr/bin/dash']],
  ['busybox ash', ['/usr/bin/busybox', 'sh']],
  ['bash as sh', ['/usr/bin/bash', '--posix']]
]
let shellUnderTest = SHELLS[0][1]

type LocalEngine = Engine & {
  started: number
  kill: () => void
  stdin: () => NodeJS.WritableStream
  stops: number
  /** Resolves once the shell has been handed stdout containing `text` (it has read those bytes). */
  handed: (text: string) => Promise<void>
}

/**
 * The Engine calls WarmShell makes, with the shell's exec run here: `cmd` replaces its command (a
 * broken image), `edit` changes its script (a shell that lies). The stop exec of a cancel finds
 * nothing to stop here: it is counted and answers as done.
 */
function localEngine(cmd?: string[], edit?: (script: string) => string): LocalEngine {
  let argv: string[] = []
  const kids: ReturnType<typeof spawn>[] = []
  let seen = ''
  const waiting: { text: string; done: () => void }[] = []
  const e = {
    started: 0,
    stops: 0,
    handed: (text: string) => new Promise<void>((done) => (seen.includes(text) ? done() : waiting.push({ text, done }))),
    kill: () => kids.forEach((k) => k.kill('SIGKILL')),
    stdin: () => kids[kids.length - 1].stdin!,
    call: async (_m: string, path: string, body?: { Cmd: string[]; AttachStdin?: boolean }) => {
      if (path.endsWith('/json')) return { status: 200, data: { Running: false, ExitCode: 0 } }
      if (body?.AttachStdin) argv = cmd ?? [...shellUnderTest, body.Cmd[1], edit ? edit(body.Cmd[2]) : body.Cmd[2]]
      else if (body?.Cmd) e.stops++
      return { status: 201, data: { Id: ID } }
    },
    hijack: async (_p: string, _b: unknown, out: Output) => {
      e.started++
      // The environment of a container's exec: the image's, not this test process's.
      // Its own session, as a container's exec is: a step's `kill 0` must not reach this test process.
      const child = spawn(argv[0], argv.slice(1), {
        stdio: ['pipe', 'pipe', 'pipe'],
        // A HOME without start-up files: bash sources ~/.bashrc when its stdin is a socket (as Node's pipes are).
        env: { PATH: process.env.PATH, HOME: '/nonexistent-rch-home' },
        detached: true
      })
      kids.push(child)
      child.stdout.on('data', (c: Buffer) => {
        out.onStdout(c)
        seen += c.toString('latin1')
        waiting.filter((w) => seen.includes(w.text)).forEach((w) => w.done())
      })
      child.stderr.on('data', (c: Buffer) => out.onStderr(c))
      child.stdin.on('error', () => undefined)
      const ended = new Promise<void>((r) => child.once('close', () => r()))
      return { ended, input: child.stdin, close: () => child.kill('SIGKILL') }
    }
  }
  return e as unknown as LocalEngine
}

interface Ran {
  code: number
  out: string
  err: string
}

async function run(shell: WarmShell, step: Partial<ShellStep>): Promise<Ran> {
  let out = ''
  let err = ''
  const o: Output = { onStdout: (c) => void (out += c.toString('latin1')), onStderr: (c) => void (err += c.toString('latin1')) }
  expect(shell.claim()).toBe(true)
  const r = shell.run({ cmd: ['true'], env: { PATH: process.env.PATH! }, workdir: '/', marker: 'm', ...step }, o)
  await r.ended
  return { code: await r.exitCode(), out, err }
}

const sh = (script: string, env: Record<string, string> = {}): Partial<ShellStep> => ({
  cmd: ['/bin/sh', '-c', script],
  env: { PATH: process.env.PATH!, ...env }
})

let shells: WarmShell[] = []
afterEach(() => {
  shells.forEach((s) => s.close())
  shells = []
})
async function start(engine = localEngine()): Promise<WarmShell> {
  const s = await WarmShell.start(engine, 'c')
  shells.push(s)
  return s
}

describe.each(SHELLS)('steps through the shell (%s)', (_name, argv) => {
  beforeAll(() => {
    shellUnderTest = argv
  })
  afterAll(() => {
    shellUnderTest = SHELLS[0][1]
  })

  test('exit status, stdout and stderr of each step, one after another', async () => {
    const s = await start()
    expect(await run(s, sh('echo out; echo err >&2; exit 3'))).toEqual({ code: 3, out: 'out\n', err: 'err\n' })
    expect(await run(s, sh('printf no-newline; printf e >&2'))).toEqual({ code: 0, out: 'no-newline', err: 'e' })
    expect(await run(s, sh('kill -TERM $$'))).toMatchObject({ code: 143 })
    expect(s.usable).toBe(true)
  })

  test('environment values and arguments arrive byte-exact and run nothing', async () => {
    const dir = tempDir()
    const canary = join(dir, 'canary')
    const values = [
      `a'b"c\\d`,
      `line1\nline2\n`,
      `$(touch ${canary})`,
      `'; touch ${canary}; '`,
      '`touch ' + canary + '`',
      `'"$n"'`,
      '\r\t ünï €',
      ''
    ]
    const s = await start()
    for (const v of values) {
      const r = await run(s, sh('printf %s "$V"; printf %s "$1" >&2', { V: v }))
      expect(r.code).toBe(0)
      expect(Buffer.from(r.out, 'latin1').toString('utf8')).toBe(v)
    }
    const arg = await run(s, { cmd: ['/bin/sh', '-c', 'printf %s "$1"', 'x', `$(touch ${canary})\n'"`] })
    expect(arg.out).toBe(`$(touch ${canary})\n'"`)
    expect(existsSync(canary)).toBe(false)
    // positive control: a step that does create it
    await run(s, sh(`touch ${canary}`))
    expect(existsSync(canary)).toBe(true)
  })

  test("a step's env is its own: nothing from earlier steps, no PWD/OLDPWD/SHLVL of the shell unless given", async () => {
    const s = await start()
    await run(s, sh('export LEAK=1; cd /tmp', { FIRST: 'x' }))
    // `env` itself, not a shell (which sets PWD of its own, as it does under an exec)
    const env = (extra: Record<string, string> = {}): Promise<Ran> => run(s, { cmd: ['env'], env: { PATH: process.env.PATH!, ...extra } })
    const r = await env()
    expect(r.out.split('\n').filter(Boolean).sort()).toEqual(['HOME=/nonexistent-rch-home', `PATH=${process.env.PATH}`, 'RCH_STEP=m'])
    // positive control: given ones are there
    const given = (await env({ PWD: '/given', SHLVL: '7' })).out
    expect(given).toMatch(/^PWD=\/given$/m)
    expect(given).toMatch(/^SHLVL=7$/m)
  })

  test('the working folder: entered (symlinks resolved), and a missing one is status 126 as with an exec', async () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'real'))
    const s = await start()
    expect((await run(s, { ...sh('pwd -P'), workdir: join(dir, 'real') })).out).toBe(`${join(dir, 'real')}\n`)
    const missing = await run(s, { ...sh('echo ran'), workdir: join(dir, 'none') })
    expect(missing.code).toBe(126)
    expect(missing.out).toBe('')
    // the shell goes on
    expect(await run(s, sh('echo next'))).toMatchObject({ code: 0, out: 'next\n' })
  })

  test("a step reads no stdin: the next step's request is not its to read", async () => {
    const s = await start()
    const r = await run(s, sh('cat; echo "read:$?"'))
    expect(r.out).toBe('read:0\n')
    // positive control: the following request still reached the shell
    expect(await run(s, sh('echo after'))).toMatchObject({ out: 'after\n' })
  })

  test('a step ends when its process does: output of what it left running shows in the step running then, or is dropped between steps', async () => {
    const engine = localEngine()
    const s = await start(engine)
    const a = await run(s, sh('(sleep 0.3; echo late-output; echo late-err >&2) & (sleep 1.5; echo dropped) & echo a'))
    expect(a).toEqual({ code: 0, out: 'a\n', err: '' })
    const b = await run(s, sh('sleep 0.8; echo b'))
    expect(b).toEqual({ code: 0, out: 'late-output\nb\n', err: 'late-err\n' })
    // the shell has read the late line between steps (it came after b's end) ...
    await engine.handed('dropped')
    // ... and it shows in no step
    expect(await run(s, sh('echo c'))).toEqual({ code: 0, out: 'c\n', err: '' })
  })

  test('a forged end line (no nonce, a wrong one) is output like any other and does not end the step', async () => {
    const s = await start()
    const forged = 'printf "\\001rch-end 00000000000000000000000000000000 0\\n"; printf "\\001rch-end x\\n" >&2; printf "\\001rch-"; exit 7'
    const r = await run(s, sh(forged))
    expect(r.code).toBe(7)
    expect(r.out).toBe('\x01rch-end 00000000000000000000000000000000 0\n\x01rch-')
    expect(r.err).toBe('\x01rch-end x\n')
  })

  test('a step that kills the shell fails (never a success) and the shell is retired', async () => {
    const s = await start()
    expect((await run(s, sh('true'))).code).toBe(0)
    expect(s.claim()).toBe(true)
    const r = s.run(
      { cmd: ['/bin/sh', '-c', 'kill -KILL $PPID; exit 0'], env: { PATH: process.env.PATH! }, workdir: '/', marker: 'm' },
      {
        onStdout: () => undefined,
        onStderr: () => undefined
      }
    )
    await expect(r.ended).rejects.toThrow(TransportError)
    await expect(r.ended).rejects.toThrow(/the step shell ended before the step's exit status came/)
    expect(s.usable).toBe(false)
    expect(s.claim()).toBe(false)
    expect(() =>
      s.run({ cmd: ['true'], env: {}, workdir: '/', marker: 'm' }, { onStdout: () => undefined, onStderr: () => undefined })
    ).toThrow('not claimed')
  })

  test('large output passes through whole and in order', async () => {
    const s = await start()
    const r = await run(s, sh('i=0; while [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); done'))
    const lines = r.out.split('\n')
    expect(lines).toHaveLength(20001)
    expect(lines[19999]).toBe('line 19999')
  })

  test('a shell that ends before its ready line (no /bin/sh in the image) fails at once', async () => {
    const t0 = Date.now()
    const quick = localEngine(['/bin/sh', '-c', 'echo "sh: not found" >&2; exit 127'])
    await expect(WarmShell.start(quick, 'c')).rejects.toThrow(/the step shell ended/)
    expect(Date.now() - t0).toBeLessThan(5000)
  })

  test('one step at a time: a claimed shell is not given to a second step until released', async () => {
    const s = await start()
    expect(s.claim()).toBe(true)
    expect(s.claim()).toBe(false)
    s.release()
    // positive control: free again
    expect(s.claim()).toBe(true)
    s.release()
  })

  test("a step's `kill 0` (its whole process group) does not end the shell; the step itself gets TERM as under an exec", async () => {
    const s = await start()
    const r = await run(s, sh("trap 'kill 0' EXIT; echo hi"))
    expect(r.out).toBe('hi\n')
    expect(r.code).toBe(143)
    expect(s.usable).toBe(true)
    expect(await run(s, sh('echo still'))).toMatchObject({ code: 0, out: 'still\n' })
  })

  test.each([
    ['an exit status over 255', (t: string) => t.replace(`"$__rch_e" "$?"`, `"$__rch_e" 256`)],
    [
      'a stdout end line and no stderr one (the stream ends)',
      (t: string) => t.replace(`printf '%s\\n' "$__rch_e" >&2; done`, 'exit 0; done')
    ],
    ['a stderr end line with more on it', (t: string) => t.replace(`printf '%s\\n' "$__rch_e" >&2`, `printf '%s 0\\n' "$__rch_e" >&2`)]
  ])('a shell that answers with %s fails the step, never a success, and is retired', async (_what, edit) => {
    const engine = localEngine(undefined, (t) => {
      const changed = edit(t)
      // the edit applies: this is the lying shell
      expect(changed).not.toBe(t)
      return changed
    })
    const s = await start(engine)
    let out = ''
    expect(s.claim()).toBe(true)
    const r = s.run({ ...sh('echo step-ran'), workdir: '/', marker: 'm' } as ShellStep, {
      onStdout: (c) => void (out += String(c)),
      onStderr: () => undefined
    })
    await expect(r.ended).rejects.toThrow(TransportError)
    expect(out).toBe('step-ran\n')
    expect(s.alive).toBe(false)
  })

  test("lines out of step (a stray line on the shell's stdin) never make the shell print a step's environment", async () => {
    const secret = `s3cret-${Date.now()}`
    const attempt = async (edit?: (t: string) => string): Promise<{ out: string; err: string; rejected: boolean }> => {
      const engine = localEngine(undefined, edit)
      const s = await start(engine)
      // A process left by an earlier step writes a marker-like line into the shell's stdin first.
      engine.stdin().write(`\x01rch-end ${'0'.repeat(32)}\n`)
      let out = ''
      let err = ''
      expect(s.claim()).toBe(true)
      const r = s.run({ ...sh('true', { TOKEN: secret }), workdir: '/', marker: 'm' } as ShellStep, {
        onStdout: (c) => void (out += String(c)),
        onStderr: (c) => void (err += String(c))
      })
      // The unguarded shell below waits for a line that never comes: its input ends after a while.
      const ending = setTimeout(() => engine.stdin().end(), 1000)
      const rejected = await r.ended.then(
        () => false,
        () => true
      )
      clearTimeout(ending)
      return { out, err, rejected }
    }
    const guarded = await attempt()
    expect(guarded.rejected).toBe(true)
    expect(guarded.out + guarded.err).not.toContain(secret)
    // positive control: without the shell's checks of the two lines, the step's line is printed
    const unguarded = await attempt((t) =>
      t.replace(/case \$__rch_e in [^;]*;; \*\) exit 99;; esac; /, '').replace(/case \$__rch_l in [^;]*;; \*\) exit 125;; esac; /, '')
    )
    expect(unguarded.out + unguarded.err).toContain(secret)
  })

  test(`over ${MAX_IDLE_OUTPUT} bytes between steps (a \`yes &\` left behind) retire the shell; a little is dropped`, async () => {
    const s = await start()
    await run(s, sh('(sleep 0.2; head -c 100 /dev/zero) & true'))
    // The 100 bytes have come between steps (the shell counts them).
    const idle = (): number => (s as unknown as { idleBytes: number }).idleBytes
    expect(await waitUntil(() => idle() >= 100, 5000, 10)).toBe(true)
    expect(s.usable).toBe(true)
    await run(s, sh(`(sleep 0.2; head -c ${MAX_IDLE_OUTPUT * 3} /dev/zero) & true`))
    await waitUntil(() => !s.alive, 5000)
    expect(s.alive).toBe(false)
  })

  test('a cancel the shell does not answer (the step stopped it) still ends the step, and retires the shell', async () => {
    const engine = localEngine()
    const s = await start(engine)
    const cancel = new AbortController()
    expect(s.claim()).toBe(true)
    setTimeout(() => cancel.abort('SIGINT'), 300)
    const t0 = Date.now()
    const res = await shellStep(
      s,
      engine,
      { container: 'c', cmd: ['/bin/sh', '-c', 'kill -STOP $PPID; exit 0'], env: { PATH: process.env.PATH! }, workdir: '/' },
      { onStdout: () => undefined, onStderr: () => undefined },
      cancel.signal,
      100
    )
    expect(res).toEqual({ exitCode: 130, cancelled: true, stop: 'stopped' })
    expect(Date.now() - t0).toBeLessThan(8000)
    expect(engine.stops).toBeGreaterThanOrEqual(1)
    expect(s.alive).toBe(false)
    engine.kill()
  })

  test("no step's environment stays in the shell's memory for a later step to read", async () => {
    const s = await start()
    const secret = `hunter2-${Date.now()}-first-step`
    await run(s, sh('true', { SECRET_ONE: secret }))
    // A later step reads the shell's whole writable memory (its parent: same user, no Yama here).
    const scan = (what: string): Promise<Ran> =>
      run(s, {
        cmd: ['python3', '-c', SCAN, what],
        env: { PATH: process.env.PATH! }
      })
    const r = await scan(secret)
    expect(r.err).toBe('')
    expect(r.out).toBe('0\n')
    // positive control: the scan finds what the shell does hold (the end marker it prints)
    expect(Number((await scan('\x01rch-end ')).out)).toBeGreaterThan(0)
  })
})

/** python3: counts the occurrences of argv[1] in the writable mappings of the parent process. */
const SCAN = `
import os, re, sys
want = sys.argv[1].encode('latin1'); n = 0; pid = os.getppid()
with open(f'/proc/{pid}/maps') as maps, open(f'/proc/{pid}/mem', 'rb', 0) as mem:
    for line in maps:
        m = re.match(r'([0-9a-f]+)-([0-9a-f]+) rw', line)
        if not m: continue
        a, b = int(m.group(1), 16), int(m.group(2), 16)
        try:
            mem.seek(a); n += mem.read(b - a).count(want)
        except OSError: pass
print(n)
`

describe('EndScanner', () => {
  const M = '\x01rch-end abc'
  function scan(chunks: string[]): { passed: string; rest: string | null | undefined } {
    let passed = ''
    let rest: string | null | undefined
    const s = new EndScanner(
      M,
      (b) => void (passed += b.toString('latin1')),
      (r) => (rest = r)
    )
    for (const c of chunks) s.push(Buffer.from(c, 'latin1'))
    return { passed, rest }
  }
  const all = `output\x01x${M} 42\nafter`

  test('finds the marker split at every byte, passes on exactly what came before, drops what follows', () => {
    for (let i = 0; i <= all.length; i++)
      for (let j = i; j <= all.length; j++) {
        const got = scan([all.slice(0, i), all.slice(i, j), all.slice(j)])
        expect(got).toEqual({ passed: 'output\x01x', rest: ' 42' })
      }
  })

  test('holds back only a tail that could start the marker', () => {
    let passed = ''
    const s = new EndScanner(
      M,
      (b) => void (passed += b.toString('latin1')),
      () => undefined
    )
    s.push(Buffer.from('abc\x01rch'))
    expect(passed).toBe('abc')
    s.push(Buffer.from('-other'))
    expect(passed).toBe('abc\x01rch-other')
    s.push(Buffer.from('plain'))
    expect(passed).toBe('abc\x01rch-otherplain')
  })

  test('a marker line that runs long is reported as null', () => {
    expect(scan([`${M} 1234567890\n`]).rest).toBeNull()
    // control: a short one is read
    expect(scan([`${M} 1\n`]).rest).toBe(' 1')
  })
})

describe('shellUnfit: steps an exec runs instead', () => {
  const ok: ShellStep = { cmd: ['bash', '-e', 'x'], env: { A_1: 'v' }, workdir: '/w', marker: 'm' }
  test.each([
    [{ workdir: 'rel' }, /not absolute/],
    [{ cmd: ['-x'] }, /starts with -/],
    [{ cmd: [] }, /empty/],
    [{ env: { 'A-B': '1' } }, /not a shell name/],
    [{ env: { '1A': '1' } }, /not a shell name/],
    [{ env: { A: 'a\0b' } }, /NUL/],
    [{ cmd: ['x', 'a\0'] }, /NUL/],
    [{ env: { OPTIND: 'abc' } }, /OPTIND, which the shell/],
    [{ env: { UID: '1' } }, /UID/],
    [{ env: { BASH_ENV: '/x' } }, /BASH_ENV/],
    [{ env: { __rch_n: 'x' } }, /__rch_n/]
  ])('%j', (change, why) => {
    expect(shellUnfit({ ...ok, ...change })).toMatch(why)
  })
  test('a plain step fits', () => {
    expect(shellUnfit(ok)).toBeNull()
  })
  test('the request is two lines whatever newlines the step holds: the end marker, then the step', () => {
    const req = shellRequest({ ...ok, env: { A: 'x\ny\n' }, cmd: ['a\nb'], workdir: '/w\n' }, 'n1')
    const lines = req.split('\n')
    expect(lines).toHaveLength(3)
    expect(lines[0]).toBe('\x01rch-end n1')
    expect(lines[1].startsWith('n1 cd -P -- ')).toBe(true)
    expect(lines[2]).toBe('')
  })
})

describe('JobShell: one per job, started after a step, given up after repeated failures', () => {
  test('starts in the background, is taken by the next step, and is not taken for another container', async () => {
    const j = new JobShell()
    const engine = localEngine()
    j.after(engine, 'c')
    expect(j.take('c')).toBeNull()
    await j.pending
    const s = j.take('c')
    expect(s).not.toBeNull()
    // claimed by this step: a step beside it gets none
    expect(j.take('c')).toBeNull()
    s!.release()
    expect(j.take('d')).toBeNull()
    j.after(engine, 'c')
    expect(engine.started).toBe(1)
    j.drop()
    expect(j.take('c')).toBeNull()
  })

  test(`a shell that cannot start is tried at most ${MAX_STARTS} times, and why is told once`, async () => {
    const j = new JobShell()
    const engine = localEngine(['/bin/sh', '-c', 'exit 127'])
    for (let i = 0; i < MAX_STARTS + 2; i++) {
      j.after(engine, 'c')
      await j.pending
    }
    expect(engine.started).toBe(MAX_STARTS)
    expect(j.takeProblem()).toMatch(/the step shell did not start \(steps use an exec\): the step shell ended/)
    expect(j.takeProblem()).toBeNull()
  })
})
