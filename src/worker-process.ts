// The runner's worker process (the hook's parent): a pool lease is renewed only while it lives, so a
// crashed or killed runner's lease lapses. Its start time guards against the pid being reused.
import { readFileSync } from 'node:fs'

export interface WorkerProcess {
  pid: number
  /** Start time in clock ticks since boot (/proc/PID/stat field 22); '' where /proc is not available. */
  start: string
}

/**
 * Start time of `pid` (see WorkerProcess.start); null when there is no such process, false when
 * it has ended but its parent has not reaped it yet (a zombie: kill(pid, 0) still succeeds and its
 * start is unchanged, so without this a killed agent counted as running until reaped).
 */
function startOf(pid: number): string | null | false {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields[0] === 'Z' || fields[0] === 'X') return false
    return fields[19] ?? null
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' && !procMounted() ? '' : null
  }
}

let proc: boolean | undefined
function procMounted(): boolean {
  try {
    proc ??= readFileSync('/proc/self/stat', 'utf8').length > 0
  } catch {
    proc = false
  }
  return proc
}

/** The process `pid` as it is now, or null when it does not exist. */
export function workerProcess(pid: number): WorkerProcess | null {
  if (!Number.isInteger(pid) || pid <= 1) return null
  const start = startOf(pid)
  return start === null || start === false ? null : { pid, start }
}

/**
 * Whether the very process `w` still runs (not another one that got its pid). `othersHidden`: `w`
 * may be another user's (reap judging every runner user's static jobs), and /proc may be mounted
 * with hidepid, which shows this user no entry for it though kill(pid, 0) says it exists (EPERM):
 * then it counts as running, its start not told (reap judging a live job dead would remove its
 * containers and free its slot; a reused pid only delays a reap). Otherwise `w` is this user's (the
 * runner's worker, of the hook's own user), and a pid that answers EPERM is someone else's now.
 */
export function isRunning(w: WorkerProcess, opts: { othersHidden?: boolean } = {}): boolean {
  let othersProcess = false
  try {
    process.kill(w.pid, 0)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false
    othersProcess = true
  }
  const now = startOf(w.pid)
  if (now === false) return false
  if (now === null) return othersProcess && opts.othersHidden === true
  return w.start === '' || now === w.start
}
