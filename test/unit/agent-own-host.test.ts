// Inside the job's agent a step runs over the agent's own connection. The agent's socket is named by
// a 32-bit hash of user@host:port, so two machines of one job whose names collided would share it:
// a step whose state names another machine is refused, never run on the agent's.
import type { HookContext } from '../../src/context'
import type { Remote } from '../../src/remote/remote'
import { openJobRemote } from '../../src/session'

const agentsRemote: Remote = {
  openExec: () => Promise.reject(new Error('not here')),
  openSocket: () => Promise.reject(new Error('not here')),
  close: () => undefined
}
const at = { user: 'rch', host: '10.0.0.5', port: 22 }
const ctx = (remoteAt?: typeof at): HookContext =>
  ({ remote: agentsRemote, remoteAt, config: { remote: { dockerSocket: '/var/run/docker.sock' } } }) as unknown as HookContext

test.each([
  ['another host', { ...at, host: '10.0.0.6' }],
  ['another port', { ...at, port: 2222 }],
  ['another user', { ...at, user: 'other' }]
])('a step whose state names %s than the agent serves is refused, naming both', async (_what, connect) => {
  await expect(openJobRemote(ctx(at), { ...connect, identityFile: '/k', knownHostsFile: '/kh' }, '/nonexistent')).rejects.toThrow(
    `the job's agent serves rch@10.0.0.5:22, not ${connect.user}@${connect.host}:${connect.port} (the state's host): the step was not run there`
  )
})

test("control: the agent's own machine gets the agent's connection", async () => {
  const r = await openJobRemote(ctx(at), { ...at, identityFile: '/k', knownHostsFile: '/kh' }, '/nonexistent')
  expect(r).toBeDefined()
  expect(typeof r.openExec).toBe('function')
})
