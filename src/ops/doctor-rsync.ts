// Whether the runner host's rsync has the client-side fixes of rsync 3.4.0 (CVE-2024-12084 to 12088,
// 12747). The first copy runs it as the client of the VM's `rsync --server`, which the SSH user's
// PATH picks, so a job that was root on a machine before this one (a static host, a pool member)
// can have replaced it; an unfixed client lets such a server read files of the runner host.
import { spawn } from 'node:child_process'
import { readFileSync, realpathSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { TOOL_ENV } from '../tools'
import type { CheckResult } from './output'

const FIXED = [3, 4, 0]
/** Named in a distribution's changelog when it carries the fixes in an older version. */
const MARK = 'CVE-2024-12086'
const DEBIAN_CHANGELOG = '/usr/share/doc/rsync/changelog.Debian.gz'

export interface RsyncProbe {
  /** What `<rsync> --version` printed, or null if it could not be run. */
  version(path: string): Promise<string | null>
  /**
   * Whether `path` is the distribution package's own rsync and the package's record names the fix:
   * a changelog says nothing of another build (`tools.rsync: /opt/old/rsync`) beside it.
   */
  backported(path: string): Promise<boolean>
}

/** The version from the first line of `rsync --version` ("rsync  version 3.2.7  protocol version 31"). */
export function parseRsyncVersion(text: string): number[] | null {
  const m = /^rsync\s+version\s+v?(\d+)\.(\d+)\.(\d+)/.exec(text)
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null
}

const atLeast = (v: number[], min: number[]): boolean => {
  for (let i = 0; i < min.length; i++) if (v[i] !== min[i]) return v[i] > min[i]
  return true
}

function run(file: string, args: string[]): Promise<string | null> {
  return new Promise((done) => {
    let out = ''
    const child = spawn(file, args, { env: TOOL_ENV, stdio: ['ignore', 'pipe', 'ignore'] })
    // spawn's own timeout option keeps its timer when the program cannot be started at all
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    const end = (v: string | null): void => {
      clearTimeout(timer)
      done(v)
    }
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (d: string) => {
      if (out.length < 4_000_000) out += d
    })
    child.on('error', () => end(null))
    child.on('close', (code) => end(code === 0 ? out : null))
  })
}

/** Where Debian's and RPM distributions' rsync package installs the program. */
const PACKAGE_BINARY = '/usr/bin/rsync'

function isPackageBinary(path: string): boolean {
  try {
    return realpathSync(path) === realpathSync(PACKAGE_BINARY)
  } catch {
    return false
  }
}

export const systemProbe: RsyncProbe = {
  version: (path) => run(path, ['--version']),
  async backported(path) {
    if (!isPackageBinary(path)) return false
    try {
      if (gunzipSync(readFileSync(DEBIAN_CHANGELOG)).toString('latin1').includes(MARK)) return true
    } catch {
      // not a Debian-family host, or no changelog installed
    }
    const rpm = await run('/usr/bin/rpm', ['-q', '--changelog', 'rsync'])
    return rpm?.includes(MARK) ?? false
  }
}

/**
 * One doctor row for the local rsync at `path`. Older than 3.4.0 without a recorded backport fails
 * where machines serve more than one job; it is only a warning (a skip) where every job gets a new machine.
 */
export async function rsyncFixCheck(path: string, machinePerJob: boolean, probe: RsyncProbe = systemProbe): Promise<CheckResult> {
  const base = { check: 'local rsync fixes', target: 'runner host' }
  const text = await probe.version(path)
  const v = text === null ? null : parseRsyncVersion(text)
  if (!v) return { ...base, status: 'fail', detail: `${path} --version did not name a version`, fix: `check that ${path} is rsync` }
  const shown = v.join('.')
  if (atLeast(v, FIXED)) return { ...base, status: 'pass', detail: `${shown} (3.4.0 or later)` }
  if (await probe.backported(path))
    return { ...base, status: 'pass', detail: `${shown}, with the fixes backported (its changelog names ${MARK})` }
  const risk = `rsync ${shown} predates 3.4.0's fixes for CVE-2024-12084 to 12088 and no changelog of its package names them (only ${PACKAGE_BINARY}, the distribution's own, can have one): a job that was root on a machine before can replace the rsync there and, through this client, read files of this runner host`
  if (machinePerJob) return { ...base, status: 'skip', detail: `${risk}; with this provider every job gets a new machine` }
  return { ...base, status: 'fail', detail: risk, fix: 'install rsync 3.4.0 or later, or a build of your distribution with those fixes' }
}
