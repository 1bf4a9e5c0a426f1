// cleanup_job's one deadline (withDeadline): channels and Engine API sockets, also ones that open late.
import { PassThrough } from 'node:stream'
import { withDeadline } from '../../src/remote/deadline'
import type { Remote } from '../../src/remote/remote'
import { waitUntil } from '../helpers/wait'

function socketRemote(openAfterMs: number): { remote: Remote; opened: PassThrough[] } {
  const opened: PassThrough[] = []
  const remote: Remote = {
    openExec: () => Promise.reject(new Error('no exec here')),
    openSocket: () =>
      new Promise((resolve) =>
        setTimeout(() => {
          const s = new PassThrough()
          opened.push(s)
          resolve(s)
        }, openAfterMs)
      ),
    close: () => undefined
  }
  return { remote, opened }
}

describe('withDeadline', () => {
  test('an Engine API socket open when the deadline passes is destroyed', async () => {
    const { remote, opened } = socketRemote(5)
    const b = withDeadline(remote, 60, 'too slow')
    const s = await b.remote.openSocket('/var/run/docker.sock')
    s.on('error', () => undefined) // the Engine client listens; the destroy carries the deadline's error
    expect(s.destroyed).toBe(false)
    expect(await waitUntil(() => opened[0].destroyed, 5000, 5)).toBe(true)
    b.clear()
  })

  test('a socket that opens only after the deadline gave up on it is closed at once', async () => {
    const { remote, opened } = socketRemote(150)
    const b = withDeadline(remote, 40, 'too slow')
    await expect(b.remote.openSocket('/var/run/docker.sock')).rejects.toThrow('too slow')
    expect(opened).toHaveLength(0) // it had not opened yet when the deadline gave up on it
    expect(await waitUntil(() => opened.length === 1 && opened[0].destroyed, 5000, 5)).toBe(true)
    b.clear()
  })

  test('a command channel that opens only after the deadline gave up on it is closed at once', async () => {
    const opened: { stdout: PassThrough; stdin: PassThrough }[] = []
    const remote: Remote = {
      openExec: () =>
        new Promise((resolve) =>
          setTimeout(() => {
            const ch = { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough() }
            opened.push(ch)
            resolve({ ...ch, done: new Promise(() => undefined) })
          }, 150)
        ),
      openSocket: () => Promise.reject(new Error('no sockets here')),
      close: () => undefined
    }
    const b = withDeadline(remote, 40, 'too slow')
    await expect(b.remote.openExec('rm -rf x')).rejects.toThrow('too slow')
    expect(opened).toHaveLength(0)
    expect(await waitUntil(() => opened.length === 1 && opened[0].stdout.destroyed && opened[0].stdin.destroyed, 5000, 5)).toBe(true)
    b.clear()
  })

  test('before the deadline nothing is closed (positive control)', async () => {
    const { remote } = socketRemote(5)
    const b = withDeadline(remote, 10_000, 'too slow')
    const s = await b.remote.openSocket('/x')
    await new Promise((r) => setTimeout(r, 30))
    expect(s.destroyed).toBe(false)
    b.clear()
    s.destroy()
  })
})
