// A throw or a rejection that no promise holds, in the real bundle as the runner starts it. Node's
// own report is the stack, raw, on stderr, where the runner reads workflow commands at the start of
// every line: a VM's text in the message could issue one. The hook reports it as one ::error:: line.
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cleanupTempDirs, tempDir } from './_helpers'
import { buildBundle } from './_bundle'

let bundle: string
afterAll(cleanupTempDirs)
beforeAll(() => {
  bundle = buildBundle()
}, 180_000)

const FORGED = 'the VM said\\n::add-mask::x\\n::error::forged\\n##[group]forged'

/** Runs `args` under node with a preload that fails as `how` 300 ms in (or at once); stdin stays open meanwhile. */
function run(how: 'throw' | 'reject', args: string[], soon = false): Promise<{ code: number | null; out: string; stdout: string }> {
  const preload = join(tempDir(), 'fail.js')
  const fail = how === 'throw' ? `throw new Error('${FORGED}')` : `Promise.reject(new Error('${FORGED}'))`
  writeFileSync(preload, soon ? `setImmediate(() => { ${fail} })\n` : `setTimeout(() => { ${fail} }, 300)\n`)
  const child = spawn(process.execPath, ['-r', preload, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } })
  let out = ''
  let stdout = ''
  child.stdout.on('data', (c: Buffer) => ((out += c.toString()), (stdout += c.toString())))
  child.stderr.on('data', (c: Buffer) => (out += c.toString()))
  const kill = setTimeout(() => child.kill('SIGKILL'), 20_000)
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(kill)
      child.stdin.destroy()
      resolve({ code, out, stdout })
    })
  )
}

const commandLines = (out: string): string[] => out.split('\n').filter((l) => /^\s*(::|##\[)/.test(l))

test.each(['throw', 'reject'] as const)(
  'a %s no promise holds: one ::error:: line, exit 70, no line of the message starts a command',
  async (how) => {
    // The hook waits on the runner's request (stdin left open) when the failure comes.
    const r = await run(how, [bundle])
    expect(r.code).toBe(70)
    const lines = commandLines(r.out)
    expect(lines).toHaveLength(1)
    expect(lines[0]).toBe('::error::remote-container-hooks failed (the VM said ::add-mask::x ::error::forged ## [group]forged)')
    // control: node's own report of the same failure starts command lines
    const plain = await run(how, ['-e', 'setTimeout(() => undefined, 5000)'])
    expect(commandLines(plain.out)).toEqual(expect.arrayContaining(['::error::forged', '::add-mask::x']))
  }
)

test("an operator command's stdout is its data: the error line goes to stderr there", async () => {
  const r = await run('throw', [bundle, 'report', '--help'], true)
  expect(r.code).toBe(70)
  expect(commandLines(r.out)).toHaveLength(1)
  expect(r.stdout).not.toContain('::error::')
})
