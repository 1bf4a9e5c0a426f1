// One self-contained file: the runner copies only dist/index.js; ssh2's native addons are optional and
// replaced by its pure-JS fallbacks, and the AWS SDK stays out of the hot path through a lazy import().
import { build } from 'esbuild'
import { statSync } from 'node:fs'

await build({
  entryPoints: ['src/main.ts'],
  outfile: 'dist/index.js',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: false,
  sourcemap: false,
  legalComments: 'none',
  external: ['cpu-features', '*.node'],
  logLevel: 'warning'
})
console.log(`dist/index.js ${(statSync('dist/index.js').size / 1024).toFixed(0)} KiB`)
