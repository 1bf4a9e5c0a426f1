// A container inspect answer comes from the VM's docker, which the job controls: only the shape the
// hook reads is accepted; anything else is an UnexpectedAnswer (a one-line error), never a TypeError.
import { inspectShape, portMap } from '../../src/docker/steps'
import { UnexpectedAnswer } from '../../src/remote/answer'

const good = () => ({
  Id: 'a'.repeat(64),
  Config: { Env: ['PATH=/usr/bin'], Image: 'alpine' },
  State: { Running: true, Status: 'running', ExitCode: 0, Health: { Status: 'healthy' } },
  NetworkSettings: { Ports: { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '32768' }], '81/tcp': null } }
})

test('a real-shaped answer passes and its ports are read (positive control)', () => {
  expect(portMap(inspectShape(good()))).toEqual({ '80': '32768' })
  expect(inspectShape({ ...good(), Config: { Env: null, Image: 'x' }, NetworkSettings: { Ports: null } }).Config.Env).toBeNull()
})

const broken: [string, (g: any) => unknown][] = [
  ['not an object', () => 'hello'],
  ['an array', () => []],
  ['no State', (g) => ({ ...g, State: undefined })],
  ['State.Running not a boolean', (g) => ({ ...g, State: { ...g.State, Running: 'yes' } })],
  ['State.ExitCode not a number', (g) => ({ ...g, State: { ...g.State, ExitCode: '0' } })],
  ['State.Health a string', (g) => ({ ...g, State: { ...g.State, Health: 'healthy' } })],
  ['no Config', (g) => ({ ...g, Config: null })],
  ['Config.Env with a number', (g) => ({ ...g, Config: { Env: [1] } })],
  ['no NetworkSettings', (g) => ({ ...g, NetworkSettings: undefined })],
  ['Ports a list', (g) => ({ ...g, NetworkSettings: { Ports: [] } })],
  ['a port binding not a list', (g) => ({ ...g, NetworkSettings: { Ports: { '80/tcp': 'x' } } })],
  ['a HostPort number', (g) => ({ ...g, NetworkSettings: { Ports: { '80/tcp': [{ HostPort: 8080 }] } } })]
]

test.each(broken)('%s is an UnexpectedAnswer', (_name, make) => {
  expect(() => inspectShape(make(good()))).toThrow(UnexpectedAnswer)
})
