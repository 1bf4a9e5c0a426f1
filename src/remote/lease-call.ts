// The first words of every command that reads or writes a pool member's lease (pool-lease.ts,
// reap's look at it): the member's scrub (docker/machine-scrub.ts) spares the session such a
// command leads. Those commands come from other runner hosts (a waiting job's queue call, a
// renewal, reap) while the job releasing the member holds its lease; killed, a waiting job gave up
// on the member about to be free. A job could name its leftovers so too, but it is root on the
// member through Docker anyway (docs/security.md on maxJobsPerVm).
export const LEASE_CALL = ': rch-lease-call; '
