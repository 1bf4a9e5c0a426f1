/**
 * Access to the integration-test environment that scripts/test.sh starts
 * (scripts/testenv/{setup,vm,registry}.sh): two loopback sshd "VMs" (a on port
 * 2231, b on port 2232, user rchvm, both driving this machine's dockerd) and a
 * private registry on 127.0.0.1:5000 with basic auth.
 *
 * Only node built-ins; the values come from the env files the scripts write.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

/** Absolute path of the repository root. */
export const repoRoot: string = path.resolve(__dirname, '..', '..')

/** Where scripts/testenv/*.sh keep their state (RCH_TESTENV_DIR overrides, as in the scripts). */
export const testenvDir: string = process.env.RCH_TESTENV_DIR ? path.resolve(process.env.RCH_TESTENV_DIR) : path.join(repoRoot, '.testenv')

/** Local images built by scripts/testenv/setup.sh (labelled rch-test=1). */
export const testImages = {
  /** busybox-static + bash-static: sh, bash, nc, httpd, tar, wget ... */
  tiny: 'rch-test/tiny:1',
  /** like tiny, with /etc/os-release ID=alpine and /etc/alpine-release */
  musl: 'rch-test/musl:1',
  /** debootstrap minbase bookworm: glibc, bash, coreutils; runs the host's node */
  glibc: 'rch-test/glibc:1'
} as const

export type VmName = 'a' | 'b' | 'dev' | 'h2' | 'demo' | 'bench' | 'adv' | 'rev1'

export interface TestVm {
  host: string
  port: number
  user: string
  /** absolute path of the ed25519 private key (0600) */
  identityFile: string
  /** absolute path of a known_hosts file with the line "[127.0.0.1]:PORT ssh-ed25519 ..." */
  knownHostsFile: string
  /** absolute directory on the "VM", owned by the ssh user, emptied at each VM start */
  workRoot: string
}

export interface TestRegistry {
  /** "127.0.0.1:5000" */
  host: string
  user: string
  /** absolute path of a 0600 file holding the password (no trailing newline) */
  passwordFile: string
  /** an image that is in the registry but not tagged locally: "127.0.0.1:5000/private/tiny:1" */
  image: string
  /** the same image under its own name, for a test file that may run alongside the one using `image` */
  policyImage: string
}

/** Parses KEY=value lines (values optionally single- or double-quoted); # comments allowed. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const eq = line.indexOf('=')
    if (eq <= 0) continue
    const key = line.slice(0, eq).trim()
    let value = line.slice(eq + 1)
    if (value.length >= 2 && (value[0] === "'" || value[0] === '"') && value.endsWith(value[0])) {
      value = value.slice(1, -1)
    }
    out[key] = value
  }
  return out
}

/** An env file a testenv script wrote; a clear error when that part of the environment is not running. */
export function readEnv(file: string, what: string): Record<string, string> {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new Error(
      `test environment not running: ${what} env file ${file} is missing (${code ?? String(err)}); ` +
        'run scripts/test.sh (npm test), which starts it',
      { cause: err }
    )
  }
  return parseEnvFile(text)
}

function need(env: Record<string, string>, key: string, file: string): string {
  const value = env[key]
  if (value === undefined || value === '') {
    throw new Error(`${file} has no ${key}; run scripts/test.sh (npm test) to recreate it`)
  }
  return value
}

/** The sshd "VM" a or b started by `scripts/testenv/vm.sh start NAME PORT`. */
export function loadVm(name: VmName): TestVm {
  const file = path.join(testenvDir, `vm-${name}`, 'env')
  const env = readEnv(file, `VM "${name}"`)
  const port = Number(need(env, 'VM_PORT', file))
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`${file}: bad VM_PORT ${env.VM_PORT}`)
  }
  return {
    host: need(env, 'VM_HOST', file),
    port,
    user: need(env, 'VM_USER', file),
    identityFile: need(env, 'VM_IDENTITY', file),
    knownHostsFile: need(env, 'VM_KNOWN_HOSTS', file),
    workRoot: need(env, 'VM_WORKROOT', file)
  }
}

/**
 * OpenSSH client options for a test VM: its key, its pinned host key, no prompts (for the tests'
 * and the bench's own ssh commands; add `-F /dev/null` to keep the user's ssh config out).
 */
export const opensshArgs = (vm: TestVm): string[] => [
  '-i',
  vm.identityFile,
  '-p',
  String(vm.port),
  '-o',
  `UserKnownHostsFile=${vm.knownHostsFile}`,
  '-o',
  'StrictHostKeyChecking=yes',
  '-o',
  'BatchMode=yes',
  '-o',
  'GlobalKnownHostsFile=/dev/null'
]

/** The private registry started by `scripts/testenv/registry.sh start`. */
export function loadRegistry(): TestRegistry {
  const file = path.join(testenvDir, 'registry', 'env')
  const env = readEnv(file, 'registry')
  return {
    host: need(env, 'REGISTRY_HOST', file),
    user: need(env, 'REGISTRY_USER', file),
    passwordFile: need(env, 'REGISTRY_PASSWORD_FILE', file),
    image: need(env, 'REGISTRY_IMAGE', file),
    policyImage: need(env, 'REGISTRY_POLICY_IMAGE', file)
  }
}
