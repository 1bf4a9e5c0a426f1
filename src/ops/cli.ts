// `node dist/index.js <command> [options]` (or the `remote-hooks` bin): runs one operator command
// and returns its exit code. main.ts hands over here only for a name in names.ts.
import { formatError } from '../errors'
import { EX_USAGE, parseArgs, type OpIo } from './command'
import type { OpName } from './names'
import { REGISTRY } from './registry'

export async function runOpCommand(name: OpName, argv: string[], io: OpIo): Promise<number> {
  const cmd = await REGISTRY[name]()
  const args = parseArgs(cmd, argv)
  if ('help' in args) {
    io.stdout.write(cmd.help)
    return 0
  }
  if ('error' in args) {
    io.stderr.write(`${args.error}\n(see: remote-hooks ${name} --help)\n`)
    return EX_USAGE
  }
  try {
    return await cmd.run(args, io)
  } catch (e) {
    // A command reports what it checks itself; this is a fault of the command, not a finding.
    io.stderr.write(`${name}: ${formatError(e)}\n`)
    return 70
  }
}
