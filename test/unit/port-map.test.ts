// prepare_job's `ports` for the job container and each service, as the runner keeps them in
// `job.services.<id>.ports`: container port (no protocol) → host port, for tcp and udp alike.
import { portMap } from '../../src/docker/steps'

type Info = Parameters<typeof portMap>[0]
const info = (ports: Record<string, { HostIp?: string; HostPort: string }[] | null>): Info =>
  ({ NetworkSettings: { Ports: ports } }) as unknown as Info

test('tcp and udp mappings key by the container port; an exposed port without a binding is left out', () => {
  expect(
    portMap(
      info({
        '6379/tcp': [{ HostIp: '127.0.0.1', HostPort: '32768' }],
        '80/udp': [{ HostIp: '127.0.0.1', HostPort: '8080' }],
        '9000/tcp': null
      })
    )
  ).toEqual({ '6379': '32768', '80': '8080' })
})

test('of several bindings (IPv4 and IPv6) the first with a host port is taken', () => {
  expect(
    portMap(
      info({
        '5432/tcp': [
          { HostIp: '0.0.0.0', HostPort: '' },
          { HostIp: '::', HostPort: '15432' }
        ]
      })
    )
  ).toEqual({ '5432': '15432' })
})

test('no ports at all is an empty map', () => {
  expect(portMap(info({}))).toEqual({})
  expect(portMap({ NetworkSettings: {} } as unknown as Info)).toEqual({})
})
