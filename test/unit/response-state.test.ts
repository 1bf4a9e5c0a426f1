// The state prepare_job hands the runner (which keeps it and gives it back to every later command)
// holds ids and paths only: never a registry password or user name, never an env value, never a key.
import { PrepareJobArgsSchema } from '../../src/protocol'
import { planJob } from '../../src/prepare/plan'
import { buildResponse } from '../../src/prepare/response'
import type { Inspect } from '../../src/docker/steps'
import { planFacts } from './_helpers'

const OWNER = '0123456789abcdef'
const JOB = 'fedcba9876543210'
const LOCAL = `/tmp/rch-1000/${OWNER}-${JOB}`

const facts = planFacts()

const SECRETS = {
  registryUser: 'octo-user-55aa',
  registryPassword: 'ghp_St4tePassw0rd',
  jobEnv: 'job-env-value-9d1f',
  multiLine: 'line-1-7c2e\nline-2-7c2e',
  serviceEnv: 'pg-password-3b8a'
}

test('the state holds the ids and paths later commands need, and none of the secrets prepare_job was given', () => {
  const registry = { username: SECRETS.registryUser, password: SECRETS.registryPassword, serverUrl: 'ghcr.io' }
  const plan = planJob(
    PrepareJobArgsSchema.parse({
      container: {
        image: 'ghcr.io/o/app:1',
        registry,
        environmentVariables: { TOKEN: SECRETS.jobEnv, CERT: SECRETS.multiLine },
        createOptions: '--cpus 1'
      },
      services: [{ image: 'ghcr.io/o/db:1', registry, environmentVariables: { POSTGRES_PASSWORD: SECRETS.serviceEnv } }]
    }),
    facts
  )!
  const lease = {
    kind: 'ec2' as const,
    instanceId: 'i-0123456789abcdef0',
    connect: { host: '10.0.0.7', port: 22, user: 'ec2-user', identityFile: `${LOCAL}/id_ed25519`, knownHostsFile: `${LOCAL}/known_hosts` }
  }
  const ids = ['a'.repeat(64), 'b'.repeat(64)]
  const info = (env: string[]): Inspect => ({ Config: { Env: env }, NetworkSettings: { Ports: {} } }) as unknown as Inspect
  const infos = new Map([
    [ids[0], info([`POSTGRES_PASSWORD=${SECRETS.serviceEnv}`])],
    [ids[1], info([`TOKEN=${SECRETS.jobEnv}`, 'PATH=/usr/local/bin:/usr/bin:/bin'])]
  ])
  const plain = (v: unknown): string => JSON.stringify(v)
  // positive control: every secret is in what the response is built from (the plan and the containers' inspect)
  for (const s of Object.values(SECRETS)) expect(plain(plan)).toContain(plain(s).slice(1, -1))
  expect(plain([...infos.values()])).toContain(SECRETS.jobEnv)

  const { state } = buildResponse(plan, lease, LOCAL, ids, infos, false)
  const text = plain(state)
  expect(state).toMatchObject({
    jobId: JOB,
    host: { identityFile: lease.connect.identityFile, knownHostsFile: lease.connect.knownHostsFile },
    container: { id: ids[1], image: 'ghcr.io/o/app:1', path: '/usr/local/bin:/usr/bin:/bin' },
    services: [{ id: ids[0], image: 'ghcr.io/o/db:1' }]
  })
  for (const s of Object.values(SECRETS)) expect(text).not.toContain(plain(s).slice(1, -1))
  expect(text).not.toMatch(/PRIVATE KEY|"auth"|"password"|"username"|"env"/i)
})
