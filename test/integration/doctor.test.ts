// `doctor` through dist/index.js against real loopback VMs, one thing broken at a time: each
// breakage fails exactly its own check (with its fix line) and the healthy VM passes every check.
// The odd VMs are extra sshds on free loopback ports, made from the test VM's own sshd_config and
// keys (same user, same work root), started here and stopped by PID at the end.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  existsSync,
  writeFileSync
} from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { testVm } from '../helpers/conformance'
import { waitUntil } from '../helpers/wait'
import { repoRoot } from '../helpers/testenv'
import { createPool, type Pool, poolHookConfig } from '../helpers/pool-env'
import { CreateTableCommand, DeleteTableCommand, DynamoDBClient, PutItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb'
import { FleetSchema, type FleetConfig } from '../../src/config'
import { newLocalLedger } from '../../src/fleet/local-ledger'
import { ledgerChecks } from '../../src/ops/doctor-ledger'
import { logFileCheck } from '../../src/ops/doctor'
import { DUMMY_CREDENTIALS, loadMoto, TEST_REGION } from '../helpers/ec2-env'
import { createLedgerTable, createOlderLedgerTable } from '../helpers/ledger-table'

const vm = testVm()
const dir = mkdtempSync(join(tmpdir(), 'rch-doctor-'))
const hook = join(repoRoot, 'dist', 'index.js')
const sshds: ChildProcess[] = []
// A PATH for the SSH user that has everything of the system's but rsync (readable by that user).
const noRsyncBin = `/var/tmp/rch-doctor-bin-${process.pid}`

interface Check {
  check: string
  target: string
  status: 'pass' | 'fail' | 'skip'
  detail: string
  fix?: string
}

afterAll(() => {
  for (const p of sshds) if (p.exitCode === null && p.pid) process.kill(p.pid, 'SIGTERM')
  rmSync(dir, { recursive: true, force: true })
  rmSync(noRsyncBin, { recursive: true, force: true })
})

function loopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0))
    })
  })
}

/** An sshd like the test VM's, on its own port, with `extra` lines appended; a known_hosts file pinning its (the VM's) key. */
async function oddVm(name: string, extra: string[]): Promise<{ port: number; knownHostsFile: string }> {
  const port = await loopbackPort()
  const base = readFileSync(join(dirname(vm.knownHostsFile), 'sshd_config'), 'utf8')
  const conf = join(dir, `sshd_config-${name}`)
  const lines = base
    .split('\n')
    .filter((l) => !/^(Port|PidFile|AllowStreamLocalForwarding|ForceCommand|SetEnv)\b/.test(l))
    .concat([`Port ${port}`, `PidFile ${dir}/sshd-${name}.pid`, ...extra])
  writeFileSync(conf, lines.join('\n') + '\n', { mode: 0o600 })
  const p = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  sshds.push(p)
  let log = ''
  p.stderr.on('data', (c: Buffer) => (log += c.toString()))
  // sshd -D -e says so once it listens; an early exit ends the wait too.
  const up = await waitUntil(() => log.includes('Server listening') || p.exitCode !== null, 10_000, 20)
  if (!up || p.exitCode !== null) throw new Error(`sshd ${name} not listening: ${log}`)
  const key = readFileSync(vm.knownHostsFile, 'utf8').trim().split(/\s+/).slice(1, 3).join(' ')
  const knownHostsFile = join(dir, `known_hosts-${name}`)
  writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${key}\n`)
  return { port, knownHostsFile }
}

function configFile(name: string, host: Record<string, unknown> = {}, remote: Record<string, unknown> = {}): string {
  const f = join(dir, `${name}.json`)
  const h = { host: vm.host, port: vm.port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile, ...host }
  writeFileSync(f, JSON.stringify({ provider: { kind: 'static', hosts: [h] }, remote: { workRoot: vm.workRoot, ...remote } }))
  return f
}

function doctor(file: string, json = true): { code: number | null; out: string; checks: Check[] } {
  const r = spawnSync(process.execPath, [hook, 'doctor', file, ...(json ? ['--json'] : [])], { encoding: 'utf8', timeout: 60_000 })
  const checks = json ? (JSON.parse(r.stdout) as { checks: Check[] }).checks : []
  return { code: r.status, out: r.stdout, checks }
}

const on = (checks: Check[]): Check[] => checks.filter((c) => c.target !== 'runner host' && c.check !== 'configuration')
const failed = (checks: Check[]): string[] => checks.filter((c) => c.status === 'fail').map((c) => c.check)
const byName = (checks: Check[], name: string): Check => checks.find((c) => c.check === name)!
const doctorFiles = (): string[] => (existsSync(vm.workRoot) ? readdirSync(vm.workRoot).filter((n) => n.startsWith('.rch-doctor-')) : [])

const MACHINE_CHECKS = ['ssh', 'rsync', 'tar', 'find', 'docker cli', 'clock', 'forwarding', 'docker api', 'work root']

describe('doctor against loopback VMs', () => {
  it('a healthy VM passes every check (exit 0), and the table shows each', () => {
    const r = doctor(configFile('healthy'))
    expect(r.code).toBe(0)
    expect(on(r.checks).map((c) => [c.check, c.status])).toEqual(MACHINE_CHECKS.map((c) => [c, 'pass']))
    expect(byName(r.checks, 'docker api').detail).toMatch(/API 1\.\d+ through the forwarded socket; the docker CLI reaches it too$/)
    expect(byName(r.checks, 'work root').detail).toContain('written and removed')
    expect(doctorFiles()).toEqual([])
    const t = doctor(configFile('healthy'), false)
    expect(t.code).toBe(0)
    expect(t.out).toMatch(/^STATUS\s+CHECK\s+TARGET\s+DETAIL$/m)
    expect(t.out).toMatch(/^PASS\s+docker api\s+rchvm@127\.0\.0\.1:\d+/m)
    // configuration, local ssh, rsync and its fixes, the log file and the fleet ledger
    expect(t.out).toContain(`${MACHINE_CHECKS.length + 6} passed, 0 failed, 0 skipped`)
    expect(t.out).toMatch(/^PASS\s+local rsync fixes\s+runner host\s+\d+\.\d+\.\d+/m)
  })

  it('wrong host key: only ssh fails, with its fix; the rest of that machine is skipped', () => {
    const other = join(dir, 'other-key')
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])
    const known = join(dir, 'known_hosts-wrong')
    writeFileSync(known, `[${vm.host}]:${vm.port} ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`)
    const r = doctor(configFile('wrong-key', { knownHostsFile: known }))
    expect(r.code).toBe(1)
    expect(failed(r.checks)).toEqual(['ssh'])
    const ssh = byName(r.checks, 'ssh')
    expect(ssh.detail).toMatch(/host key verification failed/)
    expect(ssh.fix).toMatch(/not the one pinned .* in .*known_hosts-wrong/)
    expect(
      on(r.checks)
        .filter((c) => c.check !== 'ssh')
        .every((c) => c.status === 'skip')
    ).toBe(true)
    const t = doctor(configFile('wrong-key', { knownHostsFile: known }), false)
    expect(t.code).toBe(1)
    expect(t.out).toMatch(/^FAIL\s+ssh\s+.*\n\s+fix: the machine's host key is not the one pinned/m)
  })

  it('docker down (DOCKER_HOST and the forwarded socket at a dead path): only docker api fails', () => {
    const dead = `/run/rch-doctor-dead-${process.pid}/docker.sock`
    const r = doctor(configFile('docker-down', {}, { dockerSocket: dead }))
    expect(r.code).toBe(1)
    expect(failed(r.checks)).toEqual(['docker api'])
    expect(byName(r.checks, 'docker api').detail).toContain(`no Docker Engine answers on ${dead}`)
    expect(byName(r.checks, 'docker api').fix).toMatch(/start Docker on the machine, or set remote.dockerSocket/)
    // sshd cannot tell a refused forward from a missing socket: forwarding is not blamed.
    expect(byName(r.checks, 'forwarding').status).toBe('skip')
  })

  it("docker down for the CLI only (sshd's SetEnv DOCKER_HOST names a dead socket): only docker api fails", async () => {
    const odd = await oddVm('clidown', [`SetEnv DOCKER_HOST=unix:///run/rch-doctor-dead-${process.pid}/docker.sock`])
    const r = doctor(configFile('clidown', { port: odd.port, knownHostsFile: odd.knownHostsFile }))
    expect(r.code).toBe(1)
    expect(failed(r.checks)).toEqual(['docker api'])
    expect(byName(r.checks, 'docker api').detail).toMatch(
      /through the forwarded socket, but the docker CLI in an SSH session reaches no daemon/
    )
    expect(byName(r.checks, 'docker api').fix).toMatch(/sends the docker CLI elsewhere \(DOCKER_HOST/)
    expect(byName(r.checks, 'forwarding').status).toBe('pass')
  })

  it('forwarding disabled (AllowStreamLocalForwarding no): only forwarding fails', async () => {
    const odd = await oddVm('noforward', ['AllowStreamLocalForwarding no'])
    const r = doctor(configFile('noforward', { port: odd.port, knownHostsFile: odd.knownHostsFile }))
    expect(r.code).toBe(1)
    expect(failed(r.checks)).toEqual(['forwarding'])
    expect(byName(r.checks, 'forwarding').fix).toMatch(/AllowStreamLocalForwarding yes/)
    // Docker itself answers (through the CLI): the failure is the forwarding's alone.
    expect(byName(r.checks, 'docker api').detail).toMatch(/through the docker CLI \(the forwarded socket is refused/)
    // Positive control: the same sshd with forwarding allowed passes it.
    const ok = await oddVm('forward', [])
    const c = doctor(configFile('forward', { port: ok.port, knownHostsFile: ok.knownHostsFile }))
    expect(c.code).toBe(0)
    expect(byName(c.checks, 'forwarding').status).toBe('pass')
  })

  it("no rsync on the VM (the SSH user's PATH lacks it): only rsync fails", async () => {
    mkdirSync(noRsyncBin)
    for (const d of ['/usr/local/bin', '/usr/bin', '/usr/sbin'])
      for (const n of readdirSync(d))
        if (n !== 'rsync' && !existsSync(join(noRsyncBin, n))) symlinkSync(join(d, n), join(noRsyncBin, basename(n)))
    chmodSync(noRsyncBin, 0o755)
    const odd = await oddVm('norsync', [`SetEnv PATH=${noRsyncBin}`])
    const r = doctor(configFile('norsync', { port: odd.port, knownHostsFile: odd.knownHostsFile }))
    expect(r.code).toBe(1)
    expect(failed(r.checks)).toEqual(['rsync'])
    expect(byName(r.checks, 'rsync').fix).toMatch(/install rsync on the machine/)
    // Positive control: rsync is installed on this machine, and the other tools came from the odd PATH.
    expect(existsSync('/usr/bin/rsync')).toBe(true)
    expect(byName(r.checks, 'tar').detail).toBe(`${noRsyncBin}/tar`)
    expect(doctorFiles()).toEqual([])
  })
})

describe("doctor: the runner host's tools", () => {
  it("run as the runner, a tools.rsync the job can write (inside the runner's work folder) fails and is never started; outside it, it runs (control)", () => {
    const work = join(dir, 'runner', '_work')
    mkdirSync(join(work, '_temp'), { recursive: true })
    const marker = join(dir, 'rsync-ran')
    const script = (at: string): string => {
      mkdirSync(dirname(at), { recursive: true })
      writeFileSync(at, `#!/bin/sh\necho ran >> ${marker}\nexec rsync "$@"\n`, { mode: 0o755 })
      return at
    }
    const inside = script(join(work, 'repo', 'bin', 'rsync'))
    const f = join(dir, 'tools-inside.json')
    const h = { host: vm.host, port: vm.port, user: vm.user, identityFile: vm.identityFile, knownHostsFile: vm.knownHostsFile }
    writeFileSync(
      f,
      JSON.stringify({ provider: { kind: 'static', hosts: [h] }, remote: { workRoot: vm.workRoot }, tools: { rsync: inside } })
    )
    const run = (file: string) => {
      const r = spawnSync(process.execPath, [hook, 'doctor', file, '--json'], {
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, RUNNER_TEMP: join(work, '_temp') }
      })
      return (JSON.parse(r.stdout) as { checks: Check[] }).checks
    }
    const refused = run(f)
    expect(byName(refused, 'local tools')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining(`tools.rsync: ${inside} is inside the runner's work folder`)
    })
    expect(existsSync(marker)).toBe(false)
    const outside = script(join(dir, 'tools', 'rsync'))
    const g = join(dir, 'tools-outside.json')
    writeFileSync(
      g,
      JSON.stringify({ provider: { kind: 'static', hosts: [h] }, remote: { workRoot: vm.workRoot }, tools: { rsync: outside } })
    )
    const ran = run(g)
    expect(ran.find((c) => c.check === 'local tools')).toBeUndefined()
    expect(byName(ran, 'local rsync')).toMatchObject({ status: 'pass', detail: outside })
    expect(existsSync(marker)).toBe(true)
  })
})

describe('doctor against a pool (moto Auto Scaling group, members on loopback)', () => {
  let pool: Pool | undefined
  afterAll(async () => {
    await pool?.close()
  })

  it('checks every ready member with the key from its tag; a member serving another key fails ssh only; nothing is scaled', async () => {
    const key = join(dir, 'pool_ed25519')
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
    pool = await createPool({
      name: `doctor-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 6)}`,
      size: 2,
      clientPublicKey: readFileSync(`${key}.pub`, 'utf8'),
      extraTags: (m) => ({ 'rch-user': m.user }),
      behaviour: ({ ordinal }) => (ordinal === 1 ? { wrongHostKey: true } : {})
    })
    const members = await pool.waitReady(2)
    const before = await pool.describe()
    const f = join(dir, 'pool.json')
    writeFileSync(f, JSON.stringify(poolHookConfig(pool, key)))
    const r = spawnSync(process.execPath, [hook, 'doctor', f, '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' }
    })
    expect(r.status).toBe(1)
    const checks = (JSON.parse(r.stdout) as { checks: Check[] }).checks
    const aws = checks.filter((c) => c.target === 'AWS eu-west-1')
    expect(aws.map((c) => [c.check, c.status])).toEqual([
      ['aws credentials', 'pass'],
      ['clock', 'pass'],
      ['auto scaling group', 'pass'],
      ['scale-in protection', 'pass'],
      ['members', 'pass']
    ])
    const [good, odd] = members
    const of = (id: string): Check[] => checks.filter((c) => c.target.startsWith(`${id} `))
    expect(of(good.id).map((c) => [c.check, c.status])).toEqual(MACHINE_CHECKS.map((c) => [c, 'pass']))
    expect(of(good.id)[0].target).toBe(`${good.id} ${good.user}@127.0.0.1:${good.port}`)
    expect(failed(of(odd.id))).toEqual(['ssh'])
    expect(of(odd.id)[0].fix).toMatch(/host key is not the one pinned/)
    expect(failed(checks)).toEqual(['ssh'])
    // Read-only: the group is as it was, and no member was added or taken.
    expect(await pool.describe()).toEqual(before)
    expect(pool.members().map((m) => m.id)).toEqual(members.map((m) => m.id))
  })
})

describe('doctor: the fleet ledger', () => {
  const motoEndpoint = loadMoto().endpoint
  const ddb = new DynamoDBClient({ region: TEST_REGION, endpoint: motoEndpoint, credentials: DUMMY_CREDENTIALS })
  const tables: string[] = []
  const table = async (keys: { name: string; type: 'S' | 'N'; key: 'HASH' | 'RANGE' }[]): Promise<string> => {
    const name = `rch-doctor-${process.pid}-${tables.length}`
    await ddb.send(
      new CreateTableCommand({
        TableName: name,
        AttributeDefinitions: keys.map((k) => ({ AttributeName: k.name, AttributeType: k.type })),
        KeySchema: keys.map((k) => ({ AttributeName: k.name, KeyType: k.key })),
        BillingMode: 'PAY_PER_REQUEST'
      })
    )
    tables.push(name)
    return name
  }
  afterAll(async () => {
    for (const t of tables) await ddb.send(new DeleteTableCommand({ TableName: t })).catch(() => undefined)
    ddb.destroy()
  })
  const fleet = (ledger: object): FleetConfig => FleetSchema.parse({ ledger })
  const dynamo = (t: string): FleetConfig => fleet({ kind: 'dynamodb', table: t, region: TEST_REGION, endpoint: motoEndpoint })
  const env = { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' }
  const withEnv = async <T>(fn: () => Promise<T>): Promise<T> => {
    const old = { ...process.env }
    Object.assign(process.env, env)
    try {
      return await fn()
    } finally {
      for (const k of Object.keys(env)) if (old[k] === undefined) delete process.env[k]
    }
  }

  it('dynamodb: a table with key pk (string) passes and reads; an absent table or another key fails with its fix; nothing is written', async () => {
    const good = await createLedgerTable(ddb, `rch-doctor-${process.pid}-good`)
    tables.push(good)
    await ddb.send(new PutItemCommand({ TableName: good, Item: { pk: { S: 'counter#instances' }, n: { N: '3' } } }))
    const [ok] = await withEnv(() => ledgerChecks(dynamo(good)))
    expect(ok).toEqual({
      check: 'fleet ledger',
      target: `DynamoDB ${good} (${TEST_REGION})`,
      status: 'pass',
      detail:
        'table ACTIVE, key pk (string), index open-index, time-index not in use yet: report reads the whole table until `remote-hooks index-ledger` has run once; 3 instances reserved now'
    })
    // A table as an earlier version of the ledger module made it: the open-reservations index only.
    const older = await createOlderLedgerTable(ddb, `rch-doctor-${process.pid}-older`)
    tables.push(older)
    const [old] = await withEnv(() => ledgerChecks(dynamo(older)))
    expect(old).toMatchObject({
      status: 'pass',
      detail:
        'table ACTIVE, key pk (string), index open-index; no index time-index: report reads the whole table (terraform/modules/ledger adds it; then run `remote-hooks index-ledger` once); 0 instances reserved now'
    })

    const [absent] = await withEnv(() => ledgerChecks(dynamo(`rch-doctor-none-${process.pid}`)))
    expect(absent).toMatchObject({ status: 'fail', detail: `no table rch-doctor-none-${process.pid} in ${TEST_REGION}` })
    expect(absent.fix).toMatch(/terraform\/modules\/ledger/)

    const numeric = await table([{ name: 'pk', type: 'N', key: 'HASH' }])
    const sorted = await table([
      { name: 'pk', type: 'S', key: 'HASH' },
      { name: 'sk', type: 'S', key: 'RANGE' }
    ])
    const [n] = await withEnv(() => ledgerChecks(dynamo(numeric)))
    expect(n).toMatchObject({
      status: 'fail',
      detail: expect.stringMatching(/^key schema pk\/HASH \(pk N\): the ledger needs a string partition key pk/)
    })
    const [s] = await withEnv(() => ledgerChecks(dynamo(sorted)))
    expect(s).toMatchObject({ status: 'fail', detail: expect.stringMatching(/^key schema pk\/HASH, sk\/RANGE \(pk S\)/) })
    // The key alone is not enough: without the open-reservations index the ledger cannot list them.
    const noIndex = await table([{ name: 'pk', type: 'S', key: 'HASH' }])
    const [i] = await withEnv(() => ledgerChecks(dynamo(noIndex)))
    expect(i).toMatchObject({ status: 'fail', detail: 'no index open-index: the ledger lists open reservations from it' })
    expect(i.fix).toMatch(/global secondary index open-index/)
    // Read-only: the good table holds only the item put above.
    expect((await ddb.send(new ScanCommand({ TableName: good }))).Items).toEqual([{ pk: { S: 'counter#instances' }, n: { N: '3' } }])
    // Once index-ledger has marked it: in use.
    await ddb.send(new PutItemCommand({ TableName: good, Item: { pk: { S: 'meta#time-index' }, since: { N: '0' }, first: { N: '0' } } }))
    const [marked] = await withEnv(() => ledgerChecks(dynamo(good)))
    expect(marked.detail).toBe('table ACTIVE, key pk (string), index open-index, time-index in use; 3 instances reserved now')
  })

  it('local: a private folder passes with its open reservations, one open to others or absent under a read-only folder fails', async () => {
    const root = mkdtempSync(join(dir, 'ledger-'))
    // not made yet: passes, and is still not made
    const [fresh] = await ledgerChecks(fleet({ kind: 'local' }), root)
    expect(fresh).toMatchObject({
      status: 'pass',
      target: 'runner host',
      detail: `local ${root}/ledger: not created yet: the first launch creates it (${root} is writable)`
    })
    expect(existsSync(join(root, 'ledger'))).toBe(false)

    const led = join(root, 'private')
    const l = newLocalLedger(fleet({ kind: 'local', path: led }), root, { now: () => Date.now() })
    const req = {
      repository: 'a/b',
      workflow: 'ci',
      runId: '1',
      job: 'j',
      runner: 'r',
      instanceType: 't3.micro',
      vcpus: 2,
      maxLifetimeMinutes: 60
    }
    expect((await l.reserve(req)).ok).toBe(true)
    const before = readFileSync(join(led, 'ledger.json'), 'utf8')
    const [ok] = await ledgerChecks(fleet({ kind: 'local', path: led }), root)
    expect(ok).toMatchObject({ status: 'pass', detail: `local ${led}: private and writable; 1 reservation open` })
    expect(readFileSync(join(led, 'ledger.json'), 'utf8')).toBe(before)

    chmodSync(led, 0o755)
    const [open] = await ledgerChecks(fleet({ kind: 'local', path: led }), root)
    expect(open).toMatchObject({ status: 'fail', detail: expect.stringMatching(/is open to other users \(mode 0755, must be 0700\)/) })
    expect(open.fix).toMatch(/fleet\.ledger\.path/)

    // A folder above that this user may not write (root may write anywhere: a file stands in for the folder).
    writeFileSync(join(root, 'file'), '')
    const [blocked] = await ledgerChecks(fleet({ kind: 'local', path: join(root, 'file', 'ledger') }), root)
    expect(blocked.status).toBe('fail')
  })

  it('runs within doctor: its line is in the table through dist/index.js', () => {
    const r = doctor(configFile('ledger'), false)
    expect(r.out).toMatch(/^PASS\s+fleet ledger\s+runner host\s+local \//m)
  })
})

// Every hook command makes or checks the log file's folder before anything else: a runner user that
// cannot make it (a folder under /var/log) fails every command of every job. Root may make any
// folder, so this runs the hook as an unprivileged user.
describe('doctor: the log file, for a runner that is not root', () => {
  const NOBODY = 65534
  const home = mkdtempSync(join(tmpdir(), 'rch-doctor-nobody-'))
  const logDir = `/var/log/rch-doctor-${process.pid}`
  afterAll(() => {
    rmSync(home, { recursive: true, force: true })
    rmSync(logDir, { recursive: true, force: true })
  })

  it("a log folder the runner user cannot make fails doctor's check with the fix, as it fails the hook's commands; made as the fix says, it passes", () => {
    chownSync(home, NOBODY, NOBODY)
    chmodSync(home, 0o700)
    const key = join(home, 'id')
    writeFileSync(key, readFileSync(vm.identityFile))
    chownSync(key, NOBODY, NOBODY)
    chmodSync(key, 0o600)
    const knownHostsFile = join(home, 'known_hosts')
    writeFileSync(knownHostsFile, `[127.0.0.1]:1 ${readFileSync(vm.knownHostsFile, 'utf8').trim().split(/\s+/).slice(1, 3).join(' ')}\n`)
    const conf = join(home, 'config.json')
    const host = { host: '127.0.0.1', port: 1, user: vm.user, identityFile: key, knownHostsFile }
    writeFileSync(
      conf,
      JSON.stringify({
        provider: { kind: 'static', hosts: [host] },
        remote: { workRoot: vm.workRoot },
        log: { file: `${logDir}/hook.log` }
      })
    )
    chownSync(conf, NOBODY, NOBODY)
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, TMPDIR: home }
    const asNobody = (args: string[], input = '', extra: Record<string, string> = {}) =>
      spawnSync(process.execPath, [hook, ...args], {
        uid: NOBODY,
        gid: NOBODY,
        env: { ...env, ...extra },
        input,
        encoding: 'utf8',
        timeout: 60_000
      })
    const logRow = (r: { stdout: string; stderr: string }): Check => {
      const row = (JSON.parse(r.stdout) as { checks: Check[] }).checks.find((c) => c.check === 'log file')
      if (!row) throw new Error(`no log file check in doctor's output: ${r.stdout}${r.stderr}`)
      return row
    }

    const failing = logRow(asNobody(['doctor', conf, '--json']))
    expect(failing).toMatchObject({ status: 'fail', target: 'runner host' })
    expect(failing.detail).toBe(
      `${logDir}/hook.log: folder ${logDir} does not exist, and /var/log is not writable by this user: every hook command would fail`
    )
    expect(failing.fix).toContain(`sudo install -d -o <runner user> -m 0700 ${logDir}`)
    // Positive control: the hook's own command fails there, as the check says.
    const work = join(home, '_work')
    mkdirSync(join(work, '_temp'), { recursive: true })
    chownSync(work, NOBODY, NOBODY)
    chownSync(join(work, '_temp'), NOBODY, NOBODY)
    const responseFile = join(work, '_temp', 'response.json')
    writeFileSync(responseFile, '')
    chownSync(responseFile, NOBODY, NOBODY)
    const request = JSON.stringify({ command: 'cleanup_job', responseFile, args: {}, state: null })
    const hookRun = asNobody([], request, { REMOTE_HOOKS_CONFIG: conf, RUNNER_TEMP: join(work, '_temp'), RUNNER_NAME: 'doctor-test' })
    expect({ code: hookRun.status, out: hookRun.stdout }).toMatchObject({ code: 70 })
    expect(hookRun.stdout).toContain(`::error::cannot create private folder ${logDir}`)
    // Root may make it: the same check passes for root (not made yet), which is why the test runs as nobody.
    expect(logFileCheck(`${logDir}/hook.log`, false)).toMatchObject({ status: 'pass', detail: expect.stringContaining('not created yet') })

    // Made as the fix says: private, the runner user's, and the check passes.
    expect(spawnSync('install', ['-d', '-o', String(NOBODY), '-m', '0700', logDir]).status).toBe(0)
    expect(logRow(asNobody(['doctor', conf, '--json']))).toMatchObject({
      status: 'pass',
      detail: `${logDir}/hook.log: folder private and writable`
    })
  })
})
