// Optional: a job on a real EC2 instance. Skipped unless RCH_AWS_E2E=1, AWS credentials are in the
// environment (or a profile), and RCH_AWS_CONFIG names a hook configuration for a real account
// (provider.kind: ec2 with a real imageId/subnet/security group, connect.address reachable from
// here). Never runs in CI: this machine has no route to AWS.
import { existsSync, readFileSync } from 'node:fs'
import { FakeRunner } from '../helpers/fake-runner'

const optedIn =
  process.env.RCH_AWS_E2E === '1' && !!(process.env.AWS_ACCESS_KEY_ID || process.env.AWS_PROFILE) && !!process.env.RCH_AWS_CONFIG
const run = optedIn ? describe : describe.skip

run('real AWS (opt-in)', () => {
  test('prepare_job launches an instance, a step runs on it, cleanup_job terminates it', async () => {
    const cfgPath = process.env.RCH_AWS_CONFIG!
    expect(existsSync(cfgPath)).toBe(true)
    const config = JSON.parse(readFileSync(cfgPath, 'utf8'))
    const runner = new FakeRunner({ config })
    const env: Record<string, string> = {}
    for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_REGION'])
      if (process.env[k]) env[k] = process.env[k]!
    try {
      const p = await runner.call(
        'prepare_job',
        { container: runner.jobContainer(process.env.RCH_AWS_IMAGE ?? 'public.ecr.aws/docker/library/alpine:3'), services: [] },
        { state: null, env }
      )
      expect({ code: p.code, out: p.stdout }).toEqual({ code: 0, out: expect.not.stringContaining('::error::') })
      runner.state = p.response.state
      const { args } = runner.scriptStep('uname -a; cat /etc/os-release | head -2\n')
      const r = await runner.call('run_script_step', args, { env })
      expect(r.code).toBe(0)
    } finally {
      const c = await runner.call('cleanup_job', {}, { env })
      expect(c.code).toBe(0)
      expect(c.stdout).toMatch(/terminated i-/)
      runner.dispose()
    }
  }, 900_000)
})
