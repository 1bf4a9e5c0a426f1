// How an operator command shows its results: an aligned table for a person at a shell, or one
// JSON document (`--json`) for scripts. Both come from the same records.
import { noLegacyCommand, shownText } from '../workflow-commands'

export type Status = 'pass' | 'fail' | 'skip'

/** One line of `doctor`: what was checked, where, how it went, and for a failure what to do. */
export interface CheckResult {
  check: string
  /** The machine or place checked (`runner host`, `rchvm@10.0.0.5:22`, `AWS eu-west-1`). */
  target: string
  status: Status
  detail: string
  /** Set on every failure: one sentence of what to change. */
  fix?: string
}

/**
 * A cell as it may reach a terminal: details carry text from machines and APIs (a tool's path, an
 * error) and names from jobs (see shownText). In a table no secret needs matching, so what hides
 * what a name really is goes too (format characters, zero width, any default-ignorable one), and
 * TAB, CR and LF.
 */
export const printable = (s: string): string =>
  // `##[` acts anywhere in a line of a workflow's log (doctor may run in one).
  noLegacyCommand(shownText(s))
    .replace(/[\t\r\n\p{Cf}\p{Default_Ignorable_Code_Point}]/gu, '?')
    // Marks stacked three or more on one letter draw over the rows above and below.
    .replace(/\p{M}{3,}/gu, '?')

/**
 * How wide a padded column may grow: every row is padded to its widest cell, so one long name (a
 * job's) would make every line of the table that long.
 */
export const CELL_MAX = 80

/**
 * Terminal columns a character takes: none for a combining mark, two for the wide scripts and
 * forms (CJK, kana, Hangul, fullwidth letters, emoji shown as pictures), one for the rest. Unicode's
 * East Asian Width in the ranges that matter: JavaScript's regular expressions do not know it.
 */
const WIDE =
  /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\p{Emoji_Presentation}\u3000-\u303f\uff01-\uff60\uffe0-\uffe6]/u
const charWidth = (c: string): number => (/\p{M}/u.test(c) ? 0 : WIDE.test(c) ? 2 : 1)

/** Terminal columns, not UTF-16 units nor characters: a column is padded and cut by what it shows. */
const width = (s: string): number => Array.from(s).reduce((n, c) => n + charWidth(c), 0)

const fitted = (s: string): string => {
  if (width(s) <= CELL_MAX) return s
  let out = ''
  let w = 0
  for (const c of s) {
    if (w + charWidth(c) > CELL_MAX - 1) break
    out += c
    w += charWidth(c)
  }
  return `${out}…`
}

/** Rows of cells as aligned columns; the last column is not padded, nor cut. */
export function table(header: string[], cells: string[][]): string {
  const rows = cells.map((r) => r.map((c, i) => (i === r.length - 1 ? printable(c) : fitted(printable(c)))))
  // A loop, not Math.max(...rows): a spread of 150,000 rows overflows the stack.
  const widths = header.map(width)
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, width(c))))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(Math.max(0, widths[i] - width(c)))))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)].join('\n') + '\n'
}

/** The human form of doctor's checks: one row each, a failure's fix on the line under it, then a summary. */
export function checksTable(checks: CheckResult[]): string {
  const rows: string[][] = []
  for (const c of checks) {
    rows.push([c.status.toUpperCase(), c.check, c.target, c.detail])
    if (c.status === 'fail' && c.fix) rows.push(['', '', '', `fix: ${c.fix}`])
  }
  return table(['STATUS', 'CHECK', 'TARGET', 'DETAIL'], rows) + summary(checks) + '\n'
}

export function summary(checks: CheckResult[]): string {
  const n = (s: Status): number => checks.filter((c) => c.status === s).length
  return `${n('pass')} passed, ${n('fail')} failed, ${n('skip')} skipped`
}

/**
 * One JSON document. JSON.stringify escapes only C0 controls: what a terminal or `jq` would still
 * act on or hide (DEL, C1, bidirectional overrides, zero-width and other invisible characters, line
 * and paragraph separators) is written as `\\uXXXX` too: the same document, read back the same.
 */
export const json = (v: unknown): string =>
  JSON.stringify(v, null, 2).replace(/[\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/gu, (c) =>
    Array.from({ length: c.length }, (_, i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join('')
  ) + '\n'
