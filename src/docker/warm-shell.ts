// Steps through one shell kept running in the job container (agent.warmShell). Starting a process
// with the Engine's exec costs ~60 ms per step on a small VM (runc entering the container's
// namespaces); a shell already in there forks the step in about a millisecond. The job's agent
// starts the shell after a step served by an exec, and later steps go through it. Each step is one
// request line on the shell's stdin; when the step's process ends, the shell prints an end marker
// with a fresh random nonce on stdout (with the exit status) and on stderr, so the agent knows
// that all the step's output on both streams has arrived. Anything unexpected retires the shell:
// the next step uses an exec again.
//
// The container is the job's: a step can kill the shell, read its memory or print into its pipes.
// None of that reaches further than the job's own steps (which run there anyway): the exit status
// is read as strictly as an exec's, a shell that ends or answers wrongly fails the step in flight
// (never a success), and the step's environment travels on the shell's stdin, never a command line.
import { randomBytes } from 'node:crypto'
import type { Writable } from 'node:stream'
import type { Engine, Output } from './engine'
import { idFrom } from './engine'
import { TransportError } from '../errors'
import { shqOneLine } from '../remote/quote'
import { settlesWithin } from '../retry'
import { STEP_MARKER } from './step-stop'

/**
 * The step shell failed while a step ran. The VM's doing while the connection still works (blameOf);
 * on a connection that does not answer either, the connection's loss (failedStep says so).
 */
export class StepShellFailed extends TransportError {}

/** Markers start with SOH, a byte a step's text output practically never ends with (see EndScanner). */
const MARK = '\x01rch-'
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
/**
 * Names a shell gives a meaning of its own (dash stops on a bad OPTIND; bash as /bin/sh refuses to
 * export its read-only ones): an exec passes them through untouched, so such steps go by exec.
 */
const SHELL_NAMES =
  /^(IFS|OPTIND|OPTARG|PPID|UID|EUID|GROUPS|SHELLOPTS|BASHOPTS|BASHPID|LINENO|RANDOM|SRANDOM|SECONDS|EPOCHSECONDS|EPOCHREALTIME|HISTCMD|FUNCNAME|_|BASH_.*|__rch_.*)$/
/** Output allowed between steps (of processes a step left running) before the shell is retired. */
export const MAX_IDLE_OUTPUT = 1024 * 1024
const START_MS = 10_000
/** Starts of a new shell per job: a job whose steps keep killing it goes back to execs for good. */
export const MAX_STARTS = 3

export interface ShellStep {
  cmd: string[]
  env: Record<string, string>
  workdir: string
  marker: string
}

/** Why this step cannot go through the shell (an exec runs it instead), or null. */
export function shellUnfit(step: Omit<ShellStep, 'marker'>): string | null {
  if (!step.workdir.startsWith('/')) return 'its working directory is not absolute'
  if (!step.cmd.length || step.cmd[0] === '' || step.cmd[0].startsWith('-')) return 'its command is empty or starts with -'
  const bad = Object.keys(step.env).find((k) => !NAME.test(k))
  if (bad !== undefined) return `an environment variable name is not a shell name (${JSON.stringify(bad.slice(0, 40))})`
  const special = Object.keys(step.env).find((k) => SHELL_NAMES.test(k))
  if (special !== undefined) return `the environment sets ${special}, which the shell treats as its own`
  const all = [step.workdir, ...step.cmd, ...Object.values(step.env)]
  if (all.some((s) => s.includes('\0'))) return 'a NUL byte in its command, environment or working directory'
  return null
}

/**
 * The shell's request for one step: a line with the end marker, for the shell, and a line with the
 * step, which only the step's own subshell reads (so no step's environment stays in the shell's
 * memory for a later step to find). `cd -P` and status 126 for a missing folder are what docker's
 * exec does; PWD, OLDPWD and SHLVL are the shell's, not the step's (an exec has none of them unless
 * the step's env sets them).
 */
export function shellRequest(step: ShellStep, nonce: string): string {
  const env = { ...step.env, [STEP_MARKER]: step.marker }
  const exports = Object.entries(env).map(([k, v]) => shqOneLine(`${k}=${v}`))
  return (
    `${MARK}end ${nonce}\n` +
    `${nonce} cd -P -- ${shqOneLine(step.workdir)} || exit 126; unset PWD OLDPWD SHLVL; ` +
    `${exports.length ? `export ${exports.join(' ')}; ` : ''}exec ${step.cmd.map(shqOneLine).join(' ')}\n`
  )
}

/**
 * The shell itself: reads an end marker (exactly one, or it exits), lets a subshell read the step's
 * line, check that it carries the same nonce, and run it with no stdin of its own; then prints the
 * marker on both streams. It ignores INT, TERM, HUP and QUIT (a step's `kill 0` reaches its whole
 * process group, the shell included); the subshell restores them for the step. Its variables have
 * names no image uses (`__rch_n` holds the newline shqOneLine refers to). dash, busybox ash and bash
 * read a pipe a byte at a time, so each `read` takes one line only.
 */
export function shellScript(readyNonce: string): string {
  const hex32 = '?'.repeat(32)
  return (
    `__rch_n='\n'; __rch_s=$(printf '\\001'); trap '' INT TERM HUP QUIT; ` +
    `printf '%s\\n' '${MARK}ready ${readyNonce}'; ` +
    `while IFS= read -r __rch_e; do ` +
    `case $__rch_e in "$__rch_s"'rch-end '${hex32}) ;; *) exit 99;; esac; ` +
    `( trap - INT TERM HUP QUIT; IFS= read -r __rch_l || exit 125; exec </dev/null; ` +
    `case $__rch_l in "\${__rch_e##* } "*) ;; *) exit 125;; esac; eval "\${__rch_l#* }" ); ` +
    `printf '%s %s\\n' "$__rch_e" "$?"; printf '%s\\n' "$__rch_e" >&2; done`
  )
}

const NONE = Buffer.alloc(0)

/**
 * Finds `marker` followed by a short rest and a newline in one output stream. What comes before it
 * is passed on as it arrives; only a tail that could be the start of the marker is held back (so a
 * step's partial line waits only if it ends in SOH). What comes after the marker's line is output
 * of processes the step left running: dropped, as the step is over.
 */
export class EndScanner {
  private held: Buffer = NONE
  private rest: string | null = null
  private ended = false
  private readonly mark: Buffer
  constructor(
    marker: string,
    private readonly pass: (b: Buffer) => boolean | void,
    private readonly onEnd: (rest: string | null) => void,
    private readonly maxRest = 8
  ) {
    this.mark = Buffer.from(marker, 'latin1')
  }

  /** The marker's line is complete. */
  get done(): boolean {
    return this.ended
  }

  push(c: Buffer): boolean | void {
    if (this.ended) return
    if (this.rest !== null) return this.collect(c)
    // Nearly every chunk of a step's output: nothing held and not one byte that could start the
    // marker (one memchr), so neither the marker nor a start of it is in it.
    if (!this.held.length && c.indexOf(this.mark[0]) < 0) return this.pass(c)
    const b = this.held.length ? Buffer.concat([this.held, c]) : c
    const at = b.indexOf(this.mark)
    if (at >= 0) {
      this.held = NONE
      const r = at > 0 ? this.pass(b.subarray(0, at)) : undefined
      this.rest = ''
      this.collect(b.subarray(at + this.mark.length))
      return r
    }
    const keep = partialTail(b, this.mark)
    this.held = keep ? Buffer.from(b.subarray(b.length - keep)) : NONE
    return b.length > keep ? this.pass(b.subarray(0, b.length - keep)) : undefined
  }

  /** The marker line's rest up to its newline; null to onEnd when it runs over maxRest. */
  private collect(c: Buffer): void {
    const nl = c.indexOf(10)
    this.rest += c.toString('latin1', 0, Math.min(nl < 0 ? c.length : nl, this.maxRest + 1))
    if (this.rest!.length > this.maxRest) {
      this.ended = true
      this.onEnd(null)
    } else if (nl >= 0) {
      this.ended = true
      this.onEnd(this.rest)
    }
  }
}

/** The length of the longest tail of b that is a proper start of mark. */
function partialTail(b: Buffer, mark: Buffer): number {
  const from = Math.max(0, b.length - mark.length + 1)
  const first = b.indexOf(mark[0], from)
  if (first < 0) return 0
  for (let at = first; at < b.length; at++) {
    if (b[at] !== mark[0]) continue
    const n = b.length - at
    if (b.subarray(at).equals(mark.subarray(0, n))) return n
  }
  return 0
}

interface Running {
  out: Output
  scanOut: EndScanner
  scanErr: EndScanner
  code: number | null
  finish(err?: Error): void
}

export class WarmShell {
  private step: Running | null = null
  private claimed = false
  private idleBytes = 0
  private broken: string | null = null
  private ready: EndScanner | null = null
  /** Wakes start()'s wait for the ready line when the shell fails first. */
  private onBroken: (() => void) | null = null

  private constructor(
    readonly container: string,
    private readonly input: Writable,
    private readonly closeStream: () => void
  ) {}

  /** Starts the shell and waits for its ready line; throws (and leaves nothing running) when it does not come. */
  static async start(engine: Engine, container: string): Promise<WarmShell> {
    const readyNonce = randomBytes(16).toString('hex')
    const { data } = await engine.call<{ Id: string }>(
      'POST',
      `/containers/${container}/exec`,
      { AttachStdin: true, AttachStdout: true, AttachStderr: true, Tty: false, Cmd: ['/bin/sh', '-c', shellScript(readyNonce)] },
      'exec create (step shell)'
    )
    const id = idFrom(data, 'exec create (step shell)')
    let shell: WarmShell | null = null
    let isReady!: () => void
    const readySeen = new Promise<void>((r) => (isReady = r))
    const early: Buffer[] = []
    const out: Output = {
      onStdout: (c) => (shell ? shell.onStdout(c) : void early.push(Buffer.from(c))),
      onStderr: (c) => (shell ? shell.onStderr(c) : undefined),
      waitDrain: () => shell?.step?.out.waitDrain?.() ?? Promise.resolve()
    }
    const h = await engine.hijack(`/exec/${id}/start`, { Detach: false, Tty: false }, out)
    if (!h.input) {
      h.close()
      throw new TransportError('docker did not give the step shell a stdin', 'lost')
    }
    const s = new WarmShell(container, h.input, h.close)
    s.onBroken = isReady
    s.ready = new EndScanner(
      `${MARK}ready ${readyNonce}`,
      () => undefined,
      (rest) => (rest === '' ? isReady() : s.fail('the step shell printed a bad ready line'))
    )
    shell = s
    for (const c of early) s.onStdout(c)
    h.ended.then(
      () => s.fail('the step shell ended'),
      (e: Error) => s.fail(`the step shell's stream broke: ${e.message}`)
    )
    h.input.on('error', (e) => s.fail(`the step shell's stdin broke: ${e.message}`))
    if (!(await settlesWithin(readySeen, START_MS)) || s.broken) {
      s.close()
      throw new TransportError(s.broken ?? `the step shell did not start within ${START_MS / 1000} s`, 'lost')
    }
    return s
  }

  /** Not ended, not failed (it may be running a step). */
  get alive(): boolean {
    return this.broken === null
  }

  /** Free for a step: started, not broken, not claimed, no step running. */
  get usable(): boolean {
    return this.broken === null && !this.claimed && this.step === null && this.ready !== null && this.ready.done
  }

  /** Reserves the shell for one step (two steps at once: the second gets false and uses an exec). */
  claim(): boolean {
    if (!this.usable) return false
    this.claimed = true
    return true
  }

  /** Gives back a claim that will not be used. */
  release(): void {
    this.claimed = false
  }

  /** Runs one step on a claimed shell: `ended` settles when its output on both streams is complete; then `exitCode()`. */
  run(step: ShellStep, out: Output): { ended: Promise<void>; exitCode: () => Promise<number> } {
    if (!this.claimed || this.broken !== null || this.step !== null) throw new Error('the step shell is not claimed or not free')
    this.claimed = false
    this.idleBytes = 0
    const nonce = randomBytes(16).toString('hex')
    let finish!: (err?: Error) => void
    const ended = new Promise<void>((resolve, reject) => (finish = (err) => (err ? reject(err) : resolve())))
    const both = (): void => {
      if (r.scanOut.done && r.scanErr.done && r.code !== null) r.finish()
    }
    const r: Running = {
      out,
      code: null,
      finish: (err) => {
        this.step = null
        finish(err)
      },
      scanOut: new EndScanner(
        `${MARK}end ${nonce}`,
        (b) => out.onStdout(b),
        (rest) => {
          const m = /^ ([0-9]{1,3})$/.exec(rest ?? '')
          if (!m || Number(m[1]) > 255) return this.fail('the step shell printed an end line without a valid exit status')
          r.code = Number(m[1])
          both()
        }
      ),
      scanErr: new EndScanner(
        `${MARK}end ${nonce}`,
        (b) => out.onStderr(b),
        (rest) => (rest === '' ? both() : this.fail('the step shell printed a bad end line on stderr'))
      )
    }
    this.step = r
    this.input.write(shellRequest(step, nonce))
    return {
      ended,
      exitCode: async () => {
        await ended
        return r.code!
      }
    }
  }

  /** Ends the shell (its stdin closes; the stream goes); a step in flight fails. */
  close(why = 'the step shell was closed'): void {
    this.fail(why)
  }

  private onStdout(c: Buffer): boolean | void {
    if (this.ready && !this.ready.done) return this.ready.push(c)
    return this.step && !this.step.scanOut.done ? this.step.scanOut.push(c) : this.idle(c)
  }

  private onStderr(c: Buffer): boolean | void {
    return this.step && !this.step.scanErr.done ? this.step.scanErr.push(c) : this.idle(c)
  }

  /** Output after a step's end: dropped, and the shell retired once there is much of it (a `yes &` left behind). */
  private idle(c: Buffer): void {
    this.idleBytes += c.length
    if (this.idleBytes > MAX_IDLE_OUTPUT) this.close(`over ${MAX_IDLE_OUTPUT} bytes of output came between steps`)
  }

  /** A failed shell is closed at once: nothing more is read from it. */
  private fail(why: string): void {
    const first = this.broken === null
    if (first) this.broken = why
    this.onBroken?.()
    const r = this.step
    this.step = null
    r?.finish(new StepShellFailed(`${why} before the step's exit status came`, 'lost'))
    if (first) this.closeStream()
  }
}

/**
 * The job's shell, kept by the job's agent between steps. `after` starts one in the background once
 * a step has run by exec; `take` hands it to a step when it is free.
 */
export class JobShell {
  private shell: WarmShell | null = null
  private starting: Promise<void> | null = null
  private starts = 0
  /** Why the last start failed, once (the step that reads it logs it; the one that started it has ended). */
  private problem: string | null = null

  /** The job's shell, claimed for one step (release it when the step does not use it), or null. */
  take(container: string): WarmShell | null {
    const s = this.shell
    return s && s.container === container && s.claim() ? s : null
  }

  /** The start under way, if any. */
  get pending(): Promise<void> | null {
    return this.starting
  }

  takeProblem(): string | null {
    const p = this.problem
    this.problem = null
    return p
  }

  after(engine: Engine, container: string): void {
    if (this.shell?.container === container && this.shell.alive) return
    this.drop()
    if (this.starting || this.starts >= MAX_STARTS) return
    this.starts++
    this.starting = WarmShell.start(engine, container)
      .then(
        (s) => {
          this.shell = s
        },
        (e: Error) => void (this.problem = `the step shell did not start (steps use an exec): ${e.message}`)
      )
      .finally(() => (this.starting = null))
  }

  /** Retires the shell (after a cancel, or when the job's container changed). */
  drop(): void {
    this.shell?.close()
    this.shell = null
  }
}

export const jobShell = new JobShell()
