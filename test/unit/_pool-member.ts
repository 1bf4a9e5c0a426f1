// A pool member as the Auto Scaling group's listing gives it: running, reachable, with its host key.
import type { Member } from '../../src/providers/pool-plan'

export function readyMember(over: Partial<Member> = {}): Member {
  return {
    id: 'i-a',
    user: 'ec2-user',
    state: 'running',
    address: { host: '127.0.0.1', port: 22 },
    hostKey: 'ssh-ed25519 AAAA',
    jobs: 0,
    launchedAt: new Date(Date.UTC(2026, 11, 1)),
    recycle: null,
    reservation: null,
    ...over
  }
}
