// rsync's own words for a failed transport are "connection unexpectedly closed"; the error names
// what its transport (OpenSSH) said instead. The stderr texts are what OpenSSH 9 and rsync 3 print.
import { rsyncFailure } from '../../src/sync/rsync'
import { HookError, TransportError } from '../../src/errors'
import { outcomeOf } from '../../src/outcome'

const RSYNC_CLOSED =
  'rsync: connection unexpectedly closed (0 bytes received so far) [sender]\nrsync error: unexplained error (code 255) at io.c(285) [sender=3.5.0]\n'
const BAR = '@'.repeat(59)

const keyTooOpen = `${BAR}
@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @
${BAR}
Permissions 0644 for '/k/id' are too open.
It is required that your private key files are NOT accessible by others.
This private key will be ignored.
Load key "/k/id": bad permissions
rchvm@127.0.0.1: Permission denied (publickey).
${RSYNC_CLOSED}`

const hostKeyChanged = `${BAR}
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
${BAR}
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:owkrCes9ezN6/D7xOzdifGM5F47ztbUkZrlS0P6xpVY.
Please contact your system administrator.
Add correct host key in /k/known_hosts to get rid of this message.
Offending ED25519 key in /k/known_hosts:1
  remove with:
  ssh-keygen -f "/k/known_hosts" -R "[127.0.0.1]:2231"
Host key for [127.0.0.1]:2231 has changed and you have requested strict checking.
Host key verification failed.
${RSYNC_CLOSED}`

describe('rsyncFailure', () => {
  test("a key file others can read: ssh's reason, not rsync's closed connection", () => {
    const e = rsyncFailure('/w', 255, keyTooOpen)
    expect(e).toBeInstanceOf(TransportError)
    expect(e.message).toBe(
      'rsync to /w failed (exit 255): its SSH transport failed: WARNING: UNPROTECTED PRIVATE KEY FILE! | This private key will be ignored. | Load key "/k/id": bad permissions | rchvm@127.0.0.1: Permission denied (publickey).'
    )
    expect(e.message).not.toContain('unexpectedly closed')
  })

  test('a changed host key', () => {
    const e = rsyncFailure('/w', 255, hostKeyChanged)
    expect(e).toBeInstanceOf(TransportError)
    expect(e.message).toMatch(
      /^rsync to \/w failed \(exit 255\): its SSH transport failed: WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! \| .*Host key for \[127\.0\.0\.1\]:2231 has changed and you have requested strict checking\. \| Host key verification failed\.$/
    )
  })

  test('a refused key alone', () => {
    const e = rsyncFailure('/w', 255, `rchvm@127.0.0.1: Permission denied (publickey).\n${RSYNC_CLOSED}`)
    expect(e.message).toBe('rsync to /w failed (exit 255): its SSH transport failed: rchvm@127.0.0.1: Permission denied (publickey).')
  })

  test("the agent transport's own message is named the same way", () => {
    const e = rsyncFailure(
      '/w',
      12,
      `connect ENOENT /tmp/rch-0/x/agent-1-2.sock\nrsync: connection unexpectedly closed (0 bytes received so far) [sender]\nrsync error: error in rsync protocol data stream (code 12) at io.c(232) [sender=3.2.7]\n`
    )
    expect(e.message).toBe('rsync to /w failed (exit 12): its SSH transport failed: connect ENOENT /tmp/rch-0/x/agent-1-2.sock')
  })

  test("rsync's own failures (the transport worked) keep rsync's last lines", () => {
    const e = rsyncFailure(
      '/w',
      23,
      'rsync: [receiver] mkdir "/w/x" failed: Permission denied (13)\nrsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [sender=3.2.7]\n'
    )
    expect(e).not.toBeInstanceOf(TransportError)
    expect(e).toBeInstanceOf(HookError)
    expect(e.message).toBe(
      'rsync to /w failed (exit 23): rsync: [receiver] mkdir "/w/x" failed: Permission denied (13) | rsync error: some files/attrs were not transferred (see previous errors) (code 23) at main.c(1338) [sender=3.2.7]'
    )
  })

  test('a shell that prints on start-up is not mistaken for a transport failure', () => {
    const e = rsyncFailure(
      '/w',
      2,
      'protocol version mismatch -- is your shell clean?\n(see the rsync manpage for an explanation)\nrsync error: protocol incompatibility (code 2) at compat.c(622) [sender=3.2.7]\n'
    )
    expect(e).not.toBeInstanceOf(TransportError)
    expect(e.message).toContain('protocol incompatibility')
  })
})

describe("the kind of a transport failure, from OpenSSH's own lines", () => {
  test.each([
    [keyTooOpen, 'keyfile'],
    [hostKeyChanged, 'hostkey'],
    [`rchvm@127.0.0.1: Permission denied (publickey).\n${RSYNC_CLOSED}`, 'auth'],
    [`Load key "/k/id": invalid format\nrchvm@127.0.0.1: Permission denied (publickey).\n${RSYNC_CLOSED}`, 'keyfile'],
    [
      `No ED25519 host key is known for [127.0.0.1]:2231 and you have requested strict checking.\nHost key verification failed.\n${RSYNC_CLOSED}`,
      'hostkey'
    ],
    [`ssh: connect to host 127.0.0.1 port 2231: Connection refused\n${RSYNC_CLOSED}`, 'network'],
    [`Connection to 127.0.0.1 closed by remote host.\n${RSYNC_CLOSED}`, 'lost'],
    [`connect ENOENT /tmp/rch-0/x/agent-1-2.sock\n${RSYNC_CLOSED}`, 'lost']
  ])('%#: %s', (stderr, kind) => {
    const e = rsyncFailure('/w', 255, stderr)
    expect(e).toBeInstanceOf(TransportError)
    expect((e as TransportError).kind).toBe(kind)
  })
})

describe('what the remote writes to ssh/rsync stderr reaches the step log only inside the one ::error:: line', () => {
  // The VM is the job's: its sshd banner, start-up files and rsync can print anything on stderr.
  const hostile = `::add-mask::hidden\n::set-output name=x::y\r::stop-commands::abc\n%0A::warning::z\n${RSYNC_CLOSED}`
  test.each([
    ['a transport failure', hostile],
    ["rsync's own failure", `::add-mask::hidden\n::set-output name=x::y\nrsync error: some files could not be transferred (code 23)\n`]
  ])('%s', (_what, stderr) => {
    const err = rsyncFailure('/w', 255, stderr)
    // positive control: the commands really are in the message
    expect(err.message).toContain('::set-output name=x::y')
    const { errorLine } = outcomeOf(err)
    const lines = errorLine!.split('\n').filter(Boolean)
    expect(lines).toHaveLength(1)
    expect(lines[0].startsWith('::error::')).toBe(true)
    expect(errorLine).not.toMatch(/\r/)
  })
})
