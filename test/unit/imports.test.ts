// The import-structure check (scripts/check-imports.mjs) on the real src/, and on copies of it with
// one rule broken, so each rule is shown to catch what it is for.
import { spawnSync } from 'node:child_process'
import { appendFileSync, cpSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { cleanupTempDirs, SRC, tempDir } from './_helpers'

const SCRIPT = resolve(__dirname, '..', '..', 'scripts', 'check-imports.mjs')

function check(srcDir: string): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [SCRIPT, srcDir], { encoding: 'utf8', timeout: 30_000 })
  if (r.error) throw r.error
  return { code: r.status, out: r.stdout + r.stderr }
}

/** A copy of src/ changed by `edit`; the untouched copy passing is each case's control. */
function brokenCopy(edit: (dir: string) => void): string {
  const dir = join(tempDir('rch-imports-'), 'src')
  cpSync(SRC, dir, { recursive: true })
  expect(check(dir)).toEqual({ code: 0, out: expect.stringContaining('check-imports: ok') })
  edit(dir)
  return dir
}

describe('import structure of src/', () => {
  afterAll(cleanupTempDirs)

  it('has no import circle and no upward import beyond the known exceptions', () => {
    const r = check(SRC)
    expect(r.out).toMatch(/^check-imports: ok \(.*\d+ modules, \d+ imports, \d+ known exceptions\)\n$/)
    expect(r.code).toBe(0)
  })

  it('fails on a module importing a layer above it', () => {
    const dir = brokenCopy((d) =>
      appendFileSync(join(d, 'remote', 'quote.ts'), "\nimport type { runScriptStep } from '../handlers/run-script-step'\n")
    )
    const r = check(dir)
    expect(r.code).toBe(1)
    expect(r.out).toContain('upward import: remote/quote.ts (remote) imports handlers/run-script-step.ts (handlers)')
  })

  it('fails on an import circle within one layer, dynamic imports included', () => {
    // session already imports agent-client
    const dir = brokenCopy((d) => appendFileSync(join(d, 'agent-client.ts'), "\nexport const later = () => import('./session')\n"))
    const r = check(dir)
    expect(r.code).toBe(1)
    expect(r.out).toContain('import circle among: agent-client.ts, session.ts')
    expect(r.out).not.toContain('upward import')
  })

  it('fails on a known exception that no longer occurs, so the list only shrinks', () => {
    // The list is empty now: a copy of the script with one exception in it is checked instead.
    const dir = tempDir('rch-imports-script-')
    symlinkSync(resolve(__dirname, '..', '..', 'node_modules'), join(dir, 'node_modules'))
    const script = join(dir, 'check-imports.mjs')
    const text = readFileSync(SCRIPT, 'utf8')
    const withOne = text.replace(
      /^export const KNOWN_EXCEPTIONS = \[\]$/m,
      "export const KNOWN_EXCEPTIONS = [{ from: 'providers/static-host.ts', to: 'session.ts', why: 'test' }]"
    )
    expect(withOne).not.toBe(text)
    writeFileSync(script, withOne)
    const run = (src: string) => spawnSync(process.execPath, [script, src], { encoding: 'utf8', timeout: 30_000 })
    // control: while the excepted import is there, it is tolerated
    const src = brokenCopy((d) =>
      appendFileSync(join(d, 'providers', 'static-host.ts'), "\nimport type { directRemote } from '../session'\n")
    )
    expect(run(src).stdout).toContain('check-imports: ok')
    const r = run(SRC)
    expect(r.status).toBe(1)
    expect(r.stdout).toContain('stale known exception: providers/static-host.ts no longer imports session.ts')
  })

  it('fails on a module placed in no layer, and on an import of a missing module', () => {
    const dir = brokenCopy((d) => writeFileSync(join(d, 'newcomer.ts'), "export { nothing } from './not-there'\n"))
    const r = check(dir)
    expect(r.code).toBe(1)
    expect(r.out).toContain('module in no layer: newcomer.ts')
    expect(r.out).toContain("unresolved import: newcomer.ts imports './not-there'")
  })
})

describe('docs/architecture.md', () => {
  /** Layer name → its modules as the docs write them (`errors`, `fleet/*`), sorted. */
  type Layers = [string, string[]][]
  const asDocs = (m: string): string => (m.endsWith('/') ? `${m}*` : m.replace(/\.ts$/, ''))

  it("lists the same layers, in the same order and with the same modules, as the check's LAYERS", () => {
    const script = readFileSync(SCRIPT, 'utf8')
    const block = /^export const LAYERS = \[([\s\S]*?)^\]/m.exec(script)![1]
    const fromScript: Layers = [...block.matchAll(/name: '([^']+)',\s*modules: \[([^\]]*)\]/g)].map((m) => [
      m[1],
      [...m[2].matchAll(/'([^']+)'/g)].map((x) => asDocs(x[1])).sort()
    ])
    expect(fromScript.map(([name]) => name)).toEqual(expect.arrayContaining(['base', 'ops', 'entry'])) // the parse found them

    const doc = readFileSync(resolve(__dirname, '..', '..', 'docs', 'architecture.md'), 'utf8')
    const rows = doc.slice(doc.indexOf('| layer (lowest first) |')).split('\n\n')[0].split('\n').slice(2)
    const fromDocs: Layers = rows.map((row) => {
      const [, name, modules] = row.split('|').map((c) => c.trim())
      return [name, [...modules.matchAll(/`([^`]+)`/g)].map((x) => x[1]).sort()]
    })
    expect(fromDocs).toEqual(fromScript)
  })
})
