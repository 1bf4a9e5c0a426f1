// Starting the job container while the first copy runs. Docker makes a missing bind source itself,
// as root, and the copy (run as the SSH user) could then not fill it; so only folders that exist on
// the runner host qualify, and they are made on the remote with the job folder.
import { lstatSync } from 'node:fs'
import type { JobPlan } from './plan'

/**
 * Whether the job container can start while the copy runs, and the bind sources to make for it
 * first. Only an idle job container (nothing runs in it before a step), and only when each folder
 * of `_work` it binds is a real folder on the runner host: those are made on the remote beforehand,
 * owned by the SSH user, so docker does not make them (as root) and the copy fills them in place.
 */
export function startsEarly(plan: JobPlan, isFolder = (p: string): boolean => lstatSync(p).isDirectory()): { dirs: string[] } | null {
  const job = plan.job
  if (!job || !job.idle) return null
  for (const b of job.workBinds) {
    try {
      if (!isFolder(b.host)) return null
    } catch {
      return null
    }
  }
  return { dirs: [...new Set(job.workBinds.map((b) => b.remote).filter((d) => d !== plan.layout.remoteWork))] }
}
