// One self-contained file: the runner copies only dist/index.js; ssh2's native addons are optional and
// replaced by its pure-JS fallbacks.
//
// The runner starts a new node process for every hook command, so start-up is paid on every step.
// dist/index.js is therefore a small loader: the core bundle is compiled with a V8 code cache kept in
// a 0700 folder of the runner user, and the big libraries only some commands need (the AWS SDK,
// ssh2, winston, yaml) are embedded gzip+base64 in a trailing comment (V8 skips a comment far
// faster than it scans megabytes of string literals) and compiled on first require() only.
// Measured numbers are in docs/benchmarks.md.
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { mkdirSync, writeFileSync } from 'node:fs'

const CHUNKS = ['@aws-sdk/client-ec2', 'ssh2', 'winston', 'yaml']
const common = { bundle: true, platform: 'node', target: 'node20', format: 'cjs', minify: false, sourcemap: false, legalComments: 'none', logLevel: 'warning', write: false }

async function bundle(opts) {
  const r = await build({ ...common, ...opts })
  return r.outputFiles[0].text
}

// ASCII only: one non-ASCII character makes V8 hold and scan the whole 1 MB file as a two-byte string.
const ascii = (src) => src.replace(/[^\x00-\x7f]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
const core = ascii(await bundle({ entryPoints: ['src/main.ts'], external: ['cpu-features', '*.node', ...CHUNKS] }))
const chunks = {}
for (const name of CHUNKS) {
  chunks[name] = ascii(await bundle({
    stdin: { contents: `module.exports = require(${JSON.stringify(name)})`, resolveDir: process.cwd(), loader: 'js' },
    external: ['cpu-features', '*.node']
  }))
}
const key = createHash('sha256').update(core).update(JSON.stringify(chunks)).digest('hex').slice(0, 16)

const coreB64 = Buffer.from(core, 'latin1').toString('base64')
const pad = (n) => String(n).padStart(10, ' ')
let loader = `#!/usr/bin/env node
'use strict';
// remote-container-hooks ${key}: a loader with a V8 code cache around the bundle and its lazy chunks.
(function load() {
  const fs = require('fs'), os = require('os'), path = require('path'), vm = require('vm'), Module = require('module');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const dir = path.join(os.tmpdir(), 'rch-' + uid);
  let usable = false;
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(dir);
    // Only a folder we own and nobody else can write may hold code we run.
    usable = st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0;
  } catch (e) { /* no cache: compile normally */ }
  const loaded = {};
  let swept = false;
  function compile(name, source, req) {
    const file = path.join(dir, 'code-${key}-' + name.replace(/[^a-z0-9]+/gi, '_') + '.bin');
    let cached;
    if (usable) { try { cached = fs.readFileSync(file); } catch (e) { /* first run */ } }
    const script = new vm.Script(Module.wrap(source), { filename: __filename + '#' + name, cachedData: cached });
    if (usable && (!cached || script.cachedDataRejected)) {
      process.once('exit', () => {
        try {
          const tmp = file + '.' + process.pid;
          fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
          fs.renameSync(tmp, file);
        } catch (e) { /* best effort */ }
        // A new version writes its cache once: then other versions' caches older than a day go
        // (one still in use just writes its cache again). Once per process, not per part.
        if (swept) return;
        swept = true;
        try {
          for (const f of fs.readdirSync(dir)) {
            if (!/^code-[0-9a-f]{16}-/.test(f) || f.startsWith('code-${key}-')) continue;
            const p = path.join(dir, f);
            if (Date.now() - fs.statSync(p).mtimeMs > 86400000) fs.unlinkSync(p);
          }
        } catch (e) { /* best effort */ }
      });
    }
    const m = { exports: {} };
    script.runInThisContext().call(m.exports, m.exports, req, m, __filename, __dirname);
    return m.exports;
  }
  // The payload sits in the trailing comment, so node's own compile of this file only skips it; the
  // core is read by offset, the rest of the table only when a chunk is needed.
  let table = null;
  function chunk(id) {
    if (id === 'core') {
      const buf = Buffer.alloc(@CORE_LEN@);
      const fd = fs.openSync(__filename, 'r');
      try { fs.readSync(fd, buf, 0, buf.length, @@CORE_AT@); } finally { fs.closeSync(fd); }
      return Buffer.from(buf.toString('latin1'), 'base64').toString('latin1');
    }
    if (!table) {
      table = {};
      const text = fs.readFileSync(__filename, 'latin1');
      for (const line of text.slice(text.lastIndexOf('/*RCH-CHUNKS\\n') + 13, text.lastIndexOf('\\nRCH-CHUNKS*/')).split('\\n')) {
        const at = line.indexOf(' ');
        table[line.slice(0, at)] = line.slice(at + 1);
      }
    }
    const b64 = table[id];
    return b64 === undefined ? undefined : require('zlib').gunzipSync(Buffer.from(b64, 'base64')).toString('latin1');
  }
  function lazyRequire(id) {
    if (id in loaded) return loaded[id];
    if (${JSON.stringify(CHUNKS)}.includes(id)) return (loaded[id] = compile(id, chunk(id), require));
    return require(id);
  }
  lazyRequire.resolve = require.resolve;
  lazyRequire.cache = require.cache;
  compile('core', chunk('core'), lazyRequire);
})();
/*RCH-CHUNKS
core ${coreB64}
${Object.entries(chunks).map(([n, c]) => `${n} ${gzipSync(c, { level: 9 }).toString('base64')}`).join('\n')}
RCH-CHUNKS*/
`
// Placeholders and numbers are all 10 characters wide, so filling them in moves nothing.
loader = loader.replace('@CORE_LEN@', pad(coreB64.length))
loader = loader.replace('@@CORE_AT@', pad(Buffer.byteLength(loader.slice(0, loader.indexOf('/*RCH-CHUNKS\n'))) + '/*RCH-CHUNKS\ncore '.length))
mkdirSync('dist', { recursive: true })
writeFileSync('dist/index.js', loader, { mode: 0o755 })
const kib = (s) => (Buffer.byteLength(s) / 1024).toFixed(0)
console.log(`dist/index.js ${kib(loader)} KiB (core ${kib(core)} KiB; ${Object.entries(chunks).map(([n, c]) => `${n} ${kib(c)} KiB`).join(', ')}; ${key})`)
