// The undo's connection: a lost one is made again once rejoin() is called, never before.
import type { Duplex } from 'node:stream'
import { HookError, TransportError } from '../../src/errors'
import type { ExecChannel, Remote } from '../../src/remote/remote'
import { Rejoinable } from '../../src/remote/rejoinable'

/** A remote that is either up (opens record the command) or lost (opens fail as ssh.ts fails them). */
class Fake implements Remote {
  opened: string[] = []
  closes = 0
  constructor(public state: 'up' | 'lost' | 'refusing' | 'agent gone' | 'lease lost' = 'up') {}
  openExec(command: string): Promise<ExecChannel> {
    if (this.state === 'lost') return Promise.reject(new TransportError('the connection to h is gone: Not connected', 'lost'))
    // As mux-client.ts fails them: the job's agent ended (with its connection), or refused (its lease is lost).
    if (this.state === 'agent gone') return Promise.reject(new TransportError('agent at /s unreachable: connect ECONNREFUSED /s', 'agent'))
    if (this.state === 'lease lost')
      return Promise.reject(new TransportError("this machine's lease lapsed; the agent opens nothing more there", 'lease'))
    if (this.state === 'refusing') return Promise.reject(new HookError('docker: permission denied'))
    this.opened.push(command)
    return Promise.resolve({ done: Promise.resolve({ code: 0, signal: null }) } as unknown as ExecChannel)
  }
  openSocket(path: string): Promise<Duplex> {
    return this.openExec(`socket ${path}`) as unknown as Promise<Duplex>
  }
  close(): void {
    this.closes++
  }
}

test('before rejoin(), a lost connection fails the open and nothing connects', async () => {
  const first = new Fake('lost')
  let connects = 0
  const r = new Rejoinable(first, async () => (connects++, new Fake()))
  await expect(r.openExec('rm -rf x')).rejects.toThrow('is gone')
  expect(connects).toBe(0)
})

test('after rejoin(), opens on a lost connection go to one new connection, made once for concurrent callers', async () => {
  const first = new Fake('up')
  const second = new Fake('up')
  let connects = 0
  const r = new Rejoinable(first, async () => (connects++, second))
  // control: while the first is up, rejoin changes nothing
  r.rejoin()
  await r.openExec('one')
  expect(first.opened).toEqual(['one'])
  first.state = 'lost'
  await Promise.all([r.openExec('two'), r.openSocket('/run/docker.sock'), r.openExec('three')])
  expect(connects).toBe(1)
  expect(second.opened.sort()).toEqual(['socket /run/docker.sock', 'three', 'two'])
  expect(first.closes).toBe(1)
  await r.openExec('four')
  expect(second.opened).toContain('four')
  r.close()
  expect(second.closes).toBe(1)
})

test('a failure that is not a lost connection is not mended by reconnecting', async () => {
  let connects = 0
  const r = new Rejoinable(new Fake('refusing'), async () => (connects++, new Fake()))
  r.rejoin()
  await expect(r.openExec('docker rm x')).rejects.toThrow('permission denied')
  expect(connects).toBe(0)
})

test('a reconnect that fails fails every open waiting on it, and is not tried again', async () => {
  let connects = 0
  const r = new Rejoinable(new Fake('lost'), async () => {
    connects++
    throw new TransportError('cannot connect to u@h:22: ECONNREFUSED', 'network')
  })
  r.rejoin()
  const got = await Promise.allSettled([r.openExec('a'), r.openExec('b')])
  await expect(r.openExec('c')).rejects.toThrow('ECONNREFUSED')
  expect(got.map((g) => g.status)).toEqual(['rejected', 'rejected'])
  expect(connects).toBe(1)
})

test('closed while reconnecting: the new connection is closed as it arrives', async () => {
  const second = new Fake('up')
  let arrive: () => void = () => undefined
  const r = new Rejoinable(new Fake('lost'), () => new Promise<Remote>((res) => (arrive = () => res(second))))
  r.rejoin()
  const open = r.openExec('late')
  await new Promise((res) => setImmediate(res))
  r.close()
  arrive()
  await expect(open).rejects.toThrow('is gone')
  expect(second.closes).toBe(1)
  expect(second.opened).toEqual([])
})

test("after rejoin(), an agent found gone is replaced as a lost connection is; an agent's refusal (its lease lost) stands", async () => {
  const second = new Fake('up')
  let connects = 0
  const gone = new Rejoinable(new Fake('agent gone'), async () => (connects++, second))
  gone.rejoin()
  await gone.openSocket('/run/docker.sock')
  expect({ connects, opened: second.opened }).toEqual({ connects: 1, opened: ['socket /run/docker.sock'] })
  const refused = new Rejoinable(new Fake('lease lost'), async () => (connects++, new Fake()))
  refused.rejoin()
  await expect(refused.openSocket('/run/docker.sock')).rejects.toMatchObject({ kind: 'lease' })
  await expect(refused.openExec('docker rm -f x')).rejects.toMatchObject({ kind: 'lease' })
  expect(connects).toBe(1)
})

test("after rejoin(), a command whose end says the agent's connection was lost sends the next to a new connection", async () => {
  // MuxRemote's channel opens once the agent is dialled; the agent's failure to open it on the
  // machine (its connection lost) comes as the rejection of its end.
  const late = (): Remote & { opened: string[] } => {
    const opened: string[] = []
    return {
      opened,
      openExec: async (command: string) => {
        opened.push(command)
        const done = Promise.reject(new TransportError('the connection to h is gone: Not connected', 'lost'))
        done.catch(() => undefined)
        return { done } as unknown as ExecChannel
      },
      openSocket: () => Promise.reject(new Error('not used')),
      close: () => undefined
    }
  }
  // Control: before rejoin() the next command stays on the first connection.
  const before = late()
  let connects = 0
  const r0 = new Rejoinable(before, async () => (connects++, new Fake()))
  await expect((await r0.openExec('one')).done).rejects.toThrow('is gone')
  await r0.openExec('two')
  expect({ connects, opened: before.opened }).toEqual({ connects: 0, opened: ['one', 'two'] })
  const first = late()
  const second = new Fake('up')
  const r = new Rejoinable(first, async () => (connects++, second))
  r.rejoin()
  await expect((await r.openExec('renew')).done).rejects.toThrow('is gone')
  await r.openExec('renew again')
  expect({ connects, first: first.opened, second: second.opened }).toEqual({ connects: 1, first: ['renew'], second: ['renew again'] })
})
