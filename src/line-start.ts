// The runner reads the hook's stdout and stderr line by line. A step whose output ends without a
// newline (or is cut by a lost connection) would take the hook's next line into its own: a
// `::warning::` or `::error::` after it would show as text, and its annotation would be lost.
// Each sink remembers whether the last bytes written to it left a line open; the hook's own lines
// start with a newline then. Keyed by the sink object, so every writer of one sink agrees.

const open = new WeakMap<object, boolean>()

/** Notes what was just written to `sink` (a step's bytes, relayed or direct). */
export function wrote(sink: object, chunk: Buffer | string): void {
  if (chunk.length === 0) return
  const last = typeof chunk === 'string' ? chunk.charCodeAt(chunk.length - 1) : chunk[chunk.length - 1]
  open.set(sink, last !== 0x0a)
}

/** Whether the bytes last written to `sink` left a line open. */
export function lineOpen(sink: object): boolean {
  return open.get(sink) === true
}

/** For a sink written by another process (the job's agent), as that process reported it. */
export function setLineOpen(sink: object, isOpen: boolean): void {
  open.set(sink, isOpen)
}

/** Writes the hook's own `text` (whole lines) at the start of a line. */
export function ownLines(sink: { write(c: string): unknown }, text: string): void {
  sink.write(lineOpen(sink) ? `\n${text}` : text)
  wrote(sink, text)
}
