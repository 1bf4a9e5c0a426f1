// What an operator command is: its help, the options it takes, and its run. The command line is
// parsed here once for all of them, so each gets the same `--help` and `--json` and the same
// usage errors.
import type { OpName } from './names'

export interface OpIo {
  env: Record<string, string | undefined>
  stdout: { write(s: string): unknown }
  stderr: { write(s: string): unknown }
  signal: AbortSignal
}

export interface OpArgs {
  positional: string[]
  /** The configuration file named on the command line: FILE or --config FILE (every command takes both). */
  file?: string
  json: boolean
  /** Options by name without the dashes: true for a flag, the text for one that takes a value. */
  options: Record<string, string | true>
}

export interface OpCommand {
  name: OpName
  /** One line for the list of commands. */
  summary: string
  /** The text of `<command> --help`. */
  help: string
  /** Options besides --help and --json: 'flag' or 'value' (`--since 2026-12-01` or `--since=…`). */
  options?: Record<string, 'flag' | 'value'>
  maxPositional: number
  run(args: OpArgs, io: OpIo): Promise<number>
}

/** EX_USAGE (sysexits.h): the command line itself is wrong. */
export const EX_USAGE = 64

/** Parses argv after the command name: the arguments, a request for help, or the usage error to print. */
export function parseArgs(
  cmd: Pick<OpCommand, 'options' | 'maxPositional' | 'name'>,
  argv: string[]
): OpArgs | { help: true } | { error: string } {
  const out: OpArgs = { positional: [], json: false, options: {} }
  const known: Record<string, 'flag' | 'value'> = { config: 'value', ...cmd.options }
  // Help wins wherever it stands, so `doctor --whatever --help` still shows it.
  const end = argv.indexOf('--')
  if ((end < 0 ? argv : argv.slice(0, end)).some((a) => a === '--help' || a === '-h')) return { help: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--json') out.json = true
    else if (a === '--') {
      out.positional.push(...argv.slice(i + 1))
      break
    } else if (a.startsWith('-') && a !== '-') {
      const eq = a.indexOf('=')
      const name = a.replace(/^--?/, '').slice(0, eq < 0 ? undefined : eq - (a.startsWith('--') ? 2 : 1))
      const kind = known[name]
      if (!kind) return { error: `${cmd.name}: unknown option ${eq < 0 ? a : a.slice(0, eq)}` }
      if (kind === 'flag') {
        if (eq >= 0) return { error: `${cmd.name}: --${name} takes no value` }
        out.options[name] = true
      } else if (eq >= 0) out.options[name] = a.slice(eq + 1)
      else if (i + 1 < argv.length) out.options[name] = argv[++i]
      else return { error: `${cmd.name}: --${name} needs a value` }
    } else out.positional.push(a)
  }
  if (out.positional.length > cmd.maxPositional)
    return { error: `${cmd.name}: unexpected argument ${JSON.stringify(out.positional[cmd.maxPositional])}` }
  const named = out.options.config
  delete out.options.config
  if (named !== undefined && out.positional.length)
    return { error: `${cmd.name}: give the configuration file once (FILE or --config FILE)` }
  out.file = (named as string | undefined) ?? out.positional[0]
  return out
}
