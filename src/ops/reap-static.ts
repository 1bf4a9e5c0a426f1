// reap's pass over static hosts: a slot leased from THIS runner host whose worker process is gone
// belongs to a dead job. Phase 1 marks the slot (a file beside its owner file, naming the job);
// phase 2 re-reads the owner, then removes the job's containers, its job folder and the slot.
// Slots of other runner hosts (another machine, or another pid namespace of one: runner-host.ts) are
// left to their own reap: only there can the worker be looked at.
import { hostname } from 'node:os'
import { MAX_HOST_SLOTS, type Config, type StaticConfig } from '../config'
import { jobFolder, removeJobFolder, thenFoldersReported } from '../docker/job-folder'
import { RemoteDocker, describeCounts } from '../docker/remote-docker'
import { LABEL_JOB } from '../labels'
import { ask, expectEach, record } from '../remote/answer'
import { shPath, shq } from '../remote/quote'
import { check, type ConnectInfo, type Remote } from '../remote/remote'
import { SshRemote } from '../remote/ssh'
import { freeJobSlotScript, ownerField, parseLeaseMark, type LeaseMark } from '../providers/static-host'
import { isRunning } from '../worker-process'
import { thisRunnerHost, type RunnerHost } from '../runner-host'
import { cleanupDeadline } from '../remote/deadline'
import { withDockerHost } from '../remote/docker-host'
import { act, addRow, step, type ReapContext } from './reap-context'
import { markStep, waitWhy } from './reap-plan'

const CANDIDATE_FILE = 'reap-candidate'
const CALL_MS = 30_000

interface Slot {
  name: string
  /** The owner file's first line ('' when there is none). */
  owner: string
  /** The candidate file: `<ISO time> <job id>` ('' when unmarked). */
  candidate: string
}

const leasesOf = (workRoot: string): string => `${workRoot}/leases`

/** Every slot folder on the host with its owner line and mark; a name is only ever `slot-N`. */
async function listSlots(remote: Remote, workRoot: string): Promise<Slot[]> {
  const label = 'list the host slots'
  const r = await ask(
    remote,
    `L=${shPath(leasesOf(workRoot))}; [ -d "$L" ] || exit 0; for d in "$L"/slot-*; do [ -d "$d" ] && [ ! -L "$d" ] || continue; ` +
      // Only plain files are read: a FIFO a job planted there would hold the pass until its bound.
      `o=; c=; [ -f "$d/owner" ] && [ ! -L "$d/owner" ] && o=$(head -n 1 "$d/owner" 2>/dev/null | head -c 400); ` +
      `[ -f "$d/${CANDIDATE_FILE}" ] && [ ! -L "$d/${CANDIDATE_FILE}" ] && c=$(head -n 1 "$d/${CANDIDATE_FILE}" 2>/dev/null | head -c 200); ` +
      `${record('"${d##*/}"')}; ${record('"$o"')}; ${record('"$c"')}; done`,
    { label, timeoutMs: CALL_MS }
  )
  if (r.length % 3) throw new Error(`${label}: a partial answer`)
  const out = new Map<string, Slot>()
  for (let i = 0; i < r.length; i += 3) {
    const name = expectEach([r[i]], /^slot-[0-9]{1,3}$/, label)[0]
    // The machine's word: a slot the hook never makes (over the 64 a host may have), or one named twice, is not a second pass.
    if (Number(name.slice('slot-'.length)) < MAX_HOST_SLOTS && !out.has(name)) out.set(name, { name, owner: r[i + 1], candidate: r[i + 2] })
  }
  return [...out.values()]
}

/** Whether the slot's job is dead, as this runner host can tell. */
function judge(m: LeaseMark | null, me: RunnerHost): { dead: boolean; why: string } {
  if (!m) return { dead: false, why: 'owner file unreadable or of another format' }
  const mine = m.runnerHostKey ? m.runnerHostKey === me.key : m.runnerHost === hostname()
  if (!mine)
    return {
      dead: false,
      why:
        m.runnerHost === me.name
          ? `leased from runner host ${m.runnerHost} in another machine or pid namespace of that hostname (key ${m.runnerHostKey}, this one's ${me.key}): only its own reap can see its worker`
          : `leased from runner host ${m.runnerHost}: its own reap judges it`
    }
  if (!m.worker) return { dead: false, why: `job ${m.jobId}: the lease names no worker process` }
  // Another runner user's worker may be hidden from this one (/proc with hidepid).
  return isRunning(m.worker, { othersHidden: true })
    ? { dead: false, why: `job ${m.jobId} alive: its worker ${m.worker.pid} runs` }
    : { dead: true, why: `job ${m.jobId} dead: its worker ${m.worker.pid} is gone` }
}

export async function reapStatic(cfg: StaticConfig, config: Config, ctx: ReapContext): Promise<void> {
  const me = thisRunnerHost()
  const workRoot = config.remote.workRoot
  const seen = new Set<string>()
  for (const h of cfg.hosts) {
    const where = `${h.host}:${h.port}`
    if (seen.has(where)) continue
    seen.add(where)
    const c: ConnectInfo = { host: h.host, port: h.port, user: h.user, identityFile: h.identityFile, knownHostsFile: h.knownHostsFile }
    let remote: Remote
    try {
      remote = withDockerHost(await SshRemote.connect(c, ctx.connectMs), config.remote.dockerSocket)
    } catch (e) {
      addRow(ctx, 'slot', where, 'failed', `unreachable: ${(e as Error).message}`)
      continue
    }
    // One bound per host, as cleanup_job's: a host where a job was root can make any command hang,
    // and the hosts after it must still be reaped.
    const bounded = cleanupDeadline(remote, config.timeouts.cleanupSeconds, `reaping the slots of ${where}`)
    try {
      for (const s of await listSlots(bounded.remote, workRoot))
        await slotPass(bounded.remote, workRoot, config, ctx, `${where} ${s.name}`, s, me)
    } catch (e) {
      addRow(ctx, 'slot', where, 'failed', (e as Error).message)
    } finally {
      bounded.clear()
      remote.close()
    }
  }
}

async function slotPass(
  remote: Remote,
  workRoot: string,
  config: Config,
  ctx: ReapContext,
  what: string,
  s: Slot,
  me: RunnerHost
): Promise<void> {
  const t = ctx.times
  const m = parseLeaseMark(s.owner)
  const v = judge(m, me)
  const dir = `${leasesOf(workRoot)}/${s.name}`
  const d = shPath(dir)
  // A mark names the job it was made for: a slot leased again since is judged afresh.
  const [markAt, markJob] = s.candidate.split(' ')
  const mark = markJob && markJob === m?.jobId ? markAt : undefined
  const step = markStep(v.dead, s.candidate ? (mark ?? 'stale') : undefined, t)
  if (step === 'none') return addRow(ctx, 'slot', what, 'left alone', v.why)
  if (step === 'unmark')
    return void (await act(ctx, 'slot', what, 'unmarked', `no longer a candidate: ${v.why}`, () =>
      check(remote, `rm -f ${d}/${CANDIDATE_FILE}`, { label: 'unmark the slot', timeoutMs: CALL_MS }).then(() => undefined)
    ))
  const job = m as LeaseMark
  if (step === 'mark')
    return void (await act(ctx, 'slot', what, 'marked', v.why, () =>
      check(
        remote,
        `[ "$(${ownerField(`${d}/owner`, 2)})" = ${shq(job.jobId)} ] && printf '%s %s\\n' ${shq(new Date(t.now).toISOString())} ${shq(job.jobId)} > ${d}/${CANDIDATE_FILE}`,
        { label: 'mark the slot', timeoutMs: CALL_MS }
      ).then(() => undefined)
    ))
  if (step === 'wait') return addRow(ctx, 'slot', what, 'kept', waitWhy(v.why, mark as string, t))
  // Phase 2: the owner file read again; only the same job, still dead, goes.
  const again = (await listSlots(remote, workRoot)).find((x) => x.name === s.name)
  const now = again ? parseLeaseMark(again.owner) : null
  const still = now && now.jobId === job.jobId ? judge(now, me) : null
  if (!still?.dead) return addRow(ctx, 'slot', what, 'left alone', still ? `came back to life: ${still.why}` : 'released meanwhile')
  await act(ctx, 'slot', what, 'removed', v.why, async () => {
    const removed = describeCounts(
      await thenFoldersReported(new RemoteDocker(remote, config.remote.dockerSocket).removeOwned(LABEL_JOB, job.jobId), () =>
        removeJobFolder(remote, workRoot, jobFolder(workRoot, job.owner, job.jobId), null)
      )
    )
    await check(remote, freeJobSlotScript(workRoot, d, job.jobId), { label: 'free the slot', timeoutMs: CALL_MS })
    return `${removed}, job folder and slot`
  })
}

/** Kind static: the slots, then the ledger's open reservations, which no EC2 provider here can look up. */
export async function reapStaticPass(cfg: StaticConfig, config: Config, ctx: ReapContext): Promise<void> {
  await reapStatic(cfg, config, ctx)
  // A ledger that cannot be read is a failed row, as with the EC2 kinds: the slots are done, and the marks kept.
  const open = (await step(ctx, 'reservation', 'ledger', () => ctx.ledger.unsettled())) ?? []
  for (const r of open) addRow(ctx, 'reservation', r.id, 'left alone', 'no EC2 provider in this configuration to look its instance up')
}
