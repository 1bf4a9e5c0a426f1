// The runner reads the old command form `##[name props]value` ANYWHERE in a step-log line (after the
// `::name::` form, which only counts at a line's start). A progress line quoting text a machine chose
// (Docker's words on a pool member, a scrub's stderr) therefore could issue a command with the
// hook's authority: `##[stop-commands]x` stops every later command of the job, its own
// `::add-mask::` lines too, so a secret the job masks later is printed in the clear.
import { join } from 'node:path'
import { createLog } from '../../src/log'
import { escapeData, inertLines, noLegacyCommand, workflowCommand } from '../../src/workflow-commands'
import { runnerCommands } from './_runner-commands'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

function make(): { log: ReturnType<typeof createLog>; out: string[] } {
  const out: string[] = []
  return {
    log: createLog({ file: join(tempDir(), 'logs', 'hook.log'), level: 'info', debugToStepLog: true, out: (l) => out.push(l) }),
    out
  }
}

const said = 'Docker does not answer: ##[stop-commands]pwned'

test('positive control: the runner reads `##[…]` anywhere in a line, and a stop there swallows a later ::add-mask::', () => {
  expect(runnerCommands(['[remote-hooks] x ##[add-mask]y'])).toEqual(['add-mask:y'])
  expect(runnerCommands([`[remote-hooks] i-a is replaced: ${said}`, '::add-mask::job-token'])).toEqual([])
  expect(runnerCommands(['[remote-hooks] plain', '::add-mask::job-token'])).toEqual(['add-mask:job-token'])
})

test("a progress line quoting a machine cannot issue an old-form command: the job's later ::add-mask:: still counts", () => {
  const { log, out } = make()
  log.progress(`i-a is replaced: ${said}`)
  log.progress('scrub failed: ##[add-mask]the-next-word ##[set-env name=NODE_OPTIONS;]--require=/tmp/x')
  expect(runnerCommands([...out, '::add-mask::job-token'])).toEqual(['add-mask:job-token'])
  // the words are still shown
  expect(out[0]).toBe('[remote-hooks] i-a is replaced: Docker does not answer: ## [stop-commands]pwned')
})

test('noLegacyCommand leaves no `##[` however the `#`s and `[`s are run together', () => {
  for (const s of ['##[', '###[', '##[##[', '#####[[', '##[#[##[']) expect(noLegacyCommand(s)).not.toContain('##[')
  expect(noLegacyCommand('plain # text [x]')).toBe('plain # text [x]')
})

/** The lines the log viewer gets from a command's value once the runner decoded it. */
const decodedLines = (line: string): string[] =>
  line
    .replace(/%0D/g, '\r')
    .replace(/%0A/g, '\n')
    .replace(/%25/g, '%')
    .split(/\r\n|\r|\n/)

test("a command's value cannot put a `##[group]` line into the viewer after a decoded newline", () => {
  // positive control: escaped alone, the second line starts a fold
  expect(decodedLines(`::warning::${escapeData('a\n##[group]swallow')}`)[1]).toBe('##[group]swallow')
  for (const name of ['warning', 'error', 'debug', 'group'] as const)
    expect(decodedLines(workflowCommand(name, 'a\n##[endgroup]\n##[group]swallow')).filter((l) => l.startsWith('##['))).toEqual([])
})

test("a `##[` inside a line of a container's log stays as it is, so the runner still masks a secret that holds it", () => {
  const lines = inertLines('POSTGRES_PASSWORD=pa##[ss\nx ##[add-mask]y\n  ##[group]z')
  expect(lines.slice(1, -1)).toEqual(['POSTGRES_PASSWORD=pa##[ss', 'x ##[add-mask]y', '  ## [group]z'])
  // inert all the same: inside the block only its random token counts (control: outside it, one does)
  expect(runnerCommands(lines)).toEqual([])
  expect(runnerCommands(lines.slice(1, -1))).toEqual(['add-mask:y'])
  // colour codes before the marker still leave it at the start of what the viewer shows
  expect(inertLines('\u001b[31m\u001b[1m##[group]z').slice(1, -1)).toEqual(['\u001b[31m\u001b[1m## [group]z'])
})

test("a container's log cannot start a fold in the viewer inside its inert block", () => {
  const lines = inertLines('ready\n##[endgroup]\n##[group]the rest of the log\n')
  expect(lines.slice(1, -1)).toEqual(['ready', '## [endgroup]', '## [group]the rest of the log'])
  expect(runnerCommands(lines)).toEqual([])
})
