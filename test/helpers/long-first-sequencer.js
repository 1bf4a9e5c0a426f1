// Jest's order of test files, with the longest known ones first whatever Jest remembers. Without
// its cache of durations (a fresh clone, as CI's) Jest orders files by size, and the soak, one of
// the smallest files and one of the longest runs, came last: one worker ran it alone for minutes
// while the other had nothing left. The soak and the pool load test must not run together (they
// starve each other and moto of CPU): the soak is second, the load test a few files later, so that
// it starts about when the soak is over with two or three workers, and the lock of
// test/helpers/heavy-lock.ts holds it back if it comes sooner.
// After these, Jest's own order (by remembered duration, else by size).
const Sequencer = require('@jest/test-sequencer').default
const { sep } = require('node:path')

/** Paths under test/, longest first (over 30 s each in a whole run on the 2-core machine). */
const LONG_FIRST = [
  'integration/pool.test.ts',
  'soak/soak.test.ts',
  'integration/ec2-provider.test.ts',
  'integration/ec2-faults.test.ts',
  'integration/pool-load.test.ts',
  'integration/pool-fleet.test.ts',
  'integration/terraform.test.ts',
  'adversarial/file-commands.test.ts',
  'conformance/fuzz-inputs.test.ts',
  'integration/fleet-launch.test.ts',
  'conformance/steps-no-agent.test.ts',
  'conformance/steps.test.ts'
]

const rankOf = (path) => {
  const i = LONG_FIRST.findIndex((f) => path.endsWith(`${sep}test${sep}${f.split('/').join(sep)}`))
  return i < 0 ? LONG_FIRST.length : i
}

class LongFirstSequencer extends Sequencer {
  sort(tests) {
    // Array.prototype.sort is stable: the rest keep Jest's order.
    return [...super.sort(tests)].sort((a, b) => rankOf(a.path) - rankOf(b.path))
  }
}

module.exports = LongFirstSequencer
module.exports.LONG_FIRST = LONG_FIRST
