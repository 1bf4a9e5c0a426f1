// What ssh2 (1.17) leaves to the server's good faith, checked. Root on the VM can serve the SSH port
// itself with the VM's own host key (root reads it), so the server is as hostile as the job:
// - data past a channel's window: ssh2 drops data only at a window of exactly 0 and buffers any
//   other packet, paused streams included (the runner host would buffer without bound);
// - data after a channel's EOF: ssh2 pushes it into an ended stream, an uncaught error that ends
//   the agent and every step it runs;
// - a server that stops reading while it sends requests that want a reply: the replies pile up;
// - OpenSSH's host key announcement: ssh2 answers each with a signature request and keeps a callback.
// A violation closes the connection as failed (a lost connection, never a success), and nothing the
// server sent after it is acted on: an exit status 0 and a close read in the same chunk would
// otherwise end the command as a success.
import type { Socket } from 'node:net'
import type { Client } from 'ssh2'

/** Bytes left unsent to a server that stops reading; OpenSSH's 2 MiB windows keep honest ones far below it. */
export const WRITE_BACKLOG_MAX = 64 * 1024 * 1024

type Handler = (...args: unknown[]) => void
interface Ssh2Internals {
  _protocol?: { _handlers?: Record<string, Handler | undefined>; _onWrite?: (data: Buffer) => void }
  _chanMgr?: { get(id: number): unknown }
}
interface ChannelView {
  incoming?: { window?: unknown; state?: unknown }
}

const DROP = '\0drop'
const GUARDED = ['CHANNEL_DATA', 'CHANNEL_EXTENDED_DATA', 'CHANNEL_REQUEST', 'CHANNEL_EOF', 'CHANNEL_CLOSE', 'GLOBAL_REQUEST']

/**
 * Channels whose close the server sent. ssh2 closes every open channel alike when the connection
 * drops, after an exit status OpenSSH may send before the last of the output: only a channel the
 * server closed itself has ended its command's output.
 */
const serverClosed = new WeakSet<object>()
export const closedByServer = (channel: object): boolean => serverClosed.has(channel)

/** Installs the checks on a client whose connect() has just been called; false when ssh2's internals are not where expected. */
export function holdToProtocol(client: Client, sock: Socket): boolean {
  const c = client as unknown as Ssh2Internals
  const proto = c._protocol
  const handlers = proto?._handlers
  const chans = c._chanMgr
  if (!proto || !handlers || !chans || typeof proto._onWrite !== 'function' || GUARDED.some((n) => typeof handlers[n] !== 'function'))
    return false
  let broken = false
  const violation = (why: string): void => {
    if (broken) return
    broken = true
    client.emit('error', new Error(why))
  }
  /** `check` answers a violation's description, DROP for a message to ignore, or null to let it through. */
  const guard = (name: string, check: (args: unknown[]) => string | null = () => null): void => {
    const handle = handlers[name]!
    handlers[name] = (...args: unknown[]) => {
      if (broken) return
      const why = check(args)
      if (why === DROP) return
      if (why) return violation(why)
      handle(...args)
    }
  }
  const data = (args: unknown[]): string | null => {
    const [, recipient, payload] = args as [unknown, number, Buffer]
    const ch = chans.get(recipient)
    // Not an open channel of ours: ssh2 drops it.
    if (typeof ch !== 'object' || ch === null) return null
    const { window, state } = (ch as ChannelView).incoming ?? {}
    if (state !== 'open') return 'the server sent data on a channel it had ended'
    if (typeof window === 'number' && payload.length > window)
      return `the server sent ${payload.length} bytes on a channel with ${window} bytes of window left`
    return null
  }
  guard('CHANNEL_DATA', data)
  guard('CHANNEL_EXTENDED_DATA', data)
  guard('CHANNEL_REQUEST')
  guard('CHANNEL_EOF')
  guard('CHANNEL_CLOSE', (args) => {
    const ch = chans.get(args[1] as number)
    if (typeof ch === 'object' && ch !== null) serverClosed.add(ch)
    return null
  })
  guard('GLOBAL_REQUEST', (args) => (args[1] === 'hostkeys-00@openssh.com' ? DROP : null))
  // Every packet the client writes goes through here once keys are exchanged (ssh2 reads it then).
  const write = proto._onWrite
  proto._onWrite = (d: Buffer) => {
    write(d)
    if (sock.writableLength > WRITE_BACKLOG_MAX) violation(`the server left over ${WRITE_BACKLOG_MAX} bytes unread`)
  }
  return true
}
