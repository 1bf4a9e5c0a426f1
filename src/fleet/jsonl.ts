// The local ledger's append-only logs read a chunk at a time: a file read whole as one string stops
// at V8's string limit (about 512 MiB; a busy runner host's jobs.jsonl reaches it in a few hundred
// thousand jobs), and the read of one reservation, which every late heartbeat or timing of a
// settled job makes, is served from the end, where recent settlements are.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs'
import { errnoOf, HookError } from '../errors'

const CHUNK = 1 << 20
/** Longer lines are never the ledger's own (a record is a few hundred bytes): skipped as torn. */
export const LINE_MAX = 16 << 20

function opened<T>(path: string, fn: (fd: number, size: number) => T, none: T): T {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return none
    throw new HookError(`fleet ledger: cannot read ${path} (${errnoOf(e)})`)
  }
  try {
    return fn(fd, fstatSync(fd).size)
  } finally {
    closeSync(fd)
  }
}

const parsed = (line: Buffer): { ok: true; value: unknown } | { ok: false } => {
  try {
    return { ok: true, value: JSON.parse(line.toString('utf8')) }
  } catch {
    return { ok: false }
  }
}

/**
 * The whole number right after `key` in a line of ours, or null (none there, or not a plain number):
 * read from the bytes, so that a range can pass over lines without parsing them.
 */
export function numberAfter(line: Buffer, key: Buffer, at?: number): number | null {
  const i = at ?? line.indexOf(key)
  if (i < 0 || (at !== undefined && !line.subarray(at, at + key.length).equals(key))) return null
  let n = 0
  let j = i + key.length
  for (; j < line.length && j - i - key.length < 16; j++) {
    const c = line[j]
    if (c < 0x30 || c > 0x39) break
    n = n * 10 + (c - 0x30)
  }
  // Digits, then the end of the value: anything else is left to the parse.
  return j > i + key.length && (line[j] === 0x2c || line[j] === 0x7d) ? n : null
}

/**
 * Each line's parsed value, first to last; a line that is not JSON (torn by a crash) or too long is
 * skipped, and so is one `keep` (given the line's bytes) answers false for, without being parsed.
 */
export function forEachLine(path: string, fn: (value: unknown) => void, keep?: (line: Buffer) => boolean): void {
  opened(
    path,
    (fd) => {
      const buf = Buffer.alloc(CHUNK)
      // The start of a line the chunks read so far have not ended, and its length.
      let parts: Buffer[] = []
      let held = 0
      const end = (piece: Buffer): void => {
        const length = held + piece.length
        if (length > 0 && length <= LINE_MAX) {
          const line = parts.length ? Buffer.concat([...parts, piece]) : piece
          const p = !keep || keep(line) ? parsed(line) : null
          if (p?.ok) fn(p.value)
        }
        parts = []
        held = 0
      }
      for (;;) {
        const n = readSync(fd, buf, 0, CHUNK, null)
        if (n === 0) break
        const b = buf.subarray(0, n)
        let start = 0
        for (let i = b.indexOf(0x0a); i !== -1; i = b.indexOf(0x0a, start)) {
          end(b.subarray(start, i))
          start = i + 1
        }
        if (start < n) {
          // Kept only while it can still be a line of ours.
          if (held + n - start <= LINE_MAX) parts.push(Buffer.from(b.subarray(start)))
          held += n - start
        }
      }
      end(Buffer.alloc(0))
    },
    undefined
  )
}

/** The newline before `stop` in `b`, or -1. */
const newlineBefore = (b: Buffer, stop: number): number => (stop > 0 ? b.lastIndexOf(0x0a, stop - 1) : -1)

/**
 * The last line's value for which `pick` answers true, read from the end; lines without `needle`
 * (a text every wanted line holds) are not parsed. Null when none.
 */
export function lastLine<T>(path: string, needle: string, pick: (value: unknown) => value is T): T | null {
  const want = Buffer.from(needle, 'utf8')
  return opened(
    path,
    (fd, size) => {
      const buf = Buffer.alloc(CHUNK)
      // The part of a line whose start is in the chunks not read yet.
      let tail = Buffer.alloc(0)
      // Whether that line's end was let go of (a line longer than any of ours).
      let skip = false
      for (let end = size; end > 0;) {
        const at = Math.max(0, end - CHUNK)
        const n = readSync(fd, buf, 0, end - at, at)
        if (n !== end - at) throw new HookError(`fleet ledger: ${path} changed while read`)
        end = at
        const data = Buffer.concat([buf.subarray(0, n), tail])
        let stop = data.length
        for (;;) {
          const i = newlineBefore(data, stop)
          if (i === -1 && end > 0) break
          const line = data.subarray(i + 1, stop)
          if (!skip && line.length <= LINE_MAX && line.includes(want)) {
            const p = parsed(line)
            if (p.ok && pick(p.value)) return p.value
          }
          skip = false
          stop = i
          if (i === -1) break
        }
        tail = Buffer.from(data.subarray(0, Math.max(stop, 0)))
        if (tail.length > LINE_MAX) {
          tail = Buffer.alloc(0)
          skip = true
        }
      }
      return null
    },
    null
  )
}
