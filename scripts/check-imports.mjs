// The import structure of src/: no import circle, and no module importing a layer above its own.
// The layers are written down in docs/architecture.md ("Import layers"); keep the two in step.
//
//   node scripts/check-imports.mjs [SRC_DIR]     (default: src/ next to this script)
//
// Every import counts, type-only and dynamic ones too: a type import still ties the importer to
// the module's shape, and a lazy import() is still a dependency.
// Exit 0 with one summary line, or 1 with one line per problem.
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, posix, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

// Lowest first. A module may import its own layer or any layer below it.
// Folders name every module inside them; other modules are listed by path.
export const LAYERS = [
  {
    name: 'base',
    modules: [
      'errors.ts',
      'paths.ts',
      'input-rules.ts',
      'tools.ts',
      'labels.ts',
      'sha256.ts',
      'mono-clock.ts',
      'retry.ts',
      'cancel.ts',
      'private-fs.ts',
      'shlex.ts',
      'outcome.ts',
      'runner-env.ts',
      'log.ts',
      'secret-forms.ts',
      'mask-text.ts',
      'workflow-commands.ts',
      'did-you-mean.ts',
      'near-miss.ts',
      'usage.ts',
      'build-id.ts',
      'worker-process.ts',
      'runner-host.ts',
      'file-lock.ts',
      'gc-policy.ts',
      'line-start.ts',
      'line-tail.ts',
      'aws-error.ts'
    ]
  },
  { name: 'schemas', modules: ['protocol.ts', 'config.ts'] },
  { name: 'fleet', modules: ['fleet/'] },
  { name: 'remote', modules: ['remote/'] },
  { name: 'transfer', modules: ['sync/', 'docker/'] },
  { name: 'context', modules: ['context.ts'] },
  { name: 'providers', modules: ['providers/'] },
  { name: 'job', modules: ['session.ts', 'agent-client.ts', 'state.ts', 'job.ts'] },
  { name: 'prepare', modules: ['prepare/'] },
  { name: 'handlers', modules: ['handlers/'] },
  { name: 'ops', modules: ['ops/'] },
  { name: 'entry', modules: ['dispatch.ts', 'execute.ts', 'main.ts'] }
]

// Imports that break the rules today, each with why it is tolerated. The check ignores exactly
// these edges and fails once one of them is gone, so the list only ever shrinks.
export const KNOWN_EXCEPTIONS = []

export function layerOf(mod, layers = LAYERS) {
  for (let i = 0; i < layers.length; i++) {
    for (const m of layers[i].modules) {
      if (m.endsWith('/') ? mod.startsWith(m) : mod === m) return i
    }
  }
  return -1
}

function listModules(srcDir, sub = '') {
  const out = []
  for (const e of readdirSync(join(srcDir, sub), { withFileTypes: true })) {
    const rel = sub ? `${sub}/${e.name}` : e.name
    if (e.isDirectory()) out.push(...listModules(srcDir, rel))
    else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel)
  }
  return out
}

// Relative specifier -> module path under src/ (posix), or null when no such module exists.
function resolveSpec(from, spec, known) {
  const base = posix.normalize(posix.join(posix.dirname(from), spec))
  for (const cand of [base, `${base}.ts`, `${base}/index.ts`]) if (known.has(cand)) return cand
  return null
}

// Every module specifier in a file, from a full parse (a light scan misreads code after some
// regular expression literals and misses the imports there).
function specifiers(file) {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const found = []
  const literal = (node) => node && ts.isStringLiteralLike(node) && found.push(node.text)
  const walk = (node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) literal(node.moduleSpecifier)
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference))
      literal(node.moduleReference.expression)
    else if (
      ts.isCallExpression(node) &&
      (node.expression.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(node.expression) && node.expression.text === 'require'))
    )
      literal(node.arguments[0])
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) literal(node.argument.literal)
    ts.forEachChild(node, walk)
  }
  walk(source)
  return found
}

export function readGraph(srcDir) {
  const modules = listModules(srcDir).sort()
  const known = new Set(modules)
  const edges = new Map(modules.map((m) => [m, new Set()]))
  const problems = []
  for (const mod of modules) {
    for (const fileName of specifiers(join(srcDir, mod))) {
      if (!fileName.startsWith('./') && !fileName.startsWith('../')) continue
      // package.json (the version): data above src/, not a module of any layer
      if (posix.normalize(posix.join(posix.dirname(mod), fileName)) === '../package.json') continue
      const target = resolveSpec(mod, fileName, known)
      if (target === null) problems.push(`unresolved import: ${mod} imports '${fileName}'`)
      else edges.get(mod).add(target)
    }
  }
  return { modules, edges, problems }
}

// Tarjan's strongly connected components; a component of more than one module, or a module
// importing itself, is an import circle.
function circles(modules, edges) {
  let next = 0
  const index = new Map()
  const low = new Map()
  const stack = []
  const onStack = new Set()
  const found = []
  const visit = (v) => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    onStack.add(v)
    for (const w of edges.get(v)) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v), low.get(w)))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)))
    }
    if (low.get(v) === index.get(v)) {
      const comp = []
      let w
      do {
        w = stack.pop()
        onStack.delete(w)
        comp.push(w)
      } while (w !== v)
      if (comp.length > 1 || edges.get(v).has(v)) found.push(comp.sort())
    }
  }
  for (const m of modules) if (!index.has(m)) visit(m)
  return found
}

export function checkImports(srcDir, { layers = LAYERS, exceptions = KNOWN_EXCEPTIONS } = {}) {
  const { modules, edges, problems } = readGraph(srcDir)
  for (const ex of exceptions) {
    if (edges.get(ex.from)?.has(ex.to)) edges.get(ex.from).delete(ex.to)
    else problems.push(`stale known exception: ${ex.from} no longer imports ${ex.to}; remove it from KNOWN_EXCEPTIONS`)
  }
  let count = 0
  for (const mod of modules) {
    const own = layerOf(mod, layers)
    if (own < 0) {
      problems.push(`module in no layer: ${mod}; add it to LAYERS in scripts/check-imports.mjs and to docs/architecture.md`)
      continue
    }
    for (const target of edges.get(mod)) {
      count++
      const theirs = layerOf(target, layers)
      if (theirs > own) problems.push(`upward import: ${mod} (${layers[own].name}) imports ${target} (${layers[theirs].name})`)
    }
  }
  for (const comp of circles(modules, edges)) problems.push(`import circle among: ${comp.join(', ')}`)
  return { modules: modules.length, imports: count, exceptions: exceptions.length, problems }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const srcDir = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'src'))
  const r = checkImports(srcDir)
  const where = relative(process.cwd(), srcDir).split(sep).join('/') || '.'
  if (r.problems.length > 0) {
    for (const p of r.problems) console.log(`check-imports: ${p}`)
    console.log(`check-imports: ${r.problems.length} problem(s) in ${where}`)
    process.exit(1)
  }
  console.log(`check-imports: ok (${where}: ${r.modules} modules, ${r.imports} imports, ${r.exceptions} known exceptions)`)
}
