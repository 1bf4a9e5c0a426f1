// What a machine prints is kept for error messages and the log only in whole lines. Secrets are
// masked where they appear whole (log.ts); a line cut in two could show a secret's start or end,
// which no mask recognises. So a tail starts at a line's start, and a line too long to keep is
// left out with a note instead of cut. Bytes are decoded across chunks: a character split between
// two chunks would otherwise come out as two replacement characters, and a secret holding it unmasked.
import { StringDecoder } from 'node:string_decoder'

/** A note standing for a line of over `max` characters that was left out. */
export const longLineNote = (max: number): string => `[a line of over ${max} characters, not shown]`

/**
 * The last `max` characters (or about: a note may stand in) of what is pushed, from the start of a
 * line. Where the bound falls inside a line that began before the kept text, the rest of that line
 * is dropped; a line longer than `max` is dropped whole and the note stands in its place, so the
 * last line (often the error) is never dropped without a word.
 */
export function lineTail(max: number): { push(s: string | Buffer): void; text(): string } {
  let kept = ''
  const decoder = new StringDecoder('utf8')
  // Inside a line too long to keep: everything up to its newline is dropped.
  let skipping = false
  const note = `${longLineNote(max)}\n`
  return {
    push(chunk) {
      let s = typeof chunk === 'string' ? chunk : decoder.write(chunk)
      if (skipping) {
        const nl = s.indexOf('\n')
        if (nl < 0) return
        s = note + s.slice(nl + 1)
        skipping = false
      }
      kept += s
      if (kept.length <= max) return
      const from = kept.length - max
      if (kept[from - 1] === '\n') return void (kept = kept.slice(from))
      const nl = kept.indexOf('\n', from)
      if (nl < 0) {
        kept = ''
        skipping = true
        return
      }
      // The line cut: one longer than the bound is noted; the end of an older one is dropped.
      const lineStart = kept.lastIndexOf('\n', from - 1) + 1
      kept = (nl - lineStart > max ? note : '') + kept.slice(nl + 1)
    },
    text: () => (skipping ? `${kept}${longLineNote(max)}` : kept)
  }
}

/** `line` whole when it has at most `max` characters, else the note: never a piece of it. */
export const wholeLine = (line: string, max: number): string => (line.length <= max ? line : longLineNote(max))
