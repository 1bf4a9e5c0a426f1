// The runner's reading of step-log lines, after actions/runner's ActionCommandManager.TryProcessCommand
// and ActionCommand.TryParseV2/TryParse: a line is a command when, after its leading whitespace, it
// starts `::name::` (the current form), or else when it holds `##[name]` ANYWHERE (the old form,
// still parsed). Between `::stop-commands::TOKEN` and a TOKEN command, only TOKEN counts.

const REGISTERED = [
  'stop-commands',
  'add-mask',
  'set-output',
  'set-env',
  'add-path',
  'save-state',
  'error',
  'warning',
  'notice',
  'debug',
  'group',
  'endgroup',
  'echo',
  'add-matcher',
  'remove-matcher'
]

function parse(line: string, registered: Set<string>): { name: string; data: string } | null {
  const nameOf = (info: string): string => (info.includes(' ') ? info.slice(0, info.indexOf(' ')) : info)
  const v2 = line.trimStart()
  if (v2.startsWith('::')) {
    const end = v2.indexOf('::', 2)
    if (end >= 0) {
      const name = nameOf(v2.slice(2, end))
      if (registered.has(name.toLowerCase())) return { name, data: v2.slice(end + 2) }
    }
  }
  const at = line.indexOf('##[')
  if (at < 0) return null
  const rb = line.indexOf(']', at)
  if (rb < 0) return null
  const name = nameOf(line.slice(at + 3, rb))
  return registered.has(name.toLowerCase()) ? { name, data: line.slice(rb + 1) } : null
}

/** The commands the runner would process in `lines`, as `name:data`. */
export function runnerCommands(lines: string[]): string[] {
  const registered = new Set(REGISTERED)
  const seen: string[] = []
  let stopToken: string | null = null
  for (const line of lines) {
    const c = parse(line, registered)
    if (!c) continue
    if (stopToken !== null) {
      if (c.name.toLowerCase() === stopToken.toLowerCase()) {
        registered.delete(stopToken.toLowerCase())
        stopToken = null
      }
      continue
    }
    if (c.name === 'stop-commands') {
      stopToken = c.data
      registered.add(stopToken.toLowerCase())
    } else seen.push(`${c.name}:${c.data}`)
  }
  return seen
}
