// This runner host as a static slot's owner line names it: its hostname, and a key that also holds
// the machine id and the pid namespace. `reap` judges a slot's job by looking for its worker pid
// here, which means something only in the same pid namespace of the same machine. A hostname alone
// is shared by hosts cloned from one image and by runners in containers on the host's network
// (`--network host`, Kubernetes `hostNetwork`), whose live jobs reap would then take for dead.
// Not the boot id: the slots of a host that crashed and came back must still be reaped from it.
import { readFileSync, readlinkSync } from 'node:fs'
import { hostname } from 'node:os'
import { sha256Hex } from './sha256'

export interface RunnerHost {
  /** The hostname as the system gives it (EC2's runner-host tag). */
  hostname: string
  /** The hostname as a lease field: no white space (the line's separator) and no `/` (the key's). */
  name: string
  /** 16 hex digits of SHA-256 of hostname, machine id and pid namespace. */
  key: string
}

const readOr = (read: () => string): string => {
  try {
    return read().trim()
  } catch {
    return ''
  }
}

/** The hostname written as a lease field. */
export const hostField = (h: string): string => h.replace(/[\s/]/g, '_') || '-'

let mine: RunnerHost | undefined
export function thisRunnerHost(): RunnerHost {
  if (mine) return mine
  const h = hostname()
  mine = {
    hostname: h,
    name: hostField(h),
    key: sha256Hex(
      `runner-host\0${h}\0${readOr(() => readFileSync('/etc/machine-id', 'utf8'))}\0${readOr(() => readlinkSync('/proc/self/ns/pid'))}`
    ).slice(0, 16)
  }
  return mine
}
