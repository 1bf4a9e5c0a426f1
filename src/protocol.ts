// The runner's hook contract (PROTOCOL.md §1.5, §2) as schemas: parsed once at the boundary, tolerant
// of unknown keys and nulls the runner sends, strict about what we rely on.
import { z } from 'zod'
import { writeFile, stat } from 'node:fs/promises'
import { InputError } from './errors'

const str = z.string()
const optStr = z.string().nullish().transform((v) => v ?? null)

export const MountSchema = z
  .object({
    userProvidedValue: optStr,
    sourceVolumePath: optStr,
    targetVolumePath: str,
    readOnly: z.boolean().nullish().transform((v) => v ?? false)
  })
  .passthrough()
export type Mount = z.infer<typeof MountSchema>

const EnvSchema = z
  .record(z.string().nullable())
  .nullish()
  .transform((env) => {
    const out: Record<string, string> = {}
    for (const [k, v] of Object.entries(env ?? {})) out[k] = v ?? ''
    return out
  })

export const RegistrySchema = z
  .object({ username: optStr, password: optStr, serverUrl: optStr })
  .passthrough()
  .nullish()
  .transform((v) => v ?? null)
export type Registry = z.infer<typeof RegistrySchema>

export const ContainerSchema = z
  .object({
    image: optStr,
    dockerfile: optStr,
    entryPointArgs: z.array(str).nullish().transform((v) => v ?? []),
    entryPoint: optStr,
    workingDirectory: optStr,
    createOptions: optStr,
    registry: RegistrySchema,
    environmentVariables: EnvSchema,
    portMappings: z.array(str).nullish().transform((v) => v ?? []),
    systemMountVolumes: z.array(MountSchema).nullish().transform((v) => v ?? []),
    userMountVolumes: z.array(MountSchema).nullish().transform((v) => v ?? [])
  })
  .passthrough()
export type ContainerArgs = z.infer<typeof ContainerSchema>

export const PrepareJobArgsSchema = z
  .object({
    container: ContainerSchema.nullish().transform((v) => v ?? null),
    services: z.array(ContainerSchema).nullish().transform((v) => v ?? [])
  })
  .passthrough()
export type PrepareJobArgs = z.infer<typeof PrepareJobArgsSchema>

export const ScriptStepArgsSchema = z
  .object({
    entryPointArgs: z.array(z.string().nullable().transform((v) => v ?? '')).nullish().transform((v) => v ?? []),
    entryPoint: str,
    environmentVariables: EnvSchema,
    // array (newest first) or the legacy ':'-joined string of runners <= 2.293.0
    prependPath: z
      .union([z.array(str), str])
      .nullish()
      .transform((v) => (v == null ? [] : typeof v === 'string' ? v.split(':').filter(Boolean) : v)),
    workingDirectory: str
  })
  .passthrough()
export type ScriptStepArgs = z.infer<typeof ScriptStepArgsSchema>

export const CleanupArgsSchema = z.object({}).passthrough().nullish()

export const COMMANDS = ['prepare_job', 'cleanup_job', 'run_script_step', 'run_container_step'] as const
export type Command = (typeof COMMANDS)[number]

const EnvelopeSchema = z
  .object({
    command: z.enum(COMMANDS, { errorMap: (_i, ctx) => ({ message: `unknown command ${JSON.stringify(ctx.data)}` }) }),
    responseFile: str,
    args: z.unknown(),
    state: z.record(z.unknown()).nullish().transform((v) => v ?? null)
  })
  .passthrough()

export type HookInput =
  | { command: 'prepare_job'; responseFile: string; args: PrepareJobArgs; state: Record<string, unknown> | null }
  | { command: 'run_script_step'; responseFile: string; args: ScriptStepArgs; state: Record<string, unknown> | null }
  | { command: 'run_container_step'; responseFile: string; args: ContainerArgs; state: Record<string, unknown> | null }
  | { command: 'cleanup_job'; responseFile: string; args: Record<string, unknown>; state: Record<string, unknown> | null }

/** Formats zod issues as `field.path: problem`, all of them, for one-line errors. */
export function describeIssues(err: z.ZodError, prefix = ''): string[] {
  return err.issues.map((i) => {
    const path = [prefix, ...i.path.map(String)].filter(Boolean).join('.')
    return `${path || '(root)'}: ${i.message}`
  })
}

/** Parses the whole of stdin (one JSON object; a trailing newline is fine) into a typed input. */
export function parseHookInput(text: string): HookInput {
  const trimmed = text.trim()
  if (!trimmed) throw new InputError('no input on stdin: expected the runner\'s JSON hook request')
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
    throw new InputError(`stdin is not valid JSON (${(e as Error).message})`)
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
  const args = (argsSchema as z.ZodTypeAny).safeParse(env.data.args ?? {})
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

/** The runner pre-creates the response file; it must exist, and we write exactly one JSON object into it. */
export async function assertResponseFile(path: string): Promise<void> {
  try {
    const s = await stat(path)
    if (!s.isFile()) throw new Error('not a regular file')
  } catch (e) {
    throw new InputError(`responseFile ${JSON.stringify(path)} does not exist (the runner creates it before starting the hook): ${(e as Error).message}`)
  }
}

export async function writeResponse(path: string, response: object): Promise<void> {
  await writeFile(path, JSON.stringify(response) + '\n', { flag: 'w' })
}
