// Workflow commands on the step log, written the way the runner parses them. Every `::name::value`
// line the hook prints is made here, so escaping cannot be forgotten at one call site.
import { randomBytes } from 'node:crypto'
import { lineTail } from './line-tail'

/** The runner's escaping of a command's value: `%`, CR and LF (it decodes them back). */
export function escapeData(s: string): string {
  return s.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A')
}

/**
 * Text as it may appear anywhere in a step-log line: the runner also reads the old command form
 * `##[name props]value` ANYWHERE in a line (ActionCommand.TryParse, tried after the `::` form), so
 * `[remote-hooks] … ##[stop-commands]x` would stop every later command of the job (its
 * `::add-mask::` lines too); and its log viewer folds at a line starting `##[group]` (a decoded
 * `%0A` starts one). The `##[` is broken apart.
 */
export function noLegacyCommand(s: string): string {
  return s.replace(/##\[/g, '## [')
}

/**
 * Text a machine or a job chose (an engine's error, a VM's stderr, a name), as the step log may show
 * it: a control character could drive the terminal of whoever reads the runner's logs (ESC
 * sequences) or colour the viewer; a bidirectional mark, override or isolate could show it in
 * another order; a line or paragraph separator starts a line in some viewers; a lone surrogate
 * prints as something else. Each becomes `?`. Only what acts: a secret the runner masks (it matches
 * only whole) may hold a zero-width joiner, a variation selector or a BOM, which stay. TAB, CR and LF
 * stay too: the caller folds, escapes or replaces them. Applied after the hook's own masking.
 */
export const shownText = (s: string): string =>
  s.replace(/[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\p{Cs}\p{Zl}\p{Zp}]|(?![\t\r\n])\p{Cc}/gu, '?')

/** One workflow command line (without its newline). */
export function workflowCommand(name: 'error' | 'warning' | 'debug' | 'group' | 'endgroup', message = ''): string {
  return `::${name}::${escapeData(noLegacyCommand(shownText(message)))}`
}

/** The most of a foreign log printed to the step log: the tail is kept, where a failure usually shows. */
export const MAX_FOREIGN_LOG_CHARS = 64 * 1024

/**
 * Text the hook does not control (a container's log) as step-log lines that cannot issue workflow
 * commands: the runner ignores every command between `::stop-commands::TOKEN` and `::TOKEN::`, old
 * `##[name]` ones included, and the token is random, so the text cannot end the block itself.
 * Only a `##[` that starts a line is broken (the viewer would fold there): one inside a line stays,
 * so that the runner still masks a secret that holds it. Bounded to its last part.
 */
export function inertLines(text: string, maxChars = MAX_FOREIGN_LOG_CHARS): string[] {
  let body = text.replace(/\r\n?/g, '\n').replace(/\n$/, '')
  let cut = ''
  if (body.length > maxChars) {
    // Whole lines only (lineTail): a value the runner masks shows only whole, never its end alone.
    const tail = lineTail(maxChars)
    tail.push(`${body}\n`)
    cut = `(the log's first part is not shown: it has ${body.length} characters)`
    body = tail.text().replace(/\n$/, '')
  }
  const token = randomBytes(16).toString('hex')
  const lines = body ? body.split('\n').map(noMarkerAtStart) : ['(empty)']
  return [`::stop-commands::${token}`, ...(cut ? [cut] : []), ...lines, `::${token}::`]
}

/**
 * One line with a `##[` at its start broken (after white space and colour codes, and after a line
 * or paragraph separator, where some viewers start a line). Per line and without the multiline
 * flag: over a whole log, white space that spans lines made the search take time of the square of
 * the log's length (a megabyte of CR: half an hour).
 */
const noMarkerAtStart = (line: string): string =>
  // eslint-disable-next-line no-control-regex -- colour codes before a marker still start the line
  line.replace(/(^|[\u2028\u2029])((?:[^\S\u2028\u2029]|\u001b\[[0-9;?]*[A-Za-z])*)##\[/g, '$1$2## [')
