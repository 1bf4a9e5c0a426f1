// Every wait goes through src/retry.ts: no other file sleeps between attempts or polls on its own.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const SRC = join(__dirname, '..', '..', 'src')

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : []
  })
}

/** Ways a file could wait by hand: the primitive's sleep outside it, a blocking sleep, a timer promise. */
const HAND_WAITS: [string, RegExp][] = [
  ['sleep from retry.ts', /import\s*\{[^}]*\bsleep\b[^}]*\}\s*from\s*'[./]*\/?retry'/],
  ['Atomics.wait', /Atomics\.wait\(/],
  ['a timer promise', /new Promise[^\n]*setTimeout\(\s*\w+\s*,/]
]

/** Files still waiting by hand; each entry must go once its file moves onto the primitive. */
const NOT_YET_MOVED: string[] = []

/** Files whose waits are code sent elsewhere, not run by the hook. */
const SENT_CODE: Record<string, string> = { 'docker/step-stop.ts': 'the stop script it sends runs inside the job container' }

/** A wait written into a shell script the hook sends to the VM. */
const SHELL_SLEEP = /\bsleep [0-9$]/

/** The shell scripts that wait on the VM, and why the wait is there and not a retry of the hook's. */
const SHELL_WAITS: Record<string, string> = {
  'remote/plain-file.ts':
    "holdLock, the wait for a lock on the VM (the push lock, a static host's lease lock): BusyBox's flock has no -w, so a one-second loop bounded by a count",
  'docker/cli.ts': 'the watcher of a pull or build: a newline each second tells a closed channel (sshd stops nothing until it writes)',
  'providers/user-data.ts': "the instance's self-destruct timer (maxLifetimeMinutes), armed at boot"
}

/**
 * Every file that arms a timer, and what the timer is: a deadline, a debounce, a periodic beat. A
 * timer that re-arms an attempt after a failure is a retry loop by hand: it belongs in retry.ts.
 */
const TIMERS: Record<string, string> = {
  'retry.ts': 'the primitive itself',
  'cancel.ts': "the undo's time before the release after the runner's cancel (a deadline, unref'd)",
  'docker/engine.ts': "a call's deadline",
  'docker/steps.ts': "the grace after a cancel, a step's stop deadline",
  'fleet/job-fleet.ts': 'the heartbeat every minute',
  'handlers/lost-machine.ts': "the deadline of EC2's answer about a lost machine",
  'log.ts': "the log file's flush at exit, bounded",
  'main.ts': "the agent's beat; the exit after the response, bounded; the look every second whether the runner's worker is still there",
  'ops/doctor-rsync.ts': "the rsync version probe's deadline",
  'providers/ec2.ts':
    'the bound of the keep-tag look after a cancel (a plain timer: an AbortSignal.timeout only AbortSignal.any holds may be collected)',
  'remote/agent.ts': "the agent's idle end, the lease's lapse, the lease renewal period",
  'remote/deadline.ts': 'the cleanup deadline',
  'remote/remote.ts': "a remote command's deadline",
  'session.ts': 'the reconnect bound after a cancel',
  'sync/early-push.ts': 'the quiet period before an early push (a debounce)',
  'sync/sync.ts': "the first copy's stall deadline"
}

function handWaits(): Map<string, string[]> {
  const found = new Map<string, string[]>()
  for (const f of files(SRC)) {
    const rel = relative(SRC, f)
    if (rel === 'retry.ts' || rel in SENT_CODE) continue
    const text = readFileSync(f, 'utf8')
    const hits = HAND_WAITS.filter(([, re]) => re.test(text)).map(([what]) => what)
    if (hits.length) found.set(rel, hits)
  }
  return found
}

describe('timers and shell waits', () => {
  const texts = files(SRC).map((f) => [relative(SRC, f), readFileSync(f, 'utf8')] as const)
  it('every file that arms a timer is listed with what the timer is for (a new one must say why it is no retry)', () => {
    const arming = texts.filter(([rel, t]) => !(rel in SENT_CODE) && /\bset(?:Timeout|Interval)\(/.test(t)).map(([rel]) => rel)
    expect(arming.sort()).toEqual(Object.keys(TIMERS).sort())
  })
  it('every shell script that sleeps on the VM is listed with why', () => {
    const sleeping = texts.filter(([rel, t]) => !(rel in SENT_CODE) && SHELL_SLEEP.test(t)).map(([rel]) => rel)
    expect(sleeping.sort()).toEqual(Object.keys(SHELL_WAITS).sort())
    // positive control: the pattern sees a shell loop's sleep
    expect(SHELL_SLEEP.test('until flock -n 9; do sleep 1; done')).toBe(true)
  })
})

describe('waits', () => {
  it('the patterns find a hand-written wait (positive control)', () => {
    const sample = "import { retry, sleep } from '../retry'\nawait new Promise((r) => setTimeout(r, 50))\nAtomics.wait(a, 0, 0, 5)"
    expect(HAND_WAITS.filter(([, re]) => re.test(sample)).map(([w]) => w)).toEqual([
      'sleep from retry.ts',
      'Atomics.wait',
      'a timer promise'
    ])
  })

  it('no file outside retry.ts waits by hand', () => {
    const found = handWaits()
    const unexpected = [...found].filter(([f]) => !NOT_YET_MOVED.includes(f))
    expect(unexpected).toEqual([])
    // A file that moved must leave the list, so the list only shrinks.
    expect(NOT_YET_MOVED.filter((f) => !found.has(f))).toEqual([])
  })
})
