/**
 * The pool test environment (test/helpers/pool-env.ts) does what the pool provider's tests will
 * rely on: members boot as loopback sshds, each as its own user, reachable only with the host key
 * their tag publishes; stop/start keeps a member, terminate ends it here and the ASG's
 * replacement boots; the misbehaving members misbehave; close() leaves nothing behind.
 *
 * Needs moto (127.0.0.1:5005) and root. Never connects to an address moto invents: every SSH
 * target is 127.0.0.1:<port from the rch-endpoint tag>.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { DescribeInstancesCommand, DescribeLaunchTemplatesCommand, type EC2Client } from '@aws-sdk/client-ec2'
import { ec2Client } from '../helpers/ec2-env'
import {
  createPool,
  ENDPOINT_TAG,
  HOST_KEY_TAG,
  MACHINE_LABEL,
  SCOPED_IMAGES,
  memberSshdEnv,
  type Pool,
  type PoolMember,
  userHeldByOther,
  userPids
} from '../helpers/pool-env'
import { testImages } from '../helpers/testenv'
import { valueWithin, waitUntil } from '../helpers/wait'

const execFileP = promisify(execFile)

let ec2: EC2Client
let dir: string
let clientKey: string
let clientPub: string

beforeAll(async () => {
  ec2 = ec2Client()
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-pool-env-test-'))
  clientKey = path.join(dir, 'pool_ed25519')
  await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pool-key', '-f', clientKey])
  clientPub = fs.readFileSync(`${clientKey}.pub`, 'utf8')
})

afterAll(() => {
  ec2?.destroy()
  if (dir) fs.rmSync(dir, { recursive: true, force: true })
})

const uniq = (prefix: string) => `${prefix}-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 7)}`

/** The member's tags as moto holds them (not the helper's view). */
async function tagsOf(id: string): Promise<Record<string, string>> {
  const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))
  const inst = out.Reservations?.[0]?.Instances?.[0]
  return Object.fromEntries((inst?.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']))
}

interface Ssh {
  code: number
  stdout: string
  stderr: string
}

/** ssh as `user` to the endpoint, strictly checking the host key against `hostKey` only. */
async function ssh(endpoint: string, user: string, hostKey: string, cmd: string): Promise<Ssh> {
  const [host, port] = endpoint.split(':')
  expect(host).toBe('127.0.0.1')
  const kh = path.join(dir, `kh-${Math.random().toString(36).slice(2)}`)
  fs.writeFileSync(kh, `[127.0.0.1]:${port} ${hostKey}\n`)
  const args = [
    ...['-F', '/dev/null', '-i', clientKey, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${kh}`],
    ...['-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'],
    ...['-o', 'ConnectTimeout=10', '-o', 'LogLevel=ERROR', '-p', port, `${user}@127.0.0.1`, cmd]
  ]
  try {
    const { stdout, stderr } = await execFileP('ssh', args, { timeout: 30_000 })
    return { code: 0, stdout, stderr }
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' }
  } finally {
    fs.rmSync(kh, { force: true })
  }
}

/** ssh to a member pinning the host key read from ITS TAG in moto. */
async function sshMember(m: PoolMember, cmd: string): Promise<Ssh> {
  const tags = await tagsOf(m.id)
  return ssh(tags[ENDPOINT_TAG], m.user, tags[HOST_KEY_TAG], cmd)
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(true)))
    s.once('error', () => resolve(false))
  })
}

/** PIDs whose command line names this member's sshd config (instance-sshd.sh's sshd). */
function sshdPidsOf(id: string): number[] {
  const out: number[] = []
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue
    try {
      if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`/inst-${id}/sshd_config`)) out.push(Number(p))
    } catch {
      // gone
    }
  }
  return out
}

async function containersOf(id: string, status?: 'running'): Promise<string[]> {
  const filters = ['--filter', `label=${MACHINE_LABEL}=${id}`, ...(status ? ['--filter', `status=${status}`] : [])]
  const { stdout } = await execFileP('docker', ['ps', '-aq', ...filters])
  return stdout.split('\n').filter(Boolean)
}

// a process as the member user that leaves sshd's process tree (so only `ps -u` finds it)
const DETACHED_SLEEP = '{ setsid nohup sleep 600 >/dev/null 2>&1 </dev/null & }; echo started'

describe('pool test environment', () => {
  let pool: Pool

  beforeAll(async () => {
    pool = await createPool({ name: uniq('pooltest'), size: 3, maxSize: 4, clientPublicKey: clientPub })
  })

  afterAll(async () => {
    await pool?.close()
  })

  test('3 members boot, each reachable over SSH as its own user with the host key pinned from its tag', async () => {
    const members = await pool.waitReady(3)
    expect(members).toHaveLength(3)
    expect(new Set(members.map((m) => m.user)).size).toBe(3)
    expect(new Set(members.map((m) => m.workRoot)).size).toBe(3)
    const group = await pool.describe()
    expect(group).toMatchObject({ minSize: 0, maxSize: 4, desiredCapacity: 3 })
    expect(group!.instances.map((i) => i.id).sort()).toEqual(members.map((m) => m.id).sort())

    for (const m of members) {
      const tags = await tagsOf(m.id)
      expect(tags[ENDPOINT_TAG]).toBe(`127.0.0.1:${m.port}`)
      expect(tags[HOST_KEY_TAG]).toBe(m.hostKey)
      expect(tags[HOST_KEY_TAG]).toMatch(/^ssh-ed25519 [A-Za-z0-9+/=]+$/)
      const scope = '~/.config/remote-container-hooks/scrub-scope'
      const r = await sshMember(
        m,
        `id -un; id -nG; cat ${scope}; stat -c %U ${scope}; stat -c %U ${m.workRoot}; docker version --format ok`
      )
      expect(r).toMatchObject({ code: 0 })
      const [user, groups, scopeLine, scopeImages, scopeOwner, workOwner, docker] = r.stdout.trim().split('\n')
      expect(user).toBe(m.user)
      expect(groups.split(' ')).toContain('docker')
      expect(scopeLine).toBe(`label=${MACHINE_LABEL}=${m.id}`)
      expect(scopeImages).toBe(`reference=${SCOPED_IMAGES}`)
      expect(scopeOwner).toBe(m.user)
      expect(workOwner).toBe(m.user)
      expect(docker).toBe('ok')
    }

    // the pinning is real: another key for the same endpoint is refused (and nothing ran)
    const [a, b] = members
    const wrong = await ssh(`127.0.0.1:${a.port}`, a.user, b.hostKey, 'echo ran')
    expect(wrong.code).toBe(255)
    expect(wrong.stdout).not.toContain('ran')
    expect(wrong.stderr).toMatch(/host key/i)
    // and a member lets in only its own user
    const other = await ssh(`127.0.0.1:${a.port}`, b.user, a.hostKey, 'echo ran')
    expect(other.code).toBe(255)
    expect(other.stdout).not.toContain('ran')
    expect(pool.errors).toEqual([])
  })

  test('stop ends the sshd, the user processes and the containers, keeps keys, port, disk and lease record; start brings the same member back', async () => {
    const [m] = await pool.waitReady(3)
    const before = await tagsOf(m.id)
    expect(await pool.readLease(m.id)).toBeNull()
    const lease = 'holder=t1 runner=r1 expiry=123 state=clean'
    const container = `docker run -d --pull never --label ${MACHINE_LABEL}=${m.id} ${testImages.tiny} sleep 600 >/dev/null`
    const setup = `mkdir ${m.workRoot}/pool && echo '${lease}' > ${m.workRoot}/pool/lease && echo kept > ${m.workRoot}/mark && ${container} && ${DETACHED_SLEEP}`
    expect(await sshMember(m, setup)).toMatchObject({ code: 0, stdout: 'started\n' })
    expect(await pool.readLease(m.id)).toBe(`${lease}\n`)
    expect((await userPids(m.user)).length).toBeGreaterThan(0) // positive control: a process to end
    expect(await containersOf(m.id, 'running')).toHaveLength(1)

    await pool.stopMember(m.id)
    const stopped = pool.member(m.id)
    expect(stopped).toMatchObject({ state: 'stopped', ready: false, gone: false })
    expect(await portOpen(m.port)).toBe(false)
    expect(sshdPidsOf(m.id)).toEqual([])
    expect(await userPids(m.user)).toEqual([])
    expect(fs.readFileSync(path.join(m.workRoot, 'mark'), 'utf8')).toBe('kept\n')
    expect(await pool.readLease(m.id)).toBe(`${lease}\n`)
    expect(await containersOf(m.id, 'running')).toEqual([])
    expect(await containersOf(m.id)).toHaveLength(1) // exited, as on a machine that was shut down
    expect((await pool.describe())!.instances.find((i) => i.id === m.id)?.lifecycleState).toBe('Standby')

    const back = await pool.startMember(m.id)
    expect(back).toMatchObject({ port: m.port, hostKey: m.hostKey, user: m.user, workRoot: m.workRoot, ready: true })
    expect(await tagsOf(m.id)).toEqual(before)
    const r = await sshMember(back, `cat ${m.workRoot}/mark; cat ~/.config/remote-container-hooks/scrub-scope`)
    expect(r).toMatchObject({ code: 0, stdout: `kept\nlabel=${MACHINE_LABEL}=${m.id}\nreference=${SCOPED_IMAGES}\n` })
    expect((await pool.describe())!.instances.find((i) => i.id === m.id)?.lifecycleState).toBe('InService')
    expect(pool.errors).toEqual([])
  })

  test('TerminateInstanceInAutoScalingGroup ends the member here (and only it); the replacement boots', async () => {
    const [, x, y] = await pool.waitReady(3)
    const label = (id: string) => `--label ${MACHINE_LABEL}=${id}`
    for (const m of [x, y]) {
      const r = await sshMember(
        m,
        `docker run -d --pull never ${label(m.id)} ${testImages.tiny} sleep 600 >/dev/null && echo x > /tmp/rch-pool-test-${m.user} && ${DETACHED_SLEEP}`
      )
      expect(r).toMatchObject({ code: 0, stdout: 'started\n' })
    }
    // positive controls: what the termination must remove is there
    expect(await containersOf(x.id)).toHaveLength(1)
    expect((await userPids(x.user)).length).toBeGreaterThan(0)
    expect(fs.existsSync(`/tmp/rch-pool-test-${x.user}`)).toBe(true)
    const ids = new Set(pool.members().map((m) => m.id))
    // its lease history outlives it (a load test counts the jobs a replaced member served)
    const history = '1700000000 grant 0123abcd none 0\n'
    fs.mkdirSync(path.join(x.workRoot, 'pool'), { recursive: true })
    fs.writeFileSync(path.join(x.workRoot, 'pool', 'log'), history)
    expect(await pool.leaseLog(x.id)).toBe(history)

    await pool.terminateMember(x.id)
    expect(pool.member(x.id)).toMatchObject({ gone: true, ready: false })
    expect(await portOpen(x.port)).toBe(false)
    expect(sshdPidsOf(x.id)).toEqual([])
    expect(memberSshdEnv(x.id)).toBeNull()
    expect(await containersOf(x.id)).toEqual([])
    expect(await userPids(x.user)).toEqual([])
    expect(fs.existsSync(x.workRoot)).toBe(false)
    expect(await pool.leaseLog(x.id)).toBe(history)
    expect(fs.existsSync(`/tmp/rch-pool-test-${x.user}`)).toBe(false)
    expect(fs.readdirSync(x.home)).toEqual([])
    // the other member keeps its container and processes
    expect(await containersOf(y.id)).toHaveLength(1)
    expect((await userPids(y.user)).length).toBeGreaterThan(0)
    expect(fs.existsSync(`/tmp/rch-pool-test-${y.user}`)).toBe(true)

    const now = await pool.waitReady(3)
    const fresh = now.filter((m) => !ids.has(m.id))
    expect(fresh).toHaveLength(1)
    expect((await pool.describe())!.desiredCapacity).toBe(3)
    const r = await sshMember(fresh[0], 'id -un; cat ~/.config/remote-container-hooks/scrub-scope; ls -A ~ | grep -c rch-pool-test || true')
    expect(r).toMatchObject({ code: 0 })
    expect(r.stdout.split('\n').slice(0, 2)).toEqual([fresh[0].user, `label=${MACHINE_LABEL}=${fresh[0].id}`])
    expect(pool.errors).toEqual([])
  })

  test('the misbehaving members: a wrong host key, Docker down, a late host-key tag, a full disk', async () => {
    const odd = await createPool({
      name: uniq('pooltest-odd'),
      size: 3,
      clientPublicKey: clientPub,
      behaviour: ({ ordinal }) => [{ wrongHostKey: true }, { dockerDown: true, hostKeyDelayMs: 1500 }, { diskPercent: 95 }][ordinal] ?? {}
    })
    let full: PoolMember | undefined
    try {
      // the late one: its endpoint is out and sshd serves while the host-key tag is not there yet
      const late = await pool_waitFor(odd, (ms) => ms.find((m) => m.ordinal === 1))
      let early: Record<string, string> = {}
      await waitUntil(async () => ENDPOINT_TAG in (early = await tagsOf(late.id)), 20_000)
      expect(early[ENDPOINT_TAG]).toBe(`127.0.0.1:${odd.member(late.id).port}`)
      expect(early[HOST_KEY_TAG]).toBeUndefined()
      expect(odd.member(late.id).ready).toBe(false)
      expect(await portOpen(odd.member(late.id).port)).toBe(true)

      const [mitm, down, disk] = (await odd.waitReady(3)).sort((a, b) => a.ordinal - b.ordinal)
      full = disk
      // two pools at once (as parallel test files have): no member user is shared
      const users = pool.members({ live: true }).map((m) => m.user)
      expect(users).toHaveLength(3)
      for (const m of [mitm, down, disk]) expect(users).not.toContain(m.user)
      // MITM: pinning the tag's key refuses it; the key it really serves lets us in (positive control)
      expect(mitm.servedHostKey).not.toBe(mitm.hostKey)
      const refused = await sshMember(mitm, 'echo ran')
      expect(refused.code).toBe(255)
      expect(refused.stdout).not.toContain('ran')
      expect(refused.stderr).toMatch(/host key/i)
      expect(await ssh(`127.0.0.1:${mitm.port}`, mitm.user, mitm.servedHostKey, 'echo ran')).toMatchObject({ code: 0, stdout: 'ran\n' })

      // Docker down for the member user: the CLI cannot reach a daemon (a healthy member's can, above)
      const r = await sshMember(down, 'docker info >/dev/null 2>&1; echo "docker $?"; id -un')
      expect(r).toMatchObject({ code: 0, stdout: `docker 1\n${down.user}\n` })

      // the full disk: its work root's file system is over 90 %, and its user cannot free it
      const usage = (m: PoolMember) => `df -P ${m.workRoot} | awk 'NR == 2 { print $5 }' | tr -d %`
      const d = await sshMember(
        disk,
        `${usage(disk)}; rm -rf ${disk.workRoot}/.rch-disk-filler 2>/dev/null; ${usage(disk)}; touch ${disk.workRoot}/job && echo writable`
      )
      expect(d).toMatchObject({ code: 0 })
      const [pct, after, writable] = d.stdout.trim().split('\n')
      expect(Number(pct)).toBeGreaterThan(90)
      expect(after).toBe(pct)
      expect(writable).toBe('writable')
      expect(Number((await sshMember(down, usage(down))).stdout)).toBeLessThan(90) // the others are not on it
      expect(fs.readFileSync('/proc/mounts', 'utf8')).toContain(`rch-disk-${disk.id} ${disk.workRoot} tmpfs`)
      expect(odd.errors).toEqual([])
    } finally {
      await odd.close()
    }
    expect(odd.errors).toEqual([])
    // this pool's mount only: pool.test.ts runs alongside with a full-disk member of its own
    expect(full).toBeDefined()
    expect(fs.readFileSync('/proc/mounts', 'utf8')).not.toContain(`rch-disk-${full.id} `)
    expect(fs.existsSync(full.workRoot)).toBe(false)
  })

  test('close() leaves no sshd, no member-user process, no work root, no docker object, no ASG or launch template', async () => {
    const all = pool.members()
    const live = all.filter((m) => !m.gone)
    expect(live.length).toBe(3)
    for (const m of live) expect(sshdPidsOf(m.id).length).toBeGreaterThan(0) // positive control
    const [y] = live.filter((m) => m.ordinal === 2)
    expect(await containersOf(y.id)).toHaveLength(1)

    await pool.close()
    for (const m of all) {
      expect(sshdPidsOf(m.id)).toEqual([])
      expect(memberSshdEnv(m.id)).toBeNull()
      expect(await containersOf(m.id)).toEqual([])
      // A freed user (and its home) may already serve a member of pool.test.ts, running beside this file.
      if ((await userPids(m.user)).length || fs.existsSync(m.workRoot)) expect(userHeldByOther(m.user, m.id)).toBe(true)
    }
    expect(await pool.describe()).toBeNull()
    await expect(ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateNames: [pool.launchTemplateName] }))).rejects.toThrow()
    expect(pool.errors).toEqual([])
  }, 60_000)
})

/** polls the pool's view until pick() finds a member */
async function pool_waitFor(pool: Pool, pick: (ms: PoolMember[]) => PoolMember | undefined, timeoutMs = 20_000): Promise<PoolMember> {
  const m = await valueWithin(() => pick(pool.members()), timeoutMs)
  if (m) return m
  throw new Error(`pool ${pool.name}: not seen within ${timeoutMs} ms: ${pool.events.join(' | ')}`)
}
