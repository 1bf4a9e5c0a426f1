// Every place any secret occurs in the text as given is hidden, and overlapping or touching places
// become one `***`. Replacing one secret after another would not do: once the first is replaced,
// a second that overlaps it no longer matches and its rest stays shown ("abcXYZ" and "XYZdef" in
// "abcXYZdef" would leave "***def").

/** `s` with each run covered by an occurrence of any of `secrets` replaced by one `***`. */
export function maskText(s: string, secrets: readonly string[]): string {
  const spans: Array<[number, number]> = []
  for (const v of secrets) {
    if (!v) continue
    // Each start is tried, so occurrences that overlap each other ("aa" in "aaa") are all found.
    for (let i = s.indexOf(v); i !== -1; i = s.indexOf(v, i + 1)) spans.push([i, i + v.length])
  }
  if (!spans.length) return s
  spans.sort((a, b) => a[0] - b[0])
  let out = ''
  let at = 0
  let [start, end] = spans[0]
  for (const [a, b] of spans) {
    if (a <= end) {
      end = Math.max(end, b)
      continue
    }
    out += `${s.slice(at, start)}***`
    at = end
    ;[start, end] = [a, b]
  }
  return `${out}${s.slice(at, start)}***${s.slice(end)}`
}
