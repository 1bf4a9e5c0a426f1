/**
 * Stands in for the machines behind moto's EC2 API: moto starts nothing, so this "boots" the
 * instances the hook launches. It polls DescribeInstances (every ~200 ms) for new pending/running
 * instances tagged `remote-container-hooks:owner` (optionally one owner value only), and for each:
 *
 *   DescribeInstanceAttribute userData -> parseUserData (src/providers/user-data.ts)
 *   -> the host private key and the client public key into 0600 temp files
 *   -> scripts/testenv/instance-sshd.sh start NAME PORT PUB HOSTKEY   (loopback sshd, user rchvm)
 *   -> CreateTags rch-endpoint=127.0.0.1:PORT (the address the hook is configured to use)
 *
 * When an instance becomes shutting-down/terminated it stops that sshd (the instance is gone),
 * and removes the docker objects of the instance's owner from this machine's dockerd (the
 * "instance" shares it: on a real instance they would die with the VM).
 *
 * It talks to moto directly (never through a test's fault proxy, so injected faults only hit the
 * hook), and only ever connects to 127.0.0.1: the addresses moto invents are never used.
 */
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import {
  CreateTagsCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  type EC2Client,
  type Instance
} from '@aws-sdk/client-ec2'
import { parseUserData, readyMarker } from '../../src/providers/user-data'
import { freePort, startInstanceSshd, stopInstanceSshd, type InstanceSshd } from './ec2-env'
import type { FakeRunner, HookRun } from './fake-runner'
import { valueWithin, waitUntil as waitUntilTrue } from './wait'

const execFileP = promisify(execFile)

export const OWNER_TAG = 'remote-container-hooks:owner'
/** docker label the hook puts on everything it creates (src/labels.ts) */
const LABEL_OWNER = 'dev.remote-container-hooks.owner'

export interface BooterOptions {
  /** delay between sshd accepting logins and the boot setup's ready marker (cloud-init final stage) */
  cloudInitDelayMs?: number
  /** only instances whose owner tag has this value (default: any owner) */
  owner?: string
  /** instance-sshd NAME for an instance (default: its id). The sshd's work root is /var/tmp/rch-inst-NAME/work. */
  name?: (instanceId: string) => string
  /** tag holding the endpoint (default 'rch-endpoint'; the hook's config: connect.address 'tag:rch-endpoint') */
  endpointTag?: string
  /** wait this long after sshd is up before the endpoint tag appears (exercises the hook's wait for an address) */
  tagDelayMs?: number
  /** publish the tag first and start sshd this long afterwards (exercises the hook's wait for SSH) */
  sshdDelayMs?: number
  /** never boot (no sshd, no tag): the hook's acquire deadline must end the wait */
  neverBoot?: boolean
  /** serve a host key other than the one in the user data (a man in the middle): pinning must refuse it */
  wrongHostKey?: boolean
  /** DescribeInstances poll period (default 200 ms) */
  pollMs?: number
  /** instances never to take up (e.g. a leftover a test planted itself) */
  ignore?: Set<string>
}

export interface BootedInstance {
  id: string
  name: string
  port: number
  /** the user data script the instance got (decoded) */
  userData: string
  /** the owner tag's value */
  owner: string
  sshd: InstanceSshd | null
  /** the instance was seen shutting-down/terminated and its sshd stopped */
  gone: boolean
}

export interface InstanceBooter {
  /** every instance it took up, by id (booted or being booted) */
  readonly instances: Map<string, BootedInstance>
  /** problems while booting (a test should expect this to be empty) */
  readonly errors: string[]
  /** what it did, in order (for failure messages) */
  readonly events: string[]
  /** resolves with the first instance taken up that matches (waits at most timeoutMs) */
  waitForInstance(timeoutMs?: number): Promise<BootedInstance>
  /** resolves once the instance's sshd serves and its tag is set */
  waitBooted(id: string, timeoutMs?: number): Promise<BootedInstance>
  /** stops one instance's sshd now (as if the machine vanished) */
  kill(id: string): Promise<void>
  /** stops polling and every sshd it started */
  stop(): Promise<void>
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Removes this machine's docker objects labelled with an owner (what a terminated VM takes with it). */
export function removeOwnerDockerObjects(owner: string): Promise<void> {
  return removeLabelledDockerObjects(`label=${LABEL_OWNER}=${owner}`)
}

/** Removes this machine's containers, networks, volumes (and with `images`, images) matching a docker `--filter`. */
export async function removeLabelledDockerObjects(filter: string, opts: { images?: boolean } = {}): Promise<void> {
  const ids = async (args: string[]) => {
    try {
      const { stdout } = await execFileP('docker', args)
      return stdout.split('\n').filter(Boolean)
    } catch {
      return []
    }
  }
  const containers = await ids(['ps', '-aq', '--filter', filter])
  if (containers.length) await execFileP('docker', ['rm', '-f', ...containers]).catch(() => undefined)
  const networks = await ids(['network', 'ls', '-q', '--filter', filter])
  if (networks.length) await execFileP('docker', ['network', 'rm', ...networks]).catch(() => undefined)
  const volumes = await ids(['volume', 'ls', '-q', '--filter', filter])
  if (volumes.length) await execFileP('docker', ['volume', 'rm', '-f', ...volumes]).catch(() => undefined)
  if (!opts.images) return
  const images = await ids(['image', 'ls', '-q', '--filter', filter])
  if (images.length) await execFileP('docker', ['image', 'rm', '-f', ...new Set(images)]).catch(() => undefined)
}

export function startInstanceBooter(ec2: EC2Client, opts: BooterOptions = {}): InstanceBooter {
  const pollMs = opts.pollMs ?? 200
  const tagName = opts.endpointTag ?? 'rch-endpoint'
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rch-fake-instance-'))
  const instances = new Map<string, BootedInstance>()
  const booting = new Map<string, Promise<void>>()
  const stopping = new Map<string, Promise<void>>()
  const ready = new Set<string>()
  const errors: string[] = []
  const events: string[] = []
  const t0 = Date.now()
  const note = (m: string) => events.push(`+${((Date.now() - t0) / 1000).toFixed(1)}s ${m}`)
  let stopped = false

  const boot = async (inst: BootedInstance): Promise<void> => {
    const attr = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: inst.id, Attribute: 'userData' }))
    const script = Buffer.from(attr.UserData?.Value ?? '', 'base64').toString('utf8')
    inst.userData = script
    const keys = parseUserData(script)
    if (!keys) throw new Error(`${inst.id}: user data is not the hook's boot script`)
    note(`${inst.id}: user data read (lifetime ${keys.maxLifetimeMinutes} min)`)
    if (opts.neverBoot) return
    const d = fs.mkdtempSync(path.join(dir, `${inst.id}-`))
    const pub = path.join(d, 'authorized_key.pub')
    const hostKey = path.join(d, 'ssh_host_ed25519_key')
    fs.writeFileSync(pub, `${keys.clientPublicKey}\n`, { mode: 0o600 })
    if (opts.wrongHostKey) {
      await execFileP('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'not-the-pinned-key', '-f', hostKey])
    } else {
      fs.writeFileSync(hostKey, keys.hostPrivateKey, { mode: 0o600 })
    }
    let port = await freePort()
    inst.port = port
    const tag = async () => {
      if (opts.tagDelayMs) await sleep(opts.tagDelayMs)
      if (stopped || inst.gone) return
      await ec2.send(new CreateTagsCommand({ Resources: [inst.id], Tags: [{ Key: tagName, Value: `127.0.0.1:${port}` }] }))
      note(`${inst.id}: tagged ${tagName}=127.0.0.1:${port}`)
    }
    const sshd = async () => {
      // A port found free can be taken by another test's process before sshd binds it: then try
      // another (only while the endpoint tag is not out yet, since the tag names the port).
      for (let attempt = 1; ; attempt++) {
        if (stopped || inst.gone) return
        try {
          inst.sshd = await startInstanceSshd(inst.name, port, pub, hostKey)
          break
        } catch (e) {
          const tagged = opts.sshdDelayMs !== undefined
          note(`${inst.id}: sshd start on ${port} failed (attempt ${attempt}): ${String(e).split('\n').slice(-3).join(' ')}`)
          if (tagged || attempt >= 3) throw e
          port = await freePort()
          inst.port = port
        }
      }
      note(`${inst.id}: sshd ${inst.name} on 127.0.0.1:${port}${opts.wrongHostKey ? ' (wrong host key)' : ''}`)
    }
    // What the user data's runcmd does last on a real instance (cloud-init's final stage).
    const bootSetup = async () => {
      if (opts.cloudInitDelayMs) await sleep(opts.cloudInitDelayMs)
      if (stopped || inst.gone || !inst.sshd) return
      const marker = readyMarker(`/var/tmp/rch-inst-${inst.name}/work`)
      await execFileP('sh', ['-c', `touch '${marker}' && chown rchvm '${marker}'`])
      note(`${inst.id}: boot setup done (${marker})`)
    }
    if (opts.sshdDelayMs !== undefined) {
      await tag()
      await sleep(opts.sshdDelayMs)
      await sshd()
    } else {
      await sshd()
      await tag()
    }
    await bootSetup()
    // (terminated while booting: shutDown waits for this boot, then stops the sshd)
    if (!inst.gone) ready.add(inst.id)
  }

  const shutDown = (inst: BootedInstance): Promise<void> => {
    let p = stopping.get(inst.id)
    if (!p) {
      inst.gone = true
      p = (async () => {
        await booting.get(inst.id)?.catch(() => undefined)
        if (inst.sshd) await stopInstanceSshd(inst.name).catch((e) => errors.push(`${inst.id}: stop sshd: ${String(e)}`))
        await removeOwnerDockerObjects(inst.owner)
        note(`${inst.id}: gone (sshd stopped)`)
      })()
      stopping.set(inst.id, p)
    }
    return p
  }

  const poll = async () => {
    const filters = [{ Name: 'tag-key', Values: [OWNER_TAG] }]
    if (opts.owner) filters.push({ Name: `tag:${OWNER_TAG}`, Values: [opts.owner] })
    const out = await ec2.send(new DescribeInstancesCommand({ Filters: filters }))
    for (const i of (out.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
      const id = i.InstanceId!
      const state = i.State?.Name ?? ''
      const known = instances.get(id)
      if (opts.ignore?.has(id)) continue
      if (!known && (state === 'pending' || state === 'running')) {
        const inst: BootedInstance = {
          id,
          name: (opts.name ?? ((x) => x))(id),
          port: 0,
          userData: '',
          owner: tagsOf(i)[OWNER_TAG] ?? '',
          sshd: null,
          gone: false
        }
        instances.set(id, inst)
        note(`${id}: seen ${state}`)
        booting.set(
          id,
          boot(inst).catch((e) => {
            errors.push(`${id}: boot: ${String(e)}`)
          })
        )
      } else if (
        known &&
        !known.gone &&
        (state === 'shutting-down' || state === 'terminated' || state === 'stopping' || state === 'stopped')
      ) {
        note(`${id}: seen ${state}`)
        void shutDown(known)
      }
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

  const waitUntil = async <T>(what: string, fn: () => T | undefined, timeoutMs: number): Promise<T> => {
    const v = await valueWithin(fn, timeoutMs)
    if (v === undefined)
      throw new Error(`fake instance: ${what} within ${timeoutMs} ms; events: ${events.join(' | ')}; errors: ${errors.join(' | ')}`)
    return v
  }

  return {
    instances,
    errors,
    events,
    waitForInstance: (timeoutMs = 30_000) => waitUntil('no instance seen', () => [...instances.values()][0], timeoutMs),
    waitBooted: (id, timeoutMs = 30_000) => waitUntil(`${id} not booted`, () => (ready.has(id) ? instances.get(id) : undefined), timeoutMs),
    kill: async (id) => {
      const inst = instances.get(id)
      if (inst) await shutDown(inst)
    },
    stop: async () => {
      stopped = true
      await loop
      await Promise.all([...booting.values()])
      await Promise.all([...instances.values()].map((i) => shutDown(i)))
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

// ---- shared by test/integration/ec2-*.test.ts ------------------------------------------------

/** What the runner's environment gives the hook for an EC2 job: dummy credentials and the job's identity. */
export const EC2_HOOK_ENV: Record<string, string> = {
  AWS_ACCESS_KEY_ID: 'testing',
  AWS_SECRET_ACCESS_KEY: 'testing',
  AWS_REGION: 'eu-west-1',
  // credentials come from the env above: the SDK must never look for an instance metadata service
  AWS_EC2_METADATA_DISABLED: 'true',
  GITHUB_REPOSITORY: 'acme/widgets',
  GITHUB_WORKFLOW: 'CI on EC2',
  // A pull request's run: costs count under the workflow's file, not the name the run gives itself.
  GITHUB_WORKFLOW_REF: 'acme/widgets/.github/workflows/ec2.yml@refs/pull/7/merge',
  GITHUB_RUN_ID: '9876543210',
  GITHUB_RUN_ATTEMPT: '2',
  GITHUB_JOB: 'build'
}

/** A unique [a-z0-9-] name for one test's stand-in instance (instance-sshd NAME). */
export function instanceName(prefix = 'ec2t'): string {
  return `${prefix}-${process.pid.toString(36)}-${Math.random().toString(36).slice(2, 8)}`
}

/**
 * FakeRunner config override for an EC2 job whose (single) instance the booter starts as
 * instance-sshd NAME: the hook's work root is that sshd's /var/tmp/rch-inst-NAME/work (made
 * for rchvm by instance-sshd.sh, removed when the "instance" is terminated).
 */
export function ec2RunnerConfig(opts: {
  endpoint: string
  imageId: string
  name: string
  provider?: Record<string, unknown>
}): Record<string, unknown> {
  return {
    provider: {
      kind: 'ec2',
      region: 'eu-west-1',
      endpoint: opts.endpoint,
      imageId: opts.imageId,
      instanceTypes: ['m7i.large', 'm6i.large'],
      user: 'rchvm',
      sshPort: 22,
      connect: { address: 'tag:rch-endpoint' },
      acquireTimeoutSeconds: 60,
      tags: { team: 'platform' },
      ...(opts.provider ?? {})
    },
    remote: { workRoot: `/var/tmp/rch-inst-${opts.name}/work` }
  }
}

export function tagsOf(x: { Tags?: { Key?: string; Value?: string }[] }): Record<string, string> {
  return Object.fromEntries((x.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? '']))
}

export async function describeInstance(ec2: EC2Client, id: string): Promise<Instance> {
  const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))
  const inst = out.Reservations?.[0]?.Instances?.[0]
  if (!inst) throw new Error(`DescribeInstances ${id}: no instance`)
  return inst
}

/** States in which an instance still costs money / may still run something. */
export const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped']

/** Instances the hook launched for an owner id (its owner tag), optionally only in some states. */
export async function instancesOfOwner(ec2: EC2Client, owner: string, states?: string[]): Promise<Instance[]> {
  const out = await ec2.send(
    new DescribeInstancesCommand({
      Filters: [{ Name: `tag:${OWNER_TAG}`, Values: [owner] }, ...(states ? [{ Name: 'instance-state-name', Values: states }] : [])]
    })
  )
  return (out.Reservations ?? []).flatMap((r) => r.Instances ?? [])
}

export async function waitInstanceState(ec2: EC2Client, id: string, want: string, timeoutMs = 15_000): Promise<void> {
  let s: string | undefined
  if (!(await waitUntilTrue(async () => (s = (await describeInstance(ec2, id)).State?.Name) === want, timeoutMs, 200)))
    throw new Error(`${id} is ${s}, not ${want} after ${timeoutMs} ms`)
}

/** Waits until fn() gives a non-empty array (polling), or returns [] at the deadline. */
export async function pollFor<T>(fn: () => Promise<T[]>, timeoutMs: number, everyMs = 100): Promise<T[]> {
  const some = async (): Promise<T[] | undefined> => {
    const v = await fn()
    return v.length ? v : undefined
  }
  return (await valueWithin(some, timeoutMs, everyMs)) ?? []
}

/**
 * A hook command as the runner runs it, with EC2_HOOK_ENV (plus `env`); SIGTERM after limitMs, so
 * a hang fails the test with the output so far instead of at jest's timeout.
 */
export async function hookCall(
  runner: FakeRunner,
  command: string,
  args: unknown,
  opts: { state?: unknown; env?: Record<string, string>; limitMs?: number } = {}
): Promise<HookRun> {
  const run = runner.start(command, args, {
    env: { ...EC2_HOOK_ENV, ...(opts.env ?? {}) },
    ...(opts.state !== undefined ? { state: opts.state } : {})
  })
  const t = setTimeout(() => run.child.kill('SIGTERM'), opts.limitMs ?? 60_000)
  try {
    return await run.done
  } finally {
    clearTimeout(t)
  }
}

/** prepare_job (state null); on success the runner keeps the state for the next commands. */
export async function hookPrepare(
  runner: FakeRunner,
  args: unknown,
  opts: { env?: Record<string, string>; limitMs?: number } = {}
): Promise<HookRun> {
  const r = await hookCall(runner, 'prepare_job', args, { state: null, env: opts.env, limitMs: opts.limitMs ?? 90_000 })
  if (r.code === 0 && r.response?.state) runner.state = r.response.state
  return r
}

/** The output of a hook command, for failure messages. */
/** A hook run for a failure message; with the booter, also what the stand-in instances did. */
export function dumpRun(r: HookRun, booter?: InstanceBooter): string {
  const boot = booter ? `\n--- fake instances\n${booter.events.join('\n')}\n--- booter errors\n${booter.errors.join('\n')}` : ''
  return `exit ${r.code}${r.signal ? ` (${r.signal})` : ''} after ${r.ms} ms\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}${boot}`
}
