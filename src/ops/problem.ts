// One problem of a configuration file, as the operator commands list them.

export interface Problem {
  field: string
  message: string
}

/** `field: message` (the form of every config issue) as a record. */
export function problemOf(issue: string): Problem {
  const at = issue.indexOf(': ')
  return at < 0 ? { field: '(root)', message: issue } : { field: issue.slice(0, at), message: issue.slice(at + 2) }
}
