#!/usr/bin/env python3
"""Runs a command as a child subreaper, and ends what it leaves running.

  python3 reaped.py --strays FILE -- COMMAND [ARG...]

With PR_SET_CHILD_SUBREAPER (Linux), every process of the command's tree whose parent ends is
reparented here, not to init, daemons (setsid, double fork) included. Once the command has ended
and a short grace has passed (processes on their way out), whatever is still running is a process a
test left behind: each is named on stderr, sent SIGTERM, then SIGKILL after 5 s, and their number is
written to FILE. The exit code is the command's (128 + N for a signal N). The test environment's
daemons (dockerd, the sshd "VMs", the registry, moto) are started before it, so never its children.
"""
import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
# Overridable for reaped.py's own tests.
GRACE_S = float(os.environ.get("REAPED_GRACE_S", "3"))
TERM_WAIT_S = float(os.environ.get("REAPED_TERM_WAIT_S", "5"))


def reap_exited() -> None:
    """Collects every child that has ended (orphans that end become this process's zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def live_descendants() -> list:
    """Every running process below this one (a stray's own children are strays too)."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":
            parent[int(d)] = int(fields[1])
    me = os.getpid()
    out = []
    for pid in parent:
        p, hops = parent.get(pid), 0
        while p is not None and p > 1 and p != me and hops < 4096:
            p, hops = parent.get(p), hops + 1
        if p == me:
            out.append(pid)
    return sorted(out)


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:200] or "?"
    except OSError:
        return "?"


def wait_gone(seconds: float) -> list:
    """Reaps for up to `seconds`; the processes still running below this one then."""
    until = time.monotonic() + seconds
    while True:
        reap_exited()
        left = live_descendants()
        if not left or time.monotonic() >= until:
            # One that ended between the two calls is a zombie now: not live, but not reaped either.
            reap_exited()
            return left
        time.sleep(0.1)


def end_strays() -> int:
    """Names and ends the processes left below this one (orphans of those it ends come here too)."""
    seen = set()
    left = wait_gone(GRACE_S)
    for _ in range(3):
        if not left:
            break
        for pid in left:
            if pid not in seen:
                seen.add(pid)
                print(f"[reaped] left running by the tests: pid {pid}: {cmdline(pid)}", file=sys.stderr)
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        left = wait_gone(TERM_WAIT_S)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        left = wait_gone(1.0)
    return len(seen)


def main(argv: list) -> int:
    if len(argv) < 4 or argv[0] != "--strays" or argv[2] != "--":
        print("usage: reaped.py --strays FILE -- COMMAND [ARG...]", file=sys.stderr)
        return 64
    strays_file, cmd = argv[1], argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"[reaped] prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 70
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            print(f"[reaped] {cmd[0]}: {e.strerror}", file=sys.stderr)
        os._exit(127)
    # A terminal's Ctrl-C reaches the command itself (same process group); a TERM or HUP sent to
    # this process alone is passed on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda n, _f: os.kill(pid, n))
    code = 1
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if got == pid:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
            break
    # The command's pid is free for reuse now: nothing is passed on any more, and the bounded
    # cleanup below is not cut short (the strays would live on).
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    n = end_strays()
    with open(strays_file, "w", encoding="utf-8") as f:
        f.write(f"{n}\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
