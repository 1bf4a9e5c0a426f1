// The provider seam as issue 8 drew it: providers get and release machines and list what they own;
// what a job leaves on a machine (containers, volumes, images, job folders) is removed by the hook's
// own code (docker/), which the handler hands them (ProviderEnv.scrub, cleanupOrphans' tidy). And
// the runner's facts come from the hook (ProviderEnv.runner), never read by a provider itself.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { SRC } from './_helpers'
import type { Config } from '../../src/config'
import { leaseFields, machineOf, providerSummary, workRootOf } from '../../src/providers/factory'
import { rawOpsFor } from '../../src/ops/provider-ops'

const PROVIDERS = join(SRC, 'providers')
const sources = (): [string, string][] =>
  readdirSync(PROVIDERS)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => [f, readFileSync(join(PROVIDERS, f), 'utf8')])

/** Shell that removes what a job made on a machine, or walks its job folders. */
const REMOVES = /\bdocker (rm|rmi|kill|stop|prune|volume|network|image|container|system)\b|\brm -\w+ [^;|&]*\/jobs\b/g
/** Reads of the runner's facts that belong to the hook. */
const RUNNER_FACTS = /process\.ppid|\bhostname\(\)|thisRunnerHost\(|from 'node:os'[^\n]*\bhostname\b/g

test('no provider module removes what a job left on a machine, or imports the code that does', () => {
  const found = sources().flatMap(([f, s]) => [...s.matchAll(REMOVES)].map((m) => `${f}: ${m[0]}`))
  expect(found).toEqual([])
  // Of docker/, a provider uses only the making of the jobs folder's root with a lease, no removal.
  const imported = sources().flatMap(([f, s]) =>
    [...s.matchAll(/import \{([^}]*)\} from '\.\.\/docker\/[^']+'/g)].map((m) => `${f}: ${m[1].trim()}`)
  )
  expect(imported).toEqual(['static-host.ts: privateJobsDirScript'])
  // positive control: the same pattern finds the scrub and the job folder's removal where they live
  const docker = (f: string) => readFileSync(join(SRC, 'docker', f), 'utf8').match(REMOVES) ?? []
  expect(docker('machine-scrub.ts').length).toBeGreaterThan(5)
  expect(docker('job-folder.ts').length).toBeGreaterThan(0)
})

test("no provider module reads the runner's facts itself (hostname, worker process)", () => {
  const found = sources().flatMap(([f, s]) => [...s.matchAll(RUNNER_FACTS)].map((m) => `${f}: ${m[0]}`))
  expect(found).toEqual([])
  // positive control: the hook's own reads are found by the same pattern
  expect(readFileSync(join(SRC, 'session.ts'), 'utf8').match(RUNNER_FACTS)?.sort()).toEqual([
    'process.ppid',
    'process.ppid',
    'thisRunnerHost('
  ])
})

test("the machine label and the work root on the machine are what the lease's kind declares, not whatever fields it has", () => {
  const config = { remote: { workRoot: '/srv/rch' } } as Config
  const id = 'i-0123456789abcdef0'
  expect(machineOf({ kind: 'ec2', instanceId: id })).toBe(id)
  expect(machineOf({ kind: 'ec2-pool', instanceId: id, workRoot: '/home/u/rch' })).toBe(id)
  expect(workRootOf(config, { kind: 'ec2-pool', instanceId: id, workRoot: '/home/u/rch' })).toBe('/home/u/rch')
  // A kind that declares none: a field of that name is not taken for it (it was, by its name alone).
  expect(machineOf({ kind: 'static', index: 0, slot: 0, instanceId: id })).toBeNull()
  expect(workRootOf(config, { kind: 'ec2', instanceId: id, workRoot: '/elsewhere' })).toBe('/srv/rch')
  expect(workRootOf(config, { kind: 'nope', workRoot: '/elsewhere' })).toBe('/srv/rch')
  expect(machineOf({ kind: 'toString', instanceId: id })).toBeNull()
})

test("check-config's summary of the provider section is each kind's own", () => {
  type P = Config['provider']
  expect(providerSummary({ kind: 'static', hosts: [{}, {}] } as P)).toBe('2 hosts')
  expect(providerSummary({ kind: 'static', hosts: [{}] } as P)).toBe('1 host')
  expect(providerSummary({ kind: 'ec2', region: 'eu-west-1' } as P)).toBe('region eu-west-1')
  expect(providerSummary({ kind: 'ec2-pool', region: 'eu-west-1', autoScalingGroup: 'ci-pool' } as P)).toBe(
    'group ci-pool, region eu-west-1'
  )
})

/** A branch on a provider kind by its name. */
const KIND_BRANCH = /\w*[kK]ind\s*[!=]==\s*'(static|ec2|ec2-pool)'|'(static|ec2|ec2-pool)'\s*[!=]==\s*[\w.]*[kK]ind\b/g

test("no module branches on the provider's kind by name: each kind has its line in the tables that list every kind", () => {
  const found = (readdirSync(SRC, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .flatMap((f) => [...readFileSync(join(SRC, f), 'utf8').matchAll(KIND_BRANCH)].map((m) => `${f}: ${m[0]}`))
  expect(found).toEqual([])
  // positive control: the pattern finds the branches config.ts and ops/ had (a new kind fell past them)
  const branches = [
    "if (p.kind === 'ec2') {",
    "isHomeWorkRoot(cfg.remote.workRoot) && p.kind !== 'ec2-pool'",
    "if (provider?.kind === 'static' && Array.isArray(provider.hosts))",
    "config.provider.kind === 'static' ? hostsChecks(p) : poolDoctor(p)",
    "'ec2-pool' === cfg.provider.kind"
  ]
  expect(branches.filter((b) => b.match(KIND_BRANCH)?.length === 1)).toEqual(branches)
  // Every kind the factory lists has its operator code; a name that is no kind (nor an Object key) has none.
  for (const { kind } of leaseFields()) {
    const o = rawOpsFor(kind)
    expect([kind, typeof o?.doctor, typeof o?.reap]).toEqual([kind, 'function', 'function'])
  }
  expect(rawOpsFor('toString')).toBeNull()
  expect(rawOpsFor('docker')).toBeNull()
})
