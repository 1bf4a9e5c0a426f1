// `check-config [file]`: the configuration checked as the hook checks it, plus what can be checked
// offline. Reads files only: no network, no SSH, nothing written (the loader's code cache aside).
import type { OpCommand } from './command'
import { readConfig } from './config-file'
import { json, table } from './output'
import { providerSummary } from '../providers/factory'

/** EX_CONFIG (sysexits.h), the hook's own exit code for a bad configuration. */
export const EX_CONFIG = 78

export const checkConfigCommand: OpCommand = {
  name: 'check-config',
  summary: 'validate a configuration file offline (no network, no SSH); exit 0 valid, 78 not',
  maxPositional: 1,
  help: `usage: remote-hooks check-config [FILE | --config FILE] [--json]

Validates the configuration FILE (default: $REMOTE_HOOKS_CONFIG) exactly as the hook does at the
start of every command, and adds what can be checked without the network: private key files are
readable and parse (unencrypted), each static host's known_hosts file parses and pins a key for
that host and port, configured tools are executable files, the work root is not a system folder.
Nothing is contacted, and nothing is written but the hook's own code cache in $TMPDIR/rch-<uid>.

Output: one problem per line (FIELD, PROBLEM), or with --json
  {"ok": true|false, "file": "...", "problems": [{"field": "...", "message": "..."}]}

Exit status: 0 valid, 78 (EX_CONFIG) not valid, 64 usage error.
`,
  run(args, io) {
    const file = args.file ?? io.env.REMOTE_HOOKS_CONFIG
    const { config, problems } = readConfig(file)
    if (args.json) io.stdout.write(json({ ok: problems.length === 0, file: file ?? null, problems }))
    else if (problems.length) {
      io.stdout.write(
        table(
          ['FIELD', 'PROBLEM'],
          problems.map((p) => [p.field, p.message])
        )
      )
      io.stdout.write(`${problems.length} problem${problems.length === 1 ? '' : 's'} in ${file ?? '(no file)'}\n`)
    } else if (config) {
      const p = config.provider
      io.stdout.write(`${file}: valid (provider ${p.kind}, ${providerSummary(p)}; remote.workRoot ${config.remote.workRoot})\n`)
    }
    return Promise.resolve(problems.length ? EX_CONFIG : 0)
  }
}
