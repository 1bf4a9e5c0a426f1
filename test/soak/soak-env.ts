// What one soak run stands on: its own EC2 region on moto (no other test lists or reaps instances
// there), its own DynamoDB ledger table behind the serialising proxy, one stand-in booter for every
// instance it launches, its own work root on each static test VM (its own slots and job folders), and
// its own TMPDIR for the hooks' local folders.
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { DeleteTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2'
import { DUMMY_CREDENTIALS, loadMoto, motoImageId } from '../helpers/ec2-env'
import { createLedgerTable } from '../helpers/ledger-table'
import { OWNER_TAG, startInstanceBooter, tagsOf, type InstanceBooter } from '../helpers/fake-instance'
import { startSerialProxy, type SerialProxy } from '../integration/ledger-serial-proxy'
import { loadVm, type TestVm } from '../helpers/testenv'

const execFileP = promisify(execFile)

/** Only the soak launches here: other tests (and their reap passes) use eu-west-1. */
export const SOAK_REGION = 'eu-north-1'

export interface SoakEnv {
  tag: string
  motoEndpoint: string
  ami: string
  ec2: EC2Client
  ddb: DynamoDBClient
  proxy: SerialProxy
  table: string
  booter: InstanceBooter
  /** owner ids of the EC2 jobs of the round under way: the booter lists and takes up only their instances */
  owners: Set<string>
  vms: TestVm[]
  /** the soak's work root on the static VMs (its own slots and job folders; both VMs are this machine, so they share it) */
  workRoot: string
  /** TMPDIR of every hook and agent of the soak */
  tmp: string
  fleet: Record<string, unknown>
  close(): Promise<void>
}

/** fleet.reap.deadAfterMinutes of the soak's config */
export const DEAD_AFTER_MINUTES = 1

export const instanceNameOf = (owner: string): string => `soak-${owner}`
export const instanceWorkRoot = (owner: string): string => `/var/tmp/rch-inst-${instanceNameOf(owner)}/work`

export async function openSoakEnv(tag: string): Promise<SoakEnv> {
  const motoEndpoint = loadMoto().endpoint
  const ec2 = new EC2Client({
    region: SOAK_REGION,
    credentials: DUMMY_CREDENTIALS,
    endpoint: motoEndpoint,
    requestHandler: { connectionTimeout: 5_000, requestTimeout: 30_000 }
  })
  const ami = await motoImageId(ec2)
  const ddb = new DynamoDBClient({ region: SOAK_REGION, endpoint: motoEndpoint, credentials: DUMMY_CREDENTIALS })
  const table = `rch-soak-${tag}`
  await createLedgerTable(ddb, table)
  const proxy = await startSerialProxy(motoEndpoint)
  const owners = new Set<string>()
  // The booter names an instance's sshd from its id alone; the soak's runners know only their
  // owner id before the launch, so the sshd is named from the owner tag seen in the same listing.
  const ownerById = new Map<string, string>()
  const view = {
    send: async (cmd: unknown) => {
      if (!(cmd instanceof DescribeInstancesCommand)) return ec2.send(cmd as DescribeInstancesCommand)
      // Only the owners of the round under way: moto lists every instance ever made in the region,
      // terminated ones included, and under load a listing of them all took seconds.
      if (!owners.size) return { Reservations: [] }
      const out = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: `tag:${OWNER_TAG}`, Values: [...owners] }] }))
      for (const r of out.Reservations ?? []) for (const i of r.Instances ?? []) ownerById.set(i.InstanceId!, tagsOf(i)[OWNER_TAG])
      return out
    }
  } as unknown as EC2Client
  const booter = startInstanceBooter(view, { name: (id) => instanceNameOf(ownerById.get(id) ?? id), pollMs: 1000 })
  const vms = [loadVm('a'), loadVm('b')]
  const workRoot = `/var/tmp/rch-soak-${tag}/work`
  mkdirSync(workRoot, { recursive: true, mode: 0o755 })
  await execFileP('chown', ['-R', `${vms[0].user}:`, dirname(workRoot)])
  const tmp = mkdtempSync(join(tmpdir(), 'rchsk-'))
  mkdirSync(tmp, { recursive: true })
  const fleet = {
    ledger: { kind: 'dynamodb', table, region: SOAK_REGION, endpoint: proxy.endpoint },
    caps: { instances: 40, vcpus: 80 },
    budget: { perDayUsd: 1000, prices: { 'm7i.large': 0.1008, 'm6i.large': 0.096 } },
    // the shortest the config allows: a dead job is judged so a minute after its last sign of life
    reap: { deadAfterMinutes: DEAD_AFTER_MINUTES, graceMinutes: 0 }
  }
  return {
    tag,
    motoEndpoint,
    ami,
    ec2,
    ddb,
    proxy,
    table,
    booter,
    owners,
    vms,
    workRoot,
    tmp,
    fleet,
    async close() {
      await booter.stop()
      await proxy.close()
      await ddb.send(new DeleteTableCommand({ TableName: table })).catch(() => undefined)
      ddb.destroy()
      ec2.destroy()
      rmSync(tmp, { recursive: true, force: true })
      rmSync(dirname(workRoot), { recursive: true, force: true })
    }
  }
}
