// A throwaway local user for tests about other users on the runner host (needs root): created with
// useradd, commands run as it with setpriv, removed in teardown.
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface LocalUser {
  name: string
  uid: number
  gid: number
  home: string
  /** Runs argv as this user (no supplementary groups); throws on a non-zero exit. */
  run(argv: string[], env?: Record<string, string>): string
  /** Like run, without throwing: the exit status and output. */
  tryRun(argv: string[], env?: Record<string, string>): { status: number | null; stdout: string; stderr: string }
  remove(): void
}

export function createLocalUser(prefix = 'rchtu'): LocalUser {
  const name = `${prefix}${randomBytes(3).toString('hex')}`
  const base = mkdtempSync(join(tmpdir(), 'rch-user-'))
  const home = join(base, 'home')
  chmodSync(base, 0o755)
  execFileSync('useradd', ['-M', '-d', home, '-s', '/bin/sh', '-U', name])
  execFileSync('mkdir', ['-p', '-m', '0700', home])
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim())
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim())
  execFileSync('chown', [`${uid}:${gid}`, home])
  const tryRun = (argv: string[], env: Record<string, string> = {}) => {
    const r = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', ...argv], {
      encoding: 'utf8',
      env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: home, ...env },
      timeout: 30_000
    })
    return { status: r.status, stdout: r.stdout, stderr: r.stderr }
  }
  return {
    name,
    uid,
    gid,
    home,
    tryRun,
    run(argv, env) {
      const r = tryRun(argv, env)
      if (r.status !== 0) throw new Error(`${argv.join(' ')} as ${name} exited ${r.status}: ${r.stderr}`)
      return r.stdout
    },
    remove() {
      spawnSync('userdel', [name])
      rmSync(base, { recursive: true, force: true })
    }
  }
}
