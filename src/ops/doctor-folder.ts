// doctor's look at a folder the hook keeps private on the runner host (the local ledger's, the log
// file's): one that exists must pass the hook's own check and be writable; one not made yet passes
// when the nearest folder above it lets this user make it, as the hook will.
import { accessSync, constants, existsSync } from 'node:fs'
import { dirname } from 'node:path'
import { checkPrivateDir, checkPrivatePlace } from '../private-fs'

export type FolderState = { ok: true; made: boolean; detail: string } | { ok: false; detail: string }

const writable = (path: string): boolean => {
  try {
    accessSync(path, constants.W_OK | constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * Throws what the hook's check of the folder would throw (another user's folder, a symlink…).
 * `maker`: what creates the folder when it is missing.
 */
export function privateFolderState(dir: string, hint: string, maker: string): FolderState {
  if (checkPrivateDir(dir, hint))
    return writable(dir) ? { ok: true, made: true, detail: 'private and writable' } : { ok: false, detail: 'is not writable by this user' }
  // The folders it would be made in, as the hook checks them before it makes it.
  checkPrivatePlace(dir, hint)
  let up = dirname(dir)
  while (!existsSync(up) && up !== dirname(up)) up = dirname(up)
  return writable(up)
    ? { ok: true, made: false, detail: `not created yet: ${maker} creates it (${up} is writable)` }
    : { ok: false, detail: `does not exist, and ${up} is not writable by this user` }
}
