// reap finds the instances a configuration launched by the owner tag and the configured
// provider.tags. Those must be the tags as the launch sets them (tagsFor): a key the hook overrides
// (its own remote-container-hooks:* namespace) or an empty value it leaves out would make reap's
// filter match no instance, and a leftover (even one past its expires-at, whose job disabled its
// own shutdown timer) would never be removed. EC2 is a recording fake that filters as EC2 does.
import type * as Ec2 from '@aws-sdk/client-ec2'
import { ConfigSchema, type Ec2Config } from '../../src/config'
import { TAG_OWNER, TAG_REAP_CANDIDATE, tagsFor } from '../../src/providers/ec2-plan'
import { reapInstances } from '../../src/ops/reap-ec2'
import type { ReapEc2 } from '../../src/ops/reap-aws'
import { reapContext } from './_reap-context'

const NOW = Date.UTC(2026, 11, 1, 12)
const MIN = 60_000

function ec2Config(tags: Record<string, string>): Ec2Config {
  return ConfigSchema.parse({ provider: { kind: 'ec2', region: 'eu-west-1', imageId: 'ami-0123', tags }, remote: { workRoot: '/srv/rch' } })
    .provider as Ec2Config
}

/** One instance launched under `cfg` seven hours ago (past its expires-at), and EC2's filtering over it. */
function fakeEc2(cfg: Ec2Config): { api: ReapEc2; tagged: Record<string, string>[]; filters: Ec2.Filter[][] } {
  const tags = tagsFor(cfg, {
    owner: 'fedcba9876543210',
    jobId: '0123456789abcdef',
    runner: { runnerName: 'runner-7', github: { repository: 'acme/widgets' } },
    runnerHost: 'runner-host-1',
    launchedAt: new Date(NOW - 7 * 60 * MIN)
  })
  const inst: Ec2.Instance = { InstanceId: 'i-0123456789abcdef0', State: { Name: 'running' }, Tags: tags }
  const has = (f: Ec2.Filter): boolean => {
    const values = f.Values ?? []
    if (f.Name === 'tag-key') return (inst.Tags ?? []).some((t) => values.includes(t.Key ?? ''))
    if (f.Name === 'instance-state-name') return values.includes(inst.State?.Name ?? '')
    if (f.Name?.startsWith('tag:')) return (inst.Tags ?? []).some((t) => t.Key === f.Name!.slice(4) && values.includes(t.Value ?? ''))
    throw new Error(`unexpected filter ${f.Name}`)
  }
  const tagged: Record<string, string>[] = []
  const filters: Ec2.Filter[][] = []
  const api = {
    describe: async (fs: Ec2.Filter[]) => {
      filters.push(fs)
      return fs.every(has) ? [inst] : []
    },
    tag: async (_id: string, t: Record<string, string>) => void tagged.push(t),
    untag: async () => undefined,
    one: async () => inst,
    terminate: async () => undefined
  } as unknown as ReapEc2
  return { api, tagged, filters }
}

describe("reap finds the instances a configuration launched, whatever that configuration's provider.tags", () => {
  test.each([
    ['an empty value (not sent at launch)', { team: '' }],
    ['an empty Name (the default rch-<jobId> is not used then, nor is it sent)', { Name: '' }],
    ["a key of the hook's own that the launch overrides", { [TAG_OWNER]: 'forged' }],
    ["a key of the hook's own namespace beside a plain one", { 'remote-container-hooks:expires-at': 'never', team: 'platform' }]
  ])('%s: the instance past its expires-at is still found and marked', async (_what, tags) => {
    const cfg = ec2Config(tags)
    const ec2 = fakeEc2(cfg)
    const ctx = reapContext(NOW)
    await reapInstances(ec2.api, ctx, cfg.tags)
    expect(ctx.rows.map((r) => [r.what, r.action])).toEqual([['i-0123456789abcdef0', 'marked']])
    expect(ec2.tagged).toEqual([{ [TAG_REAP_CANDIDATE]: new Date(NOW).toISOString() }])
  })

  test('positive control: the operator tags still narrow the search (another setup in the account is not looked at)', async () => {
    const cfg = ec2Config({ team: 'platform', Name: 'ci-box' })
    const ec2 = fakeEc2(cfg)
    const ctx = reapContext(NOW)
    await reapInstances(ec2.api, ctx, cfg.tags)
    expect(ctx.rows.map((r) => r.action)).toEqual(['marked'])
    expect(ec2.filters[0]).toEqual(
      expect.arrayContaining([
        { Name: 'tag:team', Values: ['platform'] },
        { Name: 'tag:Name', Values: ['ci-box'] }
      ])
    )
    // Another configuration's instances (other operator tags) are not this pass's.
    const other = fakeEc2(ec2Config({ team: 'data' }))
    const ctx2 = reapContext(NOW)
    await reapInstances(other.api, ctx2, cfg.tags)
    expect(ctx2.rows).toEqual([])
  })
})
