import {
  isHostName,
  isImageRef,
  isMountTarget,
  isNormalAbsolute,
  isPortMapping,
  isRegistryServer,
  isSafeName,
  isVolumeName,
  isJobVolumeName
} from '../../src/input-rules'

describe('isImageRef (docker reference grammar)', () => {
  test.each([
    'alpine',
    'node:22',
    'library/node:22-bookworm-slim',
    'docker.io/library/alpine:3.20',
    'ghcr.io/org/team/app:v1.2.3_rc-1',
    '127.0.0.1:5000/private/tiny:1',
    'localhost:5000/a__b/c--d/e.f:latest',
    'registry.example.com:443/x/y@sha256:' + 'a'.repeat(64),
    'alpine:3@sha256:' + '0123456789abcdef'.repeat(4),
    'My.Registry-1.example.com/lower/case:TAG',
    '[::1]:5000/img:1',
    'rch-test/tiny:1'
  ])('accepts %j', (ref) => expect(isImageRef(ref)).toBe(true))

  test.each([
    '',
    '-alpine',
    '--privileged',
    '-v/:/host',
    'alpine --privileged',
    'Alpine',
    'alpine:',
    'alpine:-tag',
    'alpine:' + 't'.repeat(129),
    'alpine@sha256:short',
    'a/../b',
    '/alpine',
    'alpine/',
    'alpine;id',
    'alpine$(id)',
    "alpine'",
    'alpine\n',
    'alpine\0',
    'a'.repeat(256),
    'a'.repeat(100000),
    'a'.repeat(100000) + '!'
  ])('refuses %j', (ref) => expect(isImageRef(ref)).toBe(false))

  // Catastrophic backtracking on strings this long would not end in any lifetime, and polynomial
  // backtracking under the 1,024-character cap stays in milliseconds: the generous bound only
  // separates those two, so a loaded machine cannot fail it.
  test('long hostile strings are refused quickly', () => {
    const hostile = ['a'.repeat(1020) + '!', 'a-'.repeat(510) + '!', 'a.'.repeat(500) + '/!', ('a'.repeat(10) + '__').repeat(80) + '-']
    // control: each is under the length cap, so the pattern itself runs on it
    for (const s of hostile) expect(s.length).toBeLessThanOrEqual(1024)
    const t = Date.now()
    for (const s of hostile) expect(isImageRef(s)).toBe(false)
    expect(Date.now() - t).toBeLessThan(2000)
  })
})

describe('isRegistryServer', () => {
  test.each(['ghcr.io', '127.0.0.1:5000', 'registry.example.com/v2', 'https://index.docker.io/v1/', 'localhost'])('accepts %j', (s) =>
    expect(isRegistryServer(s)).toBe(true)
  )
  test.each(['-ghcr.io', '--password=x', 'ghcr.io x', 'ghcr.io\n', 'a\tb', '$(id)', "ghcr.io'", ''])('refuses %j', (s) =>
    expect(isRegistryServer(s)).toBe(false)
  )
})

describe('isPortMapping (docker run -p)', () => {
  test.each([
    '80',
    '8080:80',
    '127.0.0.1:8080:80',
    '127.0.0.1::80',
    '8080:80/udp',
    '5000-5010:5000-5010',
    '[::1]:8080:80/tcp',
    '65535:1',
    '9000-9001'
  ])('accepts %j', (p) => expect(isPortMapping(p)).toBe(true))
  test.each([
    '',
    'http',
    '70000:80',
    '80:0',
    '0',
    '80:65536',
    '-p',
    '80;id',
    '80:80/icmp',
    '5010-5000',
    '1.2.3:80:80',
    '999.1.1.1:80:80',
    '80 80',
    '80:80\n',
    '8080:80:80:80'
  ])('refuses %j', (p) => expect(isPortMapping(p)).toBe(false))
  // docker's ParsePortSpec: a host range only beside one container port (the range it picks from)
  // or a container range of the same length; the protocol in any case. Refused ones fail only at
  // create, after the job's machine was got and the files copied.
  test.each([
    '8000-8010:80',
    '5000-5010:6000-6010',
    '127.0.0.1:8000-8001:80-81/udp',
    '80/TCP',
    '8080:80/Udp',
    '127.0.0.1::80',
    '[::1]:80:80/udp',
    '[::1]::80',
    '8080:80/sctp',
    ':80',
    // past three parts, all but the last two are the address: IPv6 without brackets
    '::1:8080:80',
    '::1::80/udp',
    'fe80::1:8000-8001:80-81',
    '2001:db8::7:443:443/tcp'
  ])('accepts %j as docker does', (p) => expect(isPortMapping(p)).toBe(true))
  // an address before the container port alone is read by docker as the host port
  test.each([
    '80:80-90',
    '8000-8005:80-90',
    '127.0.0.1:8080:80-81',
    '127.0.0.1:80',
    '[::1]:80/udp',
    // the address docker would read: ":", "8080:80", "1.2.3.4:5", "a:b", one with a zone, an invalid IPv6
    '::1:80',
    '8080:80:80:80',
    '1.2.3.4:5:80:80',
    'a:b:80:80',
    '[a:b]:80:80',
    'fe80::1%eth0:80:80',
    '1:2:3:4:5:6:7:8:9:80:80',
    '::1:80:80-81'
  ])('refuses %j as docker does', (p) => expect(isPortMapping(p)).toBe(false))
})

describe('isVolumeName / isMountTarget / isSafeName / isNormalAbsolute', () => {
  test('volume names follow docker', () => {
    for (const ok of ['my_vol', 'a', 'data.1', 'A-b_c.d']) expect(isVolumeName(ok)).toBe(true)
    for (const bad of ['', '-v', '.x', '_x', 'a/b', 'a:b', 'a b', '../x', 'a\0']) expect(isVolumeName(bad)).toBe(false)
  })
  test("a job's volume names are ones docker's local driver creates (two characters at least, one path component)", () => {
    for (const ok of ['ab', 'my_vol', 'x'.repeat(255)]) expect(isJobVolumeName(ok)).toBe(true)
    for (const bad of ['a', '7', 'x'.repeat(256), '', '-v']) expect(isJobVolumeName(bad)).toBe(false)
  })
  test('mount targets are absolute and cannot split a -v spec', () => {
    for (const ok of ['/data', '/__w', '/github/home', '/a b']) expect(isMountTarget(ok)).toBe(true)
    for (const bad of ['', 'data', '/a:/b', '/a:ro', '/a\0', '/a\nb']) expect(isMountTarget(bad)).toBe(false)
  })
  test('safe names are one plain component', () => {
    for (const ok of ['_temp', 'repo', 'my.repo-1']) expect(isSafeName(ok)).toBe(true)
    for (const bad of ['', '.', '..', 'a/b', '/a', 'a b', 'a\n']) expect(isSafeName(bad)).toBe(false)
  })
  test('normalised absolute paths', () => {
    for (const ok of ['/', '/a', '/a/b']) expect(isNormalAbsolute(ok)).toBe(true)
    for (const bad of ['', 'a', '/a/', '/a/../b', '/a/./b', '//a', '/a\0', '/a\n']) expect(isNormalAbsolute(bad)).toBe(false)
  })
})

describe('isHostName', () => {
  test.each(['a', 'vm-1.example.com', 'example.com.', '10.0.0.5', '::1', '2001:db8::1'])('accepts %j', (h) =>
    expect(isHostName(h)).toBe(true)
  )
  test.each(['', '-oProxyCommand=x', 'a b', 'a_b', 'a..b', '.a', 'a/b', '[::1]', 'a\n', 'x'.repeat(254)])('refuses %j', (h) =>
    expect(isHostName(h)).toBe(false)
  )
})
