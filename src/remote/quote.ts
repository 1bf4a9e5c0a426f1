// The project's only shell-quoting function: every string that reaches a remote shell goes through it.
const SAFE = /^[A-Za-z0-9_@%+:,./-]+$/
const KEYWORDS = new Set([
  'if',
  'then',
  'else',
  'elif',
  'fi',
  'case',
  'esac',
  'for',
  'while',
  'until',
  'do',
  'done',
  'in',
  '!',
  '{',
  '}',
  'function',
  'select',
  'time'
])

/** Quotes one argument for a POSIX shell so it arrives byte-exact as a single word. */
export function shq(arg: string): string {
  if (arg.includes('\0')) throw new Error('a shell argument cannot contain a NUL byte')
  if (arg !== '' && SAFE.test(arg) && !KEYWORDS.has(arg)) return arg
  return `'${arg.replace(/'/g, `'\\''`)}'`
}

/** Quotes an argv into one command string (ssh exec takes a single string the remote shell parses). */
export function shjoin(argv: readonly string[]): string {
  return argv.map(shq).join(' ')
}

/** A remote path as one shell word; `~/path` is left to the remote shell's $HOME. */
export function shPath(p: string): string {
  return p.startsWith('~/') ? `"$HOME"/${shq(p.slice(2))}` : shq(p)
}

/**
 * shq for a command that must fit on one line (read by a shell's `read`): a newline in the
 * argument becomes `"$__rch_n"` between quotes, so the reading shell must hold a newline there.
 */
export function shqOneLine(arg: string): string {
  return shq(arg).replace(/\n/g, `'"$__rch_n"'`)
}
