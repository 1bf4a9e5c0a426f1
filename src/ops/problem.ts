// One problem of a configuration file, as the operator commands list them.

export interface Problem {
  field: string
  message: string
}

/** `field: message` (the form of every config issue) as a record; a quoted key in the field may hold ": ". */
export function problemOf(issue: string): Problem {
  let at = -1
  for (let i = 0; i < issue.length - 1; i++) {
    if (issue[i] === '"') {
      // A JSON string (describeIssues quotes keys that are not plain names): skipped whole.
      for (i++; i < issue.length && issue[i] !== '"'; i++) if (issue[i] === '\\') i++
    } else if (issue[i] === ':' && issue[i + 1] === ' ') {
      at = i
      break
    }
  }
  return at < 0 ? { field: '(root)', message: issue } : { field: issue.slice(0, at), message: issue.slice(at + 2) }
}
