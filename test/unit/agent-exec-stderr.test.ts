// A command run through the job's agent that writes much to stderr and then exits: ssh2 closes the
// channel once stdout has ended, while stderr may still wait behind the agent's socket (its reader
// is slow). The exit frame must come after all of stderr: its tail is what an error says last.
import { createConnection } from 'node:net'
import { join } from 'node:path'
import { runAgent } from '../../src/remote/agent'
import { MuxRemote } from '../../src/remote/mux-client'
import { testSshd, type TestSshd } from '../helpers/ssh-server'
import { cleanupTempDirs, tempDir } from './_helpers'

const ERR = 2 * 1024 * 1024 - 64 * 1024
let sshd: TestSshd

beforeAll(async () => {
  sshd = await testSshd((ch, command) => {
    // The command is how many bytes to write to stderr, in blocks of up to 64 KiB.
    const total = Number(command)
    for (let n = 0; n < total; n += 64 * 1024) ch.stderr.write(Buffer.alloc(Math.min(64 * 1024, total - n), 0x65))
    ch.write('out\n')
    ch.exit(0)
    ch.end()
  })
})

afterAll(async () => {
  await sshd.close()
  cleanupTempDirs()
})

async function throughAgent(stderrBytes: number, stderrAfterMs: number): Promise<{ code: number | null; out: number; err: number }> {
  const socketPath = join(tempDir(), 'agent.sock')
  const agent = runAgent({ socketPath, connect: sshd.info, connectTimeoutMs: 5000, idleMs: 60_000 }, () => undefined)
  try {
    while (!(await MuxRemote.ping(socketPath, 500))) await new Promise((r) => setTimeout(r, 20))
    const ch = await new MuxRemote(socketPath).openExec(String(stderrBytes))
    let out = 0
    let err = 0
    ch.stdout.on('data', (c: Buffer) => (out += c.length))
    // A slow reader of stderr: the agent's socket fills and its stderr is paused.
    const reading = new Promise<void>((res) =>
      setTimeout(() => {
        ch.stderr.on('data', (c: Buffer) => (err += c.length))
        ch.stderr.on('end', res)
      }, stderrAfterMs)
    )
    const status = await ch.done
    await reading
    return { code: status.code, out, err }
  } finally {
    await new Promise<void>((res) => {
      const c = createConnection(socketPath, () => c.end('{"op":"shutdown"}\n'))
      c.on('close', () => res())
      c.on('error', () => res())
    })
    await agent
  }
}

test('2 MiB of stderr read slowly arrives whole before the exit status', async () => {
  expect(await throughAgent(ERR, 1500)).toEqual({ code: 0, out: 4, err: ERR })
})

test('2 MiB of stderr read at once arrives whole too', async () => {
  expect(await throughAgent(ERR, 0)).toEqual({ code: 0, out: 4, err: ERR })
})

test('control: a little stderr arrives whole (what the agent always managed)', async () => {
  expect(await throughAgent(1000, 0)).toEqual({ code: 0, out: 4, err: 1000 })
})
