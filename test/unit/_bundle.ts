// A real dist/index.js, built from a copy of the sources into a temporary folder (as build-id.test.ts
// does), for tests of what only the bundle does: its loader, and main.ts as the runner starts it.
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, symlinkSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { tempDir } from './_helpers'

const ROOT = resolve(__dirname, '..', '..')

/** Builds the sources as they are into a temporary folder; returns the bundle's path. */
export function buildBundle(): string {
  const dir = tempDir('rch-bundle-')
  cpSync(join(ROOT, 'src'), join(dir, 'src'), { recursive: true })
  mkdirSync(join(dir, 'scripts'))
  cpSync(join(ROOT, 'scripts', 'build.mjs'), join(dir, 'scripts', 'build.mjs'))
  for (const f of ['package.json', 'tsconfig.json']) cpSync(join(ROOT, f), join(dir, f))
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  // Low brotli quality: a loaded machine took over 60 s for one build at the default quality.
  const r = spawnSync(process.execPath, ['scripts/build.mjs'], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 150_000,
    env: { ...process.env, RCH_BROTLI_QUALITY: '5' }
  })
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' })
  return join(dir, 'dist', 'index.js')
}
