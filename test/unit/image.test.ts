import { imageBaseName, nameOnly, serviceAliases } from '../../src/docker/image'

describe('imageBaseName', () => {
  it.each([
    ['redis', 'redis'],
    ['redis:7', 'redis'],
    ['ghcr.io/org/redis:7', 'redis'],
    ['docker.io/library/postgres:16-alpine', 'postgres'],
    ['localhost:5000/x/y:1', 'y'],
    ['localhost:5000/y', 'y'],
    ['127.0.0.1:5000/team/app', 'app'],
    ['redis@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 'redis'],
    ['ghcr.io/org/redis:7@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 'redis'],
    ['localhost:5000/y@sha256:abc', 'y'],
    ['Redis', 'redis'],
    ['GHCR.IO/Org/My_Service.v2:Latest', 'my_service.v2'],
    ['mcr.microsoft.com/mssql/server:2022-latest', 'server'],
    ['', 'service'],
    [':7', 'service']
  ])('%j → %j', (image, base) => {
    expect(imageBaseName(image)).toBe(base)
  })

  it('only returns characters valid in a network alias', () => {
    for (const img of ['we!rd/na me:1', 'a+b', 'ünï']) expect(imageBaseName(img)).toMatch(/^[a-z0-9_.-]+$/)
  })
})

describe('serviceAliases', () => {
  it('gives the first service of an image its base name and name-1', () => {
    expect(serviceAliases(['redis:7', 'postgres:16'])).toEqual([
      ['redis', 'redis-1'],
      ['postgres', 'postgres-1']
    ])
  })

  it('numbers later services of the same base name', () => {
    expect(serviceAliases(['redis:7', 'ghcr.io/org/redis:6', 'postgres', 'REDIS'])).toEqual([
      ['redis', 'redis-1'],
      ['redis-2'],
      ['postgres', 'postgres-1'],
      ['redis-3']
    ])
  })

  it('returns nothing for no services', () => {
    expect(serviceAliases([])).toEqual([])
  })

  // An alias names one service: two containers with the same alias on the job network make the
  // name resolve to either of them.
  it('never gives two services the same alias', () => {
    const aliases = serviceAliases(['redis', 'redis', 'redis-2']).flat()
    expect(new Set(aliases).size).toBe(aliases.length)
  })

  it('never gives a service the job container\'s alias "job" (nor its container name)', () => {
    expect(serviceAliases(['acme/job:1', 'job', 'redis'])).toEqual([['job-1'], ['job-2'], ['redis', 'redis-1']])
  })
})

describe('nameOnly', () => {
  it.each([
    ['cafe', 'cafe:latest'],
    ['a4c08ab3a768', 'a4c08ab3a768:latest'],
    ['0', '0:latest'],
    ['cafe:1', 'cafe:1'],
    ['org/cafe', 'org/cafe'],
    ['redis', 'redis'],
    ['cafe@sha256:' + 'a'.repeat(64), 'cafe@sha256:' + 'a'.repeat(64)],
    ['127.0.0.1:5000/cafe', '127.0.0.1:5000/cafe']
  ])('%s → %s', (given, want) => {
    expect(nameOnly(given)).toBe(want)
  })
})
