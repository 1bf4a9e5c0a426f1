import { createServer } from 'node:http'
import { connect } from 'node:net'
import type { Duplex } from 'node:stream'
// A recording fake Remote for unit tests: each command runs in a real local /bin/sh, wrapped in
// "start-up noise" the way a chatty shell start-up file of the SSH user would print it. `docker` and
// `sudo` are stubs on PATH that do nothing, so only the shell's own logic is exercised.
import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ExecChannel, Remote } from '../../src/remote/remote'
import { shq } from '../../src/remote/quote'

export class LocalRemote implements Remote {
  readonly commands: string[] = []
  readonly outputs: Buffer[] = []
  private readonly bin: string

  constructor(
    dir: string,
    private readonly noise: { before?: string; after?: string } = {},
    stubs: Record<string, string> = {}
  ) {
    this.bin = join(dir, 'stub-bin')
    mkdirSync(this.bin, { recursive: true })
    for (const name of ['docker', 'sudo']) {
      writeFileSync(
        join(this.bin, name),
        `#!/bin/sh\necho "${name} $*" >> ${shq(join(dir, 'stub.log'))}\nexit ${name === 'sudo' ? 1 : 0}\n`
      )
      chmodSync(join(this.bin, name), 0o755)
    }
    for (const [name, body] of Object.entries(stubs)) {
      writeFileSync(join(this.bin, name), `#!/bin/sh\n${body}\n`)
      chmodSync(join(this.bin, name), 0o755)
    }
  }

  async openExec(command: string): Promise<ExecChannel> {
    this.commands.push(command)
    // The noise is a printf format, so it can hold NULs (\\000) like a hostile start-up file's output.
    const before = this.noise.before !== undefined ? `printf ${shq(this.noise.before)}; ` : ''
    const after = this.noise.after !== undefined ? `printf ${shq(this.noise.after)}; ` : ''
    const wrapped = `${before}/bin/sh -c ${shq(command)}; rc=$?; ${after}exit $rc`
    const child = spawn('/bin/sh', ['-c', wrapped], {
      env: { PATH: `${this.bin}:/usr/bin:/bin` },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true
    })
    // A closed channel ends the command, as sshd does: the whole process group this started.
    child.stdout.once('close', () => {
      try {
        process.kill(-child.pid!, 'SIGKILL')
      } catch {
        // already gone
      }
    })
    const out: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => out.push(c))
    const done = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.on('close', (code, signal) => {
        this.outputs.push(Buffer.concat(out))
        resolve({ code, signal })
      })
    )
    return { stdin: child.stdin, stdout: child.stdout, stderr: child.stderr, done }
  }

  /** A Unix socket on this machine (as the VM's docker socket would be forwarded). */
  openSocket(path: string): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const s = connect(path)
      s.once('connect', () => resolve(s))
      s.once('error', reject)
    })
  }

  close(): void {}
}

/**
 * A Docker Engine API that owns nothing (empty lists, every removal a 404), on a Unix socket in
 * `dir`: what a clean VM's docker answers to the leftover removal. Closed with the returned function.
 */
export async function emptyEngine(dir: string): Promise<{ socket: string; close: () => Promise<void> }> {
  const socket = `${dir}/docker.sock`
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]
    const body = req.method !== 'GET' ? null : path.endsWith('/volumes') ? { Volumes: [] } : []
    res.writeHead(body === null ? 404 : 200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(body ?? { message: 'no such object' }))
  })
  await new Promise<void>((resolve) => server.listen(socket, resolve))
  return { socket, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}
