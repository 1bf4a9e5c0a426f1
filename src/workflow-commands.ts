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

/** One workflow command line (without its newline). */
export function workflowCommand(name: 'error' | 'warning' | 'debug' | 'group' | 'endgroup', message = ''): string {
  return `::${name}::${escapeData(noLegacyCommand(message))}`
}

/** The most of a foreign log printed to the step log: the tail is kept, where a failure usually shows. */
export const MAX_FOREIGN_LOG_CHARS = 64 * 1024

/**
 * Text the hook does not control (a container's log) as step-log lines that cannot issue workflow
 * commands: the runner ignores every command between `::stop-commands::TOKEN` and `::TOKEN::`, and
 * the token is random, so the text cannot end the block itself. Bounded to its last part.
 */
export function inertLines(text: string, maxChars = MAX_FOREIGN_LOG_CHARS): string[] {
  let body = noLegacyCommand(text.replace(/\r\n?/g, '\n').replace(/\n$/, ''))
  let cut = ''
  if (body.length > maxChars) {
    // Whole lines only (lineTail): a value the runner masks shows only whole, never its end alone.
    const tail = lineTail(maxChars)
    tail.push(`${body}\n`)
    cut = `(the log's first part is not shown: it has ${body.length} characters)`
    body = tail.text().replace(/\n$/, '')
  }
  const token = randomBytes(16).toString('hex')
  return [`::stop-commands::${token}`, ...(cut ? [cut] : []), ...(body ? body.split('\n') : ['(empty)']), `::${token}::`]
}
