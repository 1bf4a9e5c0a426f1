import { agentSocket, delegation } from '../../src/agent-client'
import { BUILD_ID } from '../../src/build-id'
import { stopAgents } from '../../src/session'
import { nameOwnerId, ownerId, statedOwners } from '../../src/labels'
import { createServer, type Server } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { waitUntil } from '../helpers/wait'

const host = { user: 'rchvm', host: '127.0.0.1', port: 2231 }
const ROOT = '/tmp/rch-1000'
const RUNNER = 'runner-1'
const WORK = '/home/r/runner-1/_work'
const owner = ownerId(RUNNER, WORK)
const OWNERS = statedOwners(RUNNER, WORK)
const jobId = '0123456789abcdef'
const state = { jobId, owner, localDir: '/somewhere/else', host: { ...host, index: 0, slot: 0 } }
const pick = (input: unknown): string | null => delegation(JSON.stringify(input), ROOT, OWNERS)

describe('delegation: which hook inputs take the fast path to the job agent', () => {
  test.each(['run_script_step', 'run_container_step'])(
    "%s goes to the host's agent socket in the job folder derived from owner and job id",
    (command) => {
      expect(pick({ command, args: {}, state })).toBe(agentSocket(`${ROOT}/${owner}-${jobId}`, host))
    }
  )

  test("a job started by a build whose owner id was the runner's name alone goes to that job's folder", () => {
    const legacy = nameOwnerId(RUNNER)
    expect(legacy).not.toBe(owner)
    expect(pick({ command: 'run_script_step', state: { ...state, owner: legacy } })).toBe(agentSocket(`${ROOT}/${legacy}-${jobId}`, host))
  })

  test('the localDir a state names is never used', () => {
    expect(pick({ command: 'run_script_step', state })).not.toContain('/somewhere/else')
    expect(pick({ command: 'run_script_step', state: { ...state, localDir: undefined } })).toBe(
      agentSocket(`${ROOT}/${owner}-${jobId}`, host)
    )
  })

  test.each([
    ['prepare_job', { command: 'prepare_job', state }],
    ['cleanup_job', { command: 'cleanup_job', state }],
    ['state null', { command: 'run_script_step', state: null }],
    ['no state', { command: 'run_script_step' }],
    ['state without jobId', { command: 'run_script_step', state: { ...state, jobId: undefined } }],
    ['jobId with a path in it', { command: 'run_script_step', state: { ...state, jobId: '../../../tmp/x' } }],
    ['jobId of the wrong length', { command: 'run_script_step', state: { ...state, jobId: '0123' } }],
    ["another runner's owner id", { command: 'run_script_step', state: { ...state, owner: ownerId('someone-else', WORK) } }],
    [
      "a same-named runner's, with another _work",
      { command: 'run_script_step', state: { ...state, owner: ownerId(RUNNER, '/home/r/runner-2/_work') } }
    ],
    [
      "a same-named runner's, on another host",
      { command: 'run_script_step', state: { ...state, owner: ownerId(RUNNER, WORK, 'other-host') } }
    ],
    ['owner not a string', { command: 'run_script_step', state: { ...state, owner: [owner] } }],
    ['owner with a path in it', { command: 'run_script_step', state: { ...state, owner: '../x' } }],
    ['host name with a slash', { command: 'run_script_step', state: { ...state, host: { ...state.host, host: '../../x' } } }],
    [
      'user that is not a user name',
      { command: 'run_script_step', state: { ...state, host: { ...state.host, user: '-oProxyCommand=x' } } }
    ],
    ['host port as a string', { command: 'run_script_step', state: { ...state, host: { ...host, port: '2231' } } }],
    ['host port out of range', { command: 'run_script_step', state: { ...state, host: { ...host, port: 70000 } } }],
    ['host null', { command: 'run_script_step', state: { ...state, host: null } }]
  ])('%s: handled by the hook itself', (_what, input) => {
    expect(pick(input)).toBeNull()
  })

  test.each(['', 'not json', '[1,2]', 'null', '"run_script_step"'])('input %j: handled (and reported) by the hook itself', (raw) => {
    expect(delegation(raw, ROOT, OWNERS)).toBeNull()
  })
})

describe('agentSocket', () => {
  test('one short, stable name per user@host:port inside the job folder', () => {
    const a = agentSocket('/d', host)
    expect(a).toMatch(/^\/d\/agent-[0-9a-f]{8}-src\.sock$/) // unbuilt sources: the build id is "src"
    expect(BUILD_ID).toBe('src')
    expect(agentSocket('/d', { ...host })).toBe(a)
    expect(agentSocket('/d', { ...host, port: 2232 })).not.toBe(a)
    expect(agentSocket('/d', { ...host, user: 'other' })).not.toBe(a)
    expect(agentSocket('/d', host, '0123456789ab')).toBe(a.replace('-src.sock', '-0123456789ab.sock'))
  })
})

describe('stopAgents (cleanup_job)', () => {
  test('sends shutdown to every agent socket of the job folder, of any host or protocol, and nothing else', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rch-agents-'))
    const got: Record<string, string> = {}
    const servers: Server[] = []
    const listen = (name: string): Promise<void> =>
      new Promise((resolve) => {
        const srv = createServer((c) => {
          let text = ''
          c.on('data', (d: Buffer) => (text += d.toString()))
          c.on('end', () => (got[name] = text))
          c.on('data', () => text.includes('\n') && c.end())
        })
        servers.push(srv)
        srv.listen(join(dir, name), resolve)
      })
    try {
      await listen('agent-0123abcd-p1.sock') // an older build's agent
      await listen(agentSocket(dir, { user: 'u', host: 'h', port: 22 }).slice(dir.length + 1))
      await listen('other.sock')
      await stopAgents(dir)
      await waitUntil(() => Object.keys(got).length >= 2, 5000, 10)
      expect(Object.keys(got).sort()).toEqual(
        ['agent-0123abcd-p1.sock', agentSocket(dir, { user: 'u', host: 'h', port: 22 }).slice(dir.length + 1)].sort()
      )
      for (const v of Object.values(got)) expect(JSON.parse(v.trim())).toEqual({ op: 'shutdown' })
      await stopAgents(join(dir, 'missing')) // no folder: nothing to do
    } finally {
      for (const s of servers) s.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
