// One self-contained file: the runner copies only dist/index.js; ssh2's native addons are optional and
// replaced by its pure-JS fallbacks, and the AWS SDK stays out of the hot path through lazy loading.
//
// The runner starts a new node process for every hook command, so start-up is paid on every step.
// dist/index.js is therefore a small loader around the bundle: it compiles the bundle with a V8 code
// cache kept in a 0700 folder of the runner user (measured: ~35 ms less per command here).
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'

const result = await build({
  entryPoints: ['src/main.ts'],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: false,
  sourcemap: false,
  legalComments: 'none',
  external: ['cpu-features', '*.node'],
  logLevel: 'warning',
  write: false
})
const bundle = result.outputFiles[0].text
const key = createHash('sha256').update(bundle).digest('hex').slice(0, 16)

const loader = `#!/usr/bin/env node
'use strict';
// remote-container-hooks ${key}: loader with a V8 code cache around the bundle below.
const BUNDLE = ${JSON.stringify(bundle)};
(function load() {
  const fs = require('fs'), os = require('os'), path = require('path'), vm = require('vm'), Module = require('module');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const dir = path.join(os.tmpdir(), 'rch-' + uid);
  const file = path.join(dir, 'code-${key}.bin');
  let cached, usable = false;
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(dir);
    // Only a folder we own and nobody else can write may hold code we run.
    usable = st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0;
    if (usable) cached = fs.readFileSync(file);
  } catch (e) { /* no cache: compile normally */ }
  const script = new vm.Script(Module.wrap(BUNDLE), { filename: __filename, cachedData: cached });
  if (usable && (!cached || script.cachedDataRejected)) {
    process.once('exit', () => {
      try {
        const tmp = file + '.' + process.pid;
        fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
        fs.renameSync(tmp, file);
      } catch (e) { /* best effort */ }
    });
  }
  script.runInThisContext().call(module.exports, module.exports, require, module, __filename, __dirname);
})();
`
mkdirSync('dist', { recursive: true })
writeFileSync('dist/index.js', loader, { mode: 0o755 })
console.log(`dist/index.js ${(loader.length / 1024).toFixed(0)} KiB (bundle ${key})`)
