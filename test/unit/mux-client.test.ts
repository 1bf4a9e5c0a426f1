// The hook's calls on a job's agent that must not wait for ever on one that is stuck: the kernel
// accepts a connection on the agent's socket even while the agent's event loop is busy.
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MuxRemote } from '../../src/remote/mux-client'
import { settlesWithin } from '../helpers/wait'

/** A stand-in agent on a Unix socket: `answer` is what it does with each connection's first line. */
async function agent(answer: (sock: Socket) => void): Promise<{ path: string; close: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'rch-mux-client-'))
  const path = join(dir, 'a.sock')
  const socks = new Set<Socket>()
  const server: Server = createServer((sock) => {
    socks.add(sock)
    sock.once('data', () => answer(sock))
  })
  await new Promise<void>((r) => server.listen(path, r))
  return {
    path,
    close: () => {
      for (const s of socks) s.destroy()
      server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

const silent = (): void => undefined

describe('MuxRemote.ping', () => {
  it('a stuck agent counts as not answering once the limit is over (control: without a limit the ping still waits)', async () => {
    const a = await agent(silent)
    try {
      const unlimited = MuxRemote.ping(a.path)
      const t0 = Date.now()
      expect(await MuxRemote.ping(a.path, 300)).toBe(false)
      expect(Date.now() - t0).toBeLessThan(5_000)
      expect(await settlesWithin(unlimited, 600)).toBe(false)
      a.close()
      expect(await unlimited).toBe(false)
    } finally {
      a.close()
    }
  })

  it('an agent that answers is found at once, with a limit too', async () => {
    const a = await agent((s) => s.end('pong\n'))
    try {
      expect(await MuxRemote.ping(a.path, 5_000)).toBe(true)
      expect(await MuxRemote.ping(a.path)).toBe(true)
    } finally {
      a.close()
    }
  })
})

describe('MuxRemote.shutdown', () => {
  it('gives up on an agent that does not close its socket after the limit (control: one that closes ends it at once)', async () => {
    const stuck = await agent(silent)
    const quick = await agent((s) => s.end())
    try {
      const t0 = Date.now()
      await MuxRemote.shutdown(stuck.path, 300)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
      expect(Date.now() - t0).toBeLessThan(5_000)
      const t1 = Date.now()
      await MuxRemote.shutdown(quick.path, 60_000)
      expect(Date.now() - t1).toBeLessThan(5_000)
    } finally {
      stuck.close()
      quick.close()
    }
  })
})
