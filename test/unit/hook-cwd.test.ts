// The runner starts the hook in the job's workspace, which the job fills (pull-back). What the hook
// starts must not run there: a program that finds a file by a relative name (a credential_process
// run as `python3 -m tool`, which imports from its working folder first) would take the job's.
// The real bundle, as the runner starts it, with the AWS SDK's credential_process as the witness.
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cleanupTempDirs, tempDir } from './_helpers'
import { buildBundle } from './_bundle'

let bundle: string

afterAll(cleanupTempDirs)
beforeAll(() => {
  bundle = buildBundle()
}, 180_000)

test("the AWS SDK's credential_process runs in /, not in the job's workspace the runner started the hook in", () => {
  const root = tempDir()
  const work = join(root, '_work')
  const workspace = join(work, 'repo', 'repo')
  const responses = join(work, '_temp', '_runner_hook_responses')
  for (const d of [workspace, responses]) mkdirSync(d, { recursive: true })
  mkdirSync(join(root, 'tmp'), { mode: 0o700 })
  const responseFile = join(responses, 'r.json')
  writeFileSync(responseFile, '')
  // The witness: where the SDK runs the profile's credential_process.
  const marker = join(root, 'cwd-of-credential-process')
  const cred = join(root, 'cred.sh')
  writeFileSync(cred, `#!/bin/sh\npwd > ${marker}\necho '{"Version":1,"AccessKeyId":"testing","SecretAccessKey":"testing"}'\n`)
  chmodSync(cred, 0o755)
  writeFileSync(join(root, 'aws-config'), `[default]\ncredential_process = ${cred}\n`)
  // Nothing listens at the endpoint: the call fails once the credentials are there.
  writeFileSync(
    join(root, 'config.json'),
    JSON.stringify({
      provider: { kind: 'ec2', region: 'eu-west-1', endpoint: 'http://127.0.0.1:9', imageId: 'ami-12c6146b', instanceTypes: ['t3.micro'] },
      remote: { workRoot: '/var/tmp/rch-cwd-test' }
    })
  )
  const r = spawnSync(process.execPath, [bundle], {
    cwd: workspace,
    input: JSON.stringify({ command: 'cleanup_job', responseFile, args: {}, state: null }),
    env: {
      PATH: '/usr/bin:/bin',
      TMPDIR: join(root, 'tmp'),
      RUNNER_TEMP: join(work, '_temp'),
      REMOTE_HOOKS_CONFIG: join(root, 'config.json'),
      AWS_CONFIG_FILE: join(root, 'aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true'
    },
    encoding: 'utf8',
    timeout: 60_000
  })
  expect(r.stdout).toContain('::error::') // it went on to call EC2, which is not there
  expect(existsSync(marker)).toBe(true) // positive control: the hook ran the profile's credential_process
  expect(readFileSync(marker, 'utf8')).toBe('/\n')
})
