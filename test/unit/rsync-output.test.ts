// rsync prints what the remote rsync sends as messages: on a static VM that is whatever an earlier
// job put on the SSH user's PATH, so the hook keeps only the tail of rsync's output (the stats).
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { resolveTools, useTools } from '../../src/tools'
import { agentTransport, rsyncUp } from '../../src/sync/rsync'
import { cleanupTempDirs, tempDir } from './_helpers'

afterAll(cleanupTempDirs)

test('a flood of rsync output is not held in memory, and the stats at its end are still read', async () => {
  const dir = tempDir()
  const fake = join(dir, 'rsync')
  // 256 MiB of message lines, then the stats rsync prints last.
  writeFileSync(
    fake,
    `#!/bin/sh\nhead -c 268435456 /dev/zero | tr '\\0' 'm'\nprintf '\\nNumber of regular files transferred: 3\\nTotal transferred file size: 1,234 bytes\\n'\n`
  )
  chmodSync(fake, 0o755)
  useTools(resolveTools({ rsync: fake }, { workDir: '/nonexistent', runnerTemp: '/nonexistent/_temp' }))
  global.gc?.()
  const before = process.memoryUsage().heapUsed
  let peak = before
  const sample = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 5)
  try {
    await expect(rsyncUp(agentTransport(process.execPath, '/hook.js', '/sock'), dir, ['x'], '/d')).resolves.toEqual({
      files: 3,
      bytes: 1234
    })
  } finally {
    clearInterval(sample)
  }
  peak = Math.max(peak, process.memoryUsage().heapUsed)
  expect(peak - before).toBeLessThan(64 * 1024 * 1024)
}, 60_000)
