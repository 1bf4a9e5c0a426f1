// The least-privilege IAM policy in docs/configuration.md allows every EC2 call `kind: ec2` makes
// (the hook, `reap` and `doctor`), and tagging at launch of every resource type the launch tags: a
// policy copied from the docs that misses one fails every launch (or every reap pass, or a doctor check).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { launchTagTypes } from '../../src/providers/ec2-plan'

const root = join(__dirname, '..', '..')
const read = (f: string): string => readFileSync(join(root, f), 'utf8')

type Statement = {
  Sid: string
  Effect: string
  Action: string | string[]
  Resource: string | string[]
  Condition?: Record<string, Record<string, unknown>>
}
const doc = read('docs/configuration.md')
const policy = JSON.parse(/A least-privilege policy[\s\S]*?```json\n([\s\S]*?)```/.exec(doc)![1]) as { Statement: Statement[] }
const list = (x: string | string[]): string[] => (Array.isArray(x) ? x : [x])

/** doctor's checks of kind ec2 (not of a pool), the credentials check they start with included. */
const doctorEc2 = ((s: string): string =>
  s.slice(s.indexOf('async function credentialsAndClock'), s.indexOf('export async function poolChecks')))(read('src/ops/doctor-aws.ts'))
/** The EC2 API calls of kind ec2 (the provider's files, `reap`'s, `doctor`'s), as IAM actions. */
const used = [
  ...new Set(
    [
      ...[
        'src/providers/ec2.ts',
        'src/providers/ec2-basis.ts',
        'src/providers/ec2-vcpus.ts',
        'src/providers/instance-fate.ts',
        'src/ops/reap-aws.ts'
      ].map(read),
      doctorEc2
    ].flatMap((src) => [...src.matchAll(/sdk\.(\w+)Command\b/g)].map((m) => `ec2:${m[1]}`))
  )
].sort()

test('every EC2 call of kind ec2 (hook, reap, doctor) is allowed by the policy and named in the permissions table', () => {
  expect(used).toEqual(
    expect.arrayContaining([
      'ec2:RunInstances',
      'ec2:DescribeInstanceTypes',
      'ec2:TerminateInstances',
      'ec2:DeleteTags',
      'ec2:DescribeSubnets'
    ])
  )
  const allowed = new Set(policy.Statement.filter((s) => s.Effect === 'Allow').flatMap((s) => list(s.Action)))
  expect(used.filter((a) => !allowed.has(a))).toEqual([])
  const table = doc.slice(doc.indexOf('### IAM permissions'), doc.indexOf('A least-privilege policy'))
  expect(used.filter((a) => !table.includes(`| \`${a}\` |`))).toEqual([])
  // reap's mark is written after the launch: a CreateTags bound to the launch alone refuses it.
  const mark = policy.Statement.filter(
    (s) =>
      s.Effect === 'Allow' &&
      list(s.Action).includes('ec2:CreateTags') &&
      list(s.Action).includes('ec2:DeleteTags') &&
      !s.Condition?.StringEquals?.['ec2:CreateAction']
  )
  expect(mark.map((s) => s.Condition?.['ForAllValues:StringEquals']?.['aws:TagKeys'])).toEqual([['remote-container-hooks:reap-candidate']])
})

test('tags can be set at launch, and a launch is allowed only owner-tagged, on every resource type the launch tags', () => {
  // A spot launch tags the most (its Spot request too); the docs' policy covers spot.
  const types = launchTagTypes('spot')
  expect(types).toContain('spot-instances-request')
  const tagging = policy.Statement.find((s) => s.Sid === 'TagOnlyAtLaunch')!
  expect(list(tagging.Action)).toEqual(['ec2:CreateTags'])
  expect(types.filter((t) => !list(tagging.Resource).some((r) => r.endsWith(`:${t}/*`)))).toEqual([])
  const owned = policy.Statement.find((s) => s.Sid === 'LaunchOnlyOwnedInstances')!
  expect(owned.Condition?.Null).toEqual({ 'aws:RequestTag/remote-container-hooks:owner': 'false' })
  // The instance and the Spot request are bound by the owner tag, never launched from "any" resource.
  for (const t of ['instance', 'spot-instances-request']) expect(list(owned.Resource).some((r) => r.endsWith(`:${t}/*`))).toBe(true)
  const launchFrom = policy.Statement.find((s) => s.Sid === 'LaunchResources')!
  expect(list(launchFrom.Resource).filter((r) => /:(instance|spot-instances-request)\//.test(r))).toEqual([])
})

test("every statement of terraform/modules/runner-iam is in its README's tables, with its actions", () => {
  const tf = read('terraform/modules/runner-iam/main.tf')
  const readme = read('terraform/modules/runner-iam/README.md')
  // Each statement's Sid and the Action list that follows it in the HCL.
  const statements = [...tf.matchAll(/Sid\s*=\s*"(\w+)"[\s\S]*?Action\s*=\s*(\[[^\]]*\]|"[^"]*")/g)].map((m) => ({
    sid: m[1],
    actions: [...m[2].matchAll(/"([\w:*]+)"/g)].map((a) => a[1])
  }))
  expect(statements.map((s) => s.sid)).toEqual(expect.arrayContaining(['FleetLedger', 'LaunchOnlyOwnedInstances', 'NeverWriteTheHostKey']))
  // A row names one or more statements in its first cell (`A`, `B`) and their actions in the second,
  // the service prefix written once (`ec2:DescribeInstances`, `DescribeImages`).
  const rows = readme.split('\n').filter((l) => /^\| `\w+`/.test(l))
  // (Two statements may share a Sid, one per policy: `Read`.)
  const missing = statements.filter(
    ({ sid, actions }) =>
      !rows
        .filter((r) => r.split('|')[1].includes(`\`${sid}\``))
        .some((r) => actions.every((a) => r.split('|')[2].includes(a) || r.split('|')[2].includes(`\`${a.split(':')[1]}\``)))
  )
  expect(missing.map((s) => s.sid)).toEqual([])
})
