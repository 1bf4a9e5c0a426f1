// The soak's processes, found only by what the soak itself made: the RUNNER_TRACKING_ID values it
// gave its runners (the hook passes it on to the agents it spawns, like the runner's own process
// cleanup expects) and the pids of the workers and hooks it started. Nothing is found or ended by name.
import { readdirSync, readFileSync } from 'node:fs'

export interface Proc {
  pid: number
  trackingId: string
  cmdline: string
}

/** Live (non-zombie) processes whose environment carries one of these tracking ids. */
export function processesOf(trackingIds: Iterable<string>): Proc[] {
  const needles = [...trackingIds].map((t) => ({ t, b: Buffer.from(`RUNNER_TRACKING_ID=${t}\0`) }))
  if (!needles.length) return []
  const out: Proc[] = []
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue
    try {
      if (/^\d+ \(.*\) Z /s.test(readFileSync(`/proc/${p}/stat`, 'utf8'))) continue
      const env = readFileSync(`/proc/${p}/environ`)
      const hit = needles.find((n) => env.includes(n.b))
      if (hit)
        out.push({ pid: Number(p), trackingId: hit.t, cmdline: readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() })
    } catch {
      // exited meanwhile
    }
  }
  return out
}

/** The job's agents: its processes running `index.js __agent`. */
export function agentsOf(trackingId: string): Proc[] {
  return processesOf([trackingId]).filter((p) => / __agent /.test(p.cmdline))
}

/** Whether a pid the soak started still runs (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

export function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // gone already
  }
}
