// Modules planted where node looks them up: next to the installed file (node_modules), in HOME
// (.node_modules, .node_libraries: a runner whose _work is its HOME has a repository folder there)
// and in NODE_PATH. The bundle's libraries ask for optional modules that are not in the file
// (ssh2's cpu-features and native crypto); node's lookup would run a planted one as the runner user.
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

const scratch = mkdtempSync(join(tmpdir(), 'rch-planted-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

const install = join(scratch, 'opt')
const home = join(scratch, 'home')
const nodePath = join(scratch, 'node-path')
const marker = (where: string): string => join(scratch, `ran-${where}`)

/** A cpu-features (and the native crypto ssh2 asks for) that leaves a marker when it is loaded. */
function plant(folder: string, where: string): void {
  const dir = join(folder, 'cpu-features')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'index.js'), `require('fs').writeFileSync(${JSON.stringify(marker(where))}, 'x'); module.exports = () => ({})\n`)
}

beforeAll(() => {
  mkdirSync(install, { recursive: true })
  copyFileSync(resolve(__dirname, '..', '..', 'dist', 'index.js'), join(install, 'index.js'))
  plant(join(install, 'node_modules'), 'install')
  plant(join(home, '.node_modules'), 'home')
  plant(nodePath, 'node-path')
  // A key for the configuration check, which parses it with ssh2 (and so loads ssh2 and its options).
  const key = join(scratch, 'id_ed25519')
  expect(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status).toBe(0)
  // any key will do as the pin: nothing connects
  writeFileSync(join(scratch, 'known_hosts'), `[127.0.0.1]:9 ${readFileSync(`${key}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`)
  writeFileSync(
    join(scratch, 'config.json'),
    JSON.stringify({
      provider: {
        kind: 'static',
        hosts: [{ host: '127.0.0.1', port: 9, user: 'ci', identityFile: key, knownHostsFile: join(scratch, 'known_hosts') }]
      },
      remote: { workRoot: '/tmp/rch-planted' }
    })
  )
})

const env = { PATH: '/usr/bin:/bin', HOME: home, NODE_PATH: nodePath }

test('positive control: node itself finds the planted module from the installed file’s folder, HOME and NODE_PATH', () => {
  for (const where of ['install', 'home', 'node-path']) rmSync(marker(where), { force: true })
  writeFileSync(join(install, 'probe.js'), "require('cpu-features')\n")
  // the install folder's node_modules comes first; without it, HOME's; then NODE_PATH's
  expect(spawnSync(process.execPath, [join(install, 'probe.js')], { env }).status).toBe(0)
  expect(existsSync(marker('install'))).toBe(true)
  rmSync(join(install, 'node_modules'), { recursive: true })
  try {
    expect(spawnSync(process.execPath, [join(install, 'probe.js')], { env }).status).toBe(0)
    expect(existsSync(marker('node-path')) || existsSync(marker('home'))).toBe(true)
  } finally {
    plant(join(install, 'node_modules'), 'install')
    rmSync(join(install, 'probe.js'))
  }
})

test('the bundle loads none of them: ssh2 runs without its optional parts', () => {
  for (const where of ['install', 'home', 'node-path']) rmSync(marker(where), { force: true })
  const r = spawnSync(process.execPath, [join(install, 'index.js'), 'check-config', join(scratch, 'config.json')], {
    env,
    encoding: 'utf8'
  })
  expect({ code: r.status, err: r.stderr }).toEqual({ code: 0, err: '' })
  expect(r.stdout).toMatch(/: valid \(provider static, 1 host/)
  for (const where of ['install', 'home', 'node-path']) expect({ where, ran: existsSync(marker(where)) }).toEqual({ where, ran: false })
})
