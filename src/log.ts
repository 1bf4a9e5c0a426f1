// Two audiences: the step log (short progress lines on stdout, workflow commands) and a detailed
// winston log file (plus the step log as ::debug:: when RUNNER_DEBUG=1). Registered secrets are
// masked in both.
import type * as Winston from 'winston'
import { createWriteStream, type WriteStream } from 'node:fs'
import { Writable } from 'node:stream'
import { dirname } from 'node:path'
import { ensurePrivateDir, openPrivateAppend } from './private-fs'
import { inertLines, noLegacyCommand, shownText, workflowCommand } from './workflow-commands'
import { MIN_SECRET, secretForms } from './secret-forms'
import { SecretSet } from './mask-text'
import { clipMessage, errnoOf } from './errors'

export interface Log {
  progress(msg: string): void
  warn(msg: string): void
  debug(msg: string): void
  /** Whether debug lines go anywhere: costly detail (a source-mapped stack) is made only then. */
  readonly debugEnabled: boolean
  /** A failure: to the file log at error level, whatever the configured level (the step log gets it from outcome.ts). */
  failure(msg: string): void
  /** Runs `fn` inside a `::group::` fold of the step log; folds do not nest, so an inner one is not opened. */
  group<T>(title: string, fn: () => Promise<T>): Promise<T>
  /** Text the hook does not control (a container's log), folded under `title`, inert and bounded. */
  foreign(title: string, text: string): void
  addSecret(value: string): void
  /** `s` with every registered secret replaced by `***`, as every line of this log is. */
  mask(s: string): string
  close(): Promise<void>
}

/**
 * A message as the log file holds it. Text a machine chose (an engine's error, a command's stderr)
 * must not forge an entry of its own or drive the terminal of whoever reads the file: control
 * characters become spaces, and a line break only continues the entry, indented.
 */
export function fileText(s: string): string {
  return (
    s
      .replace(/\r\n?|[\u2028\u2029]/g, '\n')
      // eslint-disable-next-line no-control-regex -- the control characters are what it removes
      .replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g, ' ')
      .replace(/\n/g, '\n    ')
  )
}

/** The log file's folder is checked (or created 0700) at once: a folder of another user fails the command. */
export function createLog(opts: { file: string; level: string; debugToStepLog: boolean; out: (line: string) => void }): Log {
  ensurePrivateDir(dirname(opts.file), 'set TMPDIR (or log.file) to a private folder')
  const secrets = new SecretSet()
  const mask = (s: string): string => secrets.mask(s)
  // A message as it is written: masked, then cut (see clipMessage).
  const say = (s: string): string => clipMessage(mask(s))
  let logger: Winston.Logger | null = null
  let stream: WriteStream | null = null
  const file = (): Winston.Logger => {
    if (!logger) {
      // Loaded on first use: most hook commands never write to the log file.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const winston = require('winston') as typeof Winston
      let transport: Winston.transport
      try {
        stream = createWriteStream('', { fd: openPrivateAppend(opts.file) })
        // Logging never fails a step, but a log that stops (a full disk) is said once in the step
        // log, where the runner shows it: hook.log is where an operator would look next.
        let said = false
        stream.on('error', (e: NodeJS.ErrnoException) => {
          if (said) return
          said = true
          opts.out(
            workflowCommand(
              'warning',
              `the hook's log ${opts.file} cannot be written (${errnoOf(e)}); this command's lines are missing from it`
            )
          )
        })
        transport = new winston.transports.Stream({ stream })
      } catch {
        // logging must never fail a step: an unusable file (e.g. a directory in its place) is skipped
        transport = new winston.transports.Stream({ stream: new Writable({ write: (_c, _e, cb) => cb() }) })
      }
      logger = winston.createLogger({
        level: opts.level,
        format: winston.format.combine(
          winston.format.timestamp(),
          winston.format.printf((i) => `${String(i.timestamp)} ${process.pid} ${i.level} ${fileText(String(i.message))}`)
        ),
        transports: [transport]
      })
    }
    return logger
  }
  // The fold open on the step log, if any: the runner does not nest folds.
  let open = false
  const endGroup = (): void => {
    if (open) opts.out(workflowCommand('endgroup'))
    open = false
  }
  return {
    progress(msg) {
      const m = say(msg)
      // Text a machine chose (an error's stderr) must not start a line of its own: the runner would read a workflow command there.
      // Nor hold `##[`: the runner reads that old command form anywhere in a line. Nor drive a terminal (shownText).
      opts.out(`[remote-hooks] ${noLegacyCommand(shownText(m.replace(/[\r\n\u2028\u2029]+/g, ' ')))}`)
      file().info(m)
    },
    warn(msg) {
      const m = say(msg)
      opts.out(workflowCommand('warning', m))
      file().warn(m)
    },
    debugEnabled: opts.debugToStepLog || opts.level === 'debug',
    debug(msg) {
      const m = say(msg)
      if (opts.debugToStepLog) opts.out(workflowCommand('debug', m))
      if (logger || opts.level === 'debug') file().debug(m)
    },
    failure(msg) {
      file().error(say(msg))
    },
    async group(title, fn) {
      if (open) return fn()
      opts.out(workflowCommand('group', say(title)))
      open = true
      try {
        return await fn()
      } finally {
        endGroup()
      }
    },
    foreign(title, text) {
      // Its own fold: a fold around the work that failed is closed first.
      endGroup()
      const t = say(title)
      const lines = inertLines(mask(text))
      opts.out(workflowCommand('group', t))
      for (const line of lines) opts.out(line)
      opts.out(workflowCommand('endgroup'))
      // Only in the step log, which the runner masks for the job's secrets: a container's log may
      // quote its env values, which nothing here knows to mask, and this file outlives the job.
      file().info(`${t}: ${lines.length - 2} lines in the step log (not kept here: they may quote the container's env values)`)
    },
    addSecret(value) {
      if (!value || value.length < MIN_SECRET) return
      for (const form of secretForms(value)) secrets.add(form)
    },
    mask,
    async close() {
      const l = logger
      if (!l) return
      await new Promise<void>((res) => {
        l.on('finish', () => res())
        l.end()
        setTimeout(res, 500).unref()
      })
      // Flushed before the hook exits; and the agent makes a log per step, so its descriptor must not outlive the step.
      const s = stream
      if (s)
        await new Promise<void>((res) => {
          s.end(() => res())
          setTimeout(res, 500).unref()
        })
    }
  }
}
