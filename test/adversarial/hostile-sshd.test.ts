// Attack: root on the VM puts its own SSH server on the SSH port (the host key is root's to read, so
// the pinned key still matches) and sends a channel's data past the window the hook gave it. ssh2
// drops data only at a window of exactly 0 and buffers any other packet, paused streams included:
// the runner host's agent or hook would buffer without bound. Defense (remote/ssh.ts): data larger
// than the channel's window left closes the connection as failed, a lost connection, never success.
import type { Connection, ServerChannel } from 'ssh2'
import { SshRemote } from '../../src/remote/ssh'
import { testSshd, type TestSshd } from '../helpers/ssh-server'
import { waitUntil } from '../helpers/wait'

// ssh2's table of the signal names its server may send (shared by the whole module).
const { SIGNALS } = require('ssh2/lib/protocol/constants.js') as { SIGNALS: Record<string, number> }

const TOTAL = 64 * 1024 * 1024
/**
 * What honest flow control can leave buffered in a paused stream: ssh2's high-water mark (2 MiB),
 * plus the window it granted again before reaching it (1 MiB), plus a packet.
 */
const WINDOW_BOUND = 3 * 1024 * 1024 + 64 * 1024

let sshd: TestSshd
let mode: 'overrun' | 'overrun-exit0' | 'eof-data' | 'honest' | 'signal' = 'honest'
let sent = 0
/** The window the client left the server's channel (the honest server stops at 0). */
let windowLeft = (): number => -1

beforeAll(async () => {
  sshd = await testSshd((ch: ServerChannel, cmd: string, conn: Connection) => {
    const proto = (conn as unknown as { _protocol: { channelData(id: number, d: Buffer): void } })._protocol
    const id = (ch as unknown as { outgoing: { id: number } }).outgoing.id
    sent = 0
    windowLeft = () => (ch as unknown as { outgoing: { window: number } }).outgoing.window
    const chunk = Buffer.alloc(32 * 1024 + 1, 0x61)
    if (mode === 'signal') {
      // The command's "signal" name is the server's text: it would reach error lines. ssh2's server
      // sends only names it knows, so the forged one is made known to it first.
      SIGNALS[cmd.toUpperCase()] = 1
      ch.exit(cmd, false, '')
      return void ch.end()
    }
    if (mode === 'overrun-exit0') {
      // Honest until the client (paused) gives no more window; then one byte past it, an exit
      // status 0 and the channel's end in one write, so that the client reads them together.
      const out = ch as unknown as { outgoing: { window: number } }
      ch.write(Buffer.alloc(8 * 1024 * 1024, 0x61))
      setTimeout(() => {
        sent = out.outgoing.window === 0 ? -1 : -2
        const raw = (conn as unknown as { _sock: import('node:net').Socket })._sock
        const p = proto as unknown as {
          channelEOF(id: number): void
          channelClose(id: number): void
          exitStatus(id: number, c: number): void
        }
        raw.cork()
        proto.channelData(id, Buffer.from('x'))
        p.exitStatus(id, 0)
        p.channelEOF(id)
        p.channelClose(id)
        process.nextTick(() => raw.uncork())
      }, 500)
      return
    }
    if (mode === 'eof-data') {
      // The channel's end, then more stderr on it.
      ;(conn as unknown as { _protocol: { channelEOF(id: number): void } })._protocol.channelEOF(id)
      ;(conn as unknown as { _protocol: { channelExtData(id: number, d: Buffer, t: number): void } })._protocol.channelExtData(
        id,
        Buffer.from('late'),
        1
      )
      return
    }
    if (mode === 'overrun') {
      // Past the window, as fast as the socket takes it.
      const pump = (): void => {
        for (let i = 0; i < 64 && sent < TOTAL; i++, sent += chunk.length) proto.channelData(id, chunk)
        if (sent < TOTAL) setImmediate(pump)
      }
      return pump()
    }
    // The same amount through the channel, which waits for the window.
    const write = (): void => {
      while (sent < TOTAL) {
        sent += chunk.length
        if (!ch.write(chunk)) return void ch.once('drain', write)
      }
      ch.exit(0)
      ch.end()
    }
    write()
  })
})

afterAll(() => sshd.close())

const buffered = (s: NodeJS.ReadableStream): number => (s as unknown as { readableLength: number }).readableLength
const settle = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A connection to the test's server answering as `m`; `closed()` is what it was closed with (null while it is up). */
async function connected(m: typeof mode, use: (remote: SshRemote, closed: () => Error | null) => Promise<void>): Promise<void> {
  mode = m
  let closed: Error | null = null
  const remote = await SshRemote.connect(sshd.info, 10_000, (err) => (closed ??= err ?? new Error('closed without an error')))
  try {
    await use(remote, () => closed)
  } finally {
    remote.close()
  }
}

test('a server that sends past the window: the connection is closed as failed, naming it, with at most a window buffered', async () => {
  await connected('overrun', async (remote, closed) => {
    const ch = await remote.openExec('cat')
    // What the demultiplexer does while the runner's pipe is full.
    ch.stdout.pause()
    expect(await waitUntil(() => closed() !== null, 10_000, 20)).toBe(true)
    expect(String(closed())).toMatch(/the server sent 32769 bytes on a channel with \d+ bytes of window left/)
    await settle(200)
    expect(buffered(ch.stdout)).toBeLessThanOrEqual(WINDOW_BOUND)
    expect(sent).toBeGreaterThan(WINDOW_BOUND) // positive control: the server did send past the window
    // Once read (the runner's pipe drained), the command ends as a lost connection: never a success.
    ch.stdout.resume()
    expect(await ch.done).toEqual({ code: null, signal: null })
  })
})

test('control: the same bytes within the window are held back by flow control, the connection stays up, and all of it arrives', async () => {
  await connected('honest', async (remote, closed) => {
    const ch = await remote.openExec('cat')
    ch.stdout.pause()
    // The server has sent all the window it was given.
    expect(await waitUntil(() => windowLeft() === 0, 10_000, 10)).toBe(true)
    expect(buffered(ch.stdout)).toBeLessThanOrEqual(WINDOW_BOUND)
    expect(closed()).toBeNull()
    let got = 0
    ch.stdout.on('data', (c: Buffer) => (got += c.length))
    ch.stdout.resume()
    expect(await ch.done).toEqual({ code: 0, signal: null })
    expect(got).toBe(sent)
    expect(sent).toBeGreaterThanOrEqual(TOTAL)
  })
})

test("a signal name that is no name (a line break, a workflow command) is kept as 'unnamed'; a real name as it is (control)", async () => {
  await connected('signal', async (remote) => {
    const status = async (name: string) => {
      const ch = await remote.openExec(name)
      ch.stdout.resume()
      ch.stderr.resume()
      return ch.done
    }
    expect(await status('KILL\n::error::forged')).toEqual({ code: null, signal: 'unnamed' })
    expect(await status('X'.repeat(40))).toEqual({ code: null, signal: 'unnamed' })
    expect(await status('KILL')).toEqual({ code: null, signal: 'SIGKILL' })
  })
})

test('past the window, then exit status 0 and a close in the same read: a lost connection, never a success', async () => {
  await connected('overrun-exit0', async (remote, closed) => {
    const ch = await remote.openExec('cat')
    // Paused, so the window is not given again as it is read (what a full runner pipe does).
    ch.stdout.pause()
    // The server's last write is out and the client has closed the connection over it (or, on a
    // client without the defense, the wait runs out and the exit below is a success: the test fails).
    await waitUntil(() => sent < 0 && closed() !== null, 5000, 10)
    ch.stdout.resume()
    ch.stderr.resume()
    expect(await ch.done).toEqual({ code: null, signal: null })
    expect(sent).toBe(-1) // positive control: the byte went past a window of 0
  })
})

test('data after the channel ended: the connection is closed as failed, no uncaught error (the agent would end with its steps)', async () => {
  await connected('eof-data', async (remote, closed) => {
    const ch = await remote.openExec('cat')
    // What a full agent socket does to a step's stderr.
    ch.stderr.pause()
    ch.stdout.resume()
    expect(await waitUntil(() => closed() !== null, 10_000, 20)).toBe(true)
    expect(String(closed())).toContain('the server sent data on a channel it had ended')
    ch.stderr.resume()
    expect(await ch.done).toEqual({ code: null, signal: null })
  })
})
