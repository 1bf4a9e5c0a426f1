/**
 * Stands in for an EC2 Auto Scaling group of pool members, against moto: moto's ASG launches,
 * stops and replaces instances in its API only, so this "boots" them on loopback, as
 * test/helpers/fake-instance.ts does for single instances.
 *
 * createPool() makes a launch template (a moto AMI) and an ASG, then a booter polls
 * DescribeInstances (~200 ms) filtered on aws:autoscaling:groupName and, for each running member,
 * plays the instance:
 *
 *   claims a free member user (rchp0 ... rchp15, one member each, across test processes)
 *   -> generates the member's host key; starts scripts/testenv/instance-sshd.sh as that user
 *      (INST_USER), authorizing the pool's client key, with the member's own work root
 *   -> writes ~user/.config/remote-container-hooks/scrub-scope (label=...machine=<instance id>)
 *   -> tags rch-endpoint=127.0.0.1:PORT, and LAST (as a real member does at the end of its boot)
 *      remote-container-hooks:host-key=<ssh-ed25519 public key>
 *
 * A member seen stopping/stopped loses its sshd, its user's processes and its running containers
 * (stopped, not removed; keys, port, work root and tags kept); seen running again, its sshd comes
 * back with the same keys. A member seen shutting-down/terminated (or gone from moto) loses its
 * sshd, its user's processes, its docker objects (label dev.remote-container-hooks.machine=<id>,
 * this machine's dockerd) and its work root; its user's files are wiped and the user is free for
 * the next member.
 *
 * The member users are created on first use and never removed (another test process may be
 * using one; a user is a line in /etc/passwd, cheap to keep). A user whose claim file names a
 * live process, or that still runs processes, is never taken.
 *
 * It talks to moto directly (never through a test's fault proxy) and only ever connects to
 * 127.0.0.1: the addresses moto invents are never used. It ends only processes it started (its
 * sshds, by instance-sshd.sh's recorded PID) and the processes of the member users it holds.
 */
import { execFile, execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import {
  CreateLaunchTemplateCommand,
  CreateTagsCommand,
  DeleteLaunchTemplateCommand,
  DescribeInstancesCommand,
  type Instance,
  StartInstancesCommand,
  StopInstancesCommand
} from '@aws-sdk/client-ec2'
import { ec2Client, freePort, loadMoto, motoImageId, TEST_REGION } from './ec2-env'
import { removeLabelledDockerObjects } from './fake-instance'
import { parseEnvFile, repoRoot, testenvDir } from './testenv'
import { valueWithin, waitUntil } from './wait'

const execFileP = promisify(execFile)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export const GROUP_TAG = 'aws:autoscaling:groupName'
export const HOST_KEY_TAG = 'remote-container-hooks:host-key'
/** where a member listens (the hook's config: connect.address 'tag:rch-endpoint') */
export const ENDPOINT_TAG = 'rch-endpoint'
/** docker label the hook puts on everything it creates for a pool lease */
export const MACHINE_LABEL = 'dev.remote-container-hooks.machine'
/** the member users, one per live member on this machine */
/** The images a member's scrub may judge (the image rule is tested with tags made under it). */
export const SCOPED_IMAGES = 'rch-pool-scope/*'
export const MEMBER_USERS: readonly string[] = Array.from({ length: 16 }, (_, i) => `rchp${i}`)

const INSTANCE_SSHD = path.join(repoRoot, 'scripts', 'testenv', 'instance-sshd.sh')
const CLAIMS = path.join(testenvDir, 'pool-users')

// ---- Auto Scaling (Query API; the SDK's autoscaling client is not installed) -----------------

export class AutoScalingError extends Error {
  constructor(
    readonly action: string,
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(`autoscaling ${action}: HTTP ${status} ${code}: ${message}`)
  }
}

/**
 * One Auto Scaling API call to moto: `params` in the Query API's flat form
 * (e.g. { 'InstanceIds.member.1': 'i-…' }); resolves with the response XML. moto does not check
 * signatures: the Authorization header only names the service, which is how moto's single
 * server tells autoscaling from ec2.
 */
export async function autoscaling(
  action: string,
  params: Record<string, string | number | boolean>,
  endpoint = loadMoto().endpoint
): Promise<string> {
  const body = new URLSearchParams({ Action: action, Version: '2011-01-01' })
  for (const [k, v] of Object.entries(params)) body.set(k, String(v))
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '')
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
      authorization: `AWS4-HMAC-SHA256 Credential=testing/${day}/${TEST_REGION}/autoscaling/aws4_request, SignedHeaders=host, Signature=0`
    },
    body,
    signal: AbortSignal.timeout(30_000)
  })
  const text = await res.text()
  if (res.status !== 200)
    throw new AutoScalingError(action, res.status, xmlValues(text, 'Code')[0] ?? '?', xmlValues(text, 'Message')[0] ?? text.slice(0, 300))
  return text
}

/** The text of every <tag>…</tag> in a flat reading of the XML (enough for moto's answers). */
export function xmlValues(xml: string, tag: string): string[] {
  return [...xml.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, 'g'))].map((m) => m[1])
}

export interface GroupView {
  minSize: number
  maxSize: number
  desiredCapacity: number
  /** the ASG's instances, their lifecycle states (InService, Standby …) and scale-in protection */
  instances: { id: string; lifecycleState: string; protectedFromScaleIn: boolean }[]
}

/** DescribeAutoScalingGroups for one group; null if it does not exist. */
export async function describeGroup(name: string, endpoint?: string): Promise<GroupView | null> {
  const xml = await autoscaling('DescribeAutoScalingGroups', { 'AutoScalingGroupNames.member.1': name }, endpoint)
  const group = xml.match(/<AutoScalingGroups>\s*<member>([\s\S]*)<\/member>\s*<\/AutoScalingGroups>/)?.[1]
  if (!group) return null
  const num = (t: string) => Number(xmlValues(group, t)[0])
  const list = group.match(/<Instances>([\s\S]*?)<\/Instances>/)?.[1] ?? ''
  const instances = [...list.matchAll(/<member>([\s\S]*?)<\/member>/g)].map(([, m]) => ({
    id: xmlValues(m, 'InstanceId')[0],
    lifecycleState: xmlValues(m, 'LifecycleState')[0],
    protectedFromScaleIn: xmlValues(m, 'ProtectedFromScaleIn')[0] === 'true'
  }))
  return { minSize: num('MinSize'), maxSize: num('MaxSize'), desiredCapacity: num('DesiredCapacity'), instances }
}

// ---- the pool ---------------------------------------------------------------------------------

/** How one member misbehaves (default: a healthy member that boots at once). */
export interface MemberBehaviour {
  /** the host-key tag appears this long after sshd serves and the endpoint tag is out (still booting) */
  hostKeyDelayMs?: number
  /** sshd serves a host key other than the one in the host-key tag (a man in the middle): pinning must refuse it */
  wrongHostKey?: boolean
  /** Docker out of reach for the member user: DOCKER_HOST names a dead socket, socket forwarding refused */
  dockerDown?: boolean
  /**
   * The work root is a small file system of its own (a 32 MiB tmpfs) filled to this percentage by
   * a root-owned file the member user cannot remove: a disk the hook must find over its limit.
   * Docker's own file system is not affected.
   */
  diskPercent?: number
  /** started again after a stop, sshd listens only this long after EC2 says running (the tags kept from before say ready at once) */
  resumeSshdDelayMs?: number
}

export interface PoolOptions {
  /** the ASG's name (unique per test: moto is shared by parallel test files); also the launch template's prefix */
  name: string
  /** DesiredCapacity at creation */
  size: number
  /** default: size */
  maxSize?: number
  /** default 0 (so a member can enter Standby with the desired capacity decremented) */
  minSize?: number
  /** the pool key's public half (`ssh-ed25519 AAAA…`): every member authorizes it */
  clientPublicKey: string
  /** default: moto's endpoint */
  endpoint?: string
  /** per member, by the order the booter took members up (0, 1 …; replacements continue the count) */
  behaviour?: MemberBehaviour | ((m: { id: string; ordinal: number }) => MemberBehaviour)
  /** the member's work root (default `<its user's home>/rch`, as `/home/ec2-user/rch` on a real member) */
  workRoot?: (m: { id: string; user: string; home: string }) => string
  /** more tags to write on a booted member, before the host-key tag */
  extraTags?: (m: PoolMember) => Record<string, string>
  /** DescribeInstances poll period (default 200 ms) */
  pollMs?: number
}

export interface PoolMember {
  id: string
  /** order the booter took it up in (0-based) */
  ordinal: number
  /** its own Linux user (rchpN), the SSH user */
  user: string
  home: string
  /** 127.0.0.1:port, as in its rch-endpoint tag (0 until sshd runs) */
  port: number
  workRoot: string
  /** the EC2 state last seen (pending, running, stopping, stopped, shutting-down, terminated) */
  state: string
  /** the key in its host-key tag (`ssh-ed25519 AAAA…`, no comment): what a client must pin */
  hostKey: string
  /** the key its sshd serves: hostKey, unless behaviour.wrongHostKey */
  servedHostKey: string
  behaviour: MemberBehaviour
  /** sshd serves and the host-key tag is written (false while stopped) */
  ready: boolean
  /** terminated: sshd, processes, docker objects and work root gone, user freed */
  gone: boolean
}

export interface Pool {
  readonly name: string
  readonly launchTemplateName: string
  readonly imageId: string
  readonly endpoint: string
  /** what the booter did, in order (for failure messages) */
  readonly events: string[]
  /** problems while booting (a test should expect this to be empty) */
  readonly errors: string[]
  /** copies of the members taken up, terminated ones too unless live */
  members(opts?: { live?: boolean }): PoolMember[]
  member(id: string): PoolMember
  /** waits until `count` members are ready (sshd up, host-key tag out); returns them by ordinal */
  waitReady(count: number, timeoutMs?: number): Promise<PoolMember[]>
  /** waits for a condition on one member (polling the booter's view) */
  waitMember(id: string, what: string, cond: (m: PoolMember) => boolean, timeoutMs?: number): Promise<PoolMember>
  /** the raw text of the member's lease record `${workRoot}/pool/lease` (read as root); null if absent */
  readLease(id: string): Promise<string | null>
  /**
   * the member's lease history `${workRoot}/pool/log` ('' if no job asked it yet); for a terminated
   * member, the copy taken just before its work root was removed
   */
  leaseLog(id: string): Promise<string>
  /** EnterStandby (desired capacity decremented) + StopInstances; resolves once its sshd is stopped */
  stopMember(id: string): Promise<void>
  /** StartInstances + ExitStandby (what the hook does for a stopped member); resolves once ready again */
  startMember(id: string): Promise<PoolMember>
  /** TerminateInstanceInAutoScalingGroup; resolves once the member is gone here */
  terminateMember(id: string, opts?: { decrement?: boolean }): Promise<void>
  /** DescribeAutoScalingGroups for this pool */
  describe(): Promise<GroupView | null>
  /** stops the booter, deletes the ASG (moto terminates its instances) and the launch template, ends every member here */
  close(): Promise<void>
}

interface Live extends PoolMember {
  /** operations on the member run one after the other */
  chain: Promise<void>
  /** where the booter last sent it */
  target: 'new' | 'up' | 'paused' | 'gone'
  dir: string
  /** the sshd was started at least once (instance-sshd.sh holds its state) */
  started: boolean
  /** behaviour.diskPercent's file system is mounted on the work root */
  mounted: boolean
}

const UP = new Set(['pending', 'running'])
const PAUSED = new Set(['stopping', 'stopped'])
const GONE = new Set(['shutting-down', 'terminated'])

/**
 * A pool for one test: a name made unique from `name`, members tagged with their user, added to
 * `pools` (for the caller to close) before it is waited for, and ready when returned.
 */
export async function startTestPool(
  pools: Pool[],
  name: string,
  size: number,
  clientPublicKey: string,
  over: Partial<PoolOptions> = {},
  readyMs = 60_000
): Promise<{ pool: Pool; members: PoolMember[] }> {
  const pool = await createPool({
    name: `${name}-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 6)}`,
    size,
    clientPublicKey,
    extraTags: (m) => ({ 'rch-user': m.user }),
    ...over
  })
  pools.push(pool)
  return { pool, members: await pool.waitReady(size, readyMs) }
}

export async function createPool(opts: PoolOptions): Promise<Pool> {
  if (!/^[A-Za-z0-9-]{1,100}$/.test(opts.name)) throw new Error(`pool name ${opts.name}: use [A-Za-z0-9-]`)
  if (opts.size > MEMBER_USERS.length || (opts.maxSize ?? opts.size) > MEMBER_USERS.length)
    throw new Error(`a pool here has at most ${MEMBER_USERS.length} members (one user each)`)
  const endpoint = opts.endpoint ?? loadMoto().endpoint
  const ec2 = ec2Client({ endpoint })
  const pollMs = opts.pollMs ?? 200
  const ltName = `${opts.name}-lt`
  const imageId = await motoImageId(ec2)
  const userData = `#!/bin/bash\n# pool member: authorize the pool key\ncat >>/home/ec2-user/.ssh/authorized_keys <<'EOF'\n${opts.clientPublicKey.trim()}\nEOF\n`
  await ec2.send(
    new CreateLaunchTemplateCommand({
      LaunchTemplateName: ltName,
      LaunchTemplateData: { ImageId: imageId, InstanceType: 't3.micro', UserData: Buffer.from(userData).toString('base64') }
    })
  )
  try {
    await autoscaling(
      'CreateAutoScalingGroup',
      {
        AutoScalingGroupName: opts.name,
        'LaunchTemplate.LaunchTemplateName': ltName,
        'LaunchTemplate.Version': '$Latest',
        MinSize: opts.minSize ?? 0,
        MaxSize: opts.maxSize ?? opts.size,
        DesiredCapacity: opts.size,
        'AvailabilityZones.member.1': `${TEST_REGION}a`
      },
      endpoint
    )
  } catch (e) {
    await ec2.send(new DeleteLaunchTemplateCommand({ LaunchTemplateName: ltName })).catch(() => undefined)
    ec2.destroy()
    throw e
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-pool-'))
  const members = new Map<string, Live>()
  const events: string[] = []
  const errors: string[] = []
  const t0 = Date.now()
  const note = (m: string) => events.push(`+${((Date.now() - t0) / 1000).toFixed(1)}s ${m}`)
  let ordinals = 0
  let stopped = false

  const sshdEnv = (m: Live) => ({
    ...process.env,
    RCH_TESTENV_DIR: testenvDir,
    INST_USER: m.user,
    INST_WORKROOT: m.workRoot,
    INST_DOCKER_DOWN: m.behaviour.dockerDown ? '1' : '0'
  })
  const sshdCmd = (m: Live, args: string[]) => execFileP('bash', [INSTANCE_SSHD, ...args], { env: sshdEnv(m), timeout: 60_000 })
  const tag = (id: string, tags: Record<string, string>) =>
    ec2.send(new CreateTagsCommand({ Resources: [id], Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }))

  // the sshd on m.port, or (port taken by someone else meanwhile) on a new one
  const startSshd = async (m: Live) => {
    for (let attempt = 1; ; attempt++) {
      try {
        await sshdCmd(m, ['start', m.id, String(m.port), path.join(m.dir, 'client.pub'), path.join(m.dir, 'served_host_key')])
        m.started = true
        return
      } catch (e) {
        note(`${m.id}: sshd start on ${m.port} failed (attempt ${attempt}): ${String(e).split('\n').slice(-2).join(' ')}`)
        if (attempt >= 3) throw e
        m.port = await freePort()
      }
    }
  }

  const boot = async (m: Live) => {
    // a replacement can be seen before the member it replaces has freed its user: wait a little
    let user = await claimUser(m.id)
    if (!user) note(`${m.id}: waiting for a free member user`)
    if (!user) await waitUntil(async () => m.target !== 'up' || !!(user = await claimUser(m.id)), 30_000, 200)
    if (!user && m.target === 'gone') return
    if (!user) throw new Error(`no free member user (${MEMBER_USERS.join(' ')} all taken for 30 s)`)
    m.user = user
    await wipeUserFiles(user)
    m.home = `/home/${user}`
    m.workRoot = opts.workRoot ? opts.workRoot({ id: m.id, user, home: m.home }) : `${m.home}/rch`
    m.dir = fs.mkdtempSync(path.join(dir, `${m.id}-`))
    fs.writeFileSync(path.join(m.dir, 'client.pub'), `${opts.clientPublicKey.trim()}\n`, { mode: 0o600 })
    m.hostKey = await newKey(path.join(m.dir, 'host_key'))
    m.servedHostKey = m.behaviour.wrongHostKey ? await newKey(path.join(m.dir, 'mitm_key')) : m.hostKey
    fs.copyFileSync(path.join(m.dir, m.behaviour.wrongHostKey ? 'mitm_key' : 'host_key'), path.join(m.dir, 'served_host_key'))
    m.port = await freePort()
    await startSshd(m)
    // the home exists now (instance-sshd.sh creates the user)
    m.home = (await execFileP('getent', ['passwd', user])).stdout.split(':')[5]
    await writeScrubScope(user, m.home, m.id)
    if (m.behaviour.diskPercent !== undefined) await fillDisk(m)
    note(`${m.id}: sshd as ${user} on 127.0.0.1:${m.port}, work root ${m.workRoot}${m.behaviour.wrongHostKey ? ' (wrong host key)' : ''}`)
    await tag(m.id, { [ENDPOINT_TAG]: `127.0.0.1:${m.port}`, ...(opts.extraTags?.(copy(m)) ?? {}) })
    if (m.behaviour.hostKeyDelayMs) await sleep(m.behaviour.hostKeyDelayMs)
    if (m.target !== 'up') return
    await tag(m.id, { [HOST_KEY_TAG]: m.hostKey })
    m.ready = true
    note(`${m.id}: ready (host-key tag written)`)
  }

  const pause = async (m: Live) => {
    m.ready = false
    if (m.started) await sshdCmd(m, ['pause', m.id])
    if (m.user) await endUserProcesses(m.user)
    await stopMachineContainers(m.id)
    note(`${m.id}: stopped (sshd, ${m.user}'s processes and containers ended, disk kept)`)
  }

  const resume = async (m: Live) => {
    const port = m.port
    if (m.behaviour.resumeSshdDelayMs) {
      note(`${m.id}: running, sshd in ${m.behaviour.resumeSshdDelayMs} ms`)
      await sleep(m.behaviour.resumeSshdDelayMs)
    }
    await startSshd(m)
    if (m.port !== port) await tag(m.id, { [ENDPOINT_TAG]: `127.0.0.1:${m.port}` })
    m.ready = true
    note(`${m.id}: running again on 127.0.0.1:${m.port}`)
  }

  const fillDisk = async (m: Live) => {
    const size = 32 * 1024 * 1024
    const { uid, gid } = await ids(m.user)
    await execFileP('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755,uid=${uid},gid=${gid}`, `rch-disk-${m.id}`, m.workRoot])
    m.mounted = true
    // in a root-owned folder: the member user (a scrub) can neither delete nor shrink it
    const filler = path.join(m.workRoot, '.rch-disk-filler')
    fs.mkdirSync(filler, { mode: 0o700 })
    await execFileP('fallocate', ['-l', String(Math.floor((size * m.behaviour.diskPercent!) / 100)), path.join(filler, 'fill')])
    note(`${m.id}: work root is a full disk (${m.behaviour.diskPercent} %)`)
  }

  const end = async (m: Live) => {
    m.ready = false
    // sshd and its sessions first, so nothing holds the work root
    if (m.started) await sshdCmd(m, ['pause', m.id])
    if (m.user) {
      await endUserProcesses(m.user)
      await removeMachineDockerObjects(m.id)
    }
    // the history outlives the member (a job that held it before it was replaced still counts);
    // taken once nothing writes there any more, before the work root goes
    if (m.workRoot && m.dir) fs.writeFileSync(path.join(m.dir, 'lease-log'), readLeaseLog(path.join(m.workRoot, 'pool', 'log')))
    if (m.mounted) {
      await execFileP('umount', ['--lazy', m.workRoot])
      m.mounted = false
    }
    if (m.started) await sshdCmd(m, ['stop', m.id])
    if (m.user) {
      if (m.workRoot) fs.rmSync(m.workRoot, { recursive: true, force: true })
      await wipeUserFiles(m.user)
      releaseUser(m.user, m.id)
    }
    m.gone = true
    note(`${m.id}: terminated (sshd, processes, docker objects, work root gone; ${m.user || 'no user'} freed)`)
  }

  // queue an operation on a member; the booter's view of the state decides which one
  const steer = (m: Live, target: 'up' | 'paused' | 'gone') => {
    if (m.target === target || m.target === 'gone') return
    const from = m.target
    m.target = target
    const op = target === 'gone' ? end : target === 'paused' ? pause : from === 'new' ? boot : resume
    // after the previous operation, failed or not (a member terminated while booting still ends)
    m.chain = m.chain.then(
      () => op(m),
      () => op(m)
    )
    m.chain.catch((e) => errors.push(`${m.id}: ${from} -> ${target}: ${String(e)}`))
  }

  const take = (id: string): Live => {
    const ordinal = ordinals++
    const b = typeof opts.behaviour === 'function' ? opts.behaviour({ id, ordinal }) : (opts.behaviour ?? {})
    const m: Live = {
      ...{ id, ordinal, user: '', home: '', port: 0, workRoot: '', state: '', hostKey: '', servedHostKey: '' },
      ...{
        behaviour: { ...b },
        ready: false,
        gone: false,
        chain: Promise.resolve(),
        target: 'new',
        dir: '',
        started: false,
        mounted: false
      }
    }
    members.set(id, m)
    note(`${id}: taken up (ordinal ${ordinal})`)
    return m
  }

  const poll = async () => {
    const seen = new Map<string, string>()
    const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: `tag:${GROUP_TAG}`, Values: [opts.name] }] }))
    for (const i of instancesOf(out.Reservations)) seen.set(i.InstanceId!, i.State?.Name ?? '')
    // moto drops the group tag of an instance the ASG terminates: ask for the rest by id
    const missing = [...members.values()].filter((m) => !m.gone && !seen.has(m.id)).map((m) => m.id)
    if (missing.length) {
      const more = await ec2.send(new DescribeInstancesCommand({ InstanceIds: missing })).catch((e: Error) => {
        if (/NotFound/.test(e.name)) return null // moto forgot one: it is gone
        throw e
      })
      for (const i of instancesOf(more?.Reservations)) seen.set(i.InstanceId!, i.State?.Name ?? '')
      for (const id of missing) if (!seen.has(id)) seen.set(id, 'terminated')
    }
    for (const [id, state] of seen) {
      let m = members.get(id)
      if (!m) {
        if (!UP.has(state)) continue
        m = take(id)
      }
      if (m.state !== state) note(`${id}: ${m.state || 'new'} -> ${state}`)
      m.state = state
      if (GONE.has(state)) steer(m, 'gone')
      else if (PAUSED.has(state)) steer(m, 'paused')
      else if (UP.has(state)) steer(m, 'up')
    }
  }

  const loop = (async () => {
    while (!stopped) {
      try {
        await poll()
      } catch (e) {
        if (!stopped) errors.push(`poll: ${String(e)}`)
      }
      await sleep(pollMs)
    }
  })()

  const waitFor = async <T>(what: string, fn: () => T | undefined, timeoutMs: number): Promise<T> => {
    const v = await valueWithin(fn, timeoutMs)
    if (v === undefined)
      throw new Error(`pool ${opts.name}: ${what} within ${timeoutMs} ms; events: ${events.join(' | ')}; errors: ${errors.join(' | ')}`)
    return v
  }

  const get = (id: string): Live => {
    const m = members.get(id)
    if (!m) throw new Error(`pool ${opts.name}: no member ${id}`)
    return m
  }
  const waitMember = (id: string, what: string, cond: (m: PoolMember) => boolean, timeoutMs = 30_000) =>
    waitFor(`${id} ${what}`, () => (cond(get(id)) ? copy(get(id)) : undefined), timeoutMs)

  let closing: Promise<void> | undefined
  return {
    name: opts.name,
    launchTemplateName: ltName,
    imageId,
    endpoint,
    events,
    errors,
    members: ({ live = false } = {}) => [...members.values()].filter((m) => !live || !m.gone).map(copy),
    member: (id) => copy(get(id)),
    waitReady: (count, timeoutMs = 30_000) =>
      waitFor(
        `${count} members ready`,
        () => {
          const r = [...members.values()].filter((m) => m.ready && !m.gone)
          return r.length >= count ? r.map(copy) : undefined
        },
        timeoutMs
      ),
    waitMember,
    leaseLog: async (id) => {
      const m = get(id)
      // one being terminated: once its copy is taken
      if (m.target === 'gone') await m.chain.catch(() => undefined)
      if (m.gone) return m.dir ? readLeaseLog(path.join(m.dir, 'lease-log')) : ''
      return m.workRoot ? readLeaseLog(path.join(m.workRoot, 'pool', 'log')) : ''
    },
    readLease: async (id) => {
      try {
        return await fs.promises.readFile(path.join(get(id).workRoot, 'pool', 'lease'), 'utf8')
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null
        throw e
      }
    },
    stopMember: async (id) => {
      await autoscaling(
        'EnterStandby',
        { AutoScalingGroupName: opts.name, 'InstanceIds.member.1': id, ShouldDecrementDesiredCapacity: true },
        endpoint
      )
      await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }))
      await waitMember(id, 'stopped here', (m) => m.state === 'stopped' && !m.ready)
      await get(id).chain
    },
    startMember: async (id) => {
      await ec2.send(new StartInstancesCommand({ InstanceIds: [id] }))
      await autoscaling('ExitStandby', { AutoScalingGroupName: opts.name, 'InstanceIds.member.1': id }, endpoint)
      return waitMember(id, 'running again', (m) => m.ready)
    },
    terminateMember: async (id, { decrement = false } = {}) => {
      await autoscaling('TerminateInstanceInAutoScalingGroup', { InstanceId: id, ShouldDecrementDesiredCapacity: decrement }, endpoint)
      await waitMember(id, 'gone', (m) => m.gone)
    },
    describe: () => describeGroup(opts.name, endpoint),
    close: () =>
      (closing ??= (async () => {
        stopped = true
        await loop
        const problems: string[] = []
        await autoscaling('DeleteAutoScalingGroup', { AutoScalingGroupName: opts.name, ForceDelete: true }, endpoint).catch((e) =>
          problems.push(String(e))
        )
        for (const m of members.values()) steer(m, 'gone')
        await Promise.all([...members.values()].map((m) => m.chain.catch((e) => problems.push(`${m.id}: ${String(e)}`))))
        await ec2.send(new DeleteLaunchTemplateCommand({ LaunchTemplateName: ltName })).catch((e) => problems.push(String(e)))
        ec2.destroy()
        fs.rmSync(dir, { recursive: true, force: true })
        if (problems.length) throw new Error(`pool ${opts.name}: close: ${problems.join(' | ')}`)
      })())
  }
}

function copy(m: PoolMember): PoolMember {
  const { id, ordinal, user, home, port, workRoot, state, hostKey, servedHostKey, behaviour, ready, gone } = m
  return { id, ordinal, user, home, port, workRoot, state, hostKey, servedHostKey, behaviour: { ...behaviour }, ready, gone }
}

function instancesOf(reservations: { Instances?: Instance[] }[] | undefined): Instance[] {
  return (reservations ?? []).flatMap((r) => r.Instances ?? [])
}

/** a fresh ed25519 key pair at file (+ .pub); returns the public key without its comment */
async function newKey(file: string): Promise<string> {
  await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', file])
  return fs.readFileSync(`${file}.pub`, 'utf8').trim().split(/\s+/).slice(0, 2).join(' ')
}

// ---- member users -----------------------------------------------------------------------------

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * A member's lease history file; '' when there is none yet. The member user can write its folder:
 * a symlink is not followed and a FIFO does not block (only a regular file is read).
 */
function readLeaseLog(file: string): string {
  let fd: number
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return ''
    throw e
  }
  try {
    if (!fs.fstatSync(fd).isFile()) throw new Error(`${file} is not a regular file`)
    return fs.readFileSync(fd, 'utf8')
  } finally {
    fs.closeSync(fd)
  }
}

/** PIDs of a user's live processes (none if the user does not exist); zombies are already ended */
export async function userPids(user: string): Promise<number[]> {
  try {
    const { stdout } = await execFileP('ps', ['-u', user, '-o', 'pid=,stat='])
    return stdout
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter(([pid, stat]) => Number(pid) > 0 && !stat?.startsWith('Z'))
      .map(([pid]) => Number(pid))
  } catch {
    return [] // ps exits 1 when there are none (or no such user)
  }
}

/**
 * The first member user that is free, claimed for instance `id` in .testenv/pool-users/<user>
 * (created exclusively; holds "<pid> <id>"). A claim whose process is dead is taken over; a user
 * with processes left (a crashed run's sessions) is skipped, never killed.
 */
async function claimUser(id: string): Promise<string | null> {
  fs.mkdirSync(CLAIMS, { recursive: true, mode: 0o700 })
  for (const user of MEMBER_USERS) {
    const file = path.join(CLAIMS, user)
    let old: string
    try {
      old = fs.readFileSync(file, 'utf8')
    } catch {
      old = ''
    }
    if (old && pidAlive(Number(old.split(' ')[0]))) continue
    if (old) {
      // take the stale claim away atomically; if it changed meanwhile, someone else got it
      const aside = `${file}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`
      try {
        fs.renameSync(file, aside)
      } catch {
        continue
      }
      const got = fs.readFileSync(aside, 'utf8')
      if (got !== old) {
        try {
          fs.linkSync(aside, file)
        } catch {
          // the new holder's claim is lost only if a third process raced in as well
        }
        fs.rmSync(aside, { force: true })
        continue
      }
      fs.rmSync(aside, { force: true })
    }
    if ((await userPids(user)).length) continue
    try {
      fs.writeFileSync(file, `${process.pid} ${id}`, { flag: 'wx', mode: 0o600 })
      return user
    } catch {
      continue
    }
  }
  return null
}

/**
 * Whether another member (of this process or of a pool test running beside it) holds `user` now:
 * its processes and its home's work root are that member's, not leftovers of member `id`.
 */
export function userHeldByOther(user: string, id: string): boolean {
  try {
    return fs.readFileSync(path.join(CLAIMS, user), 'utf8') !== `${process.pid} ${id}`
  } catch {
    return false
  }
}

function releaseUser(user: string, id: string): void {
  const file = path.join(CLAIMS, user)
  try {
    if (fs.readFileSync(file, 'utf8') === `${process.pid} ${id}`) fs.rmSync(file)
  } catch {
    // not ours any more
  }
}

/** Ends a member user's processes (SIGTERM, then SIGKILL after 3 s): the user is held by one member only. */
async function endUserProcesses(user: string): Promise<void> {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const pids = await userPids(user)
    if (!pids.length) return
    for (const pid of pids) {
      try {
        process.kill(pid, signal)
      } catch {
        // gone meanwhile
      }
    }
    await waitUntil(async () => (await userPids(user)).length === 0, 3_000)
  }
  const left = await userPids(user)
  if (left.length) throw new Error(`${user}: processes ${left.join(' ')} survive SIGKILL`)
}

/**
 * Empties the user's home and removes its files from the temp folders: the next member starts clean.
 * Only the folders' own entries, as the hook's scrub: a walk of the whole of /tmp (a clone's
 * node_modules may be there) cost ~0.15 s of CPU per member, a twentieth of a whole test run's.
 */
async function wipeUserFiles(user: string): Promise<void> {
  let home: string
  try {
    home = (await execFileP('getent', ['passwd', user])).stdout.split(':')[5]
  } catch {
    return // not created yet
  }
  if (!home || !/^\/home\/rchp[0-9]+$/.test(home)) throw new Error(`${user}: unexpected home '${home}'`)
  for (const entry of fs.readdirSync(home)) fs.rmSync(path.join(home, entry), { recursive: true, force: true })
  const top = ['-mindepth', '1', '-maxdepth', '1', '-user', user]
  await execFileP('find', ['/tmp', '/var/tmp', '/dev/shm', '-xdev', ...top, '-exec', 'rm', '-rf', '{}', '+']).catch(
    () => undefined // a file vanishing during the walk
  )
}

/**
 * ~user/.config/remote-container-hooks/scrub-scope: the hook's scrub touches only this member's docker
 * objects, and only images under SCOPED_IMAGES (the machine's other images belong to other tests).
 */
async function writeScrubScope(user: string, home: string, id: string): Promise<void> {
  const { uid, gid } = await ids(user)
  let d = home
  for (const part of ['.config', 'remote-container-hooks']) {
    d = path.join(d, part)
    fs.mkdirSync(d, { recursive: true, mode: 0o755 })
    fs.chownSync(d, uid, gid)
  }
  const file = path.join(d, 'scrub-scope')
  fs.writeFileSync(file, `label=${MACHINE_LABEL}=${id}\nreference=${SCOPED_IMAGES}\n`, { mode: 0o644 })
  fs.chownSync(file, uid, gid)
}

async function ids(user: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await execFileP('id', ['-u', user])).stdout.trim())
  const gid = Number((await execFileP('id', ['-g', user])).stdout.trim())
  return { uid, gid }
}

/** Stops this machine's running containers labelled for one member (its OS shut down); they stay, exited. */
export async function stopMachineContainers(id: string): Promise<void> {
  const { stdout } = await execFileP('docker', ['ps', '-q', '--filter', `label=${MACHINE_LABEL}=${id}`])
  const running = stdout.split('\n').filter(Boolean)
  if (running.length) await execFileP('docker', ['stop', '--time', '2', ...running])
}

/** Removes this machine's docker objects labelled for one member (what a terminated VM takes with it), its images too. */
export function removeMachineDockerObjects(id: string): Promise<void> {
  return removeLabelledDockerObjects(`label=${MACHINE_LABEL}=${id}`, { images: true })
}

/** The env file instance-sshd.sh writes while a member's sshd runs (null when it does not run). */
export function memberSshdEnv(id: string): Record<string, string> | null {
  try {
    return parseEnvFile(fs.readFileSync(path.join(testenvDir, `inst-${id}`, 'env'), 'utf8'))
  } catch {
    return null
  }
}

/** A pool key (the private half in `dir`, no passphrase), as an operator makes one: its path and `ssh-ed25519 AAAA…` public half. */
export function poolKeyPair(dir: string, comment = 'pool'): { key: string; pub: string } {
  const key = path.join(dir, 'pool_ed25519')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', key])
  return { key, pub: fs.readFileSync(`${key}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ') }
}

/** The hook's configuration for a pool made here: members by their tags (address, user), work root ~/rch. */
export function poolHookConfig(pool: Pick<Pool, 'endpoint' | 'name'>, identityFile: string, provider: Record<string, unknown> = {}) {
  return {
    provider: {
      kind: 'ec2-pool',
      region: 'eu-west-1',
      endpoint: pool.endpoint,
      autoScalingGroup: pool.name,
      user: 'tag:rch-user',
      identityFile,
      connect: { address: `tag:${ENDPOINT_TAG}` },
      ...provider,
      // The tests (and the demo) follow members across jobs (scrub, reuse, takeover); the hook's default is 1.
      reuse: { maxJobsPerVm: 20, ...(provider.reuse as Record<string, unknown> | undefined) }
    },
    remote: { workRoot: '~/rch' }
  }
}
