// prepare_job's plan, without any remote: the runner's input as the schema parses it, in; what
// would be created, or the one input error, out.
import { PrepareJobArgsSchema } from '../../src/protocol'
import { planJob, containersOf, type PlanFacts } from '../../src/prepare/plan'
import { InputError } from '../../src/errors'
import { rmSync } from 'node:fs'
import { planFacts } from './_helpers'
import { LABEL_JOB, LABEL_OWNER, LABEL_RUNNER } from '../../src/labels'

const WORK = '/home/runner/_work'
const EXT = '/home/runner/externals'
const OWNER = '0123456789abcdef'
const JOB = 'fedcba9876543210'
const ROOT = `/srv/rch/jobs/${OWNER}-${JOB}`

const facts = planFacts

const mount = (src: string | null, target: string, readOnly = false) => ({ sourceVolumePath: src, targetVolumePath: target, readOnly })
const container = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ image: 'node:20', environmentVariables: {}, ...over })
const jobContainer = (over: Record<string, unknown> = {}) =>
  container({
    systemMountVolumes: [
      mount('/var/run/docker.sock', '/var/run/docker.sock'),
      mount(WORK, '/__w'),
      mount(EXT, '/__e', true),
      mount(`${WORK}/_temp`, '/__w/_temp'),
      mount(`${WORK}/_temp/_github_home`, '/github/home')
    ],
    ...over
  })
const plan = (args: Record<string, unknown>, f: Partial<PlanFacts> = {}) => planJob(PrepareJobArgsSchema.parse(args), facts(f))
const inputError = (fn: () => unknown): string => {
  try {
    fn()
  } catch (e) {
    if (e instanceof InputError) return e.message
    throw e
  }
  throw new Error('no InputError')
}

describe('planJob', () => {
  it("a repository named after one of the runner's own folders in _work is refused before anything is made, naming GITHUB_WORKSPACE (control: any other name plans)", () => {
    // The runner names a repository's folder after the repository alone: `o/_PipelineMapping` works in
    // _work/_PipelineMapping, and its pull-back could rewrite where other repositories' workspaces are.
    for (const name of ['_PipelineMapping', '_actions', '_temp', '_tool'])
      expect(inputError(() => plan({ container: jobContainer(), services: [] }, { workspace: `${WORK}/${name}/${name}` }))).toMatch(
        new RegExp(`^GITHUB_WORKSPACE: the repository's folder ${name} is one of the runner's own folders in _work`)
      )
    for (const name of ['repo', '_pipelinemapping', '_temp2', 'tool', '_diag'])
      expect(plan({ container: jobContainer(), services: [] }, { workspace: `${WORK}/${name}/${name}` })?.repoRel).toBe(name)
  })

  it('nothing to start: no plan', () => {
    expect(plan({ container: null, services: [] })).toBeNull()
  })

  it("a service whose image is called job gets neither the job container's alias nor its name", () => {
    const p = plan({ container: jobContainer(), services: [container({ image: 'acme/job:1' })] })!
    expect(containersOf(p).map((c) => [c.role, c.spec.name, c.spec.aliases])).toEqual([
      ['service', `rch-${JOB}-job-1`, ['job-1']],
      ['job', `rch-${JOB}-job`, ['job']]
    ])
  })

  it("a service's contextName is an alias only while no other container answers to it", () => {
    const p = plan({
      container: jobContainer(),
      services: [
        container({ image: 'postgres:16', contextName: 'Redis' }),
        container({ image: 'redis:7', contextName: 'cache' }),
        container({ image: 'nginx', contextName: 'JOB' }),
        container({ image: 'busybox', contextName: 'cache' })
      ]
    })!
    expect(containersOf(p).map((c) => c.spec.aliases)).toEqual([
      ['postgres', 'postgres-1'],
      ['redis', 'redis-1', 'cache'],
      ['nginx', 'nginx-1'],
      ['busybox', 'busybox-1'],
      ['job']
    ])
  })

  it('a job container and two services: names, aliases, network, labels, start order', () => {
    const p = plan({
      container: jobContainer(),
      services: [container({ image: 'redis:7', contextName: 'cache' }), container({ image: 'ghcr.io/o/redis:6' })]
    })!
    expect(p.network).toBe(`rch-${JOB}`)
    expect(p.jobRoot).toBe(ROOT)
    expect(p.labels).toEqual({ [LABEL_OWNER]: OWNER, [LABEL_JOB]: JOB, [LABEL_RUNNER]: 'runner-1' })
    expect(containersOf(p).map((c) => [c.role, c.what, c.spec.name, c.spec.aliases])).toEqual([
      ['service', 'redis', `rch-${JOB}-redis`, ['redis', 'redis-1', 'cache']],
      ['service', 'redis-2', `rch-${JOB}-redis-2`, ['redis-2']],
      ['job', 'job container', `rch-${JOB}-job`, ['job']]
    ])
    for (const c of containersOf(p)) {
      expect(c.spec.network).toBe(p.network)
      expect(c.spec.labels).toEqual({ [LABEL_OWNER]: OWNER, [LABEL_JOB]: JOB, [LABEL_RUNNER]: 'runner-1' })
    }
  })

  it('the job container idles on tail unless the runner gives an entrypoint', () => {
    const idle = plan({ container: jobContainer({ entryPointArgs: ['ignored'] }) })!.job!.spec
    expect([idle.entrypoint, idle.args]).toEqual(['tail', ['-f', '/dev/null']])
    const own = plan({ container: jobContainer({ entryPoint: 'sh', entryPointArgs: ['-c', 'echo a b'] }) })!.job!.spec
    expect([own.entrypoint, own.args]).toEqual(['sh', ['-c', 'echo a b']])
  })

  it('maps mounts to the job folder, the externals copy, the VM socket, named and anonymous volumes', () => {
    const p = plan({
      container: jobContainer({
        userMountVolumes: [mount('cache-vol', '/cache'), mount(null, '/anon'), mount(`${WORK}/repo/repo/data`, '/data', true)]
      })
    })!
    expect(p.job!.spec.mounts).toEqual([
      { source: 'cache-vol', target: '/cache', readOnly: false },
      { source: null, target: '/anon', readOnly: false },
      { source: `${ROOT}/w/repo/repo/data`, target: '/data', readOnly: true },
      { source: '/var/run/docker.sock', target: '/var/run/docker.sock', readOnly: false },
      { source: `${ROOT}/w`, target: '/__w', readOnly: false },
      { source: '/srv/rch/externals/aaaaaaaaaaaaaaaa', target: '/__e', readOnly: true, existing: true },
      { source: `${ROOT}/w/_temp`, target: '/__w/_temp', readOnly: false },
      { source: `${ROOT}/w/_temp/_github_home`, target: '/github/home', readOnly: false }
    ])
    expect(p.job!.needsCopy).toBe(true)
    expect(p.volumes).toEqual(['cache-vol'])
    expect(p.externals).toEqual({ host: EXT, remote: '/srv/rch/externals/aaaaaaaaaaaaaaaa' })
    expect(p.layout).toEqual({
      hostWork: WORK,
      remoteWork: `${ROOT}/w`,
      hostExternals: EXT,
      remoteExternals: '/srv/rch/externals/aaaaaaaaaaaaaaaa',
      dockerSocket: '/var/run/docker.sock'
    })
  })

  it('a mount over / or two mounts at one container path fail at planning, naming the field (docker would refuse them only at create)', () => {
    expect(inputError(() => plan({ container: jobContainer({ userMountVolumes: [mount('vol', '/')] }) }))).toBe(
      "args.container.userMountVolumes.0.targetVolumePath: a volume cannot be mounted over the container's root /"
    )
    expect(inputError(() => plan({ container: jobContainer({ userMountVolumes: [mount(`${WORK}/repo/repo/x`, '/__w/')] }) }))).toBe(
      'args.container.systemMountVolumes.1.targetVolumePath: /__w is already the target of args.container.userMountVolumes.0.targetVolumePath with another source or mode (docker would refuse a duplicate mount point)'
    )
    expect(
      inputError(() => plan({ container: null, services: [container({ userMountVolumes: [mount('va', '/d'), mount('vb', '/x/../d')] })] }))
    ).toMatch(
      /^args\.services\.0\.userMountVolumes\.1\.targetVolumePath: \/d is already the target of args\.services\.0\.userMountVolumes\.0/
    )
    // the runner's own socket mount given again as it is: one mount, as docker takes it
    const again = plan({ container: jobContainer({ userMountVolumes: [mount('/var/run/docker.sock', '/var/run/docker.sock')] }) })!
    expect(again.job!.spec.mounts.filter((m) => m.target === '/var/run/docker.sock')).toEqual([
      { source: '/var/run/docker.sock', target: '/var/run/docker.sock', readOnly: false }
    ])
    expect(
      inputError(() =>
        plan({ container: jobContainer({ userMountVolumes: [mount('/var/run/docker.sock', '/var/run/docker.sock', true)] }) })
      )
    ).toMatch(/userMountVolumes\.0\.targetVolumePath with another source or mode/)
    // control: the same path in two different containers is fine
    expect(
      plan({
        container: null,
        services: [container({ userMountVolumes: [mount('va', '/d')] }), container({ userMountVolumes: [mount('vb', '/d')] })]
      })
    ).not.toBeNull()
  })

  it('a bind into the externals copy is always read-only: the copy is shared by the jobs on the VM and reused (control: a workspace bind stays writable)', () => {
    const p = plan({
      container: jobContainer({ userMountVolumes: [mount(`${EXT}/node20`, '/e', false), mount(`${WORK}/repo/repo/data`, '/data', false)] })
    })!
    expect(p.job!.spec.mounts.slice(0, 2)).toEqual([
      { source: '/srv/rch/externals/aaaaaaaaaaaaaaaa/node20', target: '/e', readOnly: true, existing: true },
      { source: `${ROOT}/w/repo/repo/data`, target: '/data', readOnly: false }
    ])
  })

  it('a container binding the job folder or the externals needs the copy first', () => {
    const p = plan({
      container: null,
      services: [
        container({ userMountVolumes: [mount(`${WORK}/repo/repo/conf`, '/conf')] }),
        container({ userMountVolumes: [mount(`${WORK}`, '/w')] })
      ]
    })!
    expect(p.services.map((s) => s.needsCopy)).toEqual([true, true])
    const withExt = plan({ container: jobContainer({ systemMountVolumes: [mount(EXT, '/__e', true)] }) })!
    expect(withExt.job!.needsCopy).toBe(true)
  })

  it('a service mounting only a named volume does not need the copy; the VM socket follows remote.dockerSocket', () => {
    const p = plan(
      {
        container: null,
        services: [
          container({
            image: 'redis:7',
            userMountVolumes: [mount('v1', '/data')],
            systemMountVolumes: [mount('/var/run/docker.sock', '/s')]
          })
        ]
      },
      { dockerSocket: '/run/user/1000/docker.sock' }
    )!
    expect(p.services[0].needsCopy).toBe(false)
    expect(p.services[0].spec.mounts[1]).toEqual({ source: '/run/user/1000/docker.sock', target: '/s', readOnly: false })
    expect(p.externals).toBeNull()
    expect(p.job).toBeNull()
  })

  it("env: the runner's values plus GITHUB_ACTIONS, and CI unless set", () => {
    const p = plan({
      container: jobContainer({ environmentVariables: { A: '1', CI: 'false' } }),
      services: [container({ environmentVariables: { B: '2' } })]
    })!
    expect(p.job!.spec.env).toEqual({ A: '1', CI: 'false', GITHUB_ACTIONS: 'true' })
    expect(p.services[0].spec.env).toEqual({ B: '2', GITHUB_ACTIONS: 'true', CI: 'true' })
  })

  it('createOptions are split as the shell would, ports and registry are kept', () => {
    const registry = { username: 'u', password: 'p', serverUrl: 'ghcr.io' }
    const p = plan({
      container: null,
      services: [container({ createOptions: `--health-cmd "redis-cli ping" --label 'a b=c'`, portMappings: ['6379', '8080:80'], registry })]
    })!
    expect(p.services[0].spec.createOptions).toEqual(['--health-cmd', 'redis-cli ping', '--label', 'a b=c'])
    expect(p.services[0].spec.ports).toEqual(['6379', '8080:80'])
    expect(p.services[0].registry).toEqual(registry)
  })

  it('first-copy roots: _temp, _actions, _tool with sync.toolCache, and the repository', () => {
    expect(plan({ container: jobContainer() })!.copyRoots).toEqual(['_temp', '_actions', 'repo'])
    expect(plan({ container: jobContainer() }, { toolCache: true })!.copyRoots).toEqual(['_temp', '_actions', '_tool', 'repo'])
    expect(plan({ container: jobContainer() }, { workspace: '/elsewhere' })!.repoRel).toBeNull()
  })

  it('is pure: the same input gives the same plan, and the input is not changed', () => {
    const args = PrepareJobArgsSchema.parse({ container: jobContainer(), services: [container({ image: 'redis:7' })] })
    const copy = JSON.parse(JSON.stringify(args))
    expect(planJob(args, facts())).toEqual(planJob(args, facts()))
    expect(args).toEqual(copy)
  })

  describe('every input check, before anything starts', () => {
    it('a missing image names the field', () => {
      expect(
        inputError(() => plan({ container: null, services: [container(), container({ image: null, dockerfile: '/x/Dockerfile' })] }))
      ).toBe('args.services.1.image: missing (a Dockerfile is not supported for job or service containers)')
    })

    it('an unterminated quote in createOptions', () => {
      expect(inputError(() => plan({ container: jobContainer({ createOptions: '--label "a' }) }))).toMatch(
        /^args\.container\.createOptions: unterminated quote/
      )
    })

    it('an unterminated quote in createOptions is located, never quoted (the options may hold a secret)', () => {
      const secret = 'ghp_0ptionsS3cret'
      const msg = inputError(() =>
        plan({ container: null, services: [container({ createOptions: `--env TOKEN=${secret} --label 'a b` })] })
      )
      expect(msg).toBe("args.services.0.createOptions: unterminated quote: the ' at character 39 is never closed")
      expect(msg).not.toContain(secret)
      // control: the same options with the quote closed are split as the shell would
      const p = plan({ container: null, services: [container({ createOptions: `--env TOKEN=${secret} --label 'a b'` })] })!
      expect(p.services[0].spec.createOptions).toEqual(['--env', `TOKEN=${secret}`, '--label', 'a b'])
    })

    it('an env name docker would misread', () => {
      expect(inputError(() => plan({ container: null, services: [container({ environmentVariables: { '#A': '1' } })] }))).toMatch(
        /^args\.services\.0\.environmentVariables: invalid variable name/
      )
    })

    it('a multi-line value under a name that steers the docker CLI', () => {
      expect(inputError(() => plan({ container: jobContainer({ environmentVariables: { LD_PRELOAD: 'a\nb' } }) }))).toMatch(
        /^args\.container\.environmentVariables\.LD_PRELOAD: a multi-line value/
      )
    })

    it("a /__w mount that is not the runner's work folder", () => {
      const c = jobContainer()
      ;(c.systemMountVolumes as ReturnType<typeof mount>[])[1] = mount('/etc', '/__w')
      expect(inputError(() => plan({ container: c }))).toBe(
        `args.container.systemMountVolumes.1.sourceVolumePath: the /__w mount must be the runner's work folder ${WORK}`
      )
    })

    it('a /__e mount that is not a normalised folder', () => {
      const c = jobContainer()
      ;(c.systemMountVolumes as ReturnType<typeof mount>[])[2] = mount('/home/runner/../externals', '/__e')
      expect(inputError(() => plan({ container: c }))).toMatch(
        /^args\.container\.systemMountVolumes\.2\.sourceVolumePath: the \/__e mount must be a normalised absolute folder/
      )
    })

    it('a host path outside the work folder cannot be synced', () => {
      expect(inputError(() => plan({ container: null, services: [container({ userMountVolumes: [mount('/etc/passwd', '/p')] })] }))).toBe(
        `args.services.0.userMountVolumes.0.sourceVolumePath: host path /etc/passwd is outside the runner's work folder ${WORK}, so it cannot be synced to the remote host`
      )
    })

    it('a tool cache outside the work folder (RUNNER_TOOL_CACHE, mounted at /__t) is refused, naming the mount', () => {
      const c = jobContainer()
      ;(c.systemMountVolumes as ReturnType<typeof mount>[]).push(mount('/opt/hostedtoolcache', '/__t'))
      expect(inputError(() => plan({ container: c }))).toBe(
        `args.container.systemMountVolumes.5.sourceVolumePath: host path /opt/hostedtoolcache is outside the runner's work folder ${WORK}, so it cannot be synced to the remote host`
      )
      // control: the tool cache under _work is a mount like the others
      const under = jobContainer()
      ;(under.systemMountVolumes as ReturnType<typeof mount>[]).push(mount(`${WORK}/_tool`, '/__w/_tool'))
      expect(() => plan({ container: under })).not.toThrow()
    })

    it('the job container is checked before the services', () => {
      expect(inputError(() => plan({ container: jobContainer({ createOptions: '"' }), services: [container({ image: null })] }))).toMatch(
        /^args\.container\./
      )
    })
  })
})

describe('startsEarly (the job container starting while the copy runs)', () => {
  const { startsEarly } = require('../../src/prepare/early-start') as typeof import('../../src/prepare/early-start')
  const { mkdirSync, writeFileSync, symlinkSync } = require('node:fs') as typeof import('node:fs')
  const { tempDir, cleanupTempDirs } = require('./_helpers') as typeof import('./_helpers')
  afterAll(cleanupTempDirs)

  function workWith(make: (work: string) => void): { work: string; p: ReturnType<typeof plan> } {
    const work = `${tempDir()}/_work`
    for (const d of ['_temp/_github_home', '_actions', 'repo/repo']) mkdirSync(`${work}/${d}`, { recursive: true })
    make(work)
    const c = container({
      systemMountVolumes: [
        mount(work, '/__w'),
        mount(`${work}/_temp`, '/__w/_temp'),
        mount(`${work}/_temp/_github_home`, '/github/home'),
        mount(`${work}/_actions`, '/__w/_actions')
      ]
    })
    return { work, p: plan({ container: c }, { hostWork: work, workspace: `${work}/repo/repo` }) }
  }

  it('an idle job container binding real folders: those folders are made first (not w itself)', () => {
    const { p } = workWith(() => undefined)
    expect(startsEarly(p!)).toEqual({ dirs: [`${ROOT}/w/_temp`, `${ROOT}/w/_temp/_github_home`, `${ROOT}/w/_actions`] })
  })

  it('a bind source that is a file, a symlink or missing on the host: it waits for the copy', () => {
    expect(
      startsEarly(
        workWith((w) => {
          rmSync(`${w}/_actions`, { recursive: true })
          writeFileSync(`${w}/_actions`, 'a file')
        }).p!
      )
    ).toBeNull()
    expect(
      startsEarly(
        workWith((w) => {
          rmSync(`${w}/_actions`, { recursive: true })
          symlinkSync(`${w}/_temp`, `${w}/_actions`)
        }).p!
      )
    ).toBeNull()
    expect(startsEarly(workWith((w) => rmSync(`${w}/_actions`, { recursive: true })).p!)).toBeNull()
  })

  it("a job container with the runner's own entrypoint, or none at all: not early", () => {
    expect(startsEarly(plan({ container: jobContainer({ entryPoint: 'sh' }) })!, () => true)).toBeNull()
    expect(startsEarly(plan({ container: null, services: [container()] })!, () => true)).toBeNull()
  })
})
