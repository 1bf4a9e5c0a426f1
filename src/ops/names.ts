// The operator commands' names, all main.ts needs to tell one from a hook call: the commands
// themselves (registry.ts) load only when one of them runs, so the hook's start-up stays as it is.
import { nearestKey } from '../near-miss'

export const OP_COMMANDS = ['check-config', 'doctor', 'index-ledger', 'reap', 'report'] as const
export type OpName = (typeof OP_COMMANDS)[number]

export const isOpCommand = (s: string | undefined): s is OpName => (OP_COMMANDS as readonly string[]).includes(s ?? '')

/** The hook itself takes no argument (the runner sends its request on stdin): anything else is a mistyped command. */
export function notACommand(arg: string): string {
  const near = nearestKey(arg, [...OP_COMMANDS, '--help', '--version'])
  return (
    `remote-hooks: unknown command ${JSON.stringify(arg)}${near ? ` (did you mean ${near}?)` : ''}; ` +
    'the hook itself takes no arguments\n(see: remote-hooks --help)\n'
  )
}

/** A hook started at a terminal would wait there for a request only the runner sends. */
export const NO_REQUEST_AT_TERMINAL =
  'remote-hooks: the hook reads one JSON request on stdin, as the runner sends it (docs/protocol.md shows how to send one by hand)\n' +
  '(see: remote-hooks --help)\n'
