import { relToWork, remotePath, type Layout } from '../../src/paths'
import { InputError } from '../../src/errors'

const L: Layout = {
  hostWork: '/home/runner/_work',
  remoteWork: '/srv/rch/jobs/j1/w',
  hostExternals: '/home/runner/externals',
  remoteExternals: '/srv/rch/externals/0123abcd',
  dockerSocket: '/var/run/docker.sock'
}

describe('remotePath', () => {
  it.each([
    ['/home/runner/_work', '/srv/rch/jobs/j1/w'],
    ['/home/runner/_work/', '/srv/rch/jobs/j1/w'],
    ['/home/runner/_work/_temp', '/srv/rch/jobs/j1/w/_temp'],
    ['/home/runner/_work/_temp/_github_home', '/srv/rch/jobs/j1/w/_temp/_github_home'],
    ['/home/runner/_work/repo/repo/', '/srv/rch/jobs/j1/w/repo/repo'],
    ['/home/runner/_work//_actions/./o/r', '/srv/rch/jobs/j1/w/_actions/o/r'],
    ['/home/runner/externals', '/srv/rch/externals/0123abcd'],
    ['/home/runner/externals/node20/bin/node', '/srv/rch/externals/0123abcd/node20/bin/node'],
    ['/var/run/docker.sock', '/var/run/docker.sock']
  ])('%s → %s', (host, remote) => {
    expect(remotePath(L, host, 'f')).toBe(remote)
  })

  it("maps the runner's Docker socket to the VM's configured one (remote.dockerSocket)", () => {
    expect(remotePath({ ...L, dockerSocket: '/run/user/1001/docker.sock' }, '/var/run/docker.sock', 'f')).toBe('/run/user/1001/docker.sock')
  })

  it('tolerates a trailing slash on the layout roots', () => {
    expect(remotePath({ ...L, hostWork: '/home/runner/_work/' }, '/home/runner/_work/x', 'f')).toBe('/srv/rch/jobs/j1/w/x')
  })

  it.each([
    '/home/runner/_work2/x',
    '/home/runner/_wor',
    '/home/runner',
    '/home/runner/_work/../secret',
    '/home/runner/externals-evil/x',
    '/etc/passwd',
    '/',
    'relative/_work/x',
    '/var/run/docker.sock.evil'
  ])('refuses %s with an InputError naming the field and the path', (host) => {
    let err: unknown
    try {
      remotePath(L, host, 'args.container.systemMountVolumes.3.sourceVolumePath')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(InputError)
    expect((err as Error).message).toBe(
      `args.container.systemMountVolumes.3.sourceVolumePath: host path ${host} is outside the runner's work folder /home/runner/_work, so it cannot be synced to the remote host`
    )
  })

  it('does not map externals when the layout has none', () => {
    expect(() => remotePath({ ...L, hostExternals: null, remoteExternals: null }, '/home/runner/externals/node20', 'args.x')).toThrow(
      InputError
    )
    expect(() => remotePath({ ...L, remoteExternals: null }, '/home/runner/externals/node20', 'args.x')).toThrow(/^args\.x: /)
  })
})

describe('relToWork', () => {
  it('gives the path under _work, "" for _work itself, null outside', () => {
    expect(relToWork('/home/runner/_work', '/home/runner/_work/repo/repo')).toBe('repo/repo')
    expect(relToWork('/home/runner/_work', '/home/runner/_work')).toBe('')
    expect(relToWork('/home/runner/_work', '/home/runner/_work2')).toBeNull()
    expect(relToWork('/home/runner/_work', '/home/runner/_work/a/../../x')).toBeNull()
  })
})
