// One self-contained file: the runner copies only dist/index.js; ssh2's native addons are optional and
// replaced by its pure-JS fallbacks.
//
// The runner starts a new node process for every hook command, so start-up is paid on every step.
// dist/index.js is laid out for that: a short loader, then the core bundle as plain JavaScript (node
// compiles it as part of the file; nothing is found by byte offset, so an added line or CRLF line
// endings do not break it), then the big libraries only some commands need (the AWS SDK, ssh2,
// winston, yaml, zod: a step sent to the job's agent validates nothing itself) brotli+base64 in a
// trailing comment (V8 skips a comment far faster than it scans megabytes of string literals), each
// compiled on its first require() with a V8 code cache kept in
// a 0700 folder of the runner user. Last comes the core's source map, inline, read only when a
// stack trace is formatted. Measured numbers are in docs/benchmarks.md.
import { build } from 'esbuild'
import { createHash } from 'node:crypto'
import { brotliCompressSync, constants as zlibConstants } from 'node:zlib'
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, relative, sep } from 'node:path'
import ts from 'typescript'

// The three AWS clients share most of their code (the SDK's core, smithy, credentials, retries):
// one chunk holds all three, so that code is in the file once, not three times; each client's
// require() gets its part of it.
const AWS = { '@aws-sdk/client-ec2': 'ec2', '@aws-sdk/client-auto-scaling': 'autoScaling', '@aws-sdk/client-dynamodb': 'dynamodb' }
const AWS_CHUNK = 'rch-aws'
const LIBS = ['ssh2', 'winston', 'yaml', 'zod']
/** What the core and the rest require() from the loader instead of bundling. */
const EXTERNAL = [...Object.keys(AWS), ...LIBS]
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: false,
  legalComments: 'none',
  logLevel: 'warning',
  write: false,
  // import() of the core's parts becomes require() through the loader (a real import() would go to
  // node's ESM loader, which knows nothing of them).
  supported: { 'dynamic-import': false }
}

// ASCII only: one non-ASCII character makes V8 hold and scan the whole file as a two-byte string.
// eslint-disable-next-line no-control-regex -- the range is all of ASCII, NUL included
const ascii = (src) => src.replace(/[^\x00-\x7f]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))

// The AWS clients are large (the EC2 one alone ~3 MiB) and the code uses a few dozen of their
// exports: their chunks export only the names src/ uses as identifiers (any identifier in its
// code that the client exports, so a name used is never left out), and esbuild drops the rest.
// Identifiers, not words: "EC2" or "DynamoDB" in a comment or a message would export the client's
// aggregated class, which holds every one of its commands (the EC2 one ~600). Every hook start
// reads the whole file, so what is left out is time saved on every step.
const srcIdentifiers = new Set()
const collectIdentifiers = (n) => {
  if (ts.isIdentifier(n)) srcIdentifiers.add(n.text)
  ts.forEachChild(n, collectIdentifiers)
}
for (const f of readdirSync('src', { recursive: true })) {
  if (!String(f).endsWith('.ts')) continue
  const file = join('src', String(f))
  collectIdentifiers(ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false))
}
const requireHere = createRequire(import.meta.url)
const awsEntry = Object.entries(AWS)
  .map(([name, key]) => {
    const used = Object.keys(requireHere(name)).filter((k) => srcIdentifiers.has(k))
    if (!used.length) throw new Error(`build: nothing of ${name} is used in src/`)
    const local = (u) => `${key}_${u}`
    return `import { ${used.map((u) => `${u} as ${local(u)}`).join(', ')} } from ${JSON.stringify(name)}\nexport const ${key} = { ${used.map((u) => `${u}: ${local(u)}`).join(', ')} }\n`
  })
  .join('')
const chunks = {}
for (const name of [AWS_CHUNK, ...LIBS]) {
  const r = await build({
    ...common,
    stdin: {
      contents: name === AWS_CHUNK ? awsEntry : `module.exports = require(${JSON.stringify(name)})`,
      resolveDir: process.cwd(),
      loader: 'js',
      sourcefile: `${name}-entry.js`
    },
    // Their ES module builds: esbuild can drop unused exports only from those, not from CommonJS.
    ...(name === AWS_CHUNK ? { mainFields: ['module', 'main'] } : {}),
    external: ['cpu-features', '*.node']
  })
  chunks[name] = ascii(r.outputFiles[0].text)
}

// The core is split in two. A step handed to the job's agent needs only main.ts and what it imports
// statically (~40 KiB); V8 would still parse all ~470 KiB of the rest on every start. So every module
// main.ts's static graph loads on demand (`await import()`) goes into the chunk `rch-rest`, compiled
// on first use with its code cache like the libraries. The rest takes the core's modules from the
// core (`rch-core:<file>`), never a second copy: one instance of each module, so `instanceof` and
// module state hold across the two.
const REST = 'rch-rest'
const rel = (abs) => relative(process.cwd(), abs).split(sep).join('/')
const onDemand = new Set()
const lazyImports = {
  name: 'rch-lazy-imports',
  setup(b) {
    b.onResolve({ filter: /^\./ }, async (a) => {
      if (a.kind !== 'dynamic-import') return undefined
      const r = await b.resolve(a.path, { resolveDir: a.resolveDir, kind: 'import-statement' })
      if (r.errors.length) return { errors: r.errors }
      onDemand.add(rel(r.path))
      return { path: `${REST}:${rel(r.path)}`, external: true }
    })
  }
}
// `{ 'src/x.ts': () => require('./src/x.ts'), … }`: modules by file, each loaded on first ask.
const requireTable = (files) =>
  `{\n${files.map((f) => `  ${JSON.stringify(f)}: () => require(${JSON.stringify(`./${f}`)}),`).join('\n')}\n}`
const coreEntry = (register) => ({
  contents: `${register.length ? `require('rch:core-modules')(${requireTable(register)})\n` : ''}require('./src/main.ts')\n`,
  resolveDir: process.cwd(),
  sourcefile: 'core-entry.js',
  loader: 'js'
})
const first = await build({
  ...common,
  stdin: coreEntry([]),
  metafile: true,
  external: ['cpu-features', '*.node', ...EXTERNAL],
  plugins: [lazyImports]
})
const inCore = new Set(Object.keys(first.metafile.inputs).filter((f) => f !== 'core-entry.js'))
const shared = new Set()
const fromCore = {
  name: 'rch-from-core',
  setup(b) {
    b.onResolve({ filter: /^\./ }, async (a) => {
      if (a.pluginData === 'rch') return undefined
      const r = await b.resolve(a.path, { resolveDir: a.resolveDir, kind: a.kind, pluginData: 'rch' })
      if (r.errors.length) return { errors: r.errors }
      if (!inCore.has(rel(r.path))) return undefined
      shared.add(rel(r.path))
      return { path: `rch-core:${rel(r.path)}`, external: true }
    })
  }
}
const restOut = await build({
  ...common,
  stdin: {
    contents: `module.exports = ${requireTable([...onDemand].sort())}\n`,
    resolveDir: process.cwd(),
    sourcefile: 'rest-entry.js',
    loader: 'js'
  },
  outfile: 'dist/rest.js',
  metafile: true,
  sourcemap: 'external',
  sourcesContent: false,
  external: ['cpu-features', '*.node', ...EXTERNAL],
  plugins: [fromCore]
})
const twice = Object.keys(restOut.metafile.inputs).filter((f) => inCore.has(f))
if (twice.length) throw new Error(`build: in the core and in ${REST} both: ${twice.join(', ')}`)
chunks[REST] = ascii(restOut.outputFiles.find((f) => f.path.endsWith('.js')).text)
chunks[`${REST}.map`] = ascii(restOut.outputFiles.find((f) => f.path.endsWith('.map')).text)
if (chunks[REST].includes('__RCH_BUILD__'))
  throw new Error('build: the build id must be read from the core (src/build-id.ts), not the rest')

// The build id (src/build-id.ts, part of the agent socket's name) is a hash of everything built,
// taken with a placeholder of the same length in its place; the core is then built again with the
// id itself, so the same sources always give the same id and any change of code gives another.
const BUILD_ID_LENGTH = 12
const buildCore = async (id) => {
  const out = await build({
    ...common,
    stdin: coreEntry([...shared].sort()),
    outfile: 'dist/index.js',
    sourcemap: 'external',
    sourcesContent: false,
    external: ['cpu-features', '*.node', 'rch:core-modules', ...EXTERNAL],
    plugins: [lazyImports],
    define: { __RCH_BUILD__: JSON.stringify(id) }
  })
  return {
    js: ascii(out.outputFiles.find((f) => f.path.endsWith('.js')).text).replace(/\n$/, ''),
    map: JSON.parse(out.outputFiles.find((f) => f.path.endsWith('.map')).text)
  }
}
const placeholder = '0'.repeat(BUILD_ID_LENGTH)
const unstamped = await buildCore(placeholder)
const buildId = createHash('sha256').update(unstamped.js).update(JSON.stringify(chunks)).digest('hex').slice(0, BUILD_ID_LENGTH)
const { js: core, map: coreMap } = await buildCore(buildId)
if (core.split(JSON.stringify(buildId)).join(JSON.stringify(placeholder)) !== unstamped.js)
  throw new Error('build: the stamped core differs from the unstamped one in more than its build id')
const key = createHash('sha256').update(core).update(JSON.stringify(chunks)).digest('hex').slice(0, 16)

// Brotli: node reads all of the file on every start, the chunks included (its loader's UTF-8 read
// costs ~2.5 ms per MB here), and brotli makes them ~20 % smaller than gzip -9. Quality 10: 11 is
// 2 % smaller and takes 4 s more per build. RCH_BROTLI_QUALITY (0-11) is for builds whose size does
// not matter (a test that builds copies of the sources): quality 5 is 15 % larger and 20x faster to
// make; the build id hashes the code before compression, so it is the same at any quality.
const qualityText = process.env.RCH_BROTLI_QUALITY
if (qualityText !== undefined && !/^(?:[0-9]|1[01])$/.test(qualityText)) {
  console.error(`build: RCH_BROTLI_QUALITY must be an integer 0-11, not ${JSON.stringify(qualityText)}`)
  process.exit(2)
}
const quality = qualityText === undefined ? 10 : Number(qualityText)
const brotli = (text) =>
  brotliCompressSync(Buffer.from(text, 'latin1'), {
    params: { [zlibConstants.BROTLI_PARAM_QUALITY]: quality, [zlibConstants.BROTLI_PARAM_SIZE_HINT]: text.length }
  }).toString('base64')
const packed = Object.fromEntries(Object.entries(chunks).map(([n, c]) => [n, brotli(c)]))
// Each packed chunk's digest, in the loader's own text: a chunk read from the file later is taken
// only if it is the one this process's code was built with, whatever happened to the file meanwhile.
const DIGEST_LENGTH = 32
const digests = Object.fromEntries(
  Object.entries(packed).map(([n, p]) => [n, createHash('sha256').update(p, 'latin1').digest('hex').slice(0, DIGEST_LENGTH)])
)

// The marker is split in the loader's own text so that only the real one is found.
const CORE_MARK = '(function (require) { // rch-core'
const head = `#!/usr/bin/env node
// remote-container-hooks ${key}: a loader, the core bundle as plain JavaScript, the lazy libraries.
(function (load) {
  // Whatever goes wrong while loading (this loader, or a bundled library on its first require())
  // ends as one workflow error and the internal-error code: nothing can work without it, and code
  // that catches errors around a require() must not turn a broken install into another message.
  function fatal(what, e) {
    let m;
    try { m = String((e && e.message) || e); } catch (e2) { m = 'unknown error'; }
    // As main.ts's fatal(): stdout only when run as the runner's hook; a command's stdout is data.
    (process.argv[2] === undefined ? process.stdout : process.stderr).write('::error::remote-container-hooks could not load ' + what + '(' + m.replace(/%/g, '%25').replace(/\\r/g, '%0D').replace(/\\n/g, '%0A') + ')\\n');
    process.exit(70);
  }
  try {
    return load(fatal);
  } catch (e) {
    fatal('', e);
  }
})(function (fatal) {
  'use strict';
  const fs = require('fs'), os = require('os'), path = require('path');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const dir = path.join(os.tmpdir(), 'rch-' + uid);
  let usable;
  // The folders on the way to the cache folder, as src/private-fs.ts checks them (checkAncestors):
  // each owned by root or this user and writable by all only when sticky, the path resolved by hand
  // through every symlink (each owned by root or this user). Another user who may rename an entry
  // on the way could put a folder of theirs in place of ours after the check below, and every
  // later read of a cache file would then run their code.
  function placeSafe(p) {
    const ok = (st) => (st.uid === 0 || st.uid === uid) && (!(st.mode & 0o002) || (st.mode & 0o1000) !== 0);
    const todo = path.resolve(path.dirname(p)).split('/').filter(Boolean);
    let cur = '/', links = 0;
    if (!ok(fs.lstatSync(cur))) return false;
    while (todo.length) {
      const name = todo.shift();
      if (name === '.') continue;
      if (name === '..') { cur = path.dirname(cur); continue; }
      const next = path.join(cur, name);
      const st = fs.lstatSync(next);
      if (st.isSymbolicLink()) {
        if (++links > 40 || (st.uid !== 0 && st.uid !== uid)) return false;
        const target = fs.readlinkSync(next);
        if (target.startsWith('/')) cur = '/';
        todo.unshift(...target.split('/').filter(Boolean));
        continue;
      }
      if (!st.isDirectory() || !ok(st)) return false;
      cur = next;
    }
    return true;
  }
  // A TMPDIR inside the runner's work folder (RUNNER_TEMP's parent), which steps copy to and from
  // the VM, could bring back a cache the job wrote: no cache there (the hook then refuses to run).
  function inWorkFolder() {
    const temp = process.env.RUNNER_TEMP;
    if (!temp || !path.isAbsolute(temp)) return false;
    const real = (p) => { try { return fs.realpathSync(p); } catch (e) { return path.resolve(p); } };
    const work = [path.resolve(path.dirname(temp)), real(path.dirname(temp))];
    const here = [path.resolve(dir), path.join(real(path.dirname(dir)), path.basename(dir))];
    return here.some((h) => work.some((w) => h === w || h.startsWith(w + '/')));
  }
  function cacheUsable() {
    if (usable !== undefined) return usable;
    usable = false;
    try {
      if (inWorkFolder()) return usable;
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const st = fs.lstatSync(dir);
      // Only a folder we own and nobody else can write, in a place nobody else can change, may hold code we run.
      usable = st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0 && placeSafe(dir);
    } catch (e) { /* no cache: compile normally */ }
    return usable;
  }
  // V8 rejects a code cache made under other flags (the agent runs with its own heap flags) or by
  // another V8 (the runner's own node runs the hook, a system node may run reap from a timer), so
  // each V8 and set of node flags keeps its own file: one shared file was rewritten by every other.
  let flv;
  function flavor() {
    if (flv !== undefined) return flv;
    // A preloaded module (-r) does not change what V8 accepts; NODE_OPTIONS may.
    const flags = process.execArgv.filter((a, i, all) => !/^(-r|--require)(=|$)/.test(a) && !/^(-r|--require)$/.test(all[i - 1] || ''));
    if (process.env.NODE_OPTIONS) flags.push('NODE_OPTIONS=' + process.env.NODE_OPTIONS);
    flags.push('v8=' + process.versions.v8);
    let h = 0x811c9dc5;
    for (const c of Buffer.from(flags.join('\\0'), 'utf8')) h = Math.imul(h ^ c, 0x01000193) >>> 0;
    return (flv = '-f' + h.toString(16).padStart(8, '0'));
  }
  let swept = false;
  function compile(name, source) {
    const vm = require('vm'), Module = require('module');
    const file = path.join(dir, 'code-${key}-' + name.replace(/[^a-z0-9]+/gi, '_') + flavor() + '.bin');
    let cached;
    if (cacheUsable()) { try { cached = fs.readFileSync(file); } catch (e) { /* first run */ } }
    // Named for what it is: a library bundled into this file, not a file of its own.
    const script = new vm.Script(Module.wrap(source), { filename: 'bundled:' + name, cachedData: cached });
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
    script.runInThisContext().call(m.exports, m.exports, lazyRequire, m, __filename, __dirname);
    return m.exports;
  }
  // The file is read only when a library is first needed; lines are found by their markers, so
  // CRLF line endings or an added line do not move anything.
  let table = null;
  // Read from the file this process was started from, opened now: a file replaced later (an
  // upgrade, a rebuild) must not lend its chunks to this process's code. The name may already point
  // to another build by now: the header's key says whose file it is.
  let selfFd = null;
  try { selfFd = fs.openSync(__filename, 'r'); } catch (e) { /* read by name when needed */ }
  // A file written over in place (not replaced by a rename) changes under the open descriptor: a
  // chunk is taken only if its digest is the one built into this loader (see chunk()).
  const digests = ${JSON.stringify(digests)};
  const replaced = () => new Error(__filename + ' was replaced by another build while this command ran (run it again)');
  // Up to length bytes of the open file from position (fewer only at its end).
  const readAt = (position, length) => {
    const b = Buffer.allocUnsafe(length);
    let at = 0, n;
    while (at < length && (n = fs.readSync(selfFd, b, at, length - at, position + at)) > 0) at += n;
    return b.subarray(0, at);
  };
  const self = () => {
    let t;
    if (selfFd === null) t = fs.readFileSync(__filename, 'latin1');
    else t = readAt(0, fs.fstatSync(selfFd).size).toString('latin1');
    if (!t.slice(0, 512).includes('remote-container-hooks ' + '${key}' + ':')) throw replaced();
    return t;
  };
  // id -> where the library's text is in this file ([offset, length], read again from the open file
  // when it is asked for), or, when the file could not be kept open, a copy of the text. Never a
  // slice of the file's text: V8 keeps the string a slice was cut from alive, and that is the whole
  // file (~1 MB of every hook's and agent's heap, for the life of the process).
  function chunk(id) {
    if (!table) {
      table = {};
      const t = self();
      const from = t.lastIndexOf('/*RCH-' + 'CHUNKS'), to = t.lastIndexOf('RCH-CHUNKS' + '*/');
      if (from < 0 || to < from) throw new Error('the bundled libraries are missing from ' + __filename);
      for (let p = t.indexOf('\\n', from) + 1; p > 0 && p < to; ) {
        let e = t.indexOf('\\n', p);
        if (e < 0 || e > to) e = to;
        const sp = t.indexOf(' ', p);
        if (sp > p && sp < e) {
          let s = sp + 1, z = e;
          while (s < z && t.charCodeAt(s) <= 32) s++;
          while (z > s && t.charCodeAt(z - 1) <= 32) z--;
          table[Buffer.from(t.slice(p, sp), 'latin1').toString('latin1')] = selfFd === null ? Buffer.from(t.slice(s, z), 'latin1') : [s, z - s];
        }
        p = e + 1;
      }
    }
    const at = table[id];
    if (at === undefined) throw new Error('the bundled library ' + id + ' is missing from ' + __filename);
    const text = Array.isArray(at) ? readAt(at[0], at[1]) : at;
    // Content, not the file's metadata: a rename over the name, a chmod or a hard link leave the
    // bytes this process needs as they were; a write over them (even of the same size and mtime) does not.
    if (require('crypto').createHash('sha256').update(text).digest('hex').slice(0, ${DIGEST_LENGTH}) !== digests[id]) throw replaced();
    return require('zlib').brotliDecompressSync(Buffer.from(text.toString('latin1'), 'base64')).toString('latin1');
  }
  const loaded = {};
  // Each AWS client's part of the one AWS chunk; the chunks by id.
  const awsParts = ${JSON.stringify(AWS)};
  const chunkIds = ${JSON.stringify([AWS_CHUNK, ...LIBS, REST])};
  // The core's own modules, for the rest (see rch-rest above); registered before main.ts runs.
  let coreModules = {};
  function lazyRequire(id) {
    if (id in loaded) return loaded[id];
    if (id === 'rch:core-modules') return (m) => { coreModules = m; };
    if (id.startsWith('rch-core:')) {
      const get = coreModules[id.slice(9)];
      if (!get) fatal('a part of itself ', new Error(id + ' is not in the core'));
      return (loaded[id] = get());
    }
    if (id.startsWith('${REST}:')) {
      const rest = lazyRequire('${REST}');
      const get = rest[id.slice(${REST.length + 1})];
      if (!get) fatal('a part of itself ', new Error(id + ' is not in the file'));
      return (loaded[id] = get());
    }
    if (Object.prototype.hasOwnProperty.call(awsParts, id)) return (loaded[id] = lazyRequire('${AWS_CHUNK}')[awsParts[id]]);
    if (chunkIds.includes(id)) {
      try {
        return (loaded[id] = compile(id, chunk(id)));
      } catch (e) {
        fatal(id === '${REST}' ? 'a part of itself ' : 'the bundled library ' + id + ' ', e);
      }
    }
    // Node's own modules only. Anything else (ssh2's optional native parts, the AWS SDK's optional
    // CRT) would be looked up in node_modules folders, HOME/.node_modules and NODE_PATH, places
    // outside this file that a job may be able to write: they stay missing, as the libraries allow.
    if (require('module').isBuiltin(id)) return require(id);
    const e = new Error("Cannot find module '" + id + "': remote-container-hooks loads nothing from outside its file");
    e.code = 'MODULE_NOT_FOUND';
    throw e;
  }
  lazyRequire.resolve = require.resolve;
  lazyRequire.cache = require.cache;

  // Stack frames in the core name src/ files and lines. The map (last line of the file) is read only
  // when a trace is formatted; node's own --enable-source-maps does the same when it is on.
  let smap;
  function sourceMap() {
    if (smap !== undefined) return smap;
    smap = null;
    try {
      const t = self();
      const url = 'sourceMappingURL=data:application/json;base64,';
      const payload = JSON.parse(Buffer.from(t.slice(t.lastIndexOf(url) + url.length).trim(), 'base64').toString('utf8'));
      // Lines added or removed above the core move it; its marker says by how much.
      const at = t.indexOf('(function (require) { // rch-' + 'core');
      if (at < 0) return smap;
      const shift = t.slice(0, at).split('\\n').length - @CORE_LINE@;
      smap = { map: new (require('module').SourceMap)(payload), shift };
    } catch (e) { /* no map: plain frames */ }
    return smap;
  }
  // The rest's map is in the chunk table; its lines are the chunk's own (Module.wrap adds no line).
  let rmap;
  function restMap() {
    if (rmap !== undefined) return rmap;
    rmap = null;
    try {
      rmap = { map: new (require('module').SourceMap)(JSON.parse(chunk('${REST}.map'))), shift: 0 };
    } catch (e) { /* no map: plain frames */ }
    return rmap;
  }
  function frame(f) {
    const plain = String(f);
    try {
      const file = f.getFileName();
      const s = file === __filename ? sourceMap() : file === 'bundled:${REST}' ? restMap() : null;
      if (!s) return plain;
      const line = f.getLineNumber(), col = f.getColumnNumber();
      const e = s.map.findEntry(line - 1 - s.shift, col - 1);
      // findEntry falls back to an earlier line; a frame in the loader has no line of its own.
      if (!e || !e.originalSource || e.generatedLine !== line - 1 - s.shift) return plain;
      const where = e.originalSource.replace(/^(\\.\\.\\/)+/, '') + ':' + (e.originalLine + 1) + ':' + (e.originalColumn + 1);
      return plain.replace(file + ':' + line + ':' + col, where);
    } catch (e) {
      return plain;
    }
  }
  if (!process.sourceMapsEnabled) {
    Error.prepareStackTrace = (err, frames) => {
      let top;
      try { top = Error.prototype.toString.call(err); } catch (e) { top = '<error>'; }
      return top + frames.map((f) => '\\n    at ' + frame(f)).join('');
    };
  }
  ${CORE_MARK}
`
const CORE_LINE = head.split('\n').length - 1
const loaderHead = head.replace('@CORE_LINE@', String(CORE_LINE))
const map = { ...coreMap, file: 'index.js', mappings: ';'.repeat(CORE_LINE) + coreMap.mappings }
const out = `${loaderHead}${core}
  })(lazyRequire);
});
/*RCH-CHUNKS
${Object.entries(packed)
  .map(([n, p]) => `${n} ${p}`)
  .join('\n')}
RCH-CHUNKS*/
//# sourceMappingURL=data:application/json;base64,${Buffer.from(JSON.stringify(map)).toString('base64')}
`
mkdirSync('dist', { recursive: true })
// Replaced in one step: a hook started meanwhile (tests build while others run) reads the old file
// or the new one, never an empty or half-written one.
const tmp = `dist/index.js.${process.pid}.tmp`
writeFileSync(tmp, out, { mode: 0o755 })
renameSync(tmp, 'dist/index.js')
const kib = (s) => (Buffer.byteLength(s) / 1024).toFixed(0)
console.log(
  `dist/index.js ${kib(out)} KiB (core ${kib(core)} KiB; ${Object.entries(chunks)
    .map(([n, c]) => `${n} ${kib(c)} KiB`)
    .join(', ')}; source map ${kib(JSON.stringify(map))} KiB; build ${buildId})`
)
