// The agent's side of writing a step's output into the hook's own pipes: what it agrees to reopen,
// one description for a shared pipe, and a pipe whose reader went away.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, fstatSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, constants } from 'node:fs'
import { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makePipes } from '../helpers/pipes'
import { openDirect, type Direct } from '../../src/remote/direct-output'
import { waitUntil } from '../helpers/wait'

let dir: string
const children: ChildProcess[] = []
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'rch-direct-'))))
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

const idOf = (fd: number): { dev: number; ino: number } => {
  const st = fstatSync(fd)
  return { dev: st.dev, ino: st.ino }
}
const ownFds = (): number => readdirSync('/proc/self/fd').length

/** A process standing in for the hook: its stdout and stderr are the given descriptors. */
function hookWith(out: number, err: number): ChildProcess {
  const c = spawn('sleep', ['30'], { stdio: ['ignore', out, err] })
  children.push(c)
  return c
}

/** Reads a pipe's read end to its end. */
function readAll(fd: number): { text: () => string; ended: Promise<void> } {
  const s = new Socket({ fd, readable: true, writable: false })
  let text = ''
  s.on('data', (c: Buffer) => (text += c.toString()))
  return { text: () => text, ended: new Promise((r) => s.once('close', () => r())) }
}

test("two pipes: both reopened, output lands in each, and close() leaves them to the hook's own end", async () => {
  const { out, err } = makePipes()
  const hook = hookWith(out.write, err.write)
  const o = readAll(out.read)
  const e = readAll(err.read)
  const d = openDirect({ pid: hook.pid, out: idOf(out.write), err: idOf(err.write) }, () => undefined)
  closeSync(out.write)
  closeSync(err.write)
  expect(d).not.toBeNull()
  d!.stdout.write('to stdout\n')
  d!.stderr.write('to stderr\n')
  await d!.close()
  hook.kill('SIGKILL') // the last other writer: the read ends now reach their end
  await Promise.all([o.ended, e.ended])
  expect({ out: o.text(), err: e.text() }).toEqual({ out: 'to stdout\n', err: 'to stderr\n' })
})

test('stdout and stderr one pipe (2>&1): one description, so writes to both keep their order in one queue', async () => {
  const { out, err } = makePipes()
  closeSync(err.write)
  closeSync(err.read)
  const hook = hookWith(out.write, out.write)
  const before = ownFds()
  const d = openDirect({ pid: hook.pid, out: idOf(out.write), err: idOf(out.write) }, () => undefined) as Direct
  expect(d).not.toBeNull()
  expect(ownFds() - before).toBe(1) // two descriptions would have queues of their own
  const o = readAll(out.read)
  closeSync(out.write)
  d.stdout.write('a')
  d.stderr.write('b')
  d.stdout.write('c')
  await d.close()
  hook.kill('SIGKILL')
  await o.ended
  expect(o.text()).toBe('abc')
})

test('refused, the output then staying on the socket: a regular file, another inode, a bad request', () => {
  const file = join(dir, 'log')
  writeFileSync(file, 'the runner wrote this\n')
  const fd = openSync(file, constants.O_WRONLY)
  const { out } = makePipes()
  const fileHook = hookWith(fd, fd)
  const pipeHook = hookWith(out.write, out.write)
  const fileId = idOf(fd)
  const pipeId = idOf(out.write)
  // positive control: the same request with the pipe's real identity is accepted
  const ok = openDirect({ pid: pipeHook.pid, out: pipeId, err: pipeId }, () => undefined)
  expect(ok).not.toBeNull()
  ok!.drop()
  // reopening a file through /proc would write from its start
  expect(openDirect({ pid: fileHook.pid, out: fileId, err: fileId }, () => undefined)).toBeNull()
  expect(openDirect({ pid: pipeHook.pid, out: { ...pipeId, ino: pipeId.ino + 1 }, err: pipeId }, () => undefined)).toBeNull()
  expect(openDirect({ pid: pipeHook.pid, out: { ...pipeId, dev: pipeId.dev + 1 }, err: pipeId }, () => undefined)).toBeNull()
  for (const bad of [
    null,
    'x',
    {},
    { pid: -1, out: pipeId, err: pipeId },
    { pid: 0, out: pipeId, err: pipeId },
    { pid: pipeHook.pid, out: 'x', err: pipeId }
  ])
    expect(openDirect(bad, () => undefined)).toBeNull()
  closeSync(fd)
  closeSync(out.write)
  closeSync(out.read)
})

test('the reader went away (EPIPE): onLost once, and writes no longer wait for a drain that never comes', async () => {
  const { out, err } = makePipes()
  const hook = hookWith(out.write, err.write)
  let lost = 0
  const d = openDirect({ pid: hook.pid, out: idOf(out.write), err: idOf(err.write) }, () => lost++) as Direct
  expect(d).not.toBeNull()
  closeSync(out.read) // the runner stops reading
  closeSync(out.write)
  closeSync(err.write)
  d.stdout.write('x'.repeat(1024))
  await waitUntil(() => lost > 0, 5000)
  expect(lost).toBe(1)
  expect(d.stdout.write('more')).toBe(true) // a closed pipe takes nothing and is not waited for
  let drained = false
  d.stdout.once('drain', () => (drained = true))
  await waitUntil(() => drained, 1000)
  expect(drained).toBe(true)
  d.drop()
  closeSync(err.read)
})

test("the pipe is checked again once opened: a descriptor swapped between the check and the open is not taken for the step's output", () => {
  const named = makePipes().out // the pipe the request names
  const other = makePipes().out // what the hook's stdout is by the time the agent opens it
  const hook = hookWith(other.write, other.write)
  const namedId = idOf(named.write)
  const fs = require('node:fs') as typeof import('node:fs')
  const realStat = fs.statSync
  const proc = `/proc/${hook.pid}/fd/`
  // The path check sees the named pipe (as it was then); the open gets what is there now.
  const spy = jest
    .spyOn(fs, 'statSync')
    .mockImplementation(((p: string, o?: unknown) =>
      String(p).startsWith(proc) ? fstatSync(named.write) : realStat(p, o as never)) as typeof fs.statSync)
  try {
    expect(openDirect({ pid: hook.pid, out: namedId, err: namedId }, () => undefined)).toBeNull()
    expect(spy).toHaveBeenCalledWith(`${proc}1`) // control: the path check passed, and the open was reached
  } finally {
    spy.mockRestore()
  }
  // control: with that pipe really there, the same request is accepted
  const hook2 = hookWith(named.write, named.write)
  const ok = openDirect({ pid: hook2.pid, out: namedId, err: namedId }, () => undefined)
  expect(ok).not.toBeNull()
  ok!.drop()
  for (const fd of [named.read, named.write, other.read, other.write]) closeSync(fd)
})
