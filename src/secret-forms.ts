// A secret is also shown in the forms it travels in. Docker sends registry credentials as the
// base64 of `user:password`, and a registry (the job's to choose) may quote that back in an error.
// Inside a longer base64 text a value's own encoding depends on where it starts within a 3-byte
// group, so each of the three alignments gives its own run of whole groups; those runs are what
// is masked (a byte or two at either edge of the value stays encoded beside them: the exact
// `user:password` auth is registered as a secret of its own where it is known, docker/cli.ts).
// A value with quotes, backslashes or control characters is also masked as a JSON string (and Go's
// %q, which docker uses to quote a reply it cannot parse) escapes it; one with characters a URL
// escapes, as URL- and form-encoded (a token request's body). A value of several lines is also
// masked line by line: what a machine prints reaches the log a line at a time, and a failure's
// stderr lines are joined with ` | `.

/** The shortest base64 run masked: shorter runs would hide ordinary text. */
const MIN_RUN = 8

/** The shortest line of a multi-line value masked on its own (as the shortest value registered). */
export const MIN_SECRET = 3

/** As Go's url.QueryEscape writes it (a form body): encodeURIComponent, with `!'()*` escaped too and `+` for a space. */
const formEncoded = (uri: string): string =>
  uri.replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).replace(/%20/g, '+')

/** `value` and the forms that stand for it in the texts it may be quoted in (see above). */
export function secretForms(value: string): string[] {
  const forms = new Set([value])
  forms.add(JSON.stringify(value).slice(1, -1))
  try {
    const uri = encodeURIComponent(value)
    forms.add(uri).add(formEncoded(uri))
  } catch {
    // a lone surrogate: no URL holds it
  }
  for (const line of value.split(/[\r\n]+/)) {
    const t = line.trim()
    if (t.length >= MIN_SECRET) forms.add(t)
  }
  const bytes = Buffer.from(value, 'utf8')
  for (const start of [0, 1, 2]) {
    const whole = Math.floor((bytes.length - start) / 3) * 3
    if (whole <= 0) continue
    const run = bytes.subarray(start, start + whole).toString('base64')
    if (run.length >= MIN_RUN) forms.add(run)
  }
  return [...forms]
}
