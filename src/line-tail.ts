// What a machine prints is kept for error messages and the log only in whole lines. Secrets are
// masked where they appear whole (log.ts); a line cut in two could show a secret's start or end,
// which no mask recognises. So a tail starts at a line's start, and a line too long to keep is
// left out with a note instead of cut.

/** A note standing for a line of over `max` characters that was left out. */
export const longLineNote = (max: number): string => `[a line of over ${max} characters, not shown]`

/**
 * The last `max` characters (or fewer) of what is pushed, from the start of a line: where the bound
 * falls inside a line, the rest of that line is dropped, and a line longer than `max` is dropped
 * whole (up to its newline) and stands as a note at the end if the text ends inside it.
 */
export function lineTail(max: number): { push(s: string): void; text(): string } {
  let kept = ''
  // Inside a line too long to keep: everything up to its newline is dropped.
  let skipping = false
  return {
    push(s) {
      if (skipping) {
        const nl = s.indexOf('\n')
        if (nl < 0) return
        s = s.slice(nl + 1)
        skipping = false
      }
      kept += s
      if (kept.length <= max) return
      const from = kept.length - max
      const nl = kept[from - 1] === '\n' ? from - 1 : kept.indexOf('\n', from)
      if (nl >= 0) kept = kept.slice(nl + 1)
      else {
        kept = ''
        skipping = true
      }
    },
    text: () => (skipping ? `${kept}${longLineNote(max)}` : kept)
  }
}

/** `line` whole when it has at most `max` characters, else the note: never a piece of it. */
export const wholeLine = (line: string, max: number): string => (line.length <= max ? line : longLineNote(max))
