/**
 * Offline checks of terraform/ (no Terraform binary can be installed by the test setup, and nothing
 * may reach AWS): every file parses (python-hcl2), checkov passes with every skip justified, variables and
 * outputs are typed and described, module calls and references match, each example's
 * `hook_config` passes the hook's own configuration check, and the IAM policies bind every
 * mutating statement to the hook's tags or to named resources. The pool members' sshd settings
 * are checked by this machine's sshd, their user data by bash.
 *
 * Outputs and locals are rendered by scripts/terraform-check.py from the HCL itself, with the
 * references that only exist after an apply (module outputs, data sources, resources) taken from
 * the tables below: a reference no table names fails the render, it is never guessed.
 *
 * Every check has a positive control: a broken copy of terraform/ in a temp folder is refused.
 * Where the machine has Terraform and a provider mirror, Terraform itself also checks the tree
 * (fmt, validate of every module and example) and renders the runner-iam policies with a mock
 * provider, which must equal the offline renderer's (the last describe; skipped elsewhere).
 * Needs `bash scripts/testenv/tf-venv.sh ensure` (scripts/test.sh runs it).
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { FleetSchema, loadConfig, type Config } from '../../src/config'
import { ConfigError } from '../../src/errors'
import { DescribeInstancesCommand, RunInstancesCommand, TerminateInstancesCommand } from '@aws-sdk/client-ec2'
import { membersOf, TAG_GROUP, TAG_HOST_KEY } from '../../src/providers/pool-plan'
import { ledgerTableShape, OPEN_INDEX, TIME_INDEX } from '../../src/fleet/ledger-table'
import { ec2Client, loadMoto, motoImageId, TEST_REGION } from '../helpers/ec2-env'
import { readEnv, repoRoot, testenvDir } from '../helpers/testenv'
import { testKeyPair } from '../helpers/keys'

const execFileP = promisify(execFile)
const TF = path.join(repoRoot, 'terraform')
const CHECK = path.join(repoRoot, 'scripts', 'terraform-check.py')

interface Problem {
  kind: 'parse' | 'variable' | 'output' | 'skip' | 'reference' | 'module-call'
  file: string
  line: number | null
  message: string
}
type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
interface Statement {
  Sid?: string
  Effect: 'Allow' | 'Deny'
  Action: string | string[]
  Resource: string | string[]
  Condition?: Record<string, Record<string, string | string[]>>
}
interface Policy {
  Version: string
  Statement: Statement[]
}

let tools: { CHECKOV: string; HCL2_PYTHON: string; AWS_CLI: string }
let scratch: string

beforeAll(() => {
  const env = readEnv(path.join(testenvDir, 'tf-venv', 'env'), 'Terraform check tools (bash scripts/testenv/tf-venv.sh ensure)')
  tools = { CHECKOV: env.CHECKOV, HCL2_PYTHON: env.HCL2_PYTHON, AWS_CLI: env.AWS_CLI }
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-tf-'))
})

afterAll(() => {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true })
})

/** A copy of terraform/ to break, with `edits` applied as [file, from, to] (each `from` must be there). */
function brokenCopy(name: string, edits: [string, string | RegExp, string][]): string {
  const dir = path.join(scratch, name)
  fs.cpSync(TF, dir, { recursive: true })
  for (const [file, from, to] of edits) {
    const p = path.join(dir, file)
    const text = fs.readFileSync(p, 'utf8')
    const next = text.replace(from, to)
    if (next === text) throw new Error(`control ${name}: ${String(from)} not found in ${file}`)
    fs.writeFileSync(p, next)
  }
  return dir
}

async function lint(dir: string): Promise<{ files: string[]; problems: Problem[] }> {
  const { stdout } = await execFileP(tools.HCL2_PYTHON, [CHECK, 'lint', dir], { maxBuffer: 16 << 20 })
  return JSON.parse(stdout) as { files: string[]; problems: Problem[] }
}

async function render(root: string, module: string, expr: string, table: Record<string, Json>): Promise<{ value?: Json; error?: string }> {
  const tableFile = path.join(scratch, `table-${process.hrtime.bigint()}.json`)
  fs.writeFileSync(tableFile, JSON.stringify(table))
  try {
    const { stdout } = await execFileP(tools.HCL2_PYTHON, [CHECK, 'render', path.join(root, module), expr, tableFile])
    return JSON.parse(stdout) as { value: Json }
  } catch (e) {
    const out = (e as { stdout?: string }).stdout
    if (out) return JSON.parse(out) as { error: string }
    throw e
  }
}

async function renderOk(root: string, module: string, expr: string, table: Record<string, Json>): Promise<Json> {
  const r = await render(root, module, expr, table)
  if (r.error !== undefined) throw new Error(`${module} ${expr}: ${r.error}`)
  return r.value as Json
}

interface CheckovReport {
  summary: { passed: number; failed: number; skipped: number; parsing_errors: number; resource_count: number }
  results: {
    passed_checks: { check_id: string }[]
    failed_checks: { check_id: string; resource: string; file_path: string }[]
    skipped_checks: { check_id: string; resource: string; check_result: { suppress_comment?: string } }[]
  }
}

/** checkov as the brief allows it: no mapping download, no module download, no network at all. */
async function checkov(dir: string): Promise<{ code: number; report: CheckovReport }> {
  const args = ['-d', dir, '--skip-download', '--compact', '-o', 'json']
  const env = { ...process.env, BC_SKIP_MAPPING: 'TRUE' }
  // In a network namespace of its own when we may make one: proof that it needs no network.
  const isolated = process.getuid?.() === 0 && fs.existsSync('/usr/bin/unshare')
  const [cmd, argv] = isolated ? ['/usr/bin/unshare', ['-n', tools.CHECKOV, ...args]] : [tools.CHECKOV, args]
  let stdout: string
  let code = 0
  try {
    ;({ stdout } = await execFileP(cmd, argv, { env, maxBuffer: 64 << 20, timeout: 120_000 }))
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string }
    if (typeof err.code !== 'number' || !err.stdout) throw e
    code = err.code
    stdout = err.stdout
  }
  const parsed = JSON.parse(stdout) as CheckovReport | CheckovReport[]
  const report = Array.isArray(parsed) ? parsed.find((r) => (r as { check_type?: string }).check_type === 'terraform') : parsed
  if (!report) throw new Error(`checkov found no terraform to scan in ${dir}`)
  return { code, report }
}

// ------------------------------------------------------------------ tables of apply-time values

const ACCOUNT = '111122223333'
const ASG_ARN = `arn:aws:autoscaling:eu-west-1:${ACCOUNT}:autoScalingGroup:0b1c2d3e-aaaa-bbbb-cccc-0123456789ab:autoScalingGroupName/rch-pool`
const DATA = {
  'data.aws_partition.current.partition': 'aws',
  'data.aws_caller_identity.current.account_id': ACCOUNT
}
const LEDGER_ARN = `arn:aws:dynamodb:eu-west-1:${ACCOUNT}:table/rch-fleet`
const POOL_PUBLIC_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpjpVfUZuzkD2rsBlLyeKx0P9rnEo7i0eTjGHvEMhCH rch-pool'

const TABLES: Record<string, Record<string, Json>> = {
  'static-hosts': {
    // Terraform fills the optional(…) attributes; the renderer does not, so they are given here.
    'var.hosts': [
      {
        host: '10.0.0.5',
        port: 22,
        user: 'ci',
        identity_file: '/home/runner/.rch/rch_ed25519',
        known_hosts_file: '/home/runner/.rch/known_hosts',
        slots: 1
      },
      {
        host: 'vm2.ci.example',
        port: 2222,
        user: 'ci',
        identity_file: '/home/runner/.rch/rch_ed25519',
        known_hosts_file: '/home/runner/.rch/known_hosts',
        slots: 2
      }
    ]
  },
  ephemeral: {
    'var.region': 'eu-west-1',
    'var.vpc_id': 'vpc-0123456789abcdef0',
    'var.subnet_ids': ['subnet-0aaa1111', 'subnet-0bbb2222'],
    'var.image_id': 'ami-0123456789abcdef0',
    'var.runner_ingress_security_group_ids': ['sg-0runnerhosts0000'],
    'module.ephemeral.launch_template_id': 'lt-0123456789abcdef0',
    'module.ephemeral.security_group_id': 'sg-0123456789abcdef0',
    'module.ledger.table_name': 'rch-fleet',
    'module.ledger.table_arn': LEDGER_ARN
  },
  pool: {
    'var.region': 'eu-west-1',
    'var.vpc_id': 'vpc-0123456789abcdef0',
    'var.subnet_ids': ['subnet-0aaa1111', 'subnet-0bbb2222'],
    'var.pool_public_key': POOL_PUBLIC_KEY,
    'var.runner_ingress_security_group_ids': ['sg-0runnerhosts0000'],
    'module.pool.autoscaling_group_name': 'rch-pool',
    'module.pool.autoscaling_group_arn': ASG_ARN,
    'module.pool.ssh_user': 'ec2-user',
    'module.pool.ssh_port': 22,
    'module.pool.work_root': '/srv/rch',
    'module.ledger.table_name': 'rch-pool-fleet',
    'module.ledger.table_arn': LEDGER_ARN
  }
}

const RUNNER_IAM_TABLE: Record<string, Json> = {
  ...DATA,
  'var.region': 'eu-west-1',
  'var.image_ids': ['ami-0123456789abcdef0'],
  'var.subnet_ids': ['subnet-0aaa1111'],
  'var.security_group_ids': ['sg-0123456789abcdef0'],
  'var.launch_template_ids': ['lt-0123456789abcdef0'],
  'var.instance_role_arns': [`arn:aws:iam::${ACCOUNT}:role/rch-instance`],
  'var.allow_spot': true,
  'var.autoscaling_group_names': ['rch-pool'],
  'var.autoscaling_group_arns': [ASG_ARN],
  'var.ledger_table_arns': [LEDGER_ARN]
}

const POOL_MODULE_TABLE: Record<string, Json> = {
  ...DATA,
  'var.name': 'rch-pool',
  'var.vpc_id': 'vpc-0123456789abcdef0',
  'var.subnet_ids': ['subnet-0aaa1111'],
  'var.client_public_key': POOL_PUBLIC_KEY
}

const EPHEMERAL_MODULE_TABLE: Record<string, Json> = {
  ...DATA,
  'var.name': 'rch-ephemeral',
  'var.vpc_id': 'vpc-0123456789abcdef0',
  'var.image_id': 'ami-0123456789abcdef0'
}

/** The hook's own configuration check (loadConfig), on a rendered hook_config; key files are stood in for. */
function hookCheck(text: string): Config {
  const key = testKeyPair().private
  const configPath = '/virtual/remote-container-hooks/config.json'
  return loadConfig(
    { REMOTE_HOOKS_CONFIG: configPath },
    {
      readFile: (p) => (p === configPath ? text : key),
      canRead: () => null
    }
  )
}

// ------------------------------------------------------------------ IAM rules

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v])
const readOnly = (action: string): boolean => /^[a-z0-9-]+:(Describe|Get|List)[A-Za-z]*$/.test(action)
const TAG_CONDITION = /^(aws:ResourceTag\/.+|aws:RequestTag\/.+|aws:TagKeys|ec2:ResourceTag\/.+|autoscaling:ResourceTag\/.+)$/
/** A resource named exactly: an ARN whose resource part has no wildcard. */
const named = (arn: string): boolean => /^arn:[a-z-]+:[a-z0-9-]+:[a-z0-9-]*:\d*:[^*?]+$/.test(arn)

/** Statements that allow a change without being bound to a tag or to named resources (a Deny only narrows). */
function unboundMutations(policy: Policy): string[] {
  const bad: string[] = []
  policy.Statement.forEach((s, i) => {
    const actions = asList(s.Action)
    if (actions.every(readOnly) || s.Effect === 'Deny') return
    const tagBound = Object.values(s.Condition ?? {}).some((c) => Object.keys(c).some((k) => TAG_CONDITION.test(k)))
    const resources = asList(s.Resource)
    const nameBound = resources.length > 0 && resources.every(named)
    if (!tagBound && !nameBound) bad.push(s.Sid ?? `#${i}`)
  })
  return bad
}

function policyShape(p: Json): Policy {
  const policy = p as unknown as Policy
  expect(policy.Version).toBe('2012-10-17')
  expect(Array.isArray(policy.Statement) && policy.Statement.length > 0).toBe(true)
  for (const s of policy.Statement) {
    expect(['Allow', 'Deny']).toContain(s.Effect)
    expect(asList(s.Action).length).toBeGreaterThan(0)
    expect(asList(s.Resource).length).toBeGreaterThan(0)
    // no service-wide or global action grants
    for (const a of asList(s.Action)) expect(a).toMatch(/^[a-z0-9-]+:[A-Za-z]+$/)
  }
  return policy
}

/** The members' own policy: CreateTags on themselves only, the host-key tag only, only while it is absent. */
function memberPolicyProblems(member: Policy): string[] {
  const problems: string[] = []
  if (member.Statement.length !== 1) problems.push(`${member.Statement.length} statements, not 1`)
  const s = member.Statement[0]
  if (s.Effect !== 'Allow' || asList(s.Action).join() !== 'ec2:CreateTags') problems.push('grants more than ec2:CreateTags')
  const c = s.Condition ?? {}
  if (c.StringEquals?.['aws:ARN'] !== '${ec2:SourceInstanceARN}') problems.push('the member may tag other instances')
  if (
    JSON.stringify(c['ForAllValues:StringEquals']?.['aws:TagKeys']) !== '["remote-container-hooks:host-key"]' ||
    c.Null?.['aws:TagKeys'] !== 'false'
  )
    problems.push('the member may write other tags')
  if (c.Null?.['aws:ResourceTag/remote-container-hooks:host-key'] !== 'true')
    problems.push('the member may write the host-key tag more than once')
  return problems
}

const allowed = (p: Policy): string[] =>
  [...new Set(p.Statement.filter((s) => s.Effect === 'Allow').flatMap((s) => asList(s.Action)))].sort()

async function renderPolicies(root: string): Promise<{ ec2: Policy; pool: Policy; member: Policy }> {
  const ec2 = await renderOk(root, 'modules/runner-iam', 'output.ec2_policy_json', RUNNER_IAM_TABLE)
  const pool = await renderOk(root, 'modules/runner-iam', 'output.pool_policy_json', RUNNER_IAM_TABLE)
  const member = await renderOk(root, 'modules/pool', 'output.instance_policy_json', POOL_MODULE_TABLE)
  for (const v of [ec2, pool, member]) expect(typeof v).toBe('string')
  return {
    ec2: policyShape(JSON.parse(ec2 as string) as Json),
    pool: policyShape(JSON.parse(pool as string) as Json),
    member: policyShape(JSON.parse(member as string) as Json)
  }
}

/** The ledger's DynamoDB calls (read from its source): a transaction is authorised per item it writes (Put, Update...), plus doctor's DescribeTable. */
function ledgerActions(): string[] {
  const read = (f: string): string => fs.readFileSync(path.join(repoRoot, 'src', f), 'utf8')
  const ledger = read('fleet/dynamodb-ledger.ts')
  const doctor = read('ops/doctor-ledger.ts')
  const calls = new Set([...(ledger + doctor).matchAll(/new (?:this\.)?sdk\.(\w+)Command/g)].map((m) => m[1]))
  if (calls.delete('TransactWriteItems')) {
    const kinds: Record<string, string> = {
      Put: 'PutItem',
      Update: 'UpdateItem',
      Delete: 'DeleteItem',
      ConditionCheck: 'ConditionCheckItem'
    }
    for (const m of ledger.matchAll(/^\s+(Put|Update|Delete|ConditionCheck): \{/gm)) calls.add(kinds[m[1]])
  }
  return [...calls].map((c) => `dynamodb:${c}`).sort()
}
const LEDGER_ACTIONS = [
  'dynamodb:DescribeTable',
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:Query',
  'dynamodb:Scan',
  'dynamodb:UpdateItem'
]
/** A Query reads an index (open reservations: reap; a time range: report), whose ARN is the table's plus /index/<name>. */
const LEDGER_INDEX_ARNS = [OPEN_INDEX, TIME_INDEX].map((i) => `${LEDGER_ARN}/index/${i}`)
const ledgerResourcesOf = (action: string): string[] => (action === 'dynamodb:Query' ? LEDGER_INDEX_ARNS : [LEDGER_ARN])

/** What the policy lacks of the ledger's calls on LEDGER_ARN (or its indexes), or grants of DynamoDB beyond them. */
function ledgerProblems(p: Policy, needed: string[]): string[] {
  const out: string[] = []
  const on = p.Statement.filter((s) => s.Effect === 'Allow' && asList(s.Action).some((a) => a.startsWith('dynamodb:')))
  for (const a of needed)
    for (const arn of ledgerResourcesOf(a))
      if (!on.some((s) => asList(s.Action).includes(a) && asList(s.Resource).some((r) => r === arn || r === '*')))
        out.push(`${a} is not allowed on ${arn === LEDGER_ARN ? 'the ledger table' : arn}`)
  for (const s of on)
    if (asList(s.Resource).some((r) => r !== LEDGER_ARN && !LEDGER_INDEX_ARNS.includes(r)))
      out.push(`${s.Sid ?? '?'} is not bound to the ledger table`)
  return out
}

/** The ledger module's table as the hook's ledgerTableShape() words it, read from main.tf. */
function tfLedgerShape(root: string): object {
  const tf = fs.readFileSync(path.join(root, 'modules/ledger/main.tf'), 'utf8')
  const blocks = (name: string): string[] => [...tf.matchAll(new RegExp(`\\n\\s*${name} \\{([^}]*)\\}`, 'g'))].map((m) => m[1])
  const field = (block: string, k: string): string | undefined => new RegExp(`${k}\\s*=\\s*"([^"]*)"`).exec(block)?.[1]
  return {
    AttributeDefinitions: blocks('attribute').map((b) => ({ AttributeName: field(b, 'name'), AttributeType: field(b, 'type') })),
    KeySchema: [{ AttributeName: field(tf, 'hash_key'), KeyType: 'HASH' }],
    GlobalSecondaryIndexes: blocks('global_secondary_index').map((b) => ({
      IndexName: field(b, 'name'),
      KeySchema: [
        { AttributeName: field(b, 'hash_key'), KeyType: 'HASH' },
        ...(field(b, 'range_key') ? [{ AttributeName: field(b, 'range_key'), KeyType: 'RANGE' }] : [])
      ],
      Projection: { ProjectionType: field(b, 'projection_type') }
    }))
  }
}

// ------------------------------------------------------------------ tests

describe('terraform/ parses, is typed and described, and its references match', () => {
  test('every .tf file parses with python-hcl2', async () => {
    const { files, problems } = await lint(TF)
    expect(files.length).toBeGreaterThanOrEqual(20)
    for (const m of [
      'modules/pool',
      'modules/ephemeral',
      'modules/ledger',
      'modules/runner-iam',
      'examples/static-hosts',
      'examples/ephemeral',
      'examples/pool'
    ]) {
      expect(files).toEqual(expect.arrayContaining([`${m}/main.tf`, `${m}/variables.tf`, `${m}/outputs.tf`]))
    }
    expect(problems.filter((p) => p.kind === 'parse')).toEqual([])

    // control: an unclosed block is refused, naming the file
    const broken = brokenCopy('parse', [['modules/pool/outputs.tf', /$/, '\noutput "unclosed" {\n  value = 1\n']])
    const found = (await lint(broken)).problems.filter((p) => p.kind === 'parse')
    expect(found.map((p) => p.file)).toEqual(['modules/pool/outputs.tf'])
  })

  test('every variable has a type and a description, every output a description', async () => {
    const { problems } = await lint(TF)
    expect(problems.filter((p) => p.kind === 'variable' || p.kind === 'output')).toEqual([])

    const broken = brokenCopy('described', [
      ['modules/pool/variables.tf', /(variable "vpc_id" \{\n)\s*type\s*= string\n/, '$1'],
      ['examples/pool/variables.tf', /(variable "name" \{\n\s*type\s*= string\n)\s*description\s*=.*\n/, '$1'],
      ['modules/runner-iam/outputs.tf', /(output "pool_policy_arn" \{\n)\s*description\s*=.*\n/, '$1']
    ])
    const found = (await lint(broken)).problems.filter((p) => p.kind === 'variable' || p.kind === 'output').map((p) => p.message)
    expect(found.sort()).toEqual([
      'output pool_policy_arn has no description',
      'variable name has no description',
      'variable vpc_id has no type'
    ])
  })

  test('module calls pass only declared variables (and every required one); var., local. and module. references exist', async () => {
    const { problems } = await lint(TF)
    expect(problems.filter((p) => p.kind === 'reference' || p.kind === 'module-call')).toEqual([])

    const broken = brokenCopy('references', [
      ['examples/pool/main.tf', 'instance_type              = var.instance_type', 'instance_typ               = var.instance_type'],
      ['examples/ephemeral/main.tf', /\n {2}vpc_id\s+= var.vpc_id\n/, '\n'],
      ['examples/pool/main.tf', 'module.pool.work_root', 'module.pool.workroot'],
      ['modules/runner-iam/main.tf', 'for id in var.subnet_ids', 'for id in var.subnets']
    ])
    const found = (await lint(broken)).problems.filter((p) => p.kind === 'reference' || p.kind === 'module-call').map((p) => p.message)
    expect(found.sort()).toEqual([
      'module ephemeral: required variable vpc_id not given',
      'module pool: ../../modules/pool has no variable instance_typ',
      'module.pool.workroot: ../../modules/pool has no such output',
      'var.subnets is not declared'
    ])
  })
})

const FOLDERS = [
  'modules/pool',
  'modules/ephemeral',
  'modules/ledger',
  'modules/runner-iam',
  'examples/static-hosts',
  'examples/ephemeral',
  'examples/pool'
]

/** README.md of each module and example: its tables must name exactly the inputs and outputs. */
async function readmeProblems(root: string): Promise<string[]> {
  const problems: string[] = []
  for (const folder of FOLDERS) {
    const readme = path.join(root, folder, 'README.md')
    if (!fs.existsSync(readme)) {
      problems.push(`${folder}: no README.md`)
      continue
    }
    const { stdout } = await execFileP(tools.HCL2_PYTHON, [CHECK, 'inventory', path.join(root, folder)])
    const inv = JSON.parse(stdout) as { variables: { name: string }[]; outputs: { name: string }[] }
    const text = fs.readFileSync(readme, 'utf8')
    const section = (title: string): string[] => {
      const m = new RegExp(`^### ${title}\\n([\\s\\S]*?)(?=^#|(?![\\s\\S]))`, 'm').exec(text)
      return m ? [...m[1].matchAll(/^\| `([A-Za-z0-9_]+)` \|/gm)].map((r) => r[1]) : []
    }
    for (const [title, names] of [
      ['Inputs', inv.variables.map((v) => v.name)],
      ['Outputs', inv.outputs.map((o) => o.name)]
    ] as const) {
      const rows = section(title)
      for (const n of names) if (!rows.includes(n)) problems.push(`${folder}: ${title} table lacks ${n}`)
      for (const r of rows) if (!names.includes(r)) problems.push(`${folder}: ${title} table names ${r}, which does not exist`)
    }
  }
  return problems
}

interface Failure {
  check: string
  message: string
}

async function checkTool<T>(command: 'validate' | 'calls', dir: string, table: Record<string, Json>): Promise<T> {
  const tableFile = path.join(scratch, `table-${process.hrtime.bigint()}.json`)
  fs.writeFileSync(tableFile, JSON.stringify(table))
  const { stdout } = await execFileP(tools.HCL2_PYTHON, [CHECK, command, dir, tableFile])
  return JSON.parse(stdout) as T
}
const validate = (dir: string, table: Record<string, Json>): Promise<Failure[]> => checkTool<Failure[]>('validate', dir, table)
const calls = (dir: string, table: Record<string, Json>): Promise<Record<string, Failure[]>> =>
  checkTool<Record<string, Failure[]>>('calls', dir, table)

describe('variable validations and preconditions', () => {
  test("hold for the defaults, the examples' values and what the examples pass to the modules", async () => {
    for (const example of ['static-hosts', 'ephemeral', 'pool']) {
      expect(await validate(path.join(TF, 'examples', example), TABLES[example])).toEqual([])
      const perCall = await calls(path.join(TF, 'examples', example), TABLES[example])
      for (const failures of Object.values(perCall)) expect(failures).toEqual([])
      expect(Object.keys(perCall).sort()).toEqual(
        { 'static-hosts': [], ephemeral: ['ephemeral', 'ledger', 'runner_iam'], pool: ['ledger', 'pool', 'runner_iam'] }[example]
      )
    }
    const ingress = { 'var.ingress_security_group_ids': ['sg-0runnerhosts0000'] }
    expect(await validate(path.join(TF, 'modules/pool'), { ...POOL_MODULE_TABLE, ...ingress })).toEqual([])
    expect(await validate(path.join(TF, 'modules/pool'), { ...POOL_MODULE_TABLE, ...ingress, 'var.work_root': '~/rch' })).toEqual([])
    expect(
      await validate(path.join(TF, 'modules/ephemeral'), { 'var.name': 'rch', 'var.vpc_id': 'vpc-1', 'var.image_id': 'ami-1', ...ingress })
    ).toEqual([])
    expect(
      await validate(path.join(TF, 'modules/runner-iam'), {
        ...RUNNER_IAM_TABLE,
        'var.create_ec2_policy': true,
        'var.create_pool_policy': true
      })
    ).toEqual([])
    expect(await validate(path.join(TF, 'modules/ledger'), { 'var.name': 'rch-fleet' })).toEqual([])
  })

  test('control: bad values are refused with the module’s own message', async () => {
    const pool = await calls(path.join(TF, 'examples/pool'), {
      ...TABLES.pool,
      'var.pool_public_key': "ssh-ed25519 AAAA'; touch /tmp/x; echo '",
      'var.work_root': '/srv/../etc',
      'var.runner_ingress_security_group_ids': []
    })
    expect(pool.pool.map((f) => f.check).sort()).toEqual([
      'aws_security_group.member precondition',
      'var.client_public_key',
      'var.work_root'
    ])
    expect(pool.pool.find((f) => f.check === 'var.client_public_key')?.message).toMatch(
      /^client_public_key must be one OpenSSH public key line/
    )
    expect((await validate(path.join(TF, 'modules/ledger'), { 'var.name': 'x' })).map((f) => f.check)).toEqual(['var.name'])
    expect(
      (
        await validate(path.join(TF, 'modules/pool'), {
          ...POOL_MODULE_TABLE,
          'var.ingress_cidr_blocks': ['10.0.0.0/16'],
          'var.instance_refresh_protected_members': 'Kill'
        })
      ).map((f) => f.message)
    ).toEqual(['instance_refresh_protected_members must be Wait, Refresh or Ignore.'])
    // sshd open to most of the internet (two /1 blocks): refused in both modules (control: a /16 above passes)
    for (const [mod, table] of [
      ['modules/pool', POOL_MODULE_TABLE],
      ['modules/ephemeral', EPHEMERAL_MODULE_TABLE]
    ] as const)
      expect(
        (await validate(path.join(TF, mod), { ...table, 'var.ingress_cidr_blocks': ['10.0.0.0/16', '0.0.0.0/1', '128.0.0.0/1'] })).map(
          (f) => f.message
        )
      ).toEqual([
        "ingress_cidr_blocks must be blocks of /8 or narrower (a /0 or /1 would let most of the internet reach sshd): give the runner hosts' addresses or security groups."
      ])
    expect(
      (await validate(path.join(TF, 'modules/runner-iam'), { ...RUNNER_IAM_TABLE, 'var.ledger_table_arns': ['rch-fleet'] })).map(
        (f) => f.message
      )
    ).toEqual(['ledger_table_arns must be DynamoDB table ARNs (arn:aws:dynamodb:<region>:<account>:table/<name>).'])
    const iam = await calls(path.join(TF, 'examples/ephemeral'), { ...TABLES.ephemeral, 'var.subnet_ids': [] })
    expect(iam.runner_iam).toEqual([
      {
        check: 'aws_iam_policy.ec2 precondition',
        message:
          'The kind: ec2 policy needs image_ids, subnet_ids and security_group_ids (RunInstances is only allowed from named resources).'
      }
    ])
    const hosts = TABLES['static-hosts']['var.hosts'] as { [k: string]: Json }[]
    const relative = await validate(path.join(TF, 'examples/static-hosts'), {
      'var.hosts': [{ ...hosts[0], identity_file: 'rch_ed25519' }]
    })
    expect(relative.map((f) => f.check)).toEqual(['var.hosts'])
    // a value the table lacks is a failure, not a pass
    expect(await validate(path.join(TF, 'modules/pool'), {})).toEqual(
      expect.arrayContaining([{ check: 'var.name', message: 'cannot evaluate: var.name has no default and the table gives no value' }])
    )
  })
})

describe('READMEs', () => {
  test('every module and example has a README whose tables list exactly its inputs and outputs', async () => {
    expect(await readmeProblems(TF)).toEqual([])
    expect(fs.readFileSync(path.join(TF, 'README.md'), 'utf8')).toMatch(/terraform validate[\s\S]*offline/)

    const broken = brokenCopy('readme', [
      ['modules/pool/README.md', /^\| `warm_pool_min_size` \|.*\n/m, ''],
      ['examples/pool/README.md', /^(\| `hook_config` \|.*\n)/m, '$1| `old_output` | gone |\n']
    ])
    fs.rmSync(path.join(broken, 'examples/static-hosts/README.md'))
    expect((await readmeProblems(broken)).sort()).toEqual([
      'examples/pool: Outputs table names old_output, which does not exist',
      'examples/static-hosts: no README.md',
      'modules/pool: Inputs table lacks warm_pool_min_size'
    ])
  })
})

describe('checkov', () => {
  test('passes on terraform/, every skipped check is justified inline, and the key hardening checks ran', async () => {
    const { code, report } = await checkov(TF)
    expect(report.results.failed_checks.map((f) => `${f.check_id} ${f.resource}`)).toEqual([])
    expect(report.summary.parsing_errors).toBe(0)
    expect(code).toBe(0)
    expect(report.summary.resource_count).toBeGreaterThanOrEqual(15)
    const passed = new Set(report.results.passed_checks.map((c) => c.check_id))
    // IMDSv2 required, metadata hop limit 1, launch templates without a public IP, IAM without
    // wildcard resources for restrictable actions, no credentials exposure / privilege escalation.
    for (const id of [
      'CKV_AWS_79',
      'CKV_AWS_341',
      'CKV_AWS_88',
      'CKV_AWS_355',
      'CKV_AWS_290',
      'CKV_AWS_286',
      'CKV_AWS_287',
      'CKV_AWS_289',
      // the fleet ledger's table: point-in-time recovery
      'CKV_AWS_28'
    ]) {
      expect(passed).toContain(id)
    }
    for (const s of report.results.skipped_checks) {
      expect((s.check_result.suppress_comment ?? '').trim().length).toBeGreaterThanOrEqual(20)
    }
    expect((await lint(TF)).problems.filter((p) => p.kind === 'skip')).toEqual([])

    // control: IMDSv1 allowed in the pool's launch template is found and fails the run
    const broken = brokenCopy('checkov', [
      ['modules/pool/main.tf', 'http_tokens                 = "required"', 'http_tokens                 = "optional"'],
      ['modules/ledger/main.tf', /(point_in_time_recovery \{\n\s*enabled = )true/, '$1false']
    ])
    const bad = await checkov(path.join(broken, 'modules'))
    expect(bad.code).not.toBe(0)
    expect(bad.report.results.failed_checks.map((f) => f.check_id)).toEqual(expect.arrayContaining(['CKV_AWS_79', 'CKV_AWS_28']))
  })

  test('a #checkov:skip without a reason is refused', async () => {
    const broken = brokenCopy('skip', [['modules/ephemeral/main.tf', /#checkov:skip=CKV_AWS_24:.*\n/, '#checkov:skip=CKV_AWS_24\n']])
    const found = (await lint(broken)).problems.filter((p) => p.kind === 'skip')
    expect(found.map((p) => `${p.file} ${p.message}`)).toEqual([
      'modules/ephemeral/main.tf CKV_AWS_24 is skipped without a reason (#checkov:skip=CKV_AWS_24: why)'
    ])
  })
})

describe("each example's hook_config passes the hook's own configuration check", () => {
  test('static-hosts', async () => {
    const text = await renderOk(TF, 'examples/static-hosts', 'output.hook_config', TABLES['static-hosts'])
    const cfg = hookCheck(text as string)
    expect(cfg.provider.kind).toBe('static')
    if (cfg.provider.kind !== 'static') return
    expect(cfg.provider.hosts.map((h) => `${h.user}@${h.host}:${h.port}/${h.slots}`)).toEqual([
      'ci@10.0.0.5:22/1',
      'ci@vm2.ci.example:2222/2'
    ])
    expect(cfg.remote.workRoot).toBe('/srv/rch')
  })

  test('ephemeral (kind: ec2, from the module’s launch template)', async () => {
    const text = await renderOk(TF, 'examples/ephemeral', 'output.hook_config', TABLES.ephemeral)
    const cfg = hookCheck(text as string)
    expect(cfg.provider.kind).toBe('ec2')
    if (cfg.provider.kind !== 'ec2') return
    expect(cfg.provider.launchTemplate).toEqual({ id: 'lt-0123456789abcdef0', version: '$Latest' })
    expect(cfg.provider.subnetIds).toEqual(['subnet-0aaa1111', 'subnet-0bbb2222'])
    expect(cfg.provider.region).toBe('eu-west-1')
    expect(cfg.fleet).toEqual({
      ledger: { kind: 'dynamodb', table: 'rch-fleet', region: 'eu-west-1' },
      caps: { perRepository: {} },
      reap: FleetSchema.parse({}).reap
    })
  })

  test('pool (kind: ec2-pool, from the pool module)', async () => {
    const text = await renderOk(TF, 'examples/pool', 'output.hook_config', TABLES.pool)
    const cfg = hookCheck(text as string)
    const p = cfg.provider as unknown as Record<string, unknown>
    expect(p.kind).toBe('ec2-pool')
    expect(p.autoScalingGroup).toBe('rch-pool')
    expect(p.identityFile).toBe('/etc/remote-container-hooks/pool_ed25519')
    expect(p.reuse).toEqual({ maxJobsPerVm: 1, maxVmAgeMinutes: 720, maxDiskPercent: 90 })
    expect(cfg.remote.workRoot).toBe('/srv/rch')
    expect(cfg.fleet.ledger).toEqual({ kind: 'dynamodb', table: 'rch-pool-fleet', region: 'eu-west-1' })
    expect(cfg.fleet.budget).toBeUndefined()
  })

  test("the fleet section: the examples' caps and budget, as the hook reads them; unset ones left out", async () => {
    for (const example of ['ephemeral', 'pool']) {
      const text = await renderOk(TF, `examples/${example}`, 'output.hook_config', {
        ...TABLES[example],
        'var.fleet_max_instances': 20,
        'var.fleet_max_instances_per_repository': 5,
        'var.fleet_budget_per_day_usd': 50,
        'var.fleet_prices': { 't3.large': 0.0832 }
      })
      const cfg = hookCheck(text as string)
      expect(cfg.fleet.caps).toEqual({ instances: 20, perRepository: { instances: 5 } })
      expect(cfg.fleet.budget).toEqual({ perDayUsd: 50, timezone: 'UTC', prices: { 't3.large': 0.0832 } })
    }
    // control: a value the hook refuses is refused with its field
    const bad = await renderOk(TF, 'examples/pool', 'output.hook_config', {
      ...TABLES.pool,
      'var.fleet_budget_per_day_usd': 50,
      'var.fleet_budget_timezone': 'Mars/Olympus'
    })
    expect(() => hookCheck(bad as string)).toThrow(/fleet\.budget\.timezone: must be an IANA time zone name/)
  })

  test('controls: an unknown reference fails the render, and a config the hook refuses is refused', async () => {
    const { 'module.pool.work_root': _dropped, ...partial } = TABLES.pool
    expect(_dropped).toBe('/srv/rch')
    expect((await render(TF, 'examples/pool', 'output.hook_config', partial)).error).toBe(
      'unknown reference module.pool.work_root: not in the table'
    )
    expect((await render(TF, 'examples/ephemeral', 'output.runner_policy_json', TABLES.ephemeral)).error).toMatch(
      /^unknown reference module\.runner_iam/
    )

    const broken = brokenCopy('hook-config', [
      ['examples/pool/main.tf', 'waitTimeoutSeconds = var.wait_timeout_seconds', 'waitTimeoutSecond  = var.wait_timeout_seconds'],
      ['examples/ephemeral/main.tf', 'version = "$Latest"', 'version = "$Latest", name = "also"']
    ])
    const pool = await renderOk(broken, 'examples/pool', 'output.hook_config', TABLES.pool)
    expect(() => hookCheck(pool as string)).toThrow(ConfigError)
    expect(() => hookCheck(pool as string)).toThrow(/provider\.waitTimeoutSecond: unknown key/)
    const ec2 = await renderOk(broken, 'examples/ephemeral', 'output.hook_config', TABLES.ephemeral)
    expect(() => hookCheck(ec2 as string)).toThrow(/give exactly one of name or id/)
  })
})

describe('IAM policies', () => {
  test('are valid JSON and every mutating statement is bound to a tag or to named resources', async () => {
    const { ec2, pool, member } = await renderPolicies(TF)
    expect(unboundMutations(ec2)).toEqual([])
    expect(unboundMutations(pool)).toEqual([])
    expect(unboundMutations(member)).toEqual([])
    // and the same with the optional parts left out (no spot, no instance profile)
    const plain = await renderOk(TF, 'modules/runner-iam', 'output.ec2_policy_json', {
      ...RUNNER_IAM_TABLE,
      'var.allow_spot': false,
      'var.instance_role_arns': []
    })
    const plainPolicy = policyShape(JSON.parse(plain as string) as Json)
    expect(unboundMutations(plainPolicy)).toEqual([])
    expect(allowed(plainPolicy)).not.toContain('iam:PassRole')
    expect(JSON.stringify(plainPolicy)).not.toContain('spot-instances-request')
  })

  test('grant exactly the calls the hook makes, and the host key stays the member’s own', async () => {
    const { ec2, pool, member } = await renderPolicies(TF)
    expect(allowed(ec2)).toEqual(
      [
        'ec2:CreateTags',
        'ec2:DeleteTags',
        'ec2:DescribeImages',
        'ec2:DescribeInstanceTypes',
        'ec2:DescribeInstances',
        'ec2:DescribeLaunchTemplateVersions',
        // doctor's checks of the subnets and security groups the config names
        'ec2:DescribeSecurityGroups',
        'ec2:DescribeSubnets',
        'ec2:RunInstances',
        'ec2:TerminateInstances',
        'iam:PassRole',
        ...LEDGER_ACTIONS
      ].sort()
    )
    expect(allowed(pool)).toEqual(
      [
        'autoscaling:DescribeAutoScalingGroups',
        'autoscaling:DescribeAutoScalingInstances',
        'autoscaling:ExitStandby',
        'autoscaling:SetDesiredCapacity',
        'autoscaling:SetInstanceProtection',
        'autoscaling:TerminateInstanceInAutoScalingGroup',
        'ec2:CreateTags',
        'ec2:DeleteTags',
        'ec2:DescribeInstanceTypes',
        'ec2:DescribeInstances',
        'ec2:DescribeLaunchTemplateVersions',
        'ec2:StartInstances',
        ...LEDGER_ACTIONS
      ].sort()
    )
    // ... which are exactly the calls the pool provider makes (read from its source, so the two stay in
    // step), reap's removal of its candidate mark, and the ledger's (checked on their own below)
    const src = fs
      .readdirSync(path.join(repoRoot, 'src', 'providers'))
      .filter((f) => f === 'ec2-pool.ts' || f === 'ec2-vcpus.ts' || /^pool-.*\.ts$/.test(f))
      .map((f) => fs.readFileSync(path.join(repoRoot, 'src', 'providers', f), 'utf8'))
      .join('\n')
    const calls = [...new Set([...src.matchAll(/new (?:asg\.)?sdk\.(\w+)Command/g)].map((m) => m[1]))]
    expect(calls.length).toBeGreaterThan(5)
    expect([...calls.map((c) => allowed(pool).find((a) => a.endsWith(`:${c}`)) ?? c), 'ec2:DeleteTags', ...LEDGER_ACTIONS].sort()).toEqual(
      allowed(pool)
    )
    // runner hosts: CreateTags on members only for the jobs, recycle, reservation and reap-candidate keys ...
    const tagging = pool.Statement.filter((s) => s.Effect === 'Allow' && asList(s.Action).includes('ec2:CreateTags'))
    expect(tagging).toHaveLength(1)
    expect(tagging[0].Condition?.['ForAllValues:StringEquals']?.['aws:TagKeys']).toEqual([
      'remote-container-hooks:jobs',
      'remote-container-hooks:recycle',
      'remote-container-hooks:reservation',
      'remote-container-hooks:reap-candidate'
    ])
    // ... DeleteTags of reap's mark only, on members and on owned instances ...
    for (const p of [pool, ec2]) {
      const untag = p.Statement.filter((s) => s.Effect === 'Allow' && asList(s.Action).includes('ec2:DeleteTags'))
      expect(untag).toHaveLength(1)
      expect(untag[0].Condition?.['ForAllValues:StringEquals']?.['aws:TagKeys']).toEqual(['remote-container-hooks:reap-candidate'])
      expect(untag[0].Condition?.Null?.['aws:TagKeys']).toBe('false')
      // ... and never the keep tag, which is the operator's alone
      const keep = p.Statement.find((s) => s.Sid === 'NeverWriteTheKeepTag')
      expect(keep).toMatchObject({ Effect: 'Deny', Resource: '*', Action: ['ec2:CreateTags', 'ec2:DeleteTags'] })
      expect(keep?.Condition?.['ForAnyValue:StringEquals']?.['aws:TagKeys']).toEqual(['remote-container-hooks:keep'])
    }
    // kind ec2: CreateTags outside a launch only for reap's mark, only on owned instances
    const ec2Tagging = ec2.Statement.filter((s) => s.Effect === 'Allow' && asList(s.Action).includes('ec2:CreateTags'))
    expect(ec2Tagging.map((s) => s.Sid)).toEqual(['TagOnlyAtLaunch', 'MarkReapCandidates'])
    expect(ec2Tagging[1].Condition?.Null?.['aws:ResourceTag/remote-container-hooks:owner']).toBe('false')
    expect(tagging[0].Condition?.StringEquals?.['aws:ResourceTag/aws:autoscaling:groupName']).toEqual(['rch-pool'])
    // ... and an explicit Deny of writing or deleting the host key
    const deny = pool.Statement.find(
      (s) => s.Effect === 'Deny' && asList(s.Action).includes('ec2:CreateTags') && asList(s.Action).includes('ec2:DeleteTags')
    )
    expect(deny?.Resource).toBe('*')
    expect(deny?.Condition?.['ForAnyValue:StringEquals']?.['aws:TagKeys']).toEqual(['remote-container-hooks:host-key'])
    // autoscaling calls only on the pool's group
    for (const s of pool.Statement.filter(
      (x) => x.Effect === 'Allow' && asList(x.Action).some((a) => a.startsWith('autoscaling:') && !readOnly(a))
    )) {
      expect(asList(s.Resource)).toEqual([ASG_ARN])
    }
    expect(memberPolicyProblems(member)).toEqual([])
  })

  test("the ledger module's table has the key and the index the hook's ledger uses (src/fleet/ledger-table.ts)", () => {
    expect(tfLedgerShape(TF)).toEqual(ledgerTableShape())
    // control: another index name is seen
    const broken = brokenCopy('ledger-index', [['modules/ledger/main.tf', 'name            = "open-index"', 'name            = "open"']])
    expect(tfLedgerShape(broken)).not.toEqual(ledgerTableShape())
  })

  test("the ledger statement covers every call of the DynamoDB ledger and doctor's, on the ledger's table only", async () => {
    const { ec2, pool } = await renderPolicies(TF)
    const needed = ledgerActions()
    expect(needed).toEqual(LEDGER_ACTIONS)
    for (const p of [ec2, pool]) {
      expect(ledgerProblems(p, needed)).toEqual([])
      expect(allowed(p).filter((a) => a.startsWith('dynamodb:'))).toEqual(needed)
    }
    // without a table (ledger kind local) no DynamoDB access at all
    const local = await renderOk(TF, 'modules/runner-iam', 'output.pool_policy_json', { ...RUNNER_IAM_TABLE, 'var.ledger_table_arns': [] })
    expect(allowed(policyShape(JSON.parse(local as string) as Json)).filter((a) => a.startsWith('dynamodb:'))).toEqual([])
    // controls: an action dropped from the statement, or the statement on every table, is refused
    const broken = brokenCopy('ledger-iam', [
      ['modules/runner-iam/main.tf', '"dynamodb:UpdateItem", ', ''],
      ['modules/runner-iam/main.tf', 'Resource = var.ledger_table_arns', 'Resource = "*"']
    ])
    const b = await renderPolicies(broken)
    expect(ledgerProblems(b.pool, needed)).toEqual([
      'dynamodb:UpdateItem is not allowed on the ledger table',
      'FleetLedger is not bound to the ledger table'
    ])
  })

  // Without scope_tags every deployment's runner hosts may end any instance with the hook's owner
  // tag; with them, each launch must carry the pairs and only instances carrying them may be ended.
  test("scope_tags bind the ec2 policy's launches, tags, reap marks and terminations to one deployment; the keep tag denies termination", async () => {
    const scoped = JSON.parse(
      (await renderOk(TF, 'modules/runner-iam', 'output.ec2_policy_json', {
        ...RUNNER_IAM_TABLE,
        'var.scope_tags': { 'rch-deployment': 'team-a' },
        'var.instance_types': ['t3.large'],
        'var.kms_key_arns': [`arn:aws:kms:eu-west-1:${ACCOUNT}:key/0123abcd-0000-0000-0000-000000000000`]
      })) as string
    ) as Policy
    const bySid = (p: Policy, sid: string) => p.Statement.find((x) => x.Sid === sid)!
    for (const [sid, key] of [
      ['LaunchOnlyOwnedInstances', 'aws:RequestTag/rch-deployment'],
      ['TagOnlyAtLaunch', 'aws:RequestTag/rch-deployment'],
      ['MarkReapCandidates', 'aws:ResourceTag/rch-deployment'],
      ['TerminateOnlyOwnedInstances', 'aws:ResourceTag/rch-deployment']
    ] as const)
      expect({ sid, value: bySid(scoped, sid).Condition?.StringEquals?.[key] }).toEqual({ sid, value: 'team-a' })
    expect(bySid(scoped, 'TagOnlyAtLaunch').Condition?.StringEquals?.['ec2:CreateAction']).toBe('RunInstances')
    expect(bySid(scoped, 'LaunchOnlyTheseTypes')).toMatchObject({
      Effect: 'Deny',
      Condition: { StringNotEquals: { 'ec2:InstanceType': ['t3.large'] } }
    })
    expect(bySid(scoped, 'UseVolumeKeysThroughEc2').Condition).toEqual({
      StringEquals: { 'kms:ViaService': 'ec2.eu-west-1.amazonaws.com' }
    })
    expect(bySid(scoped, 'GrantVolumeKeysToEc2')).toMatchObject({
      Action: 'kms:CreateGrant',
      Condition: { StringEquals: { 'kms:ViaService': 'ec2.eu-west-1.amazonaws.com' }, Bool: { 'kms:GrantIsForAWSResource': 'true' } }
    })
    // Control: without scope_tags no statement names a deployment tag, and no empty condition block is written (IAM refuses one).
    const plain = (await renderPolicies(TF)).ec2
    expect(JSON.stringify(plain)).not.toContain('rch-deployment')
    expect(bySid(plain, 'TerminateOnlyOwnedInstances').Condition).toEqual({
      Null: { 'aws:ResourceTag/remote-container-hooks:owner': 'false' }
    })
    expect(plain.Statement.map((x) => x.Sid)).not.toContain('LaunchOnlyTheseTypes')
    expect(plain.Statement.map((x) => x.Sid)).not.toContain('UseVolumeKeysThroughEc2')
    for (const p of [plain, scoped]) {
      expect(bySid(p, 'NeverEndAKeptInstance')).toMatchObject({
        Effect: 'Deny',
        Action: 'ec2:TerminateInstances',
        Condition: { Null: { 'aws:ResourceTag/remote-container-hooks:keep': 'false' } }
      })
      expect(bySid(p, 'LaunchOnlyWithImdsV2').Condition).toEqual({ StringNotEquals: { 'ec2:MetadataHttpTokens': 'required' } })
      for (const st of p.Statement)
        for (const block of Object.values(st.Condition ?? {})) expect(Object.keys(block).length).toBeGreaterThan(0)
    }
    // The module refuses the hook's own keys as scope (reap filters on the operator's tags outside them).
    expect(
      (
        await validate(path.join(TF, 'modules/runner-iam'), {
          ...RUNNER_IAM_TABLE,
          'var.scope_tags': { 'remote-container-hooks:owner': 'x' }
        })
      ).map((f) => f.check)
    ).toEqual(['var.scope_tags'])
    expect(
      (
        await validate(path.join(TF, 'modules/pool'), {
          ...POOL_MODULE_TABLE,
          'var.ingress_cidr_blocks': ['10.0.0.0/16'],
          'var.tags': { 'remote-container-hooks:keep': 'y' }
        })
      ).map((f) => f.check)
    ).toEqual(['var.tags'])
  })

  test('control: a statement without its tag condition, or with a wildcard resource, is refused', async () => {
    const broken = brokenCopy('iam', [
      ['modules/runner-iam/main.tf', /(Sid\s+= "TerminateOnlyOwnedInstances"[\s\S]*?)\n\s*Condition\s*=.*\n/, '$1\n'],
      ['modules/runner-iam/main.tf', 'Resource = var.autoscaling_group_arns', 'Resource = "*"'],
      ['modules/pool/main.tf', /\n\s*"aws:ResourceTag\/\$\{local\.host_key_tag\}" = "true"/, '']
    ])
    const { ec2, pool, member } = await renderPolicies(broken)
    expect(unboundMutations(ec2)).toEqual(['TerminateOnlyOwnedInstances'])
    expect(unboundMutations(pool)).toEqual(['ScaleOutRecycleAndResume'])
    // the member policy keeps a tag condition (aws:TagKeys), so only the exact check sees write-once gone
    expect(unboundMutations(member)).toEqual([])
    expect(memberPolicyProblems(member)).toEqual(['the member may write the host-key tag more than once'])
    // and a spot request launched without the owner tag is unbound (a spot launch tags its request)
    const spotOnly: Policy = {
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Action: 'ec2:RunInstances', Resource: 'arn:aws:ec2:eu-west-1:1:spot-instances-request/*' }]
    }
    expect(unboundMutations(spotOnly)).toEqual(['#0'])
  })
})

/** What the pool's launch template leaves untagged of instance, volume and network interface (the pool's name is the cost tag). */
async function poolTagProblems(root: string): Promise<string[]> {
  const text = fs.readFileSync(path.join(root, 'modules/pool/main.tf'), 'utf8')
  const lt = /\nresource "aws_launch_template" "member" \{\n([\s\S]*?)\n\}\n/.exec(text)?.[1] ?? ''
  const specs = [...lt.matchAll(/tag_specifications \{\s*resource_type = "([a-z-]+)"\s*tags\s*= merge\(local\.tags,/g)].map((m) => m[1])
  const out = ['instance', 'volume', 'network-interface'].filter((t) => !specs.includes(t)).map((t) => `${t} is not tagged at launch`)
  const tags = (await renderOk(root, 'modules/pool', 'local.tags', { ...POOL_MODULE_TABLE, 'var.tags': {} })) as Record<string, Json>
  if (tags['remote-container-hooks:pool'] !== 'rch-pool') out.push('local.tags lacks remote-container-hooks:pool = the pool name')
  return out
}

test("the pool's launch template tags instance, volume and network interface with the pool's name (cost tags)", async () => {
  expect(await poolTagProblems(TF)).toEqual([])
  const broken = brokenCopy('pool-tags', [
    ['modules/pool/main.tf', /\n {2}tag_specifications \{\n {4}resource_type = "network-interface"\n[\s\S]*?\n {2}\}\n/, '\n'],
    ['modules/pool/main.tf', '{ "remote-container-hooks:pool" = var.name }', '{}']
  ])
  expect(await poolTagProblems(broken)).toEqual([
    'network-interface is not tagged at launch',
    'local.tags lacks remote-container-hooks:pool = the pool name'
  ])
})

describe('pool members', () => {
  const tpl = (name: string): string => fs.readFileSync(path.join(TF, 'modules/pool/templates', name), 'utf8')

  /** templatefile() for the plain ${name} interpolations the templates use; anything else is refused. */
  function fill(text: string, vars: Record<string, string | number>): string {
    // $${ is a literal ${ (as in templatefile); any other ${ must be a plain variable given here
    const out = text.replace(/\$\$\{|\$\{([^}]*)\}/g, (m, name: string | undefined) => {
      if (m === '$${') return '${'
      if (name === undefined || !/^[a-z_]+$/.test(name) || !(name in vars))
        throw new Error(`template interpolation ${m} not supported or not given`)
      return String(vars[name])
    })
    if (/(^|[^%])%\{/.test(text)) throw new Error('template directives are not supported here')
    return out
  }

  test("sshd accepts the members' config and applies it: keys only, no root, Docker socket forwarding only", async () => {
    const dir = fs.mkdtempSync(path.join(scratch, 'sshd-'))
    await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'hostkey')])
    const conf = fill(tpl('sshd_config.tftpl'), { ssh_user: 'ec2-user', ssh_port: 22 }).replace(
      'HostKey /etc/ssh/ssh_host_ed25519_key',
      `HostKey ${dir}/hostkey`
    )
    fs.writeFileSync(path.join(dir, 'sshd_config'), conf)
    const effective = async (file: string): Promise<Record<string, string>> => {
      const { stdout } = await execFileP('/usr/sbin/sshd', ['-T', '-f', file, '-C', 'user=ec2-user,host=runner,addr=10.0.0.9'])
      return Object.fromEntries(stdout.split('\n').map((l) => [l.split(' ')[0], l.slice(l.indexOf(' ') + 1)]))
    }
    const t = await effective(path.join(dir, 'sshd_config'))
    expect({
      allowstreamlocalforwarding: t.allowstreamlocalforwarding,
      allowtcpforwarding: t.allowtcpforwarding,
      allowagentforwarding: t.allowagentforwarding,
      x11forwarding: t.x11forwarding,
      permittunnel: t.permittunnel,
      permitrootlogin: t.permitrootlogin,
      passwordauthentication: t.passwordauthentication,
      kbdinteractiveauthentication: t.kbdinteractiveauthentication,
      pubkeyauthentication: t.pubkeyauthentication,
      authenticationmethods: t.authenticationmethods,
      allowusers: t.allowusers,
      permituserenvironment: t.permituserenvironment,
      authorizedkeysfile: t.authorizedkeysfile,
      authorizedkeyscommand: t.authorizedkeyscommand,
      authorizedprincipalscommand: t.authorizedprincipalscommand,
      trustedusercakeys: t.trustedusercakeys
    }).toEqual({
      allowstreamlocalforwarding: 'local',
      allowtcpforwarding: 'no',
      allowagentforwarding: 'no',
      x11forwarding: 'no',
      permittunnel: 'no',
      permitrootlogin: 'no',
      passwordauthentication: 'no',
      kbdinteractiveauthentication: 'no',
      pubkeyauthentication: 'yes',
      authenticationmethods: 'publickey',
      allowusers: 'ec2-user',
      permituserenvironment: 'no',
      authorizedkeysfile: '.ssh/authorized_keys',
      authorizedkeyscommand: 'none',
      authorizedprincipalscommand: 'none',
      trustedusercakeys: 'none'
    })
    // An image's own settings after the include (a drop-in for SSSD's keys, a user CA) do not win.
    fs.writeFileSync(
      path.join(dir, 'with_image'),
      `${conf}\nAuthorizedKeysCommand /usr/bin/sss_ssh_authorizedkeys\nAuthorizedKeysCommandUser nobody\nTrustedUserCAKeys ${dir}/hostkey.pub\n`
    )
    const img = await effective(path.join(dir, 'with_image'))
    expect([img.authorizedkeyscommand, img.trustedusercakeys]).toEqual(['none', 'none'])
    // control: without the file's settings sshd's defaults allow TCP forwarding and all socket forwarding
    fs.writeFileSync(path.join(dir, 'plain_config'), `HostKey ${dir}/hostkey\n`)
    const d = await effective(path.join(dir, 'plain_config'))
    expect([d.allowtcpforwarding, d.allowstreamlocalforwarding]).toEqual(['yes', 'yes'])
  })

  test('user data: valid bash that installs the tools, and publishes the host key last, over IMDSv2, from a unit that runs until done', async () => {
    const setup = fill(tpl('member_setup.sh.tftpl'), {
      ssh_user: 'ec2-user',
      ssh_port: 22,
      work_root: '/srv/rch',
      client_public_key: POOL_PUBLIC_KEY,
      host_key_tag: 'remote-container-hooks:host-key',
      sshd_config: fill(tpl('sshd_config.tftpl'), { ssh_user: 'ec2-user', ssh_port: 22 }),
      ssm_agent: 'false'
    })
    const userData = fill(tpl('user_data.sh.tftpl'), { member_setup: setup })
    // EC2 takes at most 16 KiB of user data (before base64)
    expect(Buffer.byteLength(userData)).toBeLessThan(16384)
    for (const [name, text] of [
      ['member-setup', setup],
      ['user-data', userData]
    ]) {
      const file = path.join(scratch, name)
      fs.writeFileSync(file, text)
      await execFileP('bash', ['-n', file])
    }
    // the setup script reaches the member whole (the heredoc's end marker is not in it)
    expect(setup).not.toMatch(/^RCH_MEMBER_SETUP$/m)
    expect(userData).toContain(setup)
    expect(userData).toMatch(/ConditionPathExists=!\/var\/lib\/remote-container-hooks\/setup-done/)
    expect(userData).toContain('systemctl enable rch-member-setup.service')
    expect(setup).toMatch(/touch "\$STATE\/setup-done"\n\s*exit 0/)
    expect(publishOrderProblems(setup)).toEqual([])
    for (const pkg of ['docker', 'rsync', 'tar', 'util-linux']) expect(setup).toMatch(new RegExp(`dnf install -y [^\\n]*\\b${pkg}\\b`))
    for (const pkg of ['docker\\.io', 'rsync', 'tar', 'util-linux'])
      expect(setup).toMatch(new RegExp(`\\$apt install -y -q [^\\n]*\\b${pkg}\\b`))

    // a ~/path work root lands under the user's home, like the hook resolves it
    const caseBlock = /\ncase "\$WORK_ROOT" in\n[\s\S]*?\nesac\n/.exec(setup)?.[0]
    expect(caseBlock).toBeDefined()
    for (const [root, want] of [
      ['~/rch', '/home/ec2-user/rch'],
      ['/srv/rch', '/srv/rch']
    ]) {
      const { stdout } = await execFileP('bash', ['-c', `home=/home/ec2-user; WORK_ROOT='${root}'${caseBlock}printf %s "$WORK_ROOT"`])
      expect(stdout).toBe(want)
    }

    // A setup that hangs is powered off at its timeout (its trap does not see the signal).
    expect(userData).toMatch(/\nTimeoutStartSec=\d+\n(#[^\n]*\n)*FailureAction=poweroff\n/)
    // Only the pool key: EC2 Instance Connect removed, the SSM agent stopped (ssm_agent false),
    // dpkg's lock waited for; and an sshd unit that adds a key source fails the setup.
    expect(setup).toMatch(/dnf remove -y ec2-instance-connect/)
    expect(setup).toMatch(/purge -y -q ec2-instance-connect/)
    expect(setup).toMatch(/if \[ 'false' != true \]; then\n\s+for unit in amazon-ssm-agent /)
    expect(setup).toContain('apt="apt-get -o DPkg::Lock::Timeout=600"')
    // The lists lock (apt-daily's update at first boot) is waited for too: a failed update is tried again.
    const updateLoop = /\n {2}for try in \$\(seq 1 60\); do\n[\s\S]*?\n {2}done\n/.exec(setup)?.[0]
    expect(updateLoop).toBeDefined()
    const updates = async (failures: number): Promise<string> => {
      const file = path.join(scratch, 'apt-update.sh')
      fs.writeFileSync(
        file,
        [
          'set -euo pipefail',
          'fail() { echo "FAILED: $*"; exit 1; }',
          'sleep() { :; }',
          `n=0; apt() { n=$((n + 1)); [ "$n" -gt ${failures} ]; }`,
          'apt=apt',
          updateLoop,
          'echo "updated after $n"'
        ].join('\n')
      )
      return (await execFileP('bash', [file]).catch((e: { stdout: string }) => e)).stdout
    }
    expect(await updates(2)).toBe('updated after 3\n')
    expect(await updates(0)).toBe('updated after 1\n')
    expect(await updates(60)).toBe('FAILED: apt-get update kept failing\n')
    const keysCheck = /\nsystemctl daemon-reload\nif \{ systemctl cat sshd ssh[^\n]*\n[^\n]*\nfi\n/.exec(setup)?.[0]
    expect(keysCheck).toBeDefined()
    const runCheck = async (unitText: string, sshMissing: boolean): Promise<string> => {
      const stub = [
        'set -euo pipefail',
        'fail() { echo "FAILED: $*"; exit 1; }',
        `systemctl() { [ "$1" = cat ] || return 0; printf '%s\\n' ${JSON.stringify(unitText)}; ${sshMissing ? 'return 1' : 'return 0'}; }`,
        keysCheck,
        'echo passed'
      ].join('\n')
      const file = path.join(scratch, 'keys-check.sh')
      fs.writeFileSync(file, stub)
      return (await execFileP('bash', [file]).catch((e: { stdout: string }) => e)).stdout
    }
    const eic = '[Service]\nExecStart=\nExecStart=/usr/sbin/sshd -D -o "AuthorizedKeysCommand /opt/aws/bin/eic_run_authorized_keys %u %f"'
    expect(await runCheck(eic, false)).toMatch(/FAILED: an sshd unit sets AuthorizedKeysCommand/)
    // One of the two unit names missing (systemctl cat fails) still finds it.
    expect(await runCheck(eic, true)).toMatch(/FAILED: an sshd unit sets AuthorizedKeysCommand/)
    // Controls: the image's own unit alone passes, and so does one that names it in a comment only.
    expect(await runCheck('[Service]\nExecStart=/usr/sbin/sshd -D $OPTIONS', true)).toBe('passed\n')
    expect(
      await runCheck(
        '# /usr/lib/systemd/system/sshd.service\n  # no AuthorizedKeysCommand here\n[Service]\nExecStart=/usr/sbin/sshd -D',
        false
      )
    ).toBe('passed\n')

    // control: a script that tags before Docker is up, or reads the metadata without a token, is refused
    const early = setup.replace('systemctl enable --now docker', 'aws ec2 create-tags --resources x\nsystemctl enable --now docker')
    expect(publishOrderProblems(early)).toContain('the host key is published before: systemctl enable --now docker')
    expect(publishOrderProblems(setup.replace(/-H "X-aws-ec2-metadata-token: \$token" /, ''))).toContain(
      'instance metadata is read without an IMDSv2 token'
    )
  })

  test('the member publishes its host key on itself through IMDSv2 and the AWS CLI, as the hook reads it (moto)', async () => {
    const setup = fill(tpl('member_setup.sh.tftpl'), {
      ssh_user: 'ec2-user',
      ssh_port: 22,
      work_root: '/srv/rch',
      client_public_key: POOL_PUBLIC_KEY,
      host_key_tag: TAG_HOST_KEY,
      sshd_config: fill(tpl('sshd_config.tftpl'), { ssh_user: 'ec2-user', ssh_port: 22 }),
      ssm_agent: 'false'
    })
    const last = setup.slice(setup.indexOf('# ---- LAST:'))
    // the section runs under the script's own shell options, repeated in the prelude below
    expect(setup).toContain('\nset -euo pipefail\nshopt -s inherit_errexit\n')
    const ec2 = ec2Client()
    const run = await ec2.send(
      new RunInstancesCommand({
        ImageId: await motoImageId(ec2),
        InstanceType: 't3.micro',
        MinCount: 1,
        MaxCount: 1,
        TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'rch-test', Value: `terraform-${process.pid}` }] }]
      })
    )
    const instanceId = run.Instances?.[0]?.InstanceId as string
    const dir = fs.mkdtempSync(path.join(scratch, 'member-'))
    try {
      await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'root@member', '-f', path.join(dir, 'host')])
      await execFileP('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', path.join(dir, 'rsa')])
      const publish = async (imdsUrl: string, pub: string): Promise<{ code: number; out: string }> => {
        const section = last
          .replace('\nIMDS=http://169.254.169.254\n', `\nIMDS=${imdsUrl}\n`)
          .replace('\nHOST_KEY_PUB=/etc/ssh/ssh_host_ed25519_key.pub\n', `\nHOST_KEY_PUB=${pub}\n`)
        expect(section).not.toContain('169.254.169.254')
        expect(section).toContain(`HOST_KEY_PUB=${pub}`)
        // the member's own prelude, with stand-ins for the parts that must not run here
        const script = [
          'set -euo pipefail',
          'shopt -s inherit_errexit',
          'fail() { echo "setup failed: $*"; exit 1; }',
          'shutdown() { echo "shutdown refused in the test"; exit 99; }',
          `STATE=${dir}/state; mkdir -p "$STATE"`,
          `TAG_KEY='${TAG_HOST_KEY}'`,
          section
        ].join('\n')
        fs.writeFileSync(path.join(dir, 'publish.sh'), script)
        const env = {
          PATH: `${path.dirname(tools.AWS_CLI)}:/usr/bin:/bin`,
          HOME: dir,
          AWS_ENDPOINT_URL: loadMoto().endpoint,
          AWS_ACCESS_KEY_ID: 'testing',
          AWS_SECRET_ACCESS_KEY: 'testing',
          AWS_CONFIG_FILE: '/dev/null',
          AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
          AWS_EC2_METADATA_DISABLED: 'true'
        }
        try {
          const { stdout, stderr } = await execFileP('bash', [path.join(dir, 'publish.sh')], { env, timeout: 60_000 })
          return { code: 0, out: stdout + stderr }
        } catch (e) {
          const err = e as { code?: number; stdout?: string; stderr?: string }
          return { code: err.code ?? -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` }
        }
      }
      const tagOf = async (): Promise<string | undefined> => {
        const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
        return out.Reservations?.[0]?.Instances?.[0]?.Tags?.find((t) => t.Key === TAG_HOST_KEY)?.Value
      }
      const values = { 'instance-id': instanceId, 'placement/region': TEST_REGION }

      // controls first: a metadata service without tokens (IMDSv1), or an RSA host key, publish nothing
      const v1 = await fakeImds(values, false)
      try {
        const r = await publish(v1.url, path.join(dir, 'host.pub'))
        expect(r.code).not.toBe(0)
        expect(v1.seen).toEqual(['PUT /latest/api/token'])
      } finally {
        await v1.close()
      }
      const imds = await fakeImds(values, true)
      try {
        const rsa = await publish(imds.url, path.join(dir, 'rsa.pub'))
        expect([rsa.code, rsa.out.trim()]).toEqual([1, 'setup failed: unexpected host key format'])
        expect(await tagOf()).toBeUndefined()
        expect(fs.existsSync(path.join(dir, 'state/setup-done'))).toBe(false)

        const ok = await publish(imds.url, path.join(dir, 'host.pub'))
        expect(ok.code).toBe(0)
        expect(ok.out).toMatch(/published the host key \(1\)/)
        expect(fs.existsSync(path.join(dir, 'state/setup-done'))).toBe(true)
        // every metadata read carried the session token
        expect(imds.seen.filter((l) => l.startsWith('GET') && !l.endsWith('+token'))).toEqual([])
        expect(imds.seen).toContain('GET /latest/meta-data/instance-id +token')
      } finally {
        await imds.close()
      }
      const pub = fs.readFileSync(path.join(dir, 'host.pub'), 'utf8').trim().split(' ')
      expect(await tagOf()).toBe(`${pub[0]} ${pub[1]}`)
      // and the hook's own reader of the pool's members takes it as the member's pinned key
      const described = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
      for (const inst of described.Reservations?.[0]?.Instances ?? [])
        inst.Tags = [...(inst.Tags ?? []), { Key: TAG_GROUP, Value: 'rch-pool' }]
      const [member] = membersOf(described, {
        autoScalingGroup: 'rch-pool',
        user: 'ec2-user',
        sshPort: 22,
        connect: { address: 'private-ip' }
      })
      expect(member.hostKey).toBe(`${pub[0]} ${pub[1]}`)
    } finally {
      await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }))
      ec2.destroy()
    }
  })
})

/** A loopback stand-in for the instance metadata service that answers IMDSv2 (token) requests only. */
async function fakeImds(values: Record<string, string>, v2: boolean): Promise<{ url: string; seen: string[]; close(): Promise<void> }> {
  const token = randomBytes(16).toString('hex')
  const seen: string[] = []
  const server = http.createServer((req, res) => {
    const withToken = req.headers['x-aws-ec2-metadata-token'] === token
    seen.push(`${req.method} ${req.url}${withToken ? ' +token' : ''}`)
    if (v2 && req.method === 'PUT' && req.url === '/latest/api/token' && req.headers['x-aws-ec2-metadata-token-ttl-seconds']) {
      res.end(token)
    } else if (
      req.method === 'GET' &&
      (withToken || !v2) &&
      req.url &&
      req.url.startsWith('/latest/meta-data/') &&
      values[req.url.slice(18)]
    ) {
      res.end(values[req.url.slice(18)])
    } else {
      res.statusCode = v2 ? 401 : 404
      res.end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, seen, close: () => new Promise((resolve) => server.close(() => resolve())) }
}

/** What is wrong with the order of the member's boot script: the host key must be its last act. */
function publishOrderProblems(script: string): string[] {
  const lines = script.split('\n')
  const tagAt = lines.findIndex((l) => l.includes('aws ec2 create-tags'))
  if (tagAt < 0) return ['the host key is never published']
  const problems: string[] = []
  const mustPrecede = [
    'systemctl enable --now docker',
    'usermod -aG docker "$SSH_USER"',
    '"$home/.ssh/authorized_keys"',
    'install -d -o "$SSH_USER" -g "$SSH_USER" -m 0700 "$WORK_ROOT"',
    '/etc/ssh/sshd_config.d/00-remote-container-hooks.conf',
    'systemctl restart sshd',
    'docker info >/dev/null || fail'
  ]
  for (const step of mustPrecede) {
    const at = lines.findIndex((l) => l.includes(step))
    if (at < 0 || at > tagAt) problems.push(`the host key is published before: ${step}`)
  }
  for (const l of lines.filter((x) => x.includes('/latest/meta-data'))) {
    if (!l.includes('X-aws-ec2-metadata-token: $token')) problems.push('instance metadata is read without an IMDSv2 token')
  }
  if (!lines.includes('IMDS=http://169.254.169.254')) problems.push('the metadata service is not the instance’s own')
  if (!lines.some((l) => l.includes('/latest/api/token') && l.includes('-X PUT'))) problems.push('no IMDSv2 token is requested')
  return problems
}

// ------------------------------------------------------------------ Terraform itself, where the machine has it

/**
 * A directory of unpacked providers for `terraform init -plugin-dir` (nothing is downloaded): the
 * filesystem mirror the CLI configuration names, else Terraform's implied local mirrors, else
 * where this project's test machines keep one.
 */
function providerMirror(): string | null {
  const cli = process.env.TF_CLI_CONFIG_FILE ?? path.join(os.homedir(), '.terraformrc')
  const named = fs.existsSync(cli)
    ? [...fs.readFileSync(cli, 'utf8').matchAll(/filesystem_mirror\s*\{[^}]*path\s*=\s*"([^"]+)"/g)].map((m) => m[1])
    : []
  const implied = [path.join(os.homedir(), '.terraform.d', 'plugins'), '/usr/local/share/terraform/plugins', '/usr/share/terraform/plugins']
  return (
    [...named, ...implied, '/opt/tf-plugins'].find((d) => fs.existsSync(path.join(d, 'registry.terraform.io', 'hashicorp', 'aws'))) ?? null
  )
}

const terraformBin = ((): string | null => {
  for (const d of (process.env.PATH ?? '').split(':')) if (d && fs.existsSync(path.join(d, 'terraform'))) return path.join(d, 'terraform')
  return null
})()
const mirror = providerMirror()
// No call home (checkpoint) and no registry: everything comes from the mirror.
const TF_ENV = { ...process.env, CHECKPOINT_DISABLE: '1', TF_IN_AUTOMATION: '1', TF_INPUT: '0' }
const tf = (cwd: string, args: string[]) => execFileP(terraformBin!, args, { cwd, env: TF_ENV, maxBuffer: 64 << 20 })
const MODULE_DIRS = [
  'modules/ephemeral',
  'modules/ledger',
  'modules/pool',
  'modules/runner-iam',
  'examples/ephemeral',
  'examples/pool',
  'examples/static-hosts'
]

// Skipped (and counted so) where the machine has no Terraform or no provider mirror: the offline
// checks above still run.
;(terraformBin && mirror ? describe : describe.skip)(
  'with Terraform itself (validate, fmt, and terraform test with a mock provider)',
  () => {
    let work: string
    beforeAll(() => {
      work = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-tf-cli-'))
      fs.cpSync(TF, path.join(work, 'terraform'), { recursive: true })
    })
    afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
    const init = (dir: string) => tf(dir, ['init', '-backend=false', '-input=false', `-plugin-dir=${mirror}`])

    test('terraform fmt -check: every file is in canonical form', async () => {
      await expect(tf(TF, ['fmt', '-check', '-recursive'])).resolves.toBeDefined()
    })

    test.each(MODULE_DIRS)('terraform validate: %s', async (dir) => {
      const d = path.join(work, 'terraform', dir)
      await init(d)
      const { stdout } = await tf(d, ['validate', '-json']).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }))
      const r = JSON.parse(stdout) as { valid: boolean; diagnostics: { summary: string }[] }
      expect({ valid: r.valid, problems: r.diagnostics.map((x) => x.summary) }).toEqual({ valid: true, problems: [] })
    })

    test('control: a reference to an undeclared local fails terraform validate', async () => {
      const d = path.join(work, 'broken-runner-iam')
      fs.cpSync(path.join(TF, 'modules/runner-iam'), d, { recursive: true })
      const main = path.join(d, 'main.tf')
      fs.writeFileSync(main, fs.readFileSync(main, 'utf8').replace('local.never_keep,\n        {', 'local.never_keeps,\n        {'))
      await init(d)
      const { stdout } = await tf(d, ['validate', '-json']).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }))
      expect((JSON.parse(stdout) as { valid: boolean }).valid).toBe(false)
    })

    // The offline renderer stands in for Terraform in every check above: here Terraform renders the
    // same inputs, and the policies must be equal, with scope and options both on and off.
    test.each([
      ['defaults', {}, false],
      ['control: a statement renamed in what the offline renderer gave', {}, true],
      [
        'scope_tags, instance types, volume keys, no IMDS rule',
        {
          'var.scope_tags': { 'rch-deployment': 'team-a' },
          'var.instance_types': ['t3.large', 'm7i.large'],
          'var.kms_key_arns': [`arn:aws:kms:eu-west-1:${ACCOUNT}:key/0123abcd-0000-0000-0000-000000000000`],
          'var.require_imdsv2': false,
          'var.allow_spot': false,
          'var.instance_role_arns': []
        },
        false
      ]
    ] as [string, Record<string, Json>, boolean][])(
      'runner-iam policies (%s): terraform test renders what the offline renderer renders',
      async (_name, extra, tamper) => {
        const table = { ...RUNNER_IAM_TABLE, ...extra }
        const outputs = ['ec2_policy_json', 'pool_policy_json', 'ledger_policy_json']
        const expected = await Promise.all(outputs.map((o) => renderOk(TF, 'modules/runner-iam', `output.${o}`, table)))
        if (tamper) expected[0] = (expected[0] as string).replace('"NeverEndAKeptInstance"', '"NeverEndAnInstance"')
        const d = path.join(work, `render-${Object.keys(extra).length}-${tamper}`)
        fs.cpSync(path.join(TF, 'modules/runner-iam'), d, { recursive: true })
        const vars = Object.entries(table)
          .filter(([k]) => k.startsWith('var.'))
          .map(([k, v]) => `  ${k.slice(4)} = ${JSON.stringify(v)}`)
        // Heredocs hold the JSON; Terraform would read ${ and %{ in them as templates.
        const literal = (v: Json) => (v as string).replace(/\$\{/g, '$${').replace(/%\{/g, '%%{')
        const asserts = outputs.map(
          (o, i) =>
            `  assert {\n    condition     = jsondecode(output.${o}) == jsondecode(<<-EOT\n${literal(expected[i])}\nEOT\n    )\n    error_message = "${o} differs from the offline renderer's"\n  }`
        )
        fs.mkdirSync(path.join(d, 'tests'))
        fs.writeFileSync(
          path.join(d, 'tests', 'render.tftest.hcl'),
          [
            'mock_provider "aws" {',
            `  mock_data "aws_partition" {\n    defaults = { partition = "aws" }\n  }`,
            `  mock_data "aws_caller_identity" {\n    defaults = { account_id = "${ACCOUNT}" }\n  }`,
            '}',
            'variables {',
            ...vars,
            '  create_ec2_policy  = true',
            '  create_pool_policy = true',
            '}',
            'run "render" {',
            '  command = plan',
            ...asserts,
            '}',
            ''
          ].join('\n')
        )
        await init(d)
        const r = await tf(d, ['test', '-no-color']).then(
          (x) => ({ ok: true, out: x.stdout }),
          (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` })
        )
        expect(r).toMatchObject({ ok: !tamper })
        expect(r.out).toMatch(tamper ? /ec2_policy_json differs from the offline renderer's/ : /1 passed, 0 failed/)
      }
    )
  }
)
