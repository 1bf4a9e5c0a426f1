// `npm run demo` twice at once on one machine: each run has its own VM, port and runner name, so
// neither prunes the other's containers nor takes its port (both used to be fixed).
import { spawn } from 'node:child_process'
import { join } from 'node:path'

const ROOT = join(__dirname, '..', '..')

function demo(): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn('bash', ['scripts/demo.sh'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RCH_DEMO_PORT: '' }
    })
    let out = ''
    p.stdout.on('data', (c: Buffer) => (out += c.toString()))
    p.stderr.on('data', (c: Buffer) => (out += c.toString()))
    p.on('close', (code) => resolve({ code, out }))
  })
}

it('two demo runs at the same time both finish their sample job', async () => {
  const [a, b] = await Promise.all([demo(), demo()])
  for (const r of [a, b]) {
    expect(r.out).toContain('the sample job ran end to end')
    expect(r.code).toBe(0)
  }
  const vmOf = (out: string): string | undefined => /sshd "VM" (demo-\d+) on 127\.0\.0\.1:(\d+)/.exec(out)?.slice(1).join(':')
  // Positive control that they really were two VMs on two ports.
  expect(vmOf(a.out)).toBeDefined()
  expect(vmOf(a.out)).not.toBe(vmOf(b.out))
  expect(vmOf(a.out)!.split(':')[1]).not.toBe(vmOf(b.out)!.split(':')[1])
}, 300_000)
