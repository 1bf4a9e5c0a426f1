// The operator commands' names, all main.ts needs to tell one from a hook call: the commands
// themselves (registry.ts) load only when one of them runs, so the hook's start-up stays as it is.
export const OP_COMMANDS = ['check-config', 'doctor', 'reap'] as const
export type OpName = (typeof OP_COMMANDS)[number]

export const isOpCommand = (s: string | undefined): s is OpName => (OP_COMMANDS as readonly string[]).includes(s ?? '')
