// Pool rows of `npm run bench`: leasing a warm member, and prepare_job on one, against moto's EC2 and
// Auto Scaling APIs with loopback members (test/helpers/pool-env.ts), each compared in the same run
// with the same measurement on a static host.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FakeRunner } from '../test/helpers/fake-runner'
import { createPool, poolHookConfig, poolKeyPair } from '../test/helpers/pool-env'
import { testImages, type VmName } from '../test/helpers/testenv'
import { median } from './stats'

export interface PoolRow {
  name: string
  ours: number
  baseline: number
  baselineName: string
  unit: string
  target: string
  ok?: boolean
  note?: string
}

/** prepare_job's own "using <machine> (N ms)": from the command's start to a leased, connected machine. */
const leaseMs = (out: string): number => Number(/using .* \((\d+) ms\)/.exec(out)?.[1] ?? NaN)

export async function poolRows(vm: VmName, staticConfig: Record<string, unknown>, rounds = 7): Promise<PoolRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'rch-bench-pool-'))
  const { key, pub } = poolKeyPair(dir)
  const pool = await createPool({
    name: `bench-pool-${process.pid}`,
    size: 2,
    clientPublicKey: pub,
    extraTags: (m) => ({ 'rch-user': m.user })
  })
  try {
    await pool.waitReady(2, 120_000)
    const poolConfig = poolHookConfig(pool, key)
    const env = {
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true'
    }
    const measure = async (config: Record<string, unknown>, name: string): Promise<{ lease: number[]; prepare: number[] }> => {
      const lease: number[] = []
      const prepare: number[] = []
      // One round to warm what a steady runner has warm (the code cache, the members' first scrub).
      for (let i = 0; i <= rounds; i++) {
        const r = new FakeRunner({ vm, name: `${name}-${i}`, config })
        const p = await r.call(
          'prepare_job',
          {
            container: r.jobContainer(testImages.glibc),
            services: [r.service(testImages.tiny, { entryPoint: 'sleep', entryPointArgs: ['3600'] })]
          },
          { state: null, env }
        )
        if (p.code !== 0) throw new Error(`prepare_job (${name}) failed: ${p.stdout}${p.stderr}`)
        r.state = p.response.state
        if (i > 0) {
          lease.push(leaseMs(p.stdout + p.stderr))
          prepare.push(p.ms)
        }
        await r.call('cleanup_job', {}, { env })
        r.dispose()
      }
      return { lease, prepare }
    }
    const pooled = await measure(poolConfig, 'bench-pool')
    const fixed = await measure(staticConfig, 'bench-static')
    const leaseRow: PoolRow = {
      name: 'pool: lease of a warm member (prepare_job start → member leased and connected)',
      ours: median(pooled.lease),
      baseline: median(fixed.lease),
      baselineName: 'the same on a static host',
      unit: 'ms',
      target: 'ours ≤ 1000 ms',
      note: `runs ${pooled.lease.join(' ')} ms; static ${fixed.lease.join(' ')} ms (one DescribeInstances, the member's SSH handshake, one lease exec)`
    }
    leaseRow.ok = leaseRow.ours <= 1000
    const prepRow: PoolRow = {
      name: 'pool: lease + prepare_job, 1 job + 1 service, images cached',
      ours: median(pooled.prepare),
      baseline: median(fixed.prepare),
      baselineName: 'the same prepare_job on a static host',
      unit: 'ms',
      target: 'ours ≤ 1500 ms',
      note: `runs ${pooled.prepare.map(Math.round).join(' ')} ms; static ${fixed.prepare.map(Math.round).join(' ')} ms`
    }
    prepRow.ok = prepRow.ours <= 1500
    return [leaseRow, prepRow]
  } finally {
    await pool.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
