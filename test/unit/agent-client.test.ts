import { agentSocket, delegation } from '../../src/agent-client'

const host = { user: 'rchvm', host: '127.0.0.1', port: 2231 }
const state = { localDir: '/tmp/rch-0/o-1', host: { ...host, index: 0, slot: 0 } }

describe('delegation: which hook inputs take the fast path to the job agent', () => {
  test.each(['run_script_step', 'run_container_step'])('%s with a state that names the host goes to that host\'s agent socket', (command) => {
    expect(delegation(JSON.stringify({ command, args: {}, state }))).toBe(agentSocket(state.localDir, host))
  })

  test.each([
    ['prepare_job', { command: 'prepare_job', state }],
    ['cleanup_job', { command: 'cleanup_job', state }],
    ['state null', { command: 'run_script_step', state: null }],
    ['no state', { command: 'run_script_step' }],
    ['state without localDir', { command: 'run_script_step', state: { host } }],
    ['host port as a string', { command: 'run_script_step', state: { ...state, host: { ...host, port: '2231' } } }],
    ['host null', { command: 'run_script_step', state: { ...state, host: null } }]
  ])('%s: handled by the hook itself', (_what, input) => {
    expect(delegation(JSON.stringify(input))).toBeNull()
  })

  test.each(['', 'not json', '[1,2]', 'null', '"run_script_step"'])('input %j: handled (and reported) by the hook itself', (raw) => {
    expect(delegation(raw)).toBeNull()
  })
})

describe('agentSocket', () => {
  test('one short, stable name per user@host:port inside the job folder', () => {
    const a = agentSocket('/d', host)
    expect(a).toMatch(/^\/d\/agent-[0-9a-f]{8}\.sock$/)
    expect(agentSocket('/d', { ...host })).toBe(a)
    expect(agentSocket('/d', { ...host, port: 2232 })).not.toBe(a)
    expect(agentSocket('/d', { ...host, user: 'other' })).not.toBe(a)
  })
})
