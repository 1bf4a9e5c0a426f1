// Between two steps the job's agent watches the runner's `_temp` folders. The runner writes a step's
// script and its file-command files just before it starts the hook for that step, so the hook's own
// start-up (a node process) is time in which those files can already go up. The step's own push
// still runs and decides; an early push only sends the same files sooner, and the step then finds
// them on the VM.
//
// Why this cannot leave stale or extra files on the VM:
// - A fingerprint is size, mtime (ms) and mode, so a file written again with the same size within
//   the same clock tick after a push read it would look unchanged. Every watch event marks its path
//   dirty, and the next push (early or the step's) sends dirty paths whatever their fingerprints.
// - Only entries directly in a watched folder are pushed early (and none that changed its type),
//   so every file an early push sent is one whose later writes raise events.
// - An early push that failed or was given up on may have left some of its files on the VM without
//   recording them: they go into the base as unsure (manifest.ts UNSURE, so an agent that dies keeps
//   them too), and the next push sends them again, or deletes them on the VM if the runner removed
//   them meanwhile. A push given up on records nothing, even if it ends later.
// - The watch is on only between a step that ran to its end in this agent and the next request to
//   it, and only while the base is as this agent left it (another process that pushed or pulled,
//   e.g. the agent of a newer build after an upgrade, turns it off).
import { lstatSync, readdirSync, watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import { push, type PushScope, type SyncStats, type SyncTarget } from './sync'
import { baseVersion, saveBase, UNSURE, type BaseEntry } from './manifest'
import { isRunning, type WorkerProcess } from '../worker-process'
import { settlesWithin } from '../retry'

/** Relative to the runner's `_work`: where the runner writes a step's script and file-command files. */
export const WATCHED = ['_temp', '_temp/_runner_file_commands'] as const

const inWatched = (p: string): boolean => {
  const i = p.lastIndexOf('/')
  return i > 0 && (WATCHED as readonly string[]).includes(p.slice(0, i))
}

/** A folder's inode; null when it is not a folder (gone, something else in its place, or unreadable). */
function inode(path: string): number | null {
  try {
    const st = lstatSync(path, { throwIfNoEntry: false })
    return st?.isDirectory() ? st.ino : null
  } catch {
    return null
  }
}

export interface EarlyPushTiming {
  /** Quiet time after the last event before an early push starts (the runner writes several files in a row). */
  quietMs: number
  /** How long a request waits for an early push under way before giving up on it (a VM that does not answer). */
  settleMs: number
}

/** One early push: what it means to send (for the unsure marks), how to stop it, and its end. */
interface Flight {
  target: SyncTarget
  stop: AbortController
  planned: readonly string[]
  done: Promise<void>
}

export class EarlyPush {
  private target: SyncTarget | null = null
  /** The base as this agent left it (manifest.ts baseVersion): another version means another writer. */
  private baseKey: string | null = null
  private watchers = new Map<string, { w: FSWatcher; ino: number }>()
  private timer: NodeJS.Timeout | undefined
  /** The early push under way; one given up on is no longer it, so its late end records nothing. */
  private flight: Flight | null = null
  private dirty = new Set<string>()
  private allDirty = false
  /** Watched folders whose watch may follow a folder since removed (see onEvent). */
  private readonly stale = new Set<string>()
  private again = false
  /** arm() started the watch (even on folders not there yet): what it did not see may have changed. */
  private watchingSinceArm = false
  private busy = 0
  /** Unsure marks of a push disarm() gave up on, still being saved. */
  private marking: Promise<void> = Promise.resolve()
  /** Early pushes that completed, and those that failed or were given up on (tests and the agent's log). */
  readonly counts = { done: 0, failed: 0 }

  /** Told why an early push failed (the agent logs it). */
  onFailure: (e: unknown) => void = () => undefined
  /** This agent's socket: another agent's socket made after it, in the same job folder, is a newer agent. */
  ownSocket: string | null = null
  /**
   * The runner's worker of this agent's job. Gone (the runner crashed, and its end-of-job kill of the
   * agent never came), the next job's runner writes its scripts (secrets spelt out in them) into the
   * same `_temp`: they must not go to this job's machine, which this job's code may still control.
   */
  worker: WorkerProcess | null = null

  constructor(private readonly timing: EarlyPushTiming = { quietMs: 3, settleMs: 2000 }) {}

  /**
   * A request reaches the agent: the watch stops (only a step that runs to its end turns it on
   * again), and an early push under way finishes first, or is given up on after settleMs.
   */
  async enter(): Promise<void> {
    this.busy++
    this.again = false
    clearTimeout(this.timer)
    // Events already queued are read first: they may name paths written after the last push read them.
    await new Promise((r) => setImmediate(r))
    if (this.target && this.watchers.size) this.refresh(this.target, 'check')
    this.unwatch()
    this.target = null
    clearTimeout(this.timer)
    await this.marking
    const running = this.flight
    if (!running) return
    if (!(await settlesWithin(running.done, this.timing.settleMs))) await this.giveUp('a request to the agent was waiting')
  }

  /**
   * A request ended: with a step's target armed and no other request running, the watch runs, and
   * what it saw while the request was finishing is pushed.
   */
  leave(): void {
    this.busy = Math.max(0, this.busy - 1)
    if (this.busy !== 0 || !this.target) return
    // Watches made by arm() have seen everything since: one missing or stale now may have missed files.
    this.refresh(this.target, this.watchingSinceArm ? 'renew' : 'arm')
    if (this.dirty.size || this.allDirty) this.schedule()
  }

  /**
   * Called by a step that ran to its end. The watch starts now, before the step's answer goes back:
   * the runner writes the next step's files as soon as the hook exits, which can be before this
   * request's end reaches leave(). With another request running, it starts when that one ends.
   */
  arm(target: SyncTarget): void {
    this.target = { ...target, signal: undefined, warn: undefined }
    this.baseKey = baseVersion(target.manifestFile)
    if (this.busy > 1) return
    this.refresh(this.target, 'arm')
    this.watchingSinceArm = true
  }

  /**
   * No more early pushes until a step arms it again; one under way is given up on (the machine may
   * be another job's now: its lease lost, or the job's worker gone), recording nothing, its planned
   * paths unsure.
   */
  disarm(): void {
    this.target = null
    this.unwatch()
    void this.giveUp('disarmed')
  }

  /**
   * Gives up the early push under way, if any: it records nothing if it ends later, its channel is
   * closed, and what it meant to send is marked unsure; resolves once the marks are saved (the next
   * request waits for them in enter(): its push must not be recorded under them).
   */
  private giveUp(why: string): Promise<void> {
    const running = this.flight
    if (running) {
      this.flight = null
      running.stop.abort(new Error(`early push given up: ${why}`))
      this.marking = this.markUnsure(running.target, running.planned)
    }
    return this.marking
  }

  /** Whether an early push may go on to this machine: the lease still held, the job's worker alive, no newer agent, the base as left. */
  private stillOurs(target: SyncTarget): boolean {
    if (this.ok && !this.ok()) return false
    if (this.worker && !isRunning(this.worker)) return false
    return !this.newerAgent() && baseVersion(target.manifestFile) === this.baseKey
  }

  /**
   * The push of a request (or an early one): sends dirty paths whatever their fingerprints; if it
   * fails they stay dirty for the next.
   */
  async push(t: SyncTarget, roots: readonly string[], scope: PushScope = {}): Promise<SyncStats> {
    const dirty = this.dirty
    const all = this.allDirty
    this.dirty = new Set()
    this.allDirty = false
    const force = all ? inWatched : dirty.size ? (p: string) => dirty.has(p) : undefined
    try {
      return await push(t, roots, { ...scope, force })
    } catch (e) {
      for (const p of dirty) this.dirty.add(p)
      this.allDirty ||= all
      throw e
    }
  }

  /** Paths an early push may have left on the VM unrecorded: the next push sends them, or deletes them there. */
  private async markUnsure(target: SyncTarget, paths: readonly string[]): Promise<void> {
    if (!paths.length) return
    try {
      await saveBase(target.manifestFile, { set: new Map<string, BaseEntry>(paths.map((p) => [p, UNSURE])), remove: new Set() })
    } catch {
      this.allDirty = true // the base cannot be written: at least the watched files go again
    }
  }

  /**
   * Watches each folder not watched yet, or watched under a folder since replaced (removed and made
   * again: a watch follows the old folder); 'check' only looks. A folder whose watch was missing or
   * stale may hold files written unseen, so everything in the watched folders becomes dirty, except
   * when the watch starts ('arm'): the step that just ended compared every file since.
   */
  private refresh(target: SyncTarget, mode: 'arm' | 'renew' | 'check'): void {
    for (const dir of WATCHED) {
      const path = `${target.hostWork}/${dir}`
      const now = inode(path)
      const cur = this.watchers.get(dir)
      if (cur && cur.ino === now && !this.stale.has(dir)) continue
      this.stale.delete(dir)
      cur?.w.close()
      this.watchers.delete(dir)
      if (now === null) continue // not there: nothing in it to send early
      if (mode !== 'arm') this.allDirty = true
      if (mode === 'check') continue
      let w: FSWatcher
      try {
        w = watch(path, { persistent: false }, (_event, name) => this.onEvent(dir, name))
      } catch {
        this.allDirty = true
        continue
      }
      // Made again between the look and the watch: the next refresh replaces this watch.
      const ino = inode(path) === now ? now : -1
      // A watch that broke may have missed events.
      w.on('error', () => {
        this.allDirty = true
        w.close()
        if (this.watchers.get(dir)?.w === w) this.watchers.delete(dir)
      })
      this.watchers.set(dir, { w, ino })
    }
  }

  private unwatch(): void {
    this.watchingSinceArm = false
    for (const { w } of this.watchers.values()) w.close()
    this.watchers.clear()
  }

  private onEvent(dir: string, name: string | Buffer | null): void {
    const n = name?.toString()
    if (n === undefined) {
      this.allDirty = true
      for (const d of WATCHED) this.stale.add(d)
    } else {
      const path = `${dir}/${n}`
      this.dirty.add(path)
      // A watched folder removed or renamed (its parent's event, or its own with its own name; an
      // entry of that name is taken the same way): the watch is renewed before the next push.
      // Its inode cannot tell: a folder made again at once often gets the same number.
      if ((WATCHED as readonly string[]).includes(path)) this.stale.add(path)
      if (n === basename(dir)) this.stale.add(dir)
    }
    if (!this.busy) this.schedule()
  }

  private schedule(): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.begin(), this.timing.quietMs)
  }

  private newerAgent(): boolean {
    if (!this.ownSocket) return false
    try {
      const own = lstatSync(this.ownSocket).mtimeMs
      const dir = dirname(this.ownSocket)
      return readdirSync(dir).some(
        (n) => /^agent-.*\.sock$/.test(n) && n !== basename(this.ownSocket!) && lstatSync(`${dir}/${n}`).mtimeMs > own
      )
    } catch {
      return true // cannot tell: do not push
    }
  }

  /** The agent's test that the machine is still the job's (see IdleWork.guard). */
  private ok: (() => boolean) | null = null

  guard(ok: () => boolean): void {
    this.ok = ok
  }

  private begin(): void {
    const target = this.target
    if (this.busy || !target) return
    // A lease lost meanwhile (its check disarms this push through the keeper's onLost).
    if (this.ok && !this.ok()) return this.disarm()
    if (this.flight) {
      this.again = true
      return
    }
    // Another process pushed or pulled since this agent's last step, or a newer agent serves the
    // job (another build's, after an upgrade), or the job is over (its runner's worker is gone):
    // this one is not the one to push now.
    if (!this.stillOurs(target)) return this.disarm()
    this.refresh(target, 'renew')
    const flight: Flight = { target, stop: new AbortController(), planned: [], done: Promise.resolve() }
    const current = (): boolean => this.flight === flight
    this.flight = flight
    flight.done = this.push({ ...target, signal: flight.stop.signal }, WATCHED, {
      only: inWatched,
      depth: 1,
      // Deletions need no mark: until a push records them, the base still has those paths.
      onPlan: (send) => (flight.planned = send),
      // Asked again under the job's lock and before the channel opens: the lock can be held, and the
      // lease lost or the worker gone meanwhile.
      mayStart: () => current() && this.stillOurs(target),
      mayRecord: () => current() && (!this.ok || this.ok())
    })
      .then(() => {
        if (!current()) throw new Error('early push given up on')
        this.counts.done++
        this.baseKey = baseVersion(target.manifestFile)
      })
      .catch(async (e: unknown) => {
        // (One given up on had its paths marked by enter() already.)
        if (current()) await this.markUnsure(target, flight.planned)
        this.counts.failed++
        this.onFailure(e)
      })
      .finally(() => {
        if (!current()) return
        this.flight = null
        if (this.again && !this.busy) {
          this.again = false
          this.begin()
        }
      })
  }
}

/** The agent's one instance (a hook process never arms it: it serves a single request). */
export const betweenSteps = new EarlyPush()
