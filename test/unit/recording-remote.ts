// A recording fake Remote for unit tests of the remote-docker layer: every shell command and every
// Engine API request it gets is recorded, and each is answered from a script (the first rule that
// matches). Shell commands are never run; API requests reach a local HTTP server on a Unix socket,
// the way the Engine client reaches the VM's docker.sock through the SSH connection.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { PassThrough } from 'node:stream'
import { join } from 'node:path'
import type { ExecChannel, Remote } from '../../src/remote/remote'
import { tempDir } from './_helpers'

export interface ApiCall {
  method: string
  /** Path and query, decoded as docker's router sees them (without the /v1.xx prefix). */
  path: string
  rawPath: string
  body: unknown
}

export interface ExecCall {
  command: string
  stdin: string
}

export type ApiAnswer = { status: number; body?: unknown }
export type ExecAnswer = { code: number; stdout?: string; stderr?: string }

export class RecordingRemote implements Remote {
  readonly api: ApiCall[] = []
  readonly execs: ExecCall[] = []
  readonly socketPath: string
  private server: Server | null = null
  private apiRules: [string, RegExp, (c: ApiCall) => ApiAnswer][] = []
  private execRules: [RegExp, (c: ExecCall) => ExecAnswer][] = []

  constructor() {
    this.socketPath = join(tempDir(), 'docker.sock')
  }

  /** Answers `method` requests whose decoded path matches (first matching rule wins). */
  onApi(method: string, path: RegExp, answer: ApiAnswer | ((c: ApiCall) => ApiAnswer)): this {
    this.apiRules.push([method, path, typeof answer === 'function' ? answer : () => answer])
    return this
  }

  onExec(command: RegExp, answer: ExecAnswer | ((c: ExecCall) => ExecAnswer)): this {
    this.execRules.push([command, typeof answer === 'function' ? answer : () => answer])
    return this
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.serve(req, res))
    await new Promise<void>((r) => this.server!.listen(this.socketPath, r))
    return this
  }

  stop(): Promise<void> {
    return new Promise((r) => (this.server ? this.server.close(() => r()) : r()))
  }

  private serve(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const rawPath = (req.url ?? '').replace(/^\/v[\d.]+/, '')
      const text = Buffer.concat(chunks).toString('utf8')
      const call: ApiCall = {
        method: req.method ?? '',
        path: decodeURIComponent(rawPath),
        rawPath,
        body: text ? JSON.parse(text) : undefined
      }
      this.api.push(call)
      const rule = this.apiRules.find(([m, re]) => m === call.method && re.test(call.path))
      const a = rule ? rule[2](call) : { status: 500, body: { message: `no scripted answer for ${call.method} ${call.path}` } }
      if (a.body === undefined) {
        res.writeHead(a.status)
        res.end()
      } else {
        res.writeHead(a.status, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify(a.body))
      }
    })
  }

  async openExec(command: string): Promise<ExecChannel> {
    const stdin = new PassThrough()
    const stdout = new PassThrough()
    const stderr = new PassThrough()
    const input: Buffer[] = []
    stdin.on('data', (c: Buffer) => input.push(c))
    const done = new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      stdin.on('finish', () => {
        const call: ExecCall = { command, stdin: Buffer.concat(input).toString('utf8') }
        this.execs.push(call)
        const rule = this.execRules.find(([re]) => re.test(command))
        const a = rule ? rule[1](call) : { code: 127, stderr: 'no scripted answer' }
        stdout.end(a.stdout ?? '')
        stderr.end(a.stderr ?? '')
        resolve({ code: a.code, signal: null })
      })
    })
    return { stdin, stdout, stderr, done }
  }

  async openSocket(path: string): Promise<ReturnType<typeof connect>> {
    if (path !== '/var/run/docker.sock') throw new Error(`unexpected socket ${path}`)
    return connect(this.socketPath)
  }

  close(): void {}
}
