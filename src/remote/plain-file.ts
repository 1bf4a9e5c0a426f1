// Files a remote script opens by a name the job could have planted something at (it is root on
// the VM): a FIFO there would block the open, a symlink would redirect it.
import { shq } from './quote'

/**
 * A shell command that leaves at `path` (one shell word: quoted, or a quoted "$variable") a regular
 * file or nothing: anything else is removed, never opened. Nothing there forks nothing.
 */
export const plainFileOnly = (path: string): string =>
  `{ { [ ! -e ${path} ] && [ ! -L ${path} ]; } || { [ -f ${path} ] && [ ! -L ${path} ]; } || rm -rf ${path}; }`

/**
 * Shell: holds the lock file `lock` (one shell word) on fd 9 until the shell ends: `flock` where the
 * machine has it, nothing where it has not. A count of one-second `flock -n` tries rather than
 * `flock -w` (BusyBox's flock has no -w); after `waitSeconds` it says `held` on stderr and exits
 * `code`. Opened as a plain file only (plainFileOnly).
 */
export function holdLock(lock: string, waitSeconds: number, held: string, code: number): string {
  const wait = `i=0; until flock -n 9; do [ $i -lt ${waitSeconds} ] || { echo ${shq(held)} >&2; exit ${code}; }; i=$((i+1)); sleep 1; done`
  return `${plainFileOnly(lock)} && exec 9>>${lock} && { ! command -v flock >/dev/null || { ${wait}; }; }`
}
