// A secret is also shown in the forms it travels in. Docker sends registry credentials as the
// base64 of `user:password`, and a registry (the job's to choose) may quote that back in an error.
// Inside a longer base64 text a value's own encoding depends on where it starts within a 3-byte
// group, so each of the three alignments gives its own run of whole groups; those runs are what
// is masked (a byte or two at either edge of the value stays encoded beside them).

/** The shortest base64 run masked: shorter runs would hide ordinary text. */
const MIN_RUN = 8

/** `value` and the base64 runs that stand for it wherever it sits in a base64-encoded text. */
export function secretForms(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8')
  const forms = [value]
  for (const start of [0, 1, 2]) {
    const whole = Math.floor((bytes.length - start) / 3) * 3
    if (whole <= 0) continue
    const run = bytes.subarray(start, start + whole).toString('base64')
    if (run.length >= MIN_RUN && !forms.includes(run)) forms.push(run)
  }
  return forms
}
