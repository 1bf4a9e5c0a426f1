import { loadConfig, type ConfigIo } from '../../src/config'
import { ConfigError } from '../../src/errors'

const BASE = {
  provider: { kind: 'ec2', region: 'eu-west-1', imageId: 'ami-1', instanceTypes: ['t3.medium'] },
  remote: { workRoot: '/srv/rch' }
}
const io = (text: string): ConfigIo => ({ readFile: () => text, canRead: () => null })
const load = (fleet: unknown) => loadConfig({ REMOTE_HOOKS_CONFIG: '/etc/rch.json' }, io(JSON.stringify({ ...BASE, fleet })))
function issues(fleet: unknown): string[] {
  try {
    load(fleet)
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return (e as ConfigError).issues
  }
  throw new Error('expected a ConfigError')
}

test('every fleet key, as in the documentation', () => {
  const cfg = load({
    ledger: { kind: 'dynamodb', table: 'rch-fleet', region: 'eu-west-1', endpoint: 'http://127.0.0.1:5005' },
    caps: { instances: 20, vcpus: 80, perRepository: { instances: 5 } },
    budget: { perDayUsd: 50, timezone: 'Europe/Berlin', prices: { 't3.medium': 0.0416, 't3.large': 0.0832 } },
    reap: { deadAfterMinutes: 30, graceMinutes: 5 }
  })
  expect(cfg.fleet).toEqual({
    ledger: { kind: 'dynamodb', table: 'rch-fleet', region: 'eu-west-1', endpoint: 'http://127.0.0.1:5005' },
    caps: { instances: 20, vcpus: 80, perRepository: { instances: 5 } },
    budget: { perDayUsd: 50, timezone: 'Europe/Berlin', prices: { 't3.medium': 0.0416, 't3.large': 0.0832 } },
    reap: { deadAfterMinutes: 30, graceMinutes: 5 }
  })
})

test('defaults: a local ledger (its folder chosen at open), no caps, no budget; budget time zone UTC', () => {
  expect(load(undefined).fleet).toEqual({
    ledger: { kind: 'local' },
    caps: { perRepository: {} },
    reap: { deadAfterMinutes: 15, graceMinutes: 2 }
  })
  expect(load({ ledger: { kind: 'local', path: '/var/lib/remote-hooks/ledger' } }).fleet.ledger).toEqual({
    kind: 'local',
    path: '/var/lib/remote-hooks/ledger'
  })
  expect(load({ budget: { perDayUsd: 5 } }).fleet.budget).toEqual({ perDayUsd: 5, timezone: 'UTC', prices: {} })
})

test('one line per problem, each naming its field', () => {
  expect(
    issues({
      ledger: { kind: 'local', path: 'relative/ledger' },
      caps: { instances: 0, vcpus: 2.5, perRepository: { instances: -1 }, extra: 1 },
      budget: { perDayUsd: 0, timezone: 'Mars/Olympus', prices: { 't3.medium': -1, 'T3 LARGE': 1 } }
    })
  ).toEqual([
    'fleet.ledger.path: must be an absolute path',
    'fleet.caps.instances: Number must be greater than or equal to 1',
    'fleet.caps.vcpus: Expected integer, received float',
    'fleet.caps.perRepository.instances: Number must be greater than or equal to 1',
    'fleet.caps.extra: unknown key',
    expect.stringMatching(/^fleet\.budget\.perDayUsd: /),
    'fleet.budget.timezone: must be an IANA time zone name (e.g. UTC, Europe/Berlin)',
    expect.stringMatching(/^fleet\.budget\.prices\.t3\.medium: /),
    expect.stringMatching(/^fleet\.budget\.prices\.T3 LARGE: must be an instance type name/)
  ])
  expect(issues({ ledger: { kind: 'dynamodb', table: 'x', region: '' } })).toEqual([
    expect.stringMatching(/^fleet\.ledger\.table: must be a DynamoDB table name/),
    expect.stringMatching(/^fleet\.ledger\.region: /)
  ])
  expect(issues({ ledger: { kind: 'sqlite' } })).toEqual([expect.stringMatching(/^fleet\.ledger\.kind: /)])
})

test('fleet.reap: each bad value is one issue naming its field', () => {
  expect(issues({ reap: { deadAfterMinutes: 0, graceMinutes: -1 } }).sort()).toEqual([
    expect.stringMatching(/^fleet\.reap\.deadAfterMinutes: /),
    expect.stringMatching(/^fleet\.reap\.graceMinutes: /)
  ])
  expect(issues({ reap: { deadAfter: 5 } })).toEqual(['fleet.reap.deadAfter: unknown key'])
  expect(load({ reap: { graceMinutes: 0 } }).fleet.reap).toEqual({ deadAfterMinutes: 15, graceMinutes: 0 })
})
