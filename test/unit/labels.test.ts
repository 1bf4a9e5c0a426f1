import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { nameOwnerId, ownerId, statedOwners } from '../../src/labels'

describe("ownerId: one runner's, never a same-named runner's", () => {
  const name = 'myhost'
  const work = '/home/gh/actions-runner/_work'

  test('is 16 hex digits and the same each time for one runner', () => {
    expect(ownerId(name, work)).toMatch(/^[0-9a-f]{16}$/)
    expect(ownerId(name, work)).toBe(ownerId(name, work, hostname()))
  })

  test.each([
    ["another runner folder on the host (config.sh's default name is the host's)", [name, '/home/gh/actions-runner-2/_work']],
    ['the same folder on another runner host (hosts made from one image)', [name, work, 'other-host']],
    ['another name', ['myhost-2', work]]
  ])('%s gives another id', (_what, args) => {
    expect(ownerId(...(args as [string, string, string?]))).not.toBe(ownerId(name, work))
  })

  test("a job's state may carry this runner's id or the name-only id of older builds, nothing else", () => {
    expect(statedOwners(name, work)).toEqual([ownerId(name, work), nameOwnerId(name)])
    expect(statedOwners(name, work)).not.toContain(ownerId(name, '/home/gh/actions-runner-2/_work'))
  })

  test("operations.md's shell line for an owner id gives the hook's", () => {
    const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'operations.md'), 'utf8')
    const lines = doc.split('\n').filter((l) => l.includes("printf 'runner\\0"))
    expect(lines.length).toBeGreaterThanOrEqual(2)
    for (const line of lines) {
      const format = /printf '([^']*)'/.exec(line)![1]
      const shell = `printf '${format}' "$1" "$2" "$3" | sha256sum | cut -c1-16`
      const got = execFileSync('sh', ['-c', shell, 'sh', 'my runner', 'ci-host-7', work], { encoding: 'utf8' }).trim()
      expect(got).toBe(ownerId('my runner', work, 'ci-host-7'))
    }
    // and the name-only line of older builds gives theirs
    const old = /printf %s 'my-runner-name' \| sha256sum \| cut -c1-16/.test(doc)
    expect(old).toBe(true)
    expect(execFileSync('sh', ['-c', 'printf %s "$1" | sha256sum | cut -c1-16', 'sh', 'my runner'], { encoding: 'utf8' }).trim()).toBe(
      nameOwnerId('my runner')
    )
  })
})
