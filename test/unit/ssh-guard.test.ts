// holdToProtocol against a stand-in of ssh2's client internals (the real ones are exercised end to
// end in adversarial/hostile-sshd.test.ts): what it lets through, what it closes the connection for,
// and that nothing the server sent after a violation is acted on.
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import type { Client } from 'ssh2'
import { closedByServer, holdToProtocol, WRITE_BACKLOG_MAX } from '../../src/remote/ssh-guard'

function standIn() {
  const handled: string[] = []
  const written: Buffer[] = []
  const handler =
    (name: string) =>
    (...args: unknown[]) =>
      void handled.push(`${name}${typeof args[1] === 'string' || typeof args[1] === 'number' ? ` ${args[1]}` : ''}`)
  const channels = new Map<number, { incoming: { window: number; state: string } }>([[0, { incoming: { window: 100, state: 'open' } }]])
  const client = Object.assign(new EventEmitter(), {
    _protocol: {
      _handlers: Object.fromEntries(
        ['CHANNEL_DATA', 'CHANNEL_EXTENDED_DATA', 'CHANNEL_REQUEST', 'CHANNEL_EOF', 'CHANNEL_CLOSE', 'GLOBAL_REQUEST'].map((n) => [
          n,
          handler(n)
        ])
      ),
      _onWrite: (d: Buffer) => void written.push(d)
    },
    _chanMgr: { get: (id: number) => channels.get(id) }
  })
  const sock = { writableLength: 0 }
  const errors: string[] = []
  client.on('error', (e: Error) => errors.push(e.message))
  expect(holdToProtocol(client as unknown as Client, sock as unknown as Socket)).toBe(true)
  const h = client._protocol._handlers
  return { h, handled, written, channels, sock, errors, write: (d: Buffer) => client._protocol._onWrite(d) }
}

test('data within the window, requests and the end of a channel pass (control)', () => {
  const s = standIn()
  s.h.CHANNEL_DATA(null, 0, Buffer.alloc(100))
  s.h.CHANNEL_EXTENDED_DATA(null, 0, Buffer.alloc(50), 1)
  s.h.CHANNEL_REQUEST(null, 0, 'exit-status', false)
  s.h.GLOBAL_REQUEST(null, 'keepalive@openssh.com', true)
  s.h.CHANNEL_EOF(null, 0)
  expect(closedByServer(s.channels.get(0)!)).toBe(false)
  s.h.CHANNEL_CLOSE(null, 0)
  expect(closedByServer(s.channels.get(0)!)).toBe(true)
  expect(s.handled).toEqual([
    'CHANNEL_DATA 0',
    'CHANNEL_EXTENDED_DATA 0',
    'CHANNEL_REQUEST 0',
    'GLOBAL_REQUEST keepalive@openssh.com',
    'CHANNEL_EOF 0',
    'CHANNEL_CLOSE 0'
  ])
  expect(s.errors).toEqual([])
})

test('data past the window closes the connection once, and nothing after it is acted on (an exit status 0 and a close)', () => {
  const s = standIn()
  s.h.CHANNEL_DATA(null, 0, Buffer.alloc(101))
  s.h.CHANNEL_DATA(null, 0, Buffer.alloc(101))
  s.h.CHANNEL_REQUEST(null, 0, 'exit-status', false)
  s.h.CHANNEL_EOF(null, 0)
  s.h.CHANNEL_CLOSE(null, 0)
  expect(s.errors).toEqual(['the server sent 101 bytes on a channel with 100 bytes of window left'])
  expect(s.handled).toEqual([])
  // Its close was not acted on: the channel ends as cut with the connection, whatever status came.
  expect(closedByServer(s.channels.get(0)!)).toBe(false)
})

test('data on a channel the server ended (after its EOF) closes the connection', () => {
  const s = standIn()
  s.channels.get(0)!.incoming.state = 'eof'
  s.h.CHANNEL_EXTENDED_DATA(null, 0, Buffer.alloc(1), 1)
  expect(s.errors).toEqual(['the server sent data on a channel it had ended'])
  expect(s.handled).toEqual([])
})

test("OpenSSH's host key announcements are dropped (ssh2 would answer each with a signature request and keep a callback)", () => {
  const s = standIn()
  for (let i = 0; i < 1000; i++) s.h.GLOBAL_REQUEST(null, 'hostkeys-00@openssh.com', false, Buffer.alloc(10))
  expect(s.handled).toEqual([])
  expect(s.errors).toEqual([])
})

test('a server that stops reading: the connection is closed once what waits unsent passes WRITE_BACKLOG_MAX (control: below it)', () => {
  const s = standIn()
  s.sock.writableLength = WRITE_BACKLOG_MAX
  s.write(Buffer.alloc(10))
  expect(s.errors).toEqual([])
  expect(s.written).toHaveLength(1)
  s.sock.writableLength = WRITE_BACKLOG_MAX + 1
  s.write(Buffer.alloc(10))
  expect(s.errors).toEqual([`the server left over ${WRITE_BACKLOG_MAX} bytes unread`])
})

test('internals missing (another ssh2 version): false, nothing wrapped', () => {
  const client = Object.assign(new EventEmitter(), { _protocol: { _handlers: {} }, _chanMgr: { get: () => undefined } })
  expect(holdToProtocol(client as unknown as Client, {} as Socket)).toBe(false)
})
