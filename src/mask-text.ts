// Every place any secret occurs in the text as given is hidden, and places that overlap or touch
// become one `***`. Replacing one secret after another would not do: once the first is replaced,
// a second that overlaps it no longer matches and its rest stays shown ("abcXYZ" and "XYZdef" in
// "abcXYZdef" would leave "***def").
//
// The job chooses both the secret (a registry password) and much of the text (a failing
// service's log, up to a megabyte), so finding occurrences must stay linear: a self-overlapping
// secret ("aaaa…") occurs at almost every position of a text like it, and checking each position
// in turn would cost text length × secret length. Each form keeps its Knuth–Morris–Pratt table, and
// the native search only decides whether a form occurs at all.

interface Form {
  v: string
  /** fail[k]: the length of the longest proper prefix of v[0..k] that is also its suffix. */
  fail: Int32Array
}

function failureTable(v: string): Int32Array {
  const fail = new Int32Array(v.length)
  for (let k = 1, j = 0; k < v.length; k++) {
    const c = v.charCodeAt(k)
    while (j > 0 && c !== v.charCodeAt(j)) j = fail[j - 1]
    if (c === v.charCodeAt(j)) j++
    fail[k] = j
  }
  return fail
}

/** The runs of `s` covered by occurrences of `f` from `from` on, merged (in order). */
function coveredRuns(s: string, f: Form, from: number, out: Array<[number, number]>): void {
  const { v, fail } = f
  const m = v.length
  let run: [number, number] | null = null
  for (let i = from, j = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    while (j > 0 && c !== v.charCodeAt(j)) j = fail[j - 1]
    if (c === v.charCodeAt(j)) j++
    if (j < m) continue
    const start = i + 1 - m
    if (run && start <= run[1]) run[1] = i + 1
    else out.push((run = [start, i + 1]))
    j = fail[m - 1]
  }
}

/** The registered secrets' forms, and the masking of a text with them. */
export class SecretSet {
  private readonly forms: Form[] = []
  private readonly known = new Set<string>()

  add(v: string): void {
    if (!v || this.known.has(v)) return
    this.known.add(v)
    this.forms.push({ v, fail: failureTable(v) })
  }

  /** `s` with each run covered by an occurrence of any secret replaced by one `***`. */
  mask(s: string): string {
    const spans: Array<[number, number]> = []
    for (const f of this.forms) {
      const first = s.indexOf(f.v)
      if (first !== -1) coveredRuns(s, f, first, spans)
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
}
