// What a soak run left behind, looked up on the real parts: moto's instances in the soak's region,
// the ledger's unsettled reservations, docker objects labelled with the soak's runner names, the job
// folders and slot leases in the soak's work root and on the stand-in instances, and processes.
import { existsSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { DescribeInstancesCommand, type Instance } from '@aws-sdk/client-ec2'
import { FleetSchema } from '../../src/config'
import { DynamoLedger } from '../../src/fleet/dynamodb-ledger'
import { systemLedgerClock } from '../../src/fleet/ledger'
import { cmd } from '../helpers/conformance'
import { DUMMY_CREDENTIALS } from '../helpers/ec2-env'
import { OWNER_TAG, tagsOf } from '../helpers/fake-instance'
import { testenvDir } from '../helpers/testenv'
import type { JobResult } from './job'
import { alive, processesOf } from './procs'
import { instanceNameOf, instanceWorkRoot, SOAK_REGION, type SoakEnv } from './soak-env'

const LABEL_RUNNER = 'dev.remote-container-hooks.runner'

export interface Leftovers {
  /** instances of the soak's owners not terminated (id state owner) */
  instances: string[]
  /** unsettled reservations in the soak's ledger (id instance) */
  reservations: string[]
  /** docker containers, networks, volumes labelled with a soak runner */
  containers: string[]
  networks: string[]
  volumes: string[]
  /** job folders in the soak's work root */
  jobFolders: string[]
  /** slot leases in the soak's work root */
  leases: string[]
  /** stand-in instances still up: their sshd state folder (.testenv/inst-NAME) or their disk (work root) */
  instanceHosts: string[]
  /** processes: the soak's workers and hooks still alive, and anything with a soak runner's tracking id */
  processes: string[]
}

export const total = (l: Leftovers): number => Object.values(l).reduce((n, xs: string[]) => n + xs.length, 0)

export function describeLeftovers(l: Leftovers): string {
  const parts = Object.entries(l)
    .filter(([, xs]) => (xs as string[]).length)
    .map(([k, xs]) => `${(xs as string[]).length} ${k}`)
  return parts.length ? parts.join(', ') : 'nothing'
}

async function dockerOf(kind: 'ps -a' | 'network ls' | 'volume ls', runners: Set<string>): Promise<string[]> {
  const name = kind === 'ps -a' ? '{{.Names}}' : '{{.Name}}'
  const r = await cmd('docker', [
    ...kind.split(' '),
    '--filter',
    `label=${LABEL_RUNNER}`,
    '--format',
    `${name} {{.Label "${LABEL_RUNNER}"}}`
  ])
  if (r.code !== 0) throw new Error(`docker ${kind}: ${r.stderr}`)
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .filter((l) => runners.has(l.split(' ')[1]))
}

export async function unsettledReservations(env: SoakEnv): Promise<string[]> {
  const fleet = FleetSchema.parse({
    ...env.fleet,
    ledger: { kind: 'dynamodb', table: env.table, region: SOAK_REGION, endpoint: env.motoEndpoint }
  })
  const ledger = new DynamoLedger(fleet, fleet.ledger as Extract<typeof fleet.ledger, { kind: 'dynamodb' }>, {
    clock: systemLedgerClock,
    client: { credentials: DUMMY_CREDENTIALS }
  })
  try {
    return (await ledger.unsettled()).map(
      (r) => `${r.id} ${r.instanceId ?? '(no instance)'} reserved ${new Date(r.reservedAt).toISOString()}`
    )
  } finally {
    ledger.close()
  }
}

/** Instances of these owners not terminated: asked by owner value, every page (moto keeps every instance ever made). */
export async function liveInstancesOf(env: SoakEnv, owners: Set<string>): Promise<Instance[]> {
  const all = [...owners]
  const out: Instance[] = []
  for (let i = 0; i < all.length; i += 100) {
    let token: string | undefined
    do {
      const page = await env.ec2.send(
        new DescribeInstancesCommand({
          Filters: [
            { Name: `tag:${OWNER_TAG}`, Values: all.slice(i, i + 100) },
            { Name: 'instance-state-name', Values: ['pending', 'running', 'shutting-down', 'stopping', 'stopped'] }
          ],
          NextToken: token
        })
      )
      out.push(...(page.Reservations ?? []).flatMap((r) => r.Instances ?? []))
      token = page.NextToken
    } while (token)
  }
  return out
}

export async function leftovers(env: SoakEnv, jobs: JobResult[]): Promise<Leftovers> {
  const runners = new Set(jobs.map((j) => j.runner))
  const owners = new Set(jobs.map((j) => j.owner))
  const instances = (await liveInstancesOf(env, owners)).map((i) => `${i.InstanceId} ${i.State?.Name} ${tagsOf(i)[OWNER_TAG]}`)
  const dir = (d: string) => (existsSync(d) ? readdirSync(d).map((x) => `${d}/${x}`) : [])
  const procs = [
    ...jobs.flatMap((j) => [j.workerPid, ...j.hookPids].filter(alive).map((p) => `pid ${p} (${j.runner})`)),
    ...processesOf(jobs.map((j) => j.trackingId)).map((p) => `pid ${p.pid} ${p.cmdline.slice(0, 80)}`)
  ]
  return {
    instances,
    reservations: await unsettledReservations(env),
    containers: await dockerOf('ps -a', runners),
    networks: await dockerOf('network ls', runners),
    volumes: await dockerOf('volume ls', runners),
    jobFolders: dir(`${env.workRoot}/jobs`),
    leases: dir(`${env.workRoot}/leases`),
    instanceHosts: jobs
      .filter((j) => j.plan.kind === 'ec2')
      .flatMap((j) => [join(testenvDir, `inst-${instanceNameOf(j.owner)}`), dirname(instanceWorkRoot(j.owner))])
      .filter((p) => existsSync(p)),
    processes: [...new Set(procs)]
  }
}
