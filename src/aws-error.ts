// What every AWS SDK error is judged by when deciding on a retry: its name, its HTTP status and its
// socket's code, never its text (a reworded message must not change what is retried).

/** The error's name as the SDK sets it ('' when it has none). */
export function errorNameOf(err: unknown): string {
  const e = err as { name?: string; Code?: string; code?: string } | null
  return e?.name ?? e?.Code ?? e?.code ?? ''
}

/** The HTTP status of the service's answer, when there was one. */
export function httpStatusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode
}

const NO_ANSWER = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE'])

/** The request got no answer (the connection failed or timed out): whether it was carried out is unknown. */
export function isNoAnswer(err: unknown): boolean {
  return NO_ANSWER.has((err as NodeJS.ErrnoException | null)?.code ?? '') || errorNameOf(err) === 'TimeoutError'
}
