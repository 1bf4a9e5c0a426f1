// POSIX-style word splitting without expansion, for the option and argument strings the runner
// hands over (createOptions, rejoined entryPointArgs). Returns null on an unterminated quote.
export function shlexSplit(input: string): string[] | null {
  const r = shlexScan(input)
  return Array.isArray(r) ? r : null
}

/**
 * The words, or where the quote that is never closed opens (0-based): an error can point there
 * without echoing the text, which may hold secrets (`--env TOKEN=…`).
 */
export function shlexScan(
  input: string,
  /** From this offset on, a `\"` before a space or the end closes a double quote (see rejoinArgs). */
  opts: { lenientFrom?: number } = {}
): string[] | { unterminatedAt: number } {
  const out: string[] = []
  let cur = ''
  let inWord = false
  let i = 0
  while (i < input.length) {
    const c = input[i]
    if (c === "'") {
      const end = input.indexOf("'", i + 1)
      if (end < 0) return { unterminatedAt: i }
      cur += input.slice(i + 1, end)
      inWord = true
      i = end + 1
    } else if (c === '"') {
      const open = i
      i++
      let closed = false
      while (i < input.length) {
        const d = input[i]
        if (d === '"') {
          closed = true
          i++
          break
        }
        // The runner's own quoting (below) escapes only `"`: an argument ending in a backslash ends `\"`.
        const lenient = opts.lenientFrom !== undefined && open >= opts.lenientFrom
        if (lenient && d === '\\' && input[i + 1] === '"' && (i + 2 === input.length || input[i + 2] === ' ')) {
          cur += d
          i++
          continue
        }
        if (d === '\\' && i + 1 < input.length && '"\\$`\n'.includes(input[i + 1])) {
          if (input[i + 1] !== '\n') cur += input[i + 1]
          i += 2
          continue
        }
        cur += d
        i++
      }
      if (!closed) return { unterminatedAt: open }
      inWord = true
    } else if (c === '\\') {
      if (i + 1 < input.length && input[i + 1] === '\n') {
        i += 2 // line continuation: not part of any word
        continue
      }
      if (i + 1 < input.length) cur += input[i + 1]
      i += 2
      inWord = true
    } else if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) out.push(cur)
      cur = ''
      inWord = false
      i++
    } else {
      cur += c
      inWord = true
      i++
    }
  }
  if (inWord) out.push(cur)
  return out
}

/**
 * Rejoins argument fragments the runner split on single spaces and re-splits them. The runner wraps
 * each `runs.args` entry in `"…"` escaping only `"`, so one ending in a backslash (`C:\`) arrives as
 * `"C:\"`, which no shell reading closes: then, from the latest argument's opening quote that makes
 * the whole read on, such a `\"` before a space or the end is read as the backslash and the closing
 * quote, rather than every fragment passed on as sent.
 */
export function rejoinArgs(fragments: readonly string[]): string[] {
  if (!fragments.some((f) => /["'\\]/.test(f))) return fragments.filter((f) => f !== '')
  const joined = fragments.join(' ')
  const r = shlexScan(joined)
  if (Array.isArray(r)) return r
  // Read leniently from as late a quote as makes the whole read (the one left open first): the
  // arguments before it read as before. A bounded number of tries: the workflow sets the arguments.
  let tries = 0
  for (let at = r.unterminatedAt; at >= 0 && tries < LENIENT_TRIES; at = at > 0 ? joined.lastIndexOf('"', at - 1) : -1) {
    if (at > 0 && joined[at - 1] !== ' ') continue
    tries++
    const lenient = shlexScan(joined, { lenientFrom: at })
    if (Array.isArray(lenient)) return lenient
  }
  return [...fragments]
}

/** How many quotes rejoinArgs tries reading leniently from. */
const LENIENT_TRIES = 32
