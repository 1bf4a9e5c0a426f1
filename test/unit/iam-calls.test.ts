// Every AWS call the code sends, read from src, against the policies terraform/modules/runner-iam
// ships: each feature's calls (the hook of each provider kind, reap, doctor, the DynamoDB ledger)
// must be allowed by the policy its runner hosts get, on the resources and with the tag keys the code
// really uses, and the policies must grant nothing that no call needs. A call the policy misses is an
// AccessDenied for everyone who follows the module; this reads both sides, so they cannot drift.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as ledgerTable from '../../src/fleet/ledger-table'
import { ConfigSchema, type Ec2Config } from '../../src/config'
import * as ec2Plan from '../../src/providers/ec2-plan'
import * as poolPlan from '../../src/providers/pool-plan'

const root = join(__dirname, '..', '..')
const read = (f: string): string => readFileSync(join(root, f), 'utf8')

// ------------------------------------------------------------------ the code's side

/** `src/**.ts` files that send an AWS SDK command. */
function filesWithCalls(dir = 'src'): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const p = `${dir}/${e.name}`
    if (e.isDirectory()) return filesWithCalls(p)
    return p.endsWith('.ts') && /\bsdk\.\w+Command\b/.test(read(p)) ? [p] : []
  })
}

/** The text of a top-level function (or, with `method`, a class method) of a file. */
function part(file: string, name: string): string {
  const src = read(file)
  const start = src.search(new RegExp(`^(?:export )?(?:async )?function ${name}\\b|^  (?:private )?(?:async )?${name}\\(`, 'm'))
  if (start < 0) throw new Error(`${name} not found in ${file}`)
  const indent = src[start] === ' ' ? '  ' : ''
  const end = src.indexOf(`\n${indent}}\n`, start)
  return src.slice(start, end + indent.length + 2)
}

/** A file without one class method. */
function without(file: string, method: string): string {
  return read(file).replace(part(file, method), '')
}

const SERVICES = { ec2: 'client-ec2', autoscaling: 'client-auto-scaling', dynamodb: 'client-dynamodb' } as const
/** How each service's client is made in src. */
const CLIENTS: Record<keyof typeof SERVICES, RegExp> = {
  ec2: /\bec2Client\(/g,
  autoscaling: /\bautoScalingClient\(/g,
  dynamodb: /\bDynamoDBClient\(/g
}
/**
 * The IAM service of the SDK command sent at `at` in `src`: the SDK package that has it, and where
 * several do (DeleteTags is EC2's and Auto Scaling's), the one whose client was made last before it.
 */
function serviceOf(command: string, src: string, at: number): string {
  const has = (Object.keys(SERVICES) as (keyof typeof SERVICES)[]).filter((s) =>
    existsSync(join(root, 'node_modules', '@aws-sdk', SERVICES[s], 'dist-types', 'commands', `${command}Command.d.ts`))
  )
  if (has.length === 1) return has[0]
  const last = (s: keyof typeof SERVICES): number => Math.max(-1, ...[...src.slice(0, at).matchAll(CLIENTS[s])].map((m) => m.index))
  const nearest = has.sort((a, b) => last(b) - last(a))[0]
  if (!nearest || last(nearest) < 0) throw new Error(`${command}: no client of ${has.join(' or ')} before it`)
  return nearest
}

/** The index names of ledger-table.ts, by their constant's name. */
const INDEXES: Record<string, string> = { OPEN_INDEX: ledgerTable.OPEN_INDEX, TIME_INDEX: ledgerTable.TIME_INDEX }

/**
 * The IAM actions of the calls in `src`: a DynamoDB transaction is authorised per item it holds
 * (Put: PutItem, Update: UpdateItem...), a Query with an IndexName on the index.
 */
function actionsOf(src: string): { action: string; index?: string }[] {
  const out = new Map<string, { action: string; index?: string }>()
  for (const m of src.matchAll(/\bsdk\.(\w+)Command\b/g)) {
    const c = m[1]
    const service = serviceOf(c, src, m.index)
    if (c === 'TransactWriteItems') {
      const kinds: Record<string, string> = {
        Put: 'PutItem',
        Update: 'UpdateItem',
        Delete: 'DeleteItem',
        ConditionCheck: 'ConditionCheckItem'
      }
      for (const [, k] of src.matchAll(/^\s+(Put|Update|Delete|ConditionCheck): \{/gm))
        out.set(kinds[k], { action: `dynamodb:${kinds[k]}` })
      continue
    }
    // A Query names its index by a constant of ledger-table.ts: each one the source names needs its ARN.
    const indexes = c === 'Query' ? [...src.matchAll(/IndexName: (\w+)/g)].map(([, k]) => INDEXES[k] ?? `unknown ${k}`) : []
    if (!indexes.length) out.set(c, { action: `${service}:${c}` })
    for (const index of indexes) out.set(`${c}@${index}`, { action: `${service}:${c}`, index })
  }
  return [...out.values()]
}

/** The constants of the tag keys. */
const TAGS: Record<string, string> = Object.fromEntries(
  Object.entries({ ...ec2Plan, ...poolPlan }).filter(([k, v]) => k.startsWith('TAG_') && typeof v === 'string') as [string, string][]
)
/** Tag keys the code writes (`.tag(id, { [TAG_X]: … })`) or deletes (`.untag(id, [TAG_X])`) outside a launch. */
function tagKeys(src: string, how: 'tag' | 'untag'): string[] {
  const re = how === 'tag' ? /\.tag\(\s*[\w.]+\s*,\s*\{\s*\[(TAG_\w+)\]/g : /\.untag\(\s*[\w.]+\s*,\s*\[(TAG_\w+)\]\s*\)/g
  return [
    ...new Set(
      [...src.matchAll(re)].map(([, c]) => {
        if (!TAGS[c]) throw new Error(`tag constant ${c} unknown`)
        return TAGS[c]
      })
    )
  ].sort()
}

/** The module's policies: kind ec2, kind ec2-pool, and the ledger's statements alone (kind static, report). */
type PolicyName = 'ec2' | 'pool' | 'ledger'
interface Feature {
  name: string
  policies: PolicyName[]
  /** File paths, or the code itself (a part of a file). */
  code: string[]
  /** The files of `filesWithCalls` this feature covers (or covers in part). */
  files: string[]
}
const src = (f: string): string => read(f)
const FEATURES: Feature[] = [
  {
    name: 'hook, kind ec2',
    policies: ['ec2'],
    files: ['src/providers/ec2.ts', 'src/providers/ec2-basis.ts', 'src/providers/ec2-vcpus.ts', 'src/providers/instance-fate.ts'],
    code: ['src/providers/ec2.ts', 'src/providers/ec2-basis.ts', 'src/providers/ec2-vcpus.ts', 'src/providers/instance-fate.ts'].map(src)
  },
  {
    name: 'hook, kind ec2-pool',
    policies: ['pool'],
    files: ['src/providers/ec2-pool.ts', 'src/providers/ec2-vcpus.ts', 'src/providers/instance-fate.ts'],
    code: [
      'src/providers/ec2-pool.ts',
      'src/providers/ec2-vcpus.ts',
      'src/providers/instance-fate.ts',
      ...readdirSync(join(root, 'src/providers'))
        .filter((f) => /^pool-.*\.ts$/.test(f))
        .map((f) => `src/providers/${f}`)
    ].map(src)
  },
  { name: 'reap, kind ec2', policies: ['ec2'], files: ['src/ops/reap-aws.ts'], code: [src('src/ops/reap-aws.ts')] },
  {
    // A pool's pass never terminates through EC2 (checked below): the group replaces its members.
    name: 'reap, kind ec2-pool',
    policies: ['pool'],
    files: ['src/ops/reap-aws.ts', 'src/ops/reap-pool.ts'],
    code: [without('src/ops/reap-aws.ts', 'terminate'), src('src/ops/reap-pool.ts')]
  },
  {
    name: 'doctor, kind ec2',
    policies: ['ec2'],
    files: ['src/ops/doctor-aws.ts', 'src/providers/ec2-basis.ts'],
    code: [
      part('src/ops/doctor-aws.ts', 'credentialsAndClock'),
      part('src/ops/doctor-aws.ts', 'ec2Checks'),
      src('src/providers/ec2-basis.ts')
    ]
  },
  {
    name: 'doctor, kind ec2-pool',
    policies: ['pool'],
    files: ['src/ops/doctor-aws.ts'],
    code: [
      part('src/ops/doctor-aws.ts', 'credentialsAndClock'),
      part('src/ops/doctor-aws.ts', 'poolChecks'),
      part('src/ops/doctor-aws.ts', 'protectionCheck')
    ]
  },
  {
    name: 'fleet ledger in DynamoDB (hook, reap, report)',
    policies: ['ec2', 'pool', 'ledger'],
    files: ['src/fleet/dynamodb-ledger.ts'],
    code: [src('src/fleet/dynamodb-ledger.ts')]
  },
  {
    name: 'doctor, fleet ledger',
    policies: ['ec2', 'pool', 'ledger'],
    files: ['src/ops/doctor-ledger.ts'],
    code: [src('src/ops/doctor-ledger.ts')]
  }
]

// ------------------------------------------------------------------ the policy's side (main.tf)

const TF = read('terraform/modules/runner-iam/main.tf')

/** From `s[i]` (an opening bracket) to its match; quoted strings skipped. */
function balanced(s: string, i: number): string {
  let depth = 0
  for (let j = i; j < s.length; j++) {
    const ch = s[j]
    if (ch === '"') {
      j++
      while (s[j] !== '"') j += s[j] === '\\' ? 2 : 1
    } else if ('{[('.includes(ch)) depth++
    else if ('}])'.includes(ch) && --depth === 0) return s.slice(i, j + 1)
  }
  throw new Error(`unbalanced from ${i}`)
}

/** The bracket depth at each offset of `s`, -1 inside a quoted string. */
function depths(s: string): number[] {
  const out: number[] = []
  let depth = 0
  for (let j = 0; j < s.length; j++) {
    if (s[j] === '"') {
      const from = j
      j++
      while (s[j] !== '"') j += s[j] === '\\' ? 2 : 1
      for (let k = from; k <= j; k++) out[k] = k === from ? depth : -1
      continue
    }
    if ('}])'.includes(s[j])) depth--
    out[j] = depth
    if ('{[('.includes(s[j])) depth++
  }
  return out
}

/**
 * The expression after `name =` (an HCL attribute, quoted or not), to the end of its line, a comma
 * or the bracket that closes it. With `top`, only a `name` directly inside the outermost brackets
 * of `s`, not one in a block nested in them.
 */
function valueOf(s: string, name: string, top = false): string {
  const d = depths(s)
  const re = new RegExp(`(?:^|[\\s{,])("?${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"?)\\s*=(?!=)\\s*`, 'gm')
  for (const m of s.matchAll(re)) {
    const at = m.index + m[0].indexOf(m[1])
    if (d[at] === -1 || (top && d[at] !== 1)) continue
    let j = m.index + m[0].length
    const start = j
    while (j < s.length && !'\n,}])'.includes(s[j])) {
      if (s[j] === '"') {
        j++
        while (s[j] !== '"') j += s[j] === '\\' ? 2 : 1
        j++
      } else if ('{[('.includes(s[j])) j += balanced(s, j).length
      else j++
    }
    return s.slice(start, j).trim()
  }
  return ''
}

/** The string locals, interpolated. */
const LOCAL_STRINGS: Record<string, string> = {}
for (const [, k, v] of TF.matchAll(/^\s*(\w+)\s*=\s*"([^"]*)"\s*$/gm)) LOCAL_STRINGS[k] ??= v
const interpolate = (s: string): string =>
  s.replace(/\$\{local\.(\w+)\}/g, (all, k: string) => (k in LOCAL_STRINGS ? interpolate(LOCAL_STRINGS[k]) : all))

/** The strings (and `var.` references) an expression names, `local.` references followed. */
function strings(expr: string, seen = new Set<string>()): string[] {
  const out = [...expr.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => interpolate(m[1]))
  for (const [, v] of expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').matchAll(/\b(var\.\w+)/g)) out.push(v)
  for (const [, l] of expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').matchAll(/\blocal\.(\w+)/g)) {
    if (seen.has(l)) continue
    seen.add(l)
    out.push(...(l in LOCAL_STRINGS ? [interpolate(LOCAL_STRINGS[l])] : strings(valueOf(TF, l), seen)))
  }
  return out
}

interface Statement {
  sid: string
  effect: string
  actions: string[]
  resources: string[]
  condition: string
}

/** The statements an expression holds, `local.` references to statements followed. */
function statements(expr: string): Statement[] {
  const out: Statement[] = []
  const blank = expr.replace(/"(?:[^"\\]|\\.)*"/g, (q) => ' '.repeat(q.length))
  for (let i = 0; i < blank.length; i++) {
    if (blank[i] !== '{') continue
    const block = balanced(expr, i)
    const sid = /^"(\w+)"$/.exec(valueOf(block, 'Sid', true))
    if (!sid) continue
    out.push({
      sid: sid[1],
      effect: strings(valueOf(block, 'Effect', true))[0],
      actions: strings(valueOf(block, 'Action', true)),
      resources: strings(valueOf(block, 'Resource', true)),
      condition: interpolate(valueOf(block, 'Condition', true))
    })
    i += block.length - 1
  }
  for (const [, l] of blank.matchAll(/\blocal\.(\w+)/g)) if (/\bSid\s*=/.test(valueOf(TF, l))) out.push(...statements(valueOf(TF, l)))
  return out
}

const POLICIES: Record<PolicyName, Statement[]> = {
  ec2: statements(valueOf(TF, 'ec2_policy')),
  pool: statements(valueOf(TF, 'pool_policy')),
  ledger: statements(valueOf(TF, 'ledger_policy'))
}

/** The tag keys a condition operator names for aws:TagKeys, or null when it names none. */
function tagKeysIn(condition: string, operator: string): string[] | null {
  const block = valueOf(condition, operator, true)
  if (!block) return null
  const keys = valueOf(block, 'aws:TagKeys', true)
  return keys ? strings(keys) : null
}

const allows = (p: Statement[], action: string): Statement[] => p.filter((s) => s.effect === 'Allow' && s.actions.includes(action))

/** Why writing (CreateTags) or deleting (DeleteTags) `key` on an instance after its launch is refused by `p`, or null. */
function tagRefusal(p: Statement[], action: 'ec2:CreateTags' | 'ec2:DeleteTags', key: string): string | null {
  const allowed = allows(p, action).some((s) => {
    if (/ec2:CreateAction/.test(s.condition)) return false
    if (!s.resources.some((r) => r.endsWith(':instance/*') || r === '*')) return false
    const only = tagKeysIn(s.condition, 'ForAllValues:StringEquals')
    return only === null || only.includes(key)
  })
  if (!allowed) return `no statement allows ${action} of ${key}`
  const denied = p.find((s) => {
    if (s.effect !== 'Deny' || !s.actions.includes(action)) return false
    const any = tagKeysIn(s.condition, 'ForAnyValue:StringEquals')
    const anyNot = tagKeysIn(s.condition, 'ForAnyValue:StringNotEquals')
    return (any !== null && any.includes(key)) || (anyNot !== null && !anyNot.includes(key))
  })
  return denied ? `${denied.sid} denies ${action} of ${key}` : null
}

// ------------------------------------------------------------------ the tests

test('the policies are read from main.tf, with their statements', () => {
  expect(POLICIES.ec2.map((s) => s.sid)).toEqual(
    expect.arrayContaining(['LaunchOnlyOwnedInstances', 'NeverWriteTheKeepTag', 'FleetLedger'])
  )
  expect(POLICIES.pool.map((s) => s.sid)).toEqual(expect.arrayContaining(['NeverWriteTheHostKey', 'FleetLedgerOpenReservations']))
  expect(allows(POLICIES.ec2, 'ec2:TerminateInstances')).toHaveLength(1)
  expect(POLICIES.ledger.map((s) => s.sid)).toEqual(['FleetLedger', 'FleetLedgerOpenReservations'])
  // the tag keys the policy names are the code's
  expect(LOCAL_STRINGS).toMatchObject({
    owner_tag: ec2Plan.TAG_OWNER,
    host_key_tag: poolPlan.TAG_HOST_KEY,
    reap_candidate: ec2Plan.TAG_REAP_CANDIDATE,
    keep_tag: ec2Plan.TAG_KEEP
  })
})

test('every file that sends an AWS call belongs to a feature whose policy is checked', () => {
  const covered = new Set(FEATURES.flatMap((f) => f.files))
  expect(filesWithCalls().filter((f) => !covered.has(f))).toEqual([])
  // A pool's reap never terminates through EC2: only kind ec2's pass calls terminate.
  expect(read('src/ops/reap-pool.ts')).not.toMatch(/\.terminate\(/)
  expect(read('src/ops/reap-pool.ts')).not.toMatch(/\breapInstances\(/)
  expect(read('src/ops/reap-ec2.ts')).toMatch(/function reapEc2Pass\([^)]*\)[^{]*\{[^}]*reapInstances\(/)
  const ops = read('src/ops/provider-ops.ts')
  expect(ops).toMatch(/\bec2: \{[^}]*\.reapEc2Pass\(/)
  expect(ops).toMatch(/'ec2-pool': \{[^}]*\.reapPoolPass\(/)
})

test.each(FEATURES.map((f) => [f.name, f] as const))('%s: every call is allowed by the runner-iam policy', (_name, f) => {
  const calls = f.code.flatMap(actionsOf)
  expect(calls.length).toBeGreaterThan(0)
  for (const name of f.policies) {
    const p = POLICIES[name]
    const missing = calls
      .filter(({ action, index }) => {
        const by = allows(p, action)
        if (!action.startsWith('dynamodb:')) return by.length === 0
        // The ledger's calls on its tables only; a Query of an index needs that index's ARN.
        return !by.some((s) =>
          s.resources.some((r) => (index ? r.endsWith(`/index/${index}`) : r === 'var.ledger_table_arns' || r.endsWith(':table/*')))
        )
      })
      .map((c) => `${c.action}${c.index ? ` (index ${c.index})` : ''}`)
    expect({ policy: name, missing }).toEqual({ policy: name, missing: [] })
  }
})

/** What EC2 needs of a customer-managed key to use it for an instance's volumes, through EC2 only. */
const VOLUME_KEY_ACTIONS = [
  'kms:CreateGrant',
  'kms:Decrypt',
  'kms:DescribeKey',
  'kms:GenerateDataKeyWithoutPlaintext',
  'kms:ReEncrypt*'
] as const

test.each(['ec2', 'pool'] as const)('the %s policy uses volume keys only through EC2, and grants them only to AWS resources', (name) => {
  const kms = POLICIES[name].filter((s) => s.actions.some((a) => a.startsWith('kms:')))
  expect(kms.map((s) => [s.sid, s.effect, s.actions])).toEqual([
    ['UseVolumeKeysThroughEc2', 'Allow', VOLUME_KEY_ACTIONS.filter((a) => a !== 'kms:CreateGrant')],
    ['GrantVolumeKeysToEc2', 'Allow', ['kms:CreateGrant']]
  ])
  for (const s of kms) expect({ sid: s.sid, viaEc2: s.condition.includes('kms:ViaService') }).toEqual({ sid: s.sid, viaEc2: true })
  // kms:GrantIsForAWSResource is only in the request of the grant calls: on any other action the
  // key is absent and a statement conditioned on it never allows anything.
  for (const s of POLICIES[name].filter((x) => x.condition.includes('kms:GrantIsForAWSResource')))
    expect({ sid: s.sid, actions: s.actions.filter((a) => !/^kms:(CreateGrant|ListGrants|RevokeGrant)$/.test(a)) }).toEqual({
      sid: s.sid,
      actions: []
    })
})

test.each(['ec2', 'pool', 'ledger'] as const)('the %s policy grants no action that no call of its features needs', (name) => {
  const needed = new Set(FEATURES.filter((f) => f.policies.includes(name)).flatMap((f) => f.code.flatMap(actionsOf).map((c) => c.action)))
  // iam:PassRole is no call of ours: RunInstances needs it for a launch template's instance profile;
  // nor are the kms: actions, which EC2 makes with the caller's rights for a customer-managed volume key.
  const granted = [...new Set(POLICIES[name].filter((s) => s.effect === 'Allow').flatMap((s) => s.actions))].filter(
    (a) => a !== 'iam:PassRole' && !(VOLUME_KEY_ACTIONS as readonly string[]).includes(a)
  )
  expect(granted.filter((a) => !needed.has(a))).toEqual([])
})

test('a launch tags, and may tag, every resource type it creates, with the owner tag the conditions ask for', () => {
  // A spot launch creates the most: its Spot request besides the instance, volume and ENI.
  const types = ec2Plan.launchTagTypes('spot')
  expect(types).toEqual(expect.arrayContaining(['instance', 'volume', 'network-interface', 'spot-instances-request']))
  expect(read('src/providers/ec2-plan.ts')).toMatch(/TagSpecifications: launchTagTypes\(at\.market\)/)
  const p = POLICIES.ec2
  const launchOwned = allows(p, 'ec2:RunInstances').filter((s) => s.condition.includes(`aws:RequestTag/${ec2Plan.TAG_OWNER}`))
  const tagAtLaunch = allows(p, 'ec2:CreateTags').filter((s) => /ec2:CreateAction/.test(s.condition))
  expect(launchOwned).toHaveLength(1)
  expect(tagAtLaunch).toHaveLength(1)
  for (const s of [launchOwned[0], tagAtLaunch[0]]) expect(types.filter((t) => !s.resources.some((r) => r.endsWith(`:${t}/*`)))).toEqual([])
  // The owner tag is among the tags of every launch (tagsFor), so the RequestTag conditions hold.
  expect(read('src/providers/ec2-plan.ts')).toMatch(/\[TAG_OWNER\]: f\.owner/)
})

test('every tag key written or deleted after a launch is allowed, and none is denied', () => {
  const reapEc2 = part('src/ops/reap-ec2.ts', 'reapInstances') + part('src/ops/reap-ec2.ts', 'removeInstance')
  const poolSide = [read('src/providers/ec2-pool.ts'), read('src/ops/reap-pool.ts'), part('src/ops/reap-ec2.ts', 'reapReservations')].join(
    '\n'
  )
  const uses: Record<'ec2' | 'pool', { tag: string[]; untag: string[] }> = {
    ec2: { tag: tagKeys(reapEc2, 'tag'), untag: tagKeys(reapEc2, 'untag') },
    pool: { tag: tagKeys(poolSide, 'tag'), untag: tagKeys(poolSide, 'untag') }
  }
  // kind ec2 writes no tag after its launch; reap its mark
  expect(uses.ec2).toEqual({ tag: [ec2Plan.TAG_REAP_CANDIDATE], untag: [ec2Plan.TAG_REAP_CANDIDATE] })
  expect(uses.pool.tag).toEqual([ec2Plan.TAG_REAP_CANDIDATE, ec2Plan.TAG_RESERVATION, poolPlan.TAG_JOBS, poolPlan.TAG_RECYCLE].sort())
  const refused: string[] = []
  for (const name of ['ec2', 'pool'] as const) {
    for (const k of uses[name].tag) refused.push(`${name}: ${tagRefusal(POLICIES[name], 'ec2:CreateTags', k) ?? ''}`)
    for (const k of uses[name].untag) refused.push(`${name}: ${tagRefusal(POLICIES[name], 'ec2:DeleteTags', k) ?? ''}`)
  }
  expect(refused.filter((r) => !r.endsWith(': '))).toEqual([])
  // control: the keys the policies keep from runner hosts are refused
  expect(tagRefusal(POLICIES.pool, 'ec2:CreateTags', poolPlan.TAG_HOST_KEY)).not.toBeNull()
  expect(tagRefusal(POLICIES.ec2, 'ec2:CreateTags', ec2Plan.TAG_KEEP)).not.toBeNull()
  expect(tagRefusal(POLICIES.pool, 'ec2:DeleteTags', poolPlan.TAG_JOBS)).not.toBeNull()
})

// The Denies of the ec2 policy hold the launch to what the hook sends anyway: a launch of the hook's
// own must never be refused by them (doctor's DryRun would show it, every job would fail).
test("the hook's own launch meets the launch Denies: IMDSv2 tokens and a hop limit of 1 stated, the root volume encrypted; the ephemeral template states the same", () => {
  const denies = POLICIES.ec2.filter((s) => s.effect === 'Deny' && s.actions.includes('ec2:RunInstances')).map((s) => s.sid)
  expect(denies.sort()).toEqual(
    [
      'LaunchOnlyEncryptedVolumes',
      'LaunchOnlyTheseTypes',
      'LaunchOnlyWithAStatedHopLimit',
      'LaunchOnlyWithHopLimitOne',
      'LaunchOnlyWithImdsV2'
    ].sort()
  )
  const cfg = ConfigSchema.parse({
    provider: { kind: 'ec2', region: 'eu-west-1', imageId: 'ami-0123456789abcdef0', instanceTypes: ['t3.large'] },
    remote: { workRoot: '/srv/rch' }
  }).provider as Ec2Config
  for (const attempt of ec2Plan.launchPlan(cfg)) {
    const input = ec2Plan.runInstancesInput(
      cfg,
      attempt,
      { rootDevice: '/dev/xvda', templateSetsMetadata: false },
      { token: 't', userData: '', tags: [] }
    )
    expect(input.MetadataOptions).toMatchObject({ HttpTokens: 'required', HttpPutResponseHopLimit: 1 })
    expect(input.BlockDeviceMappings?.map((m) => m.Ebs?.Encrypted)).toEqual([true])
    expect(input.InstanceType).toBe('t3.large')
  }
  // A template that states metadata options decides them: the module's states both, and encrypts.
  const template = read('terraform/modules/ephemeral/main.tf')
  expect(template).toMatch(/http_tokens\s*=\s*"required"/)
  expect(template).toMatch(/http_put_response_hop_limit\s*=\s*1\n/)
  expect(template).toMatch(/encrypted\s*=\s*true/)
})
