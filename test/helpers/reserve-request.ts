// A reservation request as the hook makes one for a static-host or EC2 job (a pool's adds `pool`).
import type { ReserveRequest } from '../../src/fleet/ledger'

export const RESERVE_REQ: ReserveRequest = {
  repository: 'acme/widgets',
  workflow: 'ci',
  runId: '7',
  job: 'build',
  runner: 'r1',
  instanceType: 't3.medium',
  vcpus: 2,
  maxLifetimeMinutes: 60
}
