// User data handed to the instance: cloud-config that installs the per-job host key before sshd
// starts (cloud-init's ssh module runs in its init stage, ordered before sshd, so the first key
// sshd ever serves is the one we pin: no trust-on-first-use and no window with the image's own
// key), authorizes the per-job client key, arms the self-destruct timer at boot, and prepares the
// work root. Emitted as JSON, which is valid YAML, so no value can break the document. Keys only,
// no secrets of the job.
import { shq } from '../remote/quote'

export interface UserDataInput {
  user: string
  workRoot: string
  hostPrivateKey: string
  hostPublicKey: string
  clientPublicKey: string
  maxLifetimeMinutes: number
}

export const USER_DATA_MARK = '# remote-container-hooks user-data v2'

/**
 * Written at the end of the boot setup. sshd accepts the job's key before cloud-init's final stage
 * has added the user to group docker, and a session opened before that never gets the group.
 */
export const readyMarker = (workRoot: string): string => `${workRoot}/.rch-ready`

export function userDataScript(u: UserDataInput): string {
  const minutes = u.maxLifetimeMinutes
  const selfDestruct =
    `systemd-run --on-active=${minutes}m --unit=rch-self-destruct /sbin/shutdown -h now >/dev/null 2>&1 || ` +
    `nohup sh -c 'sleep ${minutes * 60}; /sbin/shutdown -h now' >/dev/null 2>&1 </dev/null &`
  const setup = [
    `u=${shq(u.user)}; h=$(getent passwd "$u" | cut -d: -f6); [ -n "$h" ] || h=/home/$u`,
    'mkdir -p "$h/.ssh"',
    `grep -qxF ${shq(u.clientPublicKey.trim())} "$h/.ssh/authorized_keys" 2>/dev/null || printf '%s\\n' ${shq(u.clientPublicKey.trim())} >> "$h/.ssh/authorized_keys"`,
    'chown -R "$u" "$h/.ssh"; chmod 700 "$h/.ssh"; chmod 600 "$h/.ssh/authorized_keys"',
    'getent group docker >/dev/null && usermod -aG docker "$u"',
    `mkdir -p ${shq(u.workRoot)} && chown "$u" ${shq(u.workRoot)}`,
    // Last: tells the hook that the docker group and work root exist (see READY_MARKER).
    `touch ${shq(readyMarker(u.workRoot))} && chown "$u" ${shq(readyMarker(u.workRoot))}`
  ].join('; ')
  const doc = {
    ssh_deletekeys: true,
    ssh_genkeytypes: [],
    ssh_keys: { ed25519_private: u.hostPrivateKey.trim() + '\n', ed25519_public: u.hostPublicKey.trim() },
    ssh_authorized_keys: [u.clientPublicKey.trim()],
    // Armed first, on every boot: whatever fails later, the instance still ends.
    bootcmd: [['sh', '-c', selfDestruct]],
    runcmd: [['sh', '-c', setup]]
  }
  return `#cloud-config\n${USER_DATA_MARK}\n${JSON.stringify(doc, null, 1)}\n`
}

/** Reads the keys back (tests stand in for the booting instance with them). */
export function parseUserData(script: string): { hostPrivateKey: string; clientPublicKey: string; maxLifetimeMinutes: number } | null {
  if (!script.includes(USER_DATA_MARK)) return null
  try {
    const doc = JSON.parse(script.slice(script.indexOf('{'))) as {
      ssh_keys: { ed25519_private: string }
      ssh_authorized_keys: string[]
      bootcmd: string[][]
    }
    const life = /--on-active=(\d+)m/.exec(doc.bootcmd[0][2])?.[1]
    return { hostPrivateKey: doc.ssh_keys.ed25519_private, clientPublicKey: doc.ssh_authorized_keys[0], maxLifetimeMinutes: Number(life) }
  } catch {
    return null
  }
}
