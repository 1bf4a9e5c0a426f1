// What the Terraform modules make against what the hook expects of it, read from both sides without
// Terraform: the ledger table's key and index (src/fleet/ledger-table.ts), and a pool member's tags,
// user, work root, tools and sshd (src/providers/pool-*.ts). A member that lacks one is never leased,
// or fails every lease; a table without the index fails every reap.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ledgerTableShape } from '../../src/fleet/ledger-table'
import { isHomeWorkRoot, isUserName, isWorkRoot } from '../../src/input-rules'
import { TAG_HOST_KEY } from '../../src/providers/pool-plan'

const root = join(__dirname, '..', '..')
const read = (f: string): string => readFileSync(join(root, f), 'utf8')
/** The default of a variable of a module. */
const defaultOf = (module: string, name: string): string | undefined =>
  new RegExp(`variable "${name}" \\{[\\s\\S]*?\\n\\s*default\\s*=\\s*"([^"]*)"[\\s\\S]*?\\n\\}`).exec(
    read(`terraform/modules/${module}/variables.tf`)
  )?.[1]

test("the ledger module's table has the key and the index the ledger reads and writes", () => {
  const tf = read('terraform/modules/ledger/main.tf')
  const attributes = [...tf.matchAll(/attribute \{\s*name\s*=\s*"(\w+)"\s*type\s*=\s*"(\w)"\s*\}/g)].map(([, n, t]) => ({
    AttributeName: n,
    AttributeType: t
  }))
  const gsi = [...tf.matchAll(/global_secondary_index \{([^}]*)\}/g)].map(([, b]) => ({
    IndexName: /name\s*=\s*"([^"]+)"/.exec(b)![1],
    KeySchema: [
      { AttributeName: /hash_key\s*=\s*"([^"]+)"/.exec(b)![1], KeyType: 'HASH' },
      ...[...b.matchAll(/range_key\s*=\s*"([^"]+)"/g)].map(([, k]) => ({ AttributeName: k, KeyType: 'RANGE' }))
    ],
    Projection: { ProjectionType: /projection_type\s*=\s*"([^"]+)"/.exec(b)![1] }
  }))
  expect({
    AttributeDefinitions: attributes,
    KeySchema: [{ AttributeName: /^\s*hash_key\s*=\s*"(\w+)"/m.exec(tf)![1], KeyType: 'HASH' }],
    GlobalSecondaryIndexes: gsi
  }).toEqual(ledgerTableShape())
  // The table itself has no sort key (its indexes may).
  expect(tf.replace(/global_secondary_index \{[^}]*\}/g, '')).not.toMatch(/^\s*range_key\s*=/m)
})

describe('the pool module', () => {
  const main = read('terraform/modules/pool/main.tf')
  const setup = read('terraform/modules/pool/templates/member_setup.sh.tftpl')
  const sshd = read('terraform/modules/pool/templates/sshd_config.tftpl')

  test('members publish their host key under the tag the hook reads, and may write that key only', () => {
    expect(/host_key_tag\s*=\s*"([^"]+)"/.exec(main)![1]).toBe(TAG_HOST_KEY)
    expect(main).toMatch(/"ForAllValues:StringEquals"\s*=\s*\{\s*"aws:TagKeys"\s*=\s*\[local\.host_key_tag\]\s*\}/)
    expect(main).toMatch(/host_key_tag\s*=\s*local\.host_key_tag/)
    // published last, after Docker answers, through the role, as "type base64" (the form pool-plan.ts accepts)
    expect(setup.indexOf('aws ec2 create-tags')).toBeGreaterThan(setup.indexOf('docker info >/dev/null ||'))
    expect(setup).toMatch(/"\$TAG_KEY" "\$host_key"/)
    expect(setup).toMatch(/ssh-keygen -q -t ed25519/)
  })

  test('members have the tools the lease, the scrub and the hook run, checked before the key is published', () => {
    // flock (util-linux): the lease record's lock; ps (procps): the scrub; rsync, tar, docker: the hook
    for (const pkg of [/dnf install -y [^\n]*\butil-linux\b[^\n]*\bprocps-ng\b/, /\$apt install [^\n]*\butil-linux\b[^\n]*\bprocps\b/])
      expect(setup).toMatch(pkg)
    const checked = /for tool in ([^;]+); do/.exec(setup)![1].split(/\s+/)
    expect(checked).toEqual(expect.arrayContaining(['docker', 'rsync', 'tar', 'flock', 'ps']))
    expect(read('src/providers/pool-lease.ts')).toMatch(/command -v flock/)
    expect(read('src/docker/machine-scrub.ts')).toMatch(/\bps -/)
  })

  test("sshd lets the hook forward the Docker socket to itself, and the user and work root are the hook's", () => {
    // direct-streamlocal (ssh.ts: openssh_forwardOutStreamLocal) needs "local" (or yes/all)
    expect(read('src/remote/ssh.ts')).toMatch(/openssh_forwardOutStreamLocal/)
    expect(/^AllowStreamLocalForwarding\s+(\w+)/m.exec(sshd)?.[1]).toMatch(/^(local|yes|all)$/)
    expect(sshd).toMatch(/^AllowUsers \$\{ssh_user\}$/m)
    const user = defaultOf('pool', 'ssh_user')!
    expect(isUserName(user) && user !== 'root').toBe(true)
    const work = defaultOf('pool', 'work_root')!
    expect(isWorkRoot(work) || isHomeWorkRoot(work)).toBe(true)
    // the work root is the user's, private: the lease folder is made in it as that user
    expect(setup).toMatch(/install -d -o "\$SSH_USER" -g "\$SSH_USER" -m 0700 "\$WORK_ROOT"/)
  })

  test('the group launches from a launch template naming an instance type (the fleet ledger prices a scale-out by it)', () => {
    expect(main).toMatch(/resource "aws_autoscaling_group" "pool" \{[\s\S]*?launch_template \{\s*id\s*=\s*aws_launch_template\.member\.id/)
    expect(main).toMatch(/resource "aws_launch_template" "member" \{[\s\S]*?instance_type\s*=\s*var\.instance_type/)
    expect(defaultOf('pool', 'instance_type')).toMatch(/^[a-z0-9][a-z0-9.-]*$/)
    expect(main).not.toMatch(/launch_configuration\s*=/)
  })
})
