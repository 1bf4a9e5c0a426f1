import { parse } from 'yaml'
import { ed25519KeyPair } from '../../src/providers/keys'
import { parseUserData, userDataScript, USER_DATA_MARK } from '../../src/providers/user-data'

describe('EC2 user data', () => {
  const host = ed25519KeyPair('h')
  const client = ed25519KeyPair('c')
  const text = userDataScript({
    user: 'ec2-user',
    workRoot: '/var/lib/remote-hooks',
    hostPrivateKey: host.private,
    hostPublicKey: host.public,
    clientPublicKey: client.public,
    maxLifetimeMinutes: 90
  })

  test('is cloud-config that YAML parses, with the host key for cloud-init to install before sshd', () => {
    expect(text.startsWith('#cloud-config\n')).toBe(true)
    expect(text).toContain(USER_DATA_MARK)
    const doc = parse(text)
    expect(doc.ssh_keys.ed25519_private.trim()).toBe(host.private.trim())
    expect(doc.ssh_keys.ed25519_public).toBe(host.public.trim())
    expect(doc.ssh_deletekeys).toBe(true)
    expect(doc.ssh_authorized_keys).toEqual([client.public.trim()])
    expect(doc.bootcmd[0][2]).toContain('--on-active=90m')
    expect(doc.runcmd[0][2]).toContain('mkdir -p /var/lib/remote-hooks && chown "$u" /var/lib/remote-hooks')
  })

  test('holds no client private key and round-trips through parseUserData', () => {
    expect(text.match(/PRIVATE KEY/g)).toHaveLength(2) // BEGIN and END of the host key only
    const body = client.private
      .split('\n')
      .filter((l) => l && !l.startsWith('-----'))
      .slice(1)
      .join('')
    expect(text.replace(/\\n|\s/g, '')).not.toContain(body)
    expect(parseUserData(text)).toEqual({
      hostPrivateKey: host.private.trim() + '\n',
      clientPublicKey: client.public.trim(),
      maxLifetimeMinutes: 90
    })
  })
})
