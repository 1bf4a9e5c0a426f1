// The runner's hook contract as schemas: parsed once at the boundary, tolerant
// of unknown keys and nulls the runner sends, strict about what we rely on. Every string that later
// reaches docker, a remote path or the Engine API is checked here, so a bad one stops the command
// before anything is started.
import { z } from 'zod'
import { constants } from 'node:fs'
import { lstat, open } from 'node:fs/promises'
import { errnoOf, HookError, InputError } from './errors'
import { keysAt } from './did-you-mean'
import { nearestKey } from './near-miss'
import { hasControl, hasNewline, hasNul, isImageRef, isMountTarget, isJobVolumeName, isPortMapping, isRegistryServer } from './input-rules'

const str = z.string()
const optStr = z
  .string()
  .nullish()
  .transform((v) => v ?? null)
const noNul = str.refine((s) => !hasNul(s), 'must not contain a NUL byte')
/** Absolute, non-empty, one line: a path the hook hands on. */
const absLine = str.refine((s) => s.startsWith('/') && !hasNul(s) && !hasNewline(s), 'must be an absolute path without NUL or line breaks')
const nullable = <T extends z.ZodTypeAny>(t: T) => t.nullish().transform((v) => v ?? null)

// An empty source is an anonymous volume, as the runner sends it.
const mountSource = str.refine(
  (s) => s === '' || (s.startsWith('/') ? !hasControl(s) && !s.includes(':') : isJobVolumeName(s)),
  'must be an absolute path (without ":" or control characters) or a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, 2 to 255 characters)'
)
/** Empty means "not given", as null does. */
const emptyIsNull = <T extends z.ZodTypeAny>(t: T) => t.nullish().transform((v) => (v || null) as string | null)

export const MountSchema = z
  .object({
    userProvidedValue: optStr,
    sourceVolumePath: emptyIsNull(mountSource),
    targetVolumePath: str.refine(isMountTarget, 'must be an absolute container path without ":", NUL or line breaks'),
    readOnly: z
      .boolean()
      .nullish()
      .transform((v) => v ?? false)
  })
  .passthrough()
export type Mount = z.infer<typeof MountSchema>

const envName = str.refine((k) => k !== '' && !/[=\0\r\n]/.test(k), 'variable names must be non-empty, without "=", NUL or line breaks')
const EnvSchema = z
  .record(envName, noNul.nullable())
  .nullish()
  .transform((env) => {
    const out: Record<string, string> = {}
    for (const [k, v] of Object.entries(env ?? {})) out[k] = v ?? ''
    return out
  })

const oneLine = str.refine((s) => !hasNul(s) && !hasNewline(s), 'must not contain NUL or line breaks')
export const RegistrySchema = z
  .object({
    username: nullable(oneLine),
    // A password may hold line breaks: a service account's JSON key file is Google's registries' password.
    password: nullable(noNul),
    serverUrl: emptyIsNull(str.refine((s) => s === '' || isRegistryServer(s), 'must be a registry host[:port][/path]'))
  })
  .passthrough()
  .nullish()
  .transform((v) => v ?? null)
export type Registry = z.infer<typeof RegistrySchema>

export const ContainerSchema = z
  .object({
    image: emptyIsNull(str.refine((s) => s === '' || isImageRef(s), "must be an image reference (docker's reference grammar)")),
    dockerfile: nullable(absLine),
    entryPointArgs: z
      .array(noNul)
      .nullish()
      .transform((v) => v ?? []),
    entryPoint: emptyIsNull(noNul),
    workingDirectory: nullable(absLine),
    createOptions: nullable(noNul),
    registry: RegistrySchema,
    environmentVariables: EnvSchema,
    portMappings: z
      .array(str.refine(isPortMapping, 'must be [ip:][hostPort:]containerPort[/tcp|udp|sctp] with ports 1-65535'))
      .nullish()
      .transform((v) => v ?? []),
    systemMountVolumes: z
      .array(MountSchema)
      .nullish()
      .transform((v) => v ?? []),
    userMountVolumes: z
      .array(MountSchema)
      .nullish()
      .transform((v) => v ?? []),
    /** A service's id in the workflow; it becomes a network alias. */
    contextName: nullable(
      str.refine((s) => /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(s), 'must be a service id ([A-Za-z0-9_][A-Za-z0-9_.-]*)')
    )
  })
  .passthrough()
export type ContainerArgs = z.infer<typeof ContainerSchema>

export const PrepareJobArgsSchema = z
  .object({
    container: ContainerSchema.nullish().transform((v) => v ?? null),
    services: z
      .array(ContainerSchema)
      .nullish()
      .transform((v) => v ?? [])
  })
  .passthrough()
export type PrepareJobArgs = z.infer<typeof PrepareJobArgsSchema>

export const ScriptStepArgsSchema = z
  .object({
    entryPointArgs: z
      .array(noNul.nullable().transform((v) => v ?? ''))
      .nullish()
      .transform((v) => v ?? []),
    entryPoint: noNul.refine((s) => s !== '', 'must not be empty'),
    environmentVariables: EnvSchema,
    // array (newest first) or the legacy ':'-joined string of runners <= 2.293.0
    prependPath: z
      .union([z.array(oneLine), oneLine])
      .nullish()
      .transform((v) => (v == null ? [] : typeof v === 'string' ? v.split(':').filter(Boolean) : v)),
    workingDirectory: absLine
  })
  .passthrough()
export type ScriptStepArgs = z.infer<typeof ScriptStepArgsSchema>

export const CleanupArgsSchema = z.object({}).passthrough().nullish()

export const COMMANDS = ['prepare_job', 'cleanup_job', 'run_script_step', 'run_container_step'] as const
export type Command = (typeof COMMANDS)[number]

/**
 * A value the sender gave where a name belongs, for an error: a string's start, quoted, else only its
 * type (stringifying a deeply nested value overflows the stack, and an object is no name anyway).
 */
export function shownValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.slice(0, 80))
  return Array.isArray(v) ? 'an array' : v !== null && typeof v === 'object' ? 'an object' : String(v)
}

const EnvelopeSchema = z
  .object({
    command: z.enum(COMMANDS, {
      errorMap: (_i, ctx) => ({ message: ctx.data === undefined ? 'missing' : `unknown command ${shownValue(ctx.data)}` })
    }),
    responseFile: absLine,
    args: z.unknown(),
    state: z
      .record(z.unknown())
      .nullish()
      .transform((v) => v ?? null)
  })
  .passthrough()

export type HookInput =
  | { command: 'prepare_job'; responseFile: string; args: PrepareJobArgs; state: Record<string, unknown> | null }
  | { command: 'run_script_step'; responseFile: string; args: ScriptStepArgs; state: Record<string, unknown> | null }
  | { command: 'run_container_step'; responseFile: string; args: ContainerArgs; state: Record<string, unknown> | null }
  | { command: 'cleanup_job'; responseFile: string; args: Record<string, unknown>; state: Record<string, unknown> | null }

/**
 * Formats zod issues as `field.path: problem`, one per problem (an unknown key each on its own).
 * Given the schema and the data that failed, an unknown key that is a near miss of an allowed one
 * is answered with "did you mean".
 */
export function describeIssues(err: z.ZodError, prefix = '', checked?: { schema: z.ZodTypeAny; data: unknown }): string[] {
  // A key that holds ": " (or a quote) is quoted, so that it cannot be read as the end of the field
  // (ops/problem.ts); an unknown key, the sender's text, is shown plain only when it is a plain short name.
  const segment = (k: string | number): string =>
    typeof k === 'string' && (k.includes(': ') || k.includes('"')) ? JSON.stringify(k.slice(0, 64)) : String(k)
  const field = (path: (string | number)[]): string => [prefix, ...path.map(segment)].filter(Boolean).join('.') || '(root)'
  return err.issues.flatMap((i) => {
    if (i.code !== 'unrecognized_keys') return [`${field(i.path)}: ${i.message}`]
    const valid = checked ? keysAt(checked.schema, i.path, checked.data) : []
    return i.keys.map((k) => {
      const near = nearestKey(k, valid)
      const name = /^[A-Za-z0-9_-]{1,64}$/.test(k) ? k : JSON.stringify(k.slice(0, 64))
      return `${[field(i.path), name].filter((x) => x !== '(root)').join('.')}: unknown key${near ? ` (did you mean \`${near}\`?)` : ''}`
    })
  })
}

/** Parses the whole of stdin (one JSON object; a trailing newline is fine) into a typed input. */
export function parseHookInput(text: string): HookInput {
  const trimmed = text.trim()
  if (!trimmed) throw new InputError("no input on stdin: expected the runner's JSON hook request")
  let raw: unknown
  try {
    // hooklib keeps the last line; the runner sends one. Accept both.
    try {
      raw = JSON.parse(trimmed)
    } catch (whole) {
      const lines = trimmed.split('\n').filter((l) => l.trim())
      if (lines.length < 2) throw whole
      raw = JSON.parse(lines[lines.length - 1])
    }
  } catch (e) {
    // V8 quotes up to ten characters of the text around the error: they may be part of a secret.
    const why = (e as Error).message.replace(/(?:,\s*|^)(?:\.\.\.)?".*$/s, '') || 'not valid JSON'
    throw new InputError(`stdin is not valid JSON (${why})`)
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new InputError('stdin JSON must be an object')
  const env = EnvelopeSchema.safeParse(raw)
  if (!env.success) throw new InputError(`invalid hook input: ${describeIssues(env.error).join('; ')}`)
  const { command, responseFile, state } = env.data
  const argsSchema = {
    prepare_job: PrepareJobArgsSchema,
    run_script_step: ScriptStepArgsSchema,
    run_container_step: ContainerSchema,
    cleanup_job: CleanupArgsSchema
  }[command]
  const args = (argsSchema as z.ZodType<unknown>).safeParse(env.data.args ?? {})
  if (!args.success) throw new InputError(`invalid hook input: ${describeIssues(args.error, 'args').join('; ')}`)
  return { command, responseFile, args: args.data ?? {}, state } as HookInput
}

export interface ServiceContext {
  id: string
  image: string
  network: string
  ports: Record<string, string>
}
export interface PrepareJobResponse {
  state?: Record<string, unknown>
  context?: { container?: ServiceContext; services?: ServiceContext[] }
  isAlpine?: boolean
}

/**
 * The runner pre-creates the response file; it must be a regular file of its own, not a link
 * someone put there to make the hook write elsewhere.
 */
export async function assertResponseFile(path: string): Promise<void> {
  let why: string | null = null
  try {
    const s = await lstat(path)
    if (s.isSymbolicLink()) why = 'is a symbolic link'
    else if (!s.isFile()) why = 'is not a regular file'
  } catch (e) {
    why = `does not exist (the runner creates it before starting the hook): ${errnoOf(e)}`
  }
  if (why) throw new InputError(`responseFile: ${JSON.stringify(path)} ${why}`)
}

/** Writes exactly one JSON object; O_NOFOLLOW so a link swapped in after the check is refused, not followed. */
export async function writeResponse(path: string, response: object): Promise<void> {
  let fh
  try {
    fh = await open(path, constants.O_WRONLY | constants.O_TRUNC | constants.O_NOFOLLOW)
  } catch (e) {
    throw new InputError(`responseFile: cannot open ${JSON.stringify(path)} for writing (${errnoOf(e)})`)
  }
  try {
    await fh.writeFile(JSON.stringify(response) + '\n')
  } catch (e) {
    // A full disk says only ENOSPC: which file.
    throw new HookError(`responseFile: cannot write ${JSON.stringify(path)} (${errnoOf(e)})`)
  } finally {
    await fh.close()
  }
}
