// The runner's worker for one job: a process of its own that starts each hook command of the job as
// its child, as the runner's Runner.Worker does. The hook treats its parent as the worker (a static
// slot's and a pool lease's liveness, the agent's heartbeats), so killing this process is how the
// soak makes a runner die; killing the soak's own process would not.
import { fork, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FakeRunner, HookRun } from '../helpers/fake-runner'

// Plain JavaScript run with `node -e`: the same under ts-jest and in the esbuild bundle of `npm run soak`.
const WORKER_SOURCE = `
const { spawn } = require('node:child_process')
process.on('message', (m) => {
  const c = spawn(m.file, m.args, { cwd: m.cwd, env: m.env, stdio: ['pipe', 'pipe', 'pipe'] })
  const send = (x) => { try { process.send(x) } catch {} }
  send({ type: 'pid', id: m.id, pid: c.pid })
  c.stdout.setEncoding('utf8').on('data', (d) => send({ type: 'out', id: m.id, fd: 1, data: d }))
  c.stderr.setEncoding('utf8').on('data', (d) => send({ type: 'out', id: m.id, fd: 2, data: d }))
  c.on('error', (e) => send({ type: 'close', id: m.id, code: null, signal: null, error: String(e) }))
  c.on('close', (code, signal) => send({ type: 'close', id: m.id, code, signal }))
  c.stdin.on('error', () => {})
  c.stdin.end(m.input)
})
process.on('disconnect', () => process.exit(0))
`

export interface Running {
  /** resolves with the hook's pid once it runs */
  pid: Promise<number>
  /** the hook's result; `killed` when the worker died first */
  done: Promise<HookRun & { killed: boolean }>
}

export class JobWorker {
  readonly child: ChildProcess
  readonly pid: number
  private exited = false
  /** SIGKILL sent: nothing more is started, whether or not its exit was seen yet */
  private killed = false
  private seq = 0
  private readonly waiting = new Map<
    number,
    {
      out: string
      err: string
      onPid: (p: number) => void
      end: (code: number | null, signal: NodeJS.Signals | null, killed: boolean) => void
    }
  >()

  constructor() {
    this.child = fork('-e', [WORKER_SOURCE], { execArgv: [], stdio: ['ignore', 'ignore', 'ignore', 'ipc'] })
    // fork() runs `node -e SOURCE` when its module path is -e
    this.pid = this.child.pid!
    this.child.on(
      'message',
      (m: { type: string; id: number; pid?: number; fd?: number; data?: string; code?: number | null; signal?: NodeJS.Signals | null }) => {
        const w = this.waiting.get(m.id)
        if (!w) return
        if (m.type === 'pid') w.onPid(m.pid!)
        else if (m.type === 'out') {
          if (m.fd === 1) w.out += m.data
          else w.err += m.data
        } else if (m.type === 'close') w.end(m.code ?? null, m.signal ?? null, false)
      }
    )
    this.child.on('exit', () => {
      this.exited = true
      for (const w of this.waiting.values()) {
        w.onPid(-1)
        w.end(null, 'SIGKILL', true)
      }
    })
    // a send racing the worker's death fails with EPIPE: the command is then reported killed
    this.child.on('error', () => undefined)
  }

  get alive(): boolean {
    return !this.exited && !this.killed
  }

  /** A hook command as the runner starts it (FakeRunner.start's envelope, response file and env), but as this worker's child. */
  start(runner: FakeRunner, command: string, args: unknown, opts: { state: unknown; env: Record<string, string> }): Running {
    const dir = join(runner.temp, '_runner_hook_responses')
    mkdirSync(dir, { recursive: true })
    const responseFile = join(dir, `${randomUUID()}.json`)
    writeFileSync(responseFile, '')
    const input = JSON.stringify({ command, responseFile, args, state: opts.state }) + '\n'
    const id = ++this.seq
    const started = Date.now()
    let onPid!: (p: number) => void
    const pid = new Promise<number>((r) => (onPid = r))
    const done = new Promise<HookRun & { killed: boolean }>((resolve) => {
      const entry = {
        out: '',
        err: '',
        onPid,
        end: (code: number | null, signal: NodeJS.Signals | null, killed: boolean) => {
          this.waiting.delete(id)
          let responseText = ''
          try {
            responseText = readFileSync(responseFile, 'utf8')
          } catch {
            // absent
          }
          let response: unknown
          try {
            response = responseText.trim() ? JSON.parse(responseText) : null
          } catch {
            response = { unparsable: responseText }
          }
          resolve({ code, signal, stdout: entry.out, stderr: entry.err, response, responseText, ms: Date.now() - started, killed })
        }
      }
      this.waiting.set(id, entry)
    })
    const fail = () => {
      onPid(-1)
      this.waiting.get(id)?.end(null, 'SIGKILL', true)
    }
    if (!this.alive) fail()
    else
      this.child.send(
        { id, file: process.execPath, args: [runner.hook], cwd: runner.workspace, env: runner.env(opts.env), input },
        (err) => {
          if (err) fail()
        }
      )
    return { pid, done }
  }

  /** The runner dies: SIGKILL to this worker (its hook commands are killed by the caller first, by pid). */
  kill(): void {
    this.killed = true
    if (!this.exited) this.child.kill('SIGKILL')
  }

  /** The job is over: the worker ends (a dead job's worker was killed instead). */
  async end(): Promise<void> {
    if (this.exited) return
    const gone = new Promise((r) => this.child.once('exit', r))
    this.child.disconnect()
    await gone
  }
}
