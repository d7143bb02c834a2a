#!/usr/bin/env python3
"""Runs a command in a new user namespace that maps only the given uids and gids to
themselves — what systemd's PrivateUsers=yes does for a service (root and the service's own
user and group). Inside, every other uid reads as the overflow uid 65534, SO_PEERCRED
included. The parent (root in the initial namespace) writes the maps, forwards SIGTERM and
SIGINT to the child, and exits with its status.

Usage: userns.py --uid 0 --uid 998 --gid 0 --gid 998 -- COMMAND [ARG...]
"""
import ctypes
import os
import signal
import sys

CLONE_NEWUSER = 0x10000000


def main():
    args = sys.argv[1:]
    split = args.index("--")
    opts, cmd = args[:split], args[split + 1:]
    uids = [opts[i + 1] for i, o in enumerate(opts) if o == "--uid"]
    gids = [opts[i + 1] for i, o in enumerate(opts) if o == "--gid"]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWUSER) != 0:
            os.write(2, b"userns.py: unshare(CLONE_NEWUSER) failed\n")
            os._exit(125)
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        os.execvp(cmd[0], cmd)
    os.read(ready_r, 1)
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write("".join(f"{u} {u} 1\n" for u in uids))
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write("".join(f"{g} {g} 1\n" for g in gids))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: os.kill(pid, s))
    os.write(go_w, b"1")
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
