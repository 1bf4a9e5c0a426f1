// Static hosts: a fixed list of SSH-reachable Docker hosts. A job takes a free slot, marked by an
// atomic `mkdir` of a lease folder on the host itself, so several runners can share one list.
import { hostname } from 'node:os'
import type { HookContext } from '../context'
import { HookError, TransportError, isPermanentTransport } from '../errors'
import { LABEL_OWNER, ownerId } from '../labels'
import { directRemote } from '../session'
import { removeLabelled } from '../docker/cli'
import { HEX16_GLOB, jobFolder, privateJobsDirScript, removeJobFolder } from '../docker/job-folder'
import { ask, expectEach, record, UnexpectedAnswer } from '../remote/answer'
import { check, type Remote } from '../remote/remote'
import { shq } from '../remote/quote'
import { sleep } from '../retry'
import type { Acquired, AcquireContext, Lease, VmProvider } from './provider'
import type { StaticConfig } from '../config'


export function leaseDir(workRoot: string, slot: number): string {
  return `${workRoot}/leases/slot-${slot}`
}

/**
 * Shell: removes the lease folders an owner holds on this host (but `keep`), a symlink never
 * followed; with `keep`, names each as a record `released-slot-N`.
 */
function releaseOwnedScript(workRoot: string, owner: string, keep?: string): string {
  return (
    `for d in ${shq(workRoot)}/leases/slot-*; do ` +
    `if [ -L "$d" ]; then continue; fi; ` +
    `${keep ? `[ "$d" = ${shq(keep)} ] || ` : ''}[ "$(cut -d' ' -f1 "$d/owner" 2>/dev/null)" != ${shq(owner)} ] || { rm -rf "$d"${keep ? ` && ${record('"released-${d##*/}"')}` : ''}; }; ` +
    `done; true`
  )
}

export class StaticHostProvider implements VmProvider {
  readonly kind = 'static'
  constructor(private readonly cfg: StaticConfig, private readonly workRoot: string) {}

  candidates(): Lease[] {
    const out: Lease[] = []
    this.cfg.hosts.forEach((h, index) => {
      for (let slot = 0; slot < h.slots; slot++) {
        out.push({ index, slot, connect: { host: h.host, port: h.port, user: h.user, identityFile: h.identityFile, knownHostsFile: h.knownHostsFile } })
      }
    })
    return out
  }

  readonly releaseDestroys = false

  async acquire(ctx: HookContext, a: AcquireContext): Promise<Acquired> {
    const { jobId, open, discard } = a
    const owner = ownerId(ctx.runner.runnerName)
    const deadline = Date.now() + this.cfg.acquireTimeoutSeconds * 1000
    const byHost = new Map<number, Lease[]>()
    for (const l of this.candidates()) byHost.set(l.index, [...(byHost.get(l.index) ?? []), l])
    let lastError: unknown = null
    let waitedLogged = 0
    // Connections stay open while we wait for a slot, and all but the chosen one are closed at the end.
    const open_ = new Map<number, Remote>()
    const discardAll = async (keep?: number): Promise<void> => {
      for (const [i, r] of open_) if (i !== keep) await discard(byHost.get(i)![0].connect, r).catch(() => undefined)
    }
    try {
      for (let round = 0; ; round++) {
        for (const [index, leases] of byHost) {
          let remote = open_.get(index)
          if (!remote) {
            try {
              remote = await open(leases[0].connect)
              open_.set(index, remote)
            } catch (e) {
              // A wrong host key or key pair will not fix itself by waiting.
              if (isPermanentTransport(e)) throw e
              lastError = e
              ctx.log.warn(`host ${leases[0].connect.host}:${leases[0].connect.port} unreachable: ${(e as Error).message}`)
              continue
            }
          }
          for (const lease of leases) {
            const dir = leaseDir(this.workRoot, lease.slot)
            const mark = `${owner} ${jobId} ${ctx.runner.runnerName.replace(/\s/g, '_')} ${hostname()} ${new Date().toISOString()}`
            // A runner runs one job at a time: a lease of its own is from a job that died. It is
            // taken over, and once a slot is ours, its other leases on this host are released.
            // umask 077: the lease folders (and the jobs folder) are the SSH user's alone.
            const script =
              `umask 077; mkdir -p ${shq(this.workRoot)}/leases && chmod 700 ${shq(this.workRoot)}/leases && ${privateJobsDirScript(this.workRoot)} || exit 1; ` +
              `if mkdir ${shq(dir)} 2>/dev/null; then r=new; ` +
              `elif [ "$(cut -d' ' -f1 ${shq(dir)}/owner 2>/dev/null)" = ${shq(owner)} ]; then r=stale; ` +
              `else ${record('busy')}; exit 0; fi; ` +
              `echo ${shq(mark)} > ${shq(dir)}/owner; ` +
              `${releaseOwnedScript(this.workRoot, owner, dir)}; ${record('$r')}`
            const label = 'lease a host slot'
            const r = await ask(remote, script, { label })
            if (r.length === 0) throw new UnexpectedAnswer(`${label}: the remote gave no answer`)
            const [answer] = expectEach(r.slice(-1), /^(new|stale|busy)$/, label)
            const released = expectEach(r.slice(0, -1), /^released-slot-\d+$/, label)
            if (answer === 'new' || answer === 'stale') {
              ctx.log.debug(`leased ${lease.connect.host}:${lease.connect.port} slot ${lease.slot} (${answer})`)
              for (const x of released) ctx.log.progress(`released this runner's stale lease of slot ${x.slice('released-slot-'.length)} on ${lease.connect.host}:${lease.connect.port}`)
              await discardAll(index)
              open_.clear()
              return { lease, remote }
            }
          }
        }
        if (Date.now() >= deadline) break
        if (Date.now() - waitedLogged > 30_000) {
          ctx.log.progress(open_.size ? `waiting for a free host (all ${this.candidates().length} slots busy)` : 'waiting for a host to become reachable')
          waitedLogged = Date.now()
        }
        await sleep(Math.min(5000, 500 * 2 ** Math.min(round, 3)), ctx.signal)
      }
    } finally {
      await discardAll()
    }
    if (lastError) throw new TransportError(`no host could be leased: ${(lastError as Error).message}`)
    throw new HookError(`no free host after ${this.cfg.acquireTimeoutSeconds} s: every slot of provider.hosts is leased by another job`)
  }

  async release(_ctx: HookContext, remote: Remote | null, lease: Lease, jobId: string): Promise<void> {
    if (!remote) throw new HookError('releasing a static host slot needs a connection to the host')
    const dir = leaseDir(this.workRoot, lease.slot)
    // Only our own lease: a stale state must not free a slot another job holds now.
    await check(remote, `[ "$(cut -d' ' -f2 ${shq(dir)}/owner 2>/dev/null)" != ${shq(jobId)} ] || rm -rf ${shq(dir)}`, { label: 'release the host slot' })
  }

  /** Releases every slot this runner holds on a host (cleanup without state). */
  async releaseOwned(remote: Remote, owner: string): Promise<void> {
    await check(remote, releaseOwnedScript(this.workRoot, owner), { label: 'release this runner\'s host slots' })
  }

  async cleanupOrphans(ctx: HookContext, owner: string): Promise<string> {
    const seen = new Set<string>()
    const failures: string[] = []
    const done: string[] = []
    for (const c of this.candidates()) {
      const key = `${c.connect.host}:${c.connect.port}`
      if (seen.has(key)) continue
      seen.add(key)
      try {
        const remote = await directRemote(ctx, c.connect)
        try {
          const removed = await removeLabelled(remote, LABEL_OWNER, owner)
          // Names only, from inside the jobs folder: a listing is never taken as a path to remove.
          const label = 'list this runner\'s job folders'
          const names = expectEach(
            await ask(remote, `cd ${shq(this.workRoot)}/jobs 2>/dev/null || exit 0; for d in ${owner}-${HEX16_GLOB}; do [ -e "$d" ] || [ -L "$d" ] || continue; ${record('"$d"')}; done`, { label }),
            new RegExp(`^${owner}-[0-9a-f]{16}$`),
            label
          )
          for (const n of names) await removeJobFolder(remote, this.workRoot, jobFolder(this.workRoot, owner, n.slice(owner.length + 1)), null)
          const dirs = names
          await this.releaseOwned(remote, owner)
          done.push(`${key}: ${removed}, ${dirs.length} job folders`)
        } finally {
          remote.close()
        }
      } catch (e) {
        failures.push(`${key}: ${(e as Error).message}`)
      }
    }
    if (failures.length) throw new TransportError(`cleanup_job could not reach every host: ${failures.join('; ')}`)
    return done.join('; ')
  }
}
