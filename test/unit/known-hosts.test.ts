import { createHmac, randomBytes } from 'node:crypto'
import { parseKnownHosts, pinnedKeys, verifyHostKey } from '../../src/remote/known-hosts'

/** A fake but well-formed ssh-ed25519 public key blob. */
function keyBlob(): Buffer {
  const type = Buffer.from('ssh-ed25519')
  const len = (n: number): Buffer => {
    const b = Buffer.alloc(4)
    b.writeUInt32BE(n)
    return b
  }
  const pub = randomBytes(32)
  return Buffer.concat([len(type.length), type, len(pub.length), pub])
}
const A = keyBlob()
const B = keyBlob()
const C = keyBlob()
const line = (patterns: string, key: Buffer, marker = ''): string =>
  `${marker ? marker + ' ' : ''}${patterns} ssh-ed25519 ${key.toString('base64')}`

/** A hashed known_hosts name, as `ssh-keygen -H` / HashKnownHosts write it. */
function hashed(name: string, salt = randomBytes(20)): string {
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`
}

describe('verifyHostKey: plain entries', () => {
  const text = line('build1.example.com', A)

  it('accepts the pinned key', () => {
    expect(verifyHostKey(text, 'build1.example.com', 22, A)).toBeNull()
  })

  it('refuses a different key as a possible man-in-the-middle', () => {
    expect(verifyHostKey(text, 'build1.example.com', 22, B)).toMatch(/does not match the pinned key/)
  })

  it('refuses a host with no entry, naming what it looked for', () => {
    expect(verifyHostKey(text, 'build2.example.com', 22, A)).toBe(
      'no key for build2.example.com or [build2.example.com]:22 in the known_hosts file'
    )
    expect(verifyHostKey('', 'build1.example.com', 22, A)).toMatch(/^no key for/)
  })

  it('matches host names case-insensitively (ssh lowercases the host)', () => {
    expect(verifyHostKey(text, 'BUILD1.Example.COM', 22, A)).toBeNull()
  })

  it('does not treat dots in a pattern as regex wildcards', () => {
    expect(verifyHostKey(line('a.c', A), 'abc', 22, A)).toMatch(/^no key/)
  })

  it('is not fooled by a host that merely contains the pattern', () => {
    expect(verifyHostKey(text, 'evil-build1.example.com', 22, A)).toMatch(/^no key/)
    expect(verifyHostKey(text, 'build1.example.com.evil', 22, A)).toMatch(/^no key/)
  })
})

describe('verifyHostKey: ports', () => {
  it('a [host]:port entry pins only that port', () => {
    const text = line('[build1.example.com]:2222', A)
    expect(verifyHostKey(text, 'build1.example.com', 2222, A)).toBeNull()
    expect(verifyHostKey(text, 'build1.example.com', 22, A)).toMatch(/^no key/)
    expect(verifyHostKey(text, 'build1.example.com', 2223, A)).toBe('no key for [build1.example.com]:2223 in the known_hosts file')
  })

  it('a bare host entry does not pin a non-standard port (as OpenSSH)', () => {
    expect(verifyHostKey(line('build1.example.com', A), 'build1.example.com', 2222, A)).toMatch(/^no key/)
  })

  it('port 22 accepts both the bare and the bracketed form', () => {
    expect(verifyHostKey(line('[build1.example.com]:22', A), 'build1.example.com', 22, A)).toBeNull()
    expect(verifyHostKey(line('build1.example.com', A), 'build1.example.com', 22, A)).toBeNull()
  })

  it('IP literals with ports work', () => {
    expect(verifyHostKey(line('[127.0.0.1]:2231', A), '127.0.0.1', 2231, A)).toBeNull()
    expect(verifyHostKey(line('[::1]:2231', A), '::1', 2231, A)).toBeNull()
  })
})

describe('verifyHostKey: pattern lists, wildcards and negation', () => {
  it('accepts every name of a comma list', () => {
    const text = line('build1.example.com,10.0.0.7,[build1.example.com]:2222', A)
    expect(verifyHostKey(text, 'build1.example.com', 22, A)).toBeNull()
    expect(verifyHostKey(text, '10.0.0.7', 22, A)).toBeNull()
    expect(verifyHostKey(text, 'build1.example.com', 2222, A)).toBeNull()
    expect(verifyHostKey(text, '10.0.0.8', 22, A)).toMatch(/^no key/)
  })

  it('supports * and ? wildcards', () => {
    const text = line('*.example.com,host?.lan', A)
    expect(verifyHostKey(text, 'x.example.com', 22, A)).toBeNull()
    expect(verifyHostKey(text, 'a.b.example.com', 22, A)).toBeNull()
    expect(verifyHostKey(text, 'example.com', 22, A)).toMatch(/^no key/)
    expect(verifyHostKey(text, 'host1.lan', 22, A)).toBeNull()
    expect(verifyHostKey(text, 'host12.lan', 22, A)).toMatch(/^no key/)
  })

  it('a negated pattern excludes a host that another pattern of the line matches', () => {
    const text = line('*.example.com,!bad.example.com', A)
    expect(verifyHostKey(text, 'good.example.com', 22, A)).toBeNull()
    expect(verifyHostKey(text, 'bad.example.com', 22, A)).toMatch(/^no key/)
  })

  it('a negated pattern alone never matches', () => {
    expect(verifyHostKey(line('!bad.example.com', A), 'other.example.com', 22, A)).toMatch(/^no key/)
  })

  it('a negated line does not hide the host from other lines', () => {
    const text = [line('*.example.com,!bad.example.com', A), line('bad.example.com', B)].join('\n')
    expect(verifyHostKey(text, 'bad.example.com', 22, B)).toBeNull()
    expect(verifyHostKey(text, 'bad.example.com', 22, A)).toMatch(/does not match/)
  })
})

describe('verifyHostKey: hashed entries', () => {
  it('matches a hashed bare host name on port 22', () => {
    const text = line(hashed('build1.example.com'), A)
    expect(verifyHostKey(text, 'build1.example.com', 22, A)).toBeNull()
    expect(verifyHostKey(text, 'build1.example.com', 22, B)).toMatch(/does not match/)
    expect(verifyHostKey(text, 'build2.example.com', 22, A)).toMatch(/^no key/)
  })

  it('matches a hashed [host]:port name on its port only', () => {
    const text = line(hashed('[build1.example.com]:2222'), A)
    expect(verifyHostKey(text, 'build1.example.com', 2222, A)).toBeNull()
    expect(verifyHostKey(text, 'build1.example.com', 22, A)).toMatch(/^no key/)
    expect(verifyHostKey(line(hashed('build1.example.com'), A), 'build1.example.com', 2222, A)).toMatch(/^no key/)
  })

  it('a hashed negation excludes the host', () => {
    const text = line(`*.example.com,!${hashed('bad.example.com')}`, A)
    expect(verifyHostKey(text, 'good.example.com', 22, A)).toBeNull()
    expect(verifyHostKey(text, 'bad.example.com', 22, A)).toMatch(/^no key/)
  })

  it('ignores a malformed hashed pattern without throwing', () => {
    expect(verifyHostKey(line('|1|', A), 'build1.example.com', 22, A)).toMatch(/^no key/)
    expect(verifyHostKey(line('|1|c2FsdA==', A), 'build1.example.com', 22, A)).toMatch(/^no key/)
  })

  // ssh lowercases the host name before looking it up, so the name in a hashed entry is lowercase.
  // Plain patterns here already match case-insensitively; hashed ones must agree.
  it('matches a hashed entry when the configured host name has upper-case letters', () => {
    const text = line(hashed('build1.example.com'), A)
    expect(verifyHostKey(text, 'Build1.Example.com', 22, A)).toBeNull()
  })
})

describe('verifyHostKey: markers', () => {
  it('refuses a @revoked key even when a line pins it', () => {
    const text = [line('build1.example.com', A), line('build1.example.com', A, '@revoked')].join('\n')
    expect(verifyHostKey(text, 'build1.example.com', 22, A)).toBe('the host key is marked @revoked')
  })

  it('a @revoked key does not affect other pinned keys', () => {
    const text = [line('build1.example.com', A), line('*', B, '@revoked')].join('\n')
    expect(verifyHostKey(text, 'build1.example.com', 22, A)).toBeNull()
    expect(verifyHostKey(text, 'build1.example.com', 22, B)).toMatch(/revoked/)
  })

  it('does not pin a @cert-authority key as a host key', () => {
    const text = line('*.example.com', A, '@cert-authority')
    expect(verifyHostKey(text, 'build1.example.com', 22, A)).toMatch(/^no key/)
  })
})

describe('parseKnownHosts / pinnedKeys', () => {
  const text = [
    '# comment',
    '',
    '   ',
    `${line('build1.example.com', A)} operator@laptop`,
    line('build1.example.com', B) + '\r',
    'malformed-line-with-two ssh-ed25519',
    `\t${line('other', C)}  `,
    line('build1.example.com', C, '@revoked')
  ].join('\n')

  it('skips comments, blank and malformed lines; tolerates CRLF, comments and indentation', () => {
    const entries = parseKnownHosts(text)
    expect(entries.map((e) => [e.marker, e.patterns, e.keyType])).toEqual([
      [null, ['build1.example.com'], 'ssh-ed25519'],
      [null, ['build1.example.com'], 'ssh-ed25519'],
      [null, ['other'], 'ssh-ed25519'],
      ['@revoked', ['build1.example.com'], 'ssh-ed25519']
    ])
    expect(entries[0].key.equals(A)).toBe(true)
    expect(entries[1].key.equals(B)).toBe(true)
  })

  it('collects every key pinned for the host, and the revoked ones', () => {
    const { keys, revoked } = pinnedKeys(text, 'build1.example.com', 22)
    expect(keys.map((k) => k.toString('base64'))).toEqual([A, B].map((k) => k.toString('base64')))
    expect(revoked.map((k) => k.toString('base64'))).toEqual([C.toString('base64')])
    expect(verifyHostKey(text, 'build1.example.com', 22, B)).toBeNull()
  })
})

describe('hostKeyAlgorithms', () => {
  test('offers only the algorithms of the keys pinned for that host and port', () => {
    const { hostKeyAlgorithms } = require('../../src/remote/known-hosts')
    const kh =
      '[10.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n10.0.0.2 ssh-rsa AAAAB3NzaC1yc2E=\n10.0.0.2 ecdsa-sha2-nistp256 AAAAE2VjZHNh\n'
    expect(hostKeyAlgorithms(kh, '10.0.0.1', 2222)).toEqual(['ssh-ed25519'])
    expect(hostKeyAlgorithms(kh, '10.0.0.2', 22)).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ecdsa-sha2-nistp256'])
    expect(hostKeyAlgorithms(kh, '10.0.0.3', 22)).toEqual([])
  })
})
