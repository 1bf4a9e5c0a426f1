// reap's pass over static hosts against a host where a job was root: its commands may hang for
// ever, and its slot listing is its own word. One host's hang must end at timeouts.cleanupSeconds
// with a failed row, and the hosts after it must still be reaped.
import { hostname } from 'node:os'
import { PassThrough } from 'node:stream'
import type { ExecChannel, Remote } from '../../src/remote/remote'

/** What each host answers: its slot records (name, owner line, mark), and commands that never end. */
const hosts = new Map<string, { slots: string[][]; hangOn?: RegExp; commands: string[] }>()

jest.mock('../../src/remote/ssh', () => ({
  SshRemote: { connect: async (c: { host: string }) => fakeHost(c.host) }
}))

function fakeHost(name: string): Remote {
  const h = hosts.get(name)!
  return {
    async openExec(cmd: string): Promise<ExecChannel> {
      h.commands.push(cmd)
      const stdout = new PassThrough()
      const stderr = new PassThrough()
      const stdin = new PassThrough()
      stdin.resume()
      let end!: (s: { code: number | null; signal: string | null }) => void
      const done = new Promise<{ code: number | null; signal: string | null }>((r) => (end = r))
      // Closing the channel ends the command, as sshd does.
      stdout.once('close', () => end({ code: null, signal: null }))
      if (h.hangOn?.test(cmd)) return { stdin, stdout, stderr, done }
      setImmediate(() => {
        const nonce = /RCH-BEGIN-([0-9a-f]+)/.exec(cmd)?.[1]
        const records = nonce && cmd.includes('for d in') ? h.slots.flat() : []
        if (nonce) stdout.write([`RCH-BEGIN-${nonce}`, ...records, `RCH-END-${nonce}`].map((x) => `${x}\0`).join(''))
        stdout.end()
        stderr.end()
        end({ code: 0, signal: null })
      })
      return { stdin, stdout, stderr, done }
    },
    openSocket: () => new Promise(() => undefined),
    close: () => undefined
  }
}

const OWNER = 'a'.repeat(16)
const JOB = 'b'.repeat(16)
// This runner host's name and a worker that does not run: a dead job of ours, marked long ago.
const deadSlot = (name: string): string[] => [
  name,
  `${OWNER} ${JOB} x ${hostname()} 2020-01-01T00:00:00Z 999999 -`,
  `1970-01-01T00:00:00.000Z ${JOB}`
]

async function pass(cleanupSeconds: number, dockerSocket = '/var/run/docker.sock') {
  const { reapStatic } = await import('../../src/ops/reap-static')
  const host = (h: string) => ({ host: h, port: 22, user: 'u', identityFile: '/k', knownHostsFile: '/kh', slots: 2 })
  const ctx = {
    times: { now: Date.now(), deadAfterMs: 15 * 60_000, graceMs: 2 * 60_000, watched: () => 0 },
    dryRun: false,
    rows: [] as { kind: string; what: string; action: string; why: string }[],
    connectMs: 1000,
    signal: new AbortController().signal
  }
  const config = { remote: { workRoot: '/srv/rch', dockerSocket }, timeouts: { cleanupSeconds } }
  const began = Date.now()
  await reapStatic({ hosts: [host('h1'), host('h2')] } as never, config as never, ctx as never)
  return { rows: ctx.rows, ms: Date.now() - began }
}

test("a host whose commands hang is given up at timeouts.cleanupSeconds; the next host's slots are still reaped", async () => {
  hosts.set('h1', { slots: [deadSlot('slot-0')], hangOn: /jobs|docker|rm /, commands: [] })
  hosts.set('h2', { slots: [['slot-1', '', '']], commands: [] })
  const { rows, ms } = await pass(1)
  expect(ms).toBeLessThan(10_000)
  const h1 = rows.filter((r) => r.what.startsWith('h1:22'))
  expect(h1.some((r) => r.action === 'failed' && /timeouts\.cleanupSeconds/.test(r.why))).toBe(true)
  // positive control: the hang was in a command h1 was really asked
  expect(hosts.get('h1')!.commands.some((c) => /jobs|docker|rm /.test(c))).toBe(true)
  expect(rows.filter((r) => r.what.startsWith('h2:22'))).toEqual([expect.objectContaining({ what: 'h2:22 slot-1', action: 'left alone' })])
}, 30_000)

test('a slot listed twice, or one over the 64 a host may have, gets no pass of its own (control: slot-1 once)', async () => {
  hosts.set('h1', {
    slots: [
      ['slot-1', '', ''],
      ['slot-1', '', ''],
      ['slot-64', '', ''],
      ['slot-999', '', '']
    ],
    commands: []
  })
  hosts.set('h2', { slots: [], commands: [] })
  const { rows } = await pass(60)
  expect(rows.map((r) => r.what)).toEqual(['h1:22 slot-1'])
})

test("reap's commands on a host run with remote.dockerSocket as the hook's do (the job folder's docker helper reaches that daemon)", async () => {
  const prefix = 'DOCKER_HOST=unix:///run/user/1000/docker.sock; export DOCKER_HOST; '
  hosts.set('h1', { slots: [deadSlot('slot-0')], commands: [] })
  hosts.set('h2', { slots: [], commands: [] })
  await pass(1, '/run/user/1000/docker.sock')
  const commands = hosts.get('h1')!.commands
  expect(commands.length).toBeGreaterThan(1)
  expect(commands.filter((c) => !c.startsWith(prefix))).toEqual([])
  // control: with the default socket nothing is put before them
  hosts.set('h1', { slots: [deadSlot('slot-0')], commands: [] })
  await pass(1)
  expect(hosts.get('h1')!.commands.filter((c) => c.includes('DOCKER_HOST'))).toEqual([])
}, 30_000)
