// Stopping every process a step started. Each step's exec carries a random marker in its
// environment, inherited by all its descendants, including those orphaned when the step's shell
// dies first (they are reparented to the container's init, out of any process group). On cancel, a
// root exec inside the container signals every process whose /proc/<pid>/environ holds the marker:
// TERM, then KILL after the grace period. It needs only sh and grep (busybox has both); without a
// shell in the image, the runner's node from the externals mount does the same.
import { randomBytes } from 'node:crypto'
import { idFrom, type Engine } from './engine'
import { waitUntil } from '../retry'
import { TransportError } from '../errors'

export const STEP_MARKER = 'RCH_STEP'

export function newStepMarker(): string {
  return randomBytes(16).toString('hex')
}

// $1 = NAME=value to look for, $2 = grace in tenths of a second. Prints nothing; exits 0 once no
// process of the step is left, 3 when some outlived every KILL (the VM did not let them go).
// The grace is counted in time (hundredths since boot from /proc/uptime, read without a fork), not
// in turns: on a loaded VM each turn's forks stretched a 2 s grace past the runner's SIGTERM. Where
// /proc/uptime cannot be read, turns are counted as before.
export const STOP_SH = `m=$1; n=$2
printf 'x=1\\0' | grep -qzxF -e x=1 2>/dev/null || exit 127
hit() { for p in /proc/[0-9]*; do q=\${p#/proc/}; [ "$q" = "$$" ] && continue; grep -qzxsF -e "$m" "$p/environ" 2>/dev/null && echo "$q"; done; }
now() { u=; read u _ </proc/uptime 2>/dev/null; u=\${u%%.*}\${u#*.}; u=\${u#\${u%%[1-9]*}}; }
ps=$(hit); [ -n "$ps" ] || exit 0
kill -TERM $ps 2>/dev/null
now; end=\${u:+$((u + n * 10))}; i=0
while :; do
  if [ -n "$end" ]; then now; [ "\${u:-0}" -lt "$end" ] || break; else [ "$i" -lt "$n" ] || break; i=$((i+1)); fi
  sleep 0.1; ps=$(hit); [ -n "$ps" ] || exit 0
done
for i in 1 2 3 4 5; do ps=$(hit); [ -n "$ps" ] || exit 0; kill -KILL $ps 2>/dev/null; sleep 0.1; done
ps=$(hit); [ -n "$ps" ] || exit 0
exit 3`

// The same in node, for images without sh or grep. argv: marker record, grace in tenths (counted in
// time, on the monotonic clock: the job can set the wall clock back, and the KILL would never come).
export const STOP_JS = `const fs=require('fs');const want=Buffer.from('\\0'+process.argv[1]+'\\0');const n=+process.argv[2];
const hit=()=>fs.readdirSync('/proc').filter((p)=>/^\\d+$/.test(p)&&+p!==process.pid).filter((p)=>{try{return Buffer.concat([Buffer.from([0]),fs.readFileSync('/proc/'+p+'/environ')]).includes(want)}catch{return false}}).map(Number);
const kill=(ps,s)=>ps.forEach((p)=>{try{process.kill(p,s)}catch{}});
const wait=(ms)=>new Promise((r)=>setTimeout(r,ms));
(async()=>{kill(hit(),'SIGTERM');const end=performance.now()+n*100;while(performance.now()<end){await wait(100);if(!hit().length)return}for(let i=0;i<5;i++){const ps=hit();if(!ps.length)return;kill(ps,'SIGKILL');await wait(100)}if(hit().length)process.exitCode=3})()`

/** Node binaries the runner's externals may hold, mounted at /__e in the job container. */
const EXTERNAL_NODES = ['/__e/node20/bin/node', '/__e/node24/bin/node', '/__e/node20_alpine/bin/node', '/__e/node16/bin/node']

/**
 * Each Engine call of a stop: a cancel's stop must be under way well before the runner's SIGKILL (10 s
 * after its SIGINT), and a loaded VM (a common reason to cancel) may hold a call for the default 120 s.
 */
const STOP_CALL = { timeoutMs: 5_000 }

/**
 * The stop script's exit code, 'running' when it had not ended at the limit, 'held' when the engine
 * did not answer a call in time, null when it could not be run.
 */
async function runAsRoot(engine: Engine, container: string, cmd: string[], limitMs: number): Promise<number | 'running' | 'held' | null> {
  try {
    const { data } = await engine.call<{ Id: string }>(
      'POST',
      `/containers/${container}/exec`,
      { User: '0', Cmd: cmd, AttachStdout: false, AttachStderr: false },
      'exec create (stop the step)',
      STOP_CALL
    )
    const execId = idFrom(data, 'exec create (stop the step)')
    await engine.call('POST', `/exec/${execId}/start`, { Detach: true }, 'exec start (stop the step)', { ...STOP_CALL, reply: 'ignore' })
    // Still running at the limit: the stop script ends itself after its last KILL, but nothing saw the step's processes go.
    const stillRunning = new Error('still running')
    return await waitUntil(
      async () => {
        const { data: info } = await engine.call<{ Running: boolean; ExitCode: number | null }>(
          'GET',
          `/exec/${execId}/json`,
          undefined,
          'exec inspect (stop the step)',
          STOP_CALL
        )
        return info.Running ? undefined : info.ExitCode
      },
      { timeoutMs: limitMs, minDelayMs: 20, maxDelayMs: 200, jitter: false, onTimeout: () => stillRunning }
    ).catch((e: unknown) => {
      if (e === stillRunning) return 'running' as const
      throw e
    })
  } catch (e) {
    // An engine that holds the call: another exec would be held too.
    return e instanceof TransportError && e.kind === 'timeout' ? 'held' : null
  }
}

/**
 * Signals every process of the step in `container` (TERM, then KILL after graceMs). Resolves true
 * once a stop script saw none of them left, false when none could say so (the VM's docker, where
 * the job is root, refused the execs, or processes outlived every KILL, or the script had not ended).
 */
export async function stopMarked(engine: Engine, container: string, marker: string, graceMs: number): Promise<boolean> {
  const tenths = String(Math.max(0, Math.round(graceMs / 100)))
  const record = `${STEP_MARKER}=${marker}`
  const limit = graceMs + 5000
  const code = await runAsRoot(engine, container, ['sh', '-c', STOP_SH, 'sh', record, tenths], limit)
  if (code === 0) return true
  if (code === 3 || code === 'running' || code === 'held') return false
  // No usable shell or grep in the image (exec failed to start, or 126/127): try the runner's node.
  for (const node of EXTERNAL_NODES) {
    const n = await runAsRoot(engine, container, [node, '-e', STOP_JS, record, tenths], limit)
    if (n === 0) return true
    if (n === 3 || n === 'running' || n === 'held') return false
  }
  return false
}
