import { keysAt } from '../../src/did-you-mean'
import { editDistance, nearestKey } from '../../src/near-miss'
import { ConfigSchema, loadConfig } from '../../src/config'
import { ConfigError } from '../../src/errors'
import { testKeyPair } from '../helpers/keys'

describe('nearestKey', () => {
  test('a key differing only in case, a letter or two, or a swap, gets a suggestion', () => {
    expect(nearestKey('workroot', ['workRoot', 'dockerSocket'])).toBe('workRoot')
    expect(nearestKey('timeout', ['provider', 'remote', 'images', 'sync', 'timeouts', 'agent', 'tools', 'log'])).toBe('timeouts')
    expect(nearestKey('hsot', ['host', 'port', 'user'])).toBe('host')
    expect(nearestKey('identityfiles', ['identityFile', 'knownHostsFile'])).toBe('identityFile')
  })

  test('a key far from every valid one, or equally near two, gets none', () => {
    expect(nearestKey('password', ['host', 'port', 'user', 'identityFile', 'knownHostsFile', 'slots'])).toBeNull()
    expect(nearestKey('ab', ['ac', 'ad'])).toBeNull()
    expect(nearestKey('x', [])).toBeNull()
  })

  test('editDistance counts a swap of neighbours as one edit and ignores case', () => {
    expect(editDistance('ab', 'ba')).toBe(1)
    expect(editDistance('ABC', 'abc')).toBe(0)
    expect(editDistance('kitten', 'sitting')).toBe(3)
  })
})

describe('keysAt', () => {
  test('follows the provider kind through the union, arrays and defaults', () => {
    expect(keysAt(ConfigSchema, ['provider'], { provider: { kind: 'ec2' } })).toContain('subnetIds')
    expect(keysAt(ConfigSchema, ['provider'], { provider: { kind: 'static' } })).not.toContain('subnetIds')
    expect(keysAt(ConfigSchema, ['provider', 'hosts', 0], { provider: { kind: 'static', hosts: [{}] } })).toContain('identityFile')
    expect(keysAt(ConfigSchema, ['sync', 'limits'], {})).toContain('stepBytes')
    expect(keysAt(ConfigSchema, ['provider'], { provider: { kind: 'gce' } })).toEqual([])
    expect(keysAt(ConfigSchema, ['nope', 'deeper'], {})).toEqual([])
  })
})

describe('unknown configuration keys', () => {
  const KEY = '/k/id'
  const io = { readFile: () => testKeyPair().private, canRead: () => null }
  function issues(cfg: Record<string, unknown>): string[] {
    try {
      loadConfig(
        { REMOTE_HOOKS_CONFIG: '/etc/rch.json' },
        { ...io, readFile: (p) => (p === '/etc/rch.json' ? JSON.stringify(cfg) : io.readFile()) }
      )
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError)
      return (e as ConfigError).issues
    }
    throw new Error('expected a ConfigError')
  }
  const host = { host: 'h', user: 'u', identityFile: KEY, knownHostsFile: '/k/kh' }

  test('a near miss names the key it probably meant, at its own level', () => {
    expect(issues({ provider: { kind: 'static', hosts: [host] }, remote: { workroot: '/srv' } })).toEqual([
      'remote.workRoot: Required',
      'remote.workroot: unknown key (did you mean `workRoot`?)'
    ])
    expect(issues({ provider: { kind: 'static', hosts: [host] }, remote: { workRoot: '/srv' }, timeout: { healthSeconds: 5 } })).toEqual([
      'timeout: unknown key (did you mean `timeouts`?)'
    ])
    expect(
      issues({
        provider: { kind: 'ec2', region: 'r', imageId: 'ami-1', instanceTypes: ['t3.micro'], subnetId: ['s'] },
        remote: { workRoot: '/srv' }
      })
    ).toEqual(['provider.subnetId: unknown key (did you mean `subnetIds`?)'])
  })

  test("another kind's key is not offered, and each unknown key is its own line", () => {
    expect(issues({ provider: { kind: 'static', hosts: [host], subnetId: 'x', regoin: 'y' }, remote: { workRoot: '/srv' } })).toEqual([
      'provider.subnetId: unknown key',
      'provider.regoin: unknown key'
    ])
  })
})
