// Reading what a remote command printed. The SSH user's start-up files (or anything root on the host
// put there) can print before and after our command, so answers are framed by a per-call random
// marker and NUL-separated, and each value must match exactly what the caller expects.
import { randomBytes } from 'node:crypto'
import { HookError } from '../errors'
import { check, type Remote, type RunOptions } from './remote'

/** Shell: prints one NUL-terminated record (the value is a shell word, e.g. "$d" or a quoted string). */
export const record = (word: string): string => `printf '%s\\0' ${word}`

/** Escaped and truncated, for error messages about what came back. */
function describeBytes(buf: Buffer | string, max = 200): string {
  const b = typeof buf === 'string' ? Buffer.from(buf, 'utf8') : buf
  const shown = JSON.stringify(b.subarray(0, max).toString('latin1'))
  return b.length > max ? `${shown}… (${b.length} bytes)` : shown
}

export class UnexpectedAnswer extends HookError {}

/** The records between the frame markers; anything outside the frame is ignored. */
export function unframe(out: Buffer, nonce: string, label: string): string[] {
  return unframeWithRest(out, nonce, label).records
}

/** Like unframe(), also returning what was printed outside the frame. */
function unframeWithRest(out: Buffer, nonce: string, label: string): { records: string[]; outside: Buffer } {
  const begin = Buffer.from(`RCH-BEGIN-${nonce}\0`)
  const end = `RCH-END-${nonce}`
  const at = out.indexOf(begin)
  if (at < 0) throw new UnexpectedAnswer(`${label}: the remote's answer has no frame; got ${describeBytes(out)}`)
  const records: string[] = []
  let pos = at + begin.length
  for (;;) {
    const nul = out.indexOf(0, pos)
    if (nul < 0) throw new UnexpectedAnswer(`${label}: the remote's answer ends inside the frame; got ${describeBytes(out.subarray(at))}`)
    const value = out.subarray(pos, nul).toString('utf8')
    pos = nul + 1
    if (value === end) return { records, outside: Buffer.concat([out.subarray(0, at), out.subarray(pos)]) }
    records.push(value)
  }
}

/** Values must each match `pattern` in full. */
export function expectEach(values: string[], pattern: RegExp, label: string): string[] {
  for (const v of values) {
    if (!pattern.test(v)) throw new UnexpectedAnswer(`${label}: unexpected value from the remote: ${describeBytes(v)}`)
  }
  return values
}

/**
 * Runs `body` (which prints its answer with record()) inside a frame and returns the records.
 * A non-zero exit throws like check().
 */
export async function ask(remote: Remote, body: string, opts: RunOptions & { label: string; silentShell?: boolean }): Promise<string[]> {
  const nonce = randomBytes(12).toString('hex')
  const script = `${record(`RCH-BEGIN-${nonce}`)}; ( ${body}
) || exit $?; ${record(`RCH-END-${nonce}`)}`
  const r = await check(remote, script, { ...opts, collect: true, maxCollect: opts.maxCollect ?? 1024 * 1024 })
  const { records, outside } = unframeWithRest(r.stdout, nonce, opts.label)
  // rsync speaks its protocol over the same channel: any byte a start-up file prints breaks it
  // ("protocol incompatibility"), so say so here, where the cause is visible.
  if (opts.silentShell && outside.length) {
    throw new UnexpectedAnswer(
      `${opts.label}: the SSH user's shell printed output of its own (${describeBytes(outside)}) around the command; rsync needs a silent shell: remove that output from the user's start-up files (~/.bashrc, ~/.profile, /etc/bash.bashrc)`
    )
  }
  return records
}

/** Parses an answer of exactly one of `words` (a lease operation's outcome, a state). */
export function oneWord<T extends string>(records: string[], words: readonly T[], label: string): T {
  if (records.length === 1 && (words as readonly string[]).includes(records[0])) return records[0] as T
  throw new UnexpectedAnswer(`${label}: unexpected answer from the machine: ${JSON.stringify(records.slice(0, 4))}`)
}
