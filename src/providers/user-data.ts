// Boot script handed to the instance through user data: installs the per-job host key and client
// key (so the host key can be pinned: no trust-on-first-use), restarts sshd, and arms the
// self-destruct timer. Plain POSIX sh, run by cloud-init as root. Keys only, no secrets of the job.
import { shq } from '../remote/quote'

export interface UserDataInput {
  user: string
  hostPrivateKey: string
  hostPublicKey: string
  clientPublicKey: string
  maxLifetimeMinutes: number
}

export const USER_DATA_MARK = '# remote-container-hooks user-data v1'

export function userDataScript(u: UserDataInput): string {
  return [
    '#!/bin/sh',
    USER_DATA_MARK,
    'set -u',
    // Armed first: whatever fails below, the instance still ends (shutdown behaviour = terminate).
    `( command -v systemd-run >/dev/null && systemd-run --on-active=${u.maxLifetimeMinutes}m --unit=rch-self-destruct /sbin/shutdown -h now ) || ( sleep ${u.maxLifetimeMinutes * 60} && /sbin/shutdown -h now ) &`,
    'umask 077',
    `cat > /etc/ssh/ssh_host_ed25519_key <<'RCH_HOST_KEY'`,
    u.hostPrivateKey.trim(),
    'RCH_HOST_KEY',
    `printf '%s\\n' ${shq(u.hostPublicKey.trim())} > /etc/ssh/ssh_host_ed25519_key.pub`,
    'chmod 600 /etc/ssh/ssh_host_ed25519_key; chmod 644 /etc/ssh/ssh_host_ed25519_key.pub',
    `u=${shq(u.user)}; h=$(getent passwd "$u" | cut -d: -f6); [ -n "$h" ] || h=/home/$u`,
    'mkdir -p "$h/.ssh"',
    `printf '%s\\n' ${shq(u.clientPublicKey.trim())} >> "$h/.ssh/authorized_keys"`,
    'chown -R "$u" "$h/.ssh" 2>/dev/null; chmod 700 "$h/.ssh"; chmod 600 "$h/.ssh/authorized_keys"',
    'getent group docker >/dev/null && usermod -aG docker "$u" 2>/dev/null',
    '(systemctl restart sshd || systemctl restart ssh || service ssh restart) >/dev/null 2>&1',
    ''
  ].join('\n')
}

/** Reads the public parts back (used by tests that stand in for the booting instance). */
export function parseUserData(script: string): { hostPrivateKey: string; clientPublicKey: string; maxLifetimeMinutes: number } | null {
  if (!script.includes(USER_DATA_MARK)) return null
  const host = /<<'RCH_HOST_KEY'\n([\s\S]*?)\nRCH_HOST_KEY/.exec(script)?.[1]
  const client = /printf '%s\\n' '?(ssh-ed25519 [^'\n]+)'? >> "\$h\/\.ssh\/authorized_keys"/.exec(script)?.[1]
  const life = /--on-active=(\d+)m/.exec(script)?.[1]
  if (!host || !client || !life) return null
  return { hostPrivateKey: host + '\n', clientPublicKey: client, maxLifetimeMinutes: Number(life) }
}
