/**
 * Access to moto's EC2 API server that scripts/testenv/moto.sh starts (scripts/test.sh does
 * it): http://127.0.0.1:5005, state in memory, dummy credentials, region eu-west-1.
 *
 * moto starts no machines. The private/public IPs and DNS names it invents for instances
 * (10.x, 54.x, *.compute.internal ...) are NOT on this machine: never connect to them. A test
 * that needs an instance to SSH into starts scripts/testenv/instance-sshd.sh on loopback
 * (see startInstanceSshd) and tells the code under test where it is through something the
 * test controls (a tag, a config override).
 */
import { execFile, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { DescribeImagesCommand, EC2Client, type EC2ClientConfig } from '@aws-sdk/client-ec2'
import { parseEnvFile, readEnv, repoRoot, testenvDir } from './testenv'
import { settlesWithin, waitUntil } from './wait'

const execFileP = promisify(execFile)

/** Region every EC2 test uses (moto's default AMIs exist there). */
export const TEST_REGION = 'eu-west-1'

/** moto accepts any credentials; these keep the SDK away from any real credential source. */
export const DUMMY_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' } as const

export interface MotoEnv {
  /** "http://127.0.0.1:5005" */
  endpoint: string
  port: number
  /** the pinned moto version, e.g. "5.2.5" */
  version: string
  /** true: moto runs with AMI and instance-type validation (unknown ones are refused) */
  validate: boolean
}

/** Set by startOwnMoto in the test file that runs one (Jest gives each file its own process.env). */
const OWN_MOTO = 'RCH_TEST_OWN_MOTO'

/**
 * The moto server started by `scripts/testenv/moto.sh start` (reads .testenv/moto/env), or the
 * calling test file's own one (startOwnMoto).
 */
export function loadMoto(): MotoEnv {
  const own = process.env[OWN_MOTO]
  if (own) return JSON.parse(own) as MotoEnv
  const file = path.join(testenvDir, 'moto', 'env')
  const env = readEnv(file, 'moto (`bash scripts/testenv/moto.sh start`)')
  const endpoint = env.MOTO_ENDPOINT
  const port = Number(env.MOTO_PORT)
  if (!endpoint || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`${file}: MOTO_ENDPOINT/MOTO_PORT missing or bad; restart scripts/testenv/moto.sh`)
  }
  return { endpoint, port, version: env.MOTO_VERSION ?? 'unknown', validate: env.MOTO_VALIDATE === '1' }
}

/** A test file's own moto server (startOwnMoto). */
export interface OwnMoto {
  endpoint: string
  stop(): Promise<void>
}

/**
 * Starts a moto server of the calling test file's own, from the same virtualenv and with the same
 * validation as the shared one; from then on loadMoto() in this file names it (Jest gives the file
 * a process.env of its own, which the processes it starts do not see: pass them the endpoint). For
 * the files that call moto the most: moto is one Python process that answers one request at a
 * time, and while the pool load test ran, other files' calls queued behind its jobs' for tens of
 * seconds. Its niceness is set back to 0: it stands in for AWS, which has CPU of its own. stop()
 * ends it and forgets it.
 */
export async function startOwnMoto(): Promise<OwnMoto> {
  const shared = loadMoto()
  const server = path.join(testenvDir, 'moto-venv', 'bin', 'moto_server')
  const port = await freePort()
  const log = path.join(testenvDir, 'moto', `own-${port}.log`)
  const env = { ...process.env }
  delete env.MOTO_ENABLE_AMI_VALIDATION
  delete env.MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION
  // moto takes any non-empty value as on (scripts/testenv/moto.sh)
  if (shared.validate) Object.assign(env, { MOTO_ENABLE_AMI_VALIDATION: '1', MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION: '1' })
  const out = fs.openSync(log, 'w')
  const child = spawn(server, ['-H', '127.0.0.1', '-p', String(port)], { env, stdio: ['ignore', out, out] })
  fs.closeSync(out)
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const stop = async (): Promise<void> => {
    if (process.env[OWN_MOTO] && JSON.parse(process.env[OWN_MOTO]).port === port) delete process.env[OWN_MOTO]
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      if (!(await settlesWithin(exited, 5_000))) child.kill('SIGKILL')
      await exited
    }
    fs.rmSync(log, { force: true })
  }
  try {
    await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject))
    try {
      os.setPriority(child.pid!, 0)
    } catch {
      // not root: it keeps the file's niceness
    }
    const endpoint = `http://127.0.0.1:${port}`
    const up = async (): Promise<boolean> => {
      if (child.exitCode !== null) throw new Error(`own moto on ${port} exited: ${fs.readFileSync(log, 'utf8').slice(-2000)}`)
      return fetch(`${endpoint}/moto-api/data.json`).then(
        (r) => r.status === 200,
        () => false
      )
    }
    if (!(await waitUntil(up, 30_000, 100)))
      throw new Error(`own moto on ${port} did not answer within 30 s: ${fs.readFileSync(log, 'utf8').slice(-2000)}`)
    // a server that took the port first would answer too, while ours exits on the bind
    if (await settlesWithin(exited, 500)) throw new Error(`own moto on ${port} exited: ${fs.readFileSync(log, 'utf8').slice(-2000)}`)
    process.env[OWN_MOTO] = JSON.stringify({ ...shared, endpoint, port } satisfies MotoEnv)
    return { endpoint, stop }
  } catch (e) {
    await stop()
    throw e
  }
}

export interface Ec2ClientOptions extends Partial<EC2ClientConfig> {
  /** default: loadMoto().endpoint (pass a fault proxy's endpoint to go through it) */
  endpoint?: string
}

/**
 * An EC2Client for moto (or a fault proxy in front of it): region eu-west-1, dummy
 * credentials, short timeouts. Anything in `options` overrides (e.g. maxAttempts).
 * Call client.destroy() when done (keep-alive sockets).
 */
export function ec2Client(options: Ec2ClientOptions = {}): EC2Client {
  const { endpoint, ...rest } = options
  return new EC2Client({
    region: TEST_REGION,
    credentials: DUMMY_CREDENTIALS,
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 },
    ...rest,
    endpoint: endpoint ?? loadMoto().endpoint
  })
}

/**
 * Clears all of moto's state (instances, launch templates, tags ...): POST /moto-api/reset.
 * moto is one server for the whole jest run and jest runs test files in parallel, so this
 * also wipes what other test files are doing: prefer unique tag values / names per test, and
 * reset only where nothing else can be using moto (e.g. a globalSetup, or a dedicated server).
 */
export async function resetMoto(endpoint: string = loadMoto().endpoint): Promise<void> {
  const res = await fetch(new URL('/moto-api/reset', endpoint), { method: 'POST' })
  await res.arrayBuffer()
  if (res.status !== 200) throw new Error(`moto reset: HTTP ${res.status} from ${endpoint}`)
}

/**
 * An AMI id moto knows (its bundled default images): the first Amazon Linux 2 HVM image for
 * the architecture. moto's list holds ~1300 images, many of them Windows (Platform windows).
 */
export async function motoImageId(client: EC2Client, arch: 'x86_64' | 'arm64' = 'x86_64'): Promise<string> {
  const out = await client.send(
    new DescribeImagesCommand({
      Owners: ['amazon'],
      Filters: [
        { Name: 'name', Values: ['amzn2-ami-hvm-*'] },
        { Name: 'architecture', Values: [arch] }
      ]
    })
  )
  const img = (out.Images ?? []).find((i) => i.ImageId && !/windows/i.test(String(i.Platform ?? '')))
  if (!img?.ImageId) throw new Error(`moto has no amzn2-ami-hvm-* image for ${arch}`)
  return img.ImageId
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address() as net.AddressInfo
      srv.close(() => resolve(addr.port))
    })
  })
}

export interface InstanceSshd {
  name: string
  host: '127.0.0.1'
  port: number
  user: string
  /** absolute directory owned by `user`, removed by stop() */
  workRoot: string
  /** "SHA256:..." of the host key it serves */
  hostKeyFingerprint: string
  stop(): Promise<void>
}

const INSTANCE_SSHD = path.join(repoRoot, 'scripts', 'testenv', 'instance-sshd.sh')

/**
 * Starts scripts/testenv/instance-sshd.sh: a loopback sshd (user rchvm, group docker) serving
 * `hostKeyFile` (private key) and authorizing `authorizedKeyFile` (public key) - a stand-in
 * for a booted EC2 instance. Needs root. `name`: [a-z0-9-] (an instance id fits).
 */
export async function startInstanceSshd(name: string, port: number, authorizedKeyFile: string, hostKeyFile: string): Promise<InstanceSshd> {
  await execFileP('bash', [INSTANCE_SSHD, 'start', name, String(port), authorizedKeyFile, hostKeyFile], {
    timeout: 60_000
  })
  const env = parseEnvFile(fs.readFileSync(path.join(testenvDir, `inst-${name}`, 'env'), 'utf8'))
  return {
    name,
    host: '127.0.0.1',
    port: Number(env.INST_PORT),
    user: env.INST_USER,
    workRoot: env.INST_WORKROOT,
    hostKeyFingerprint: env.INST_HOSTKEY_FINGERPRINT,
    stop: () => stopInstanceSshd(name)
  }
}

export async function stopInstanceSshd(name: string): Promise<void> {
  await execFileP('bash', [INSTANCE_SSHD, 'stop', name], { timeout: 60_000 })
}
