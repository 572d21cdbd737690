"""Runs a server command for ratchet and makes sure it does not outlive ratchet.

    python vllm_guard.py OWNER_PID GRACE_S -- vllm serve ...

ratchet starts this script as the leader of a new session (so of a new process group) and the server as
its child. The guard stops the server (SIGTERM, then after GRACE_S seconds SIGKILL to every process left in
its group: vLLM's engine processes included) when any of these happens:
- ratchet stops it (SIGTERM or SIGINT to the guard);
- ratchet dies in any way, SIGKILL included: the guard is re-parented, which it checks twice a second;
- the guard itself is killed: the server gets SIGTERM from the kernel (PR_SET_PDEATHSIG, set between fork
  and exec; the guard is single-threaded, so "the parent thread died" means the guard died).
It imports only the standard library, so any Python runs it (ratchet's own, not the vLLM venv's).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def group_members(pgid: int) -> list[int]:
    """Pids in process group `pgid`, from /proc (the fifth field of /proc/PID/stat)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def kill_group_but_me() -> None:
    me = os.getpid()
    for _ in range(20):
        others = [p for p in group_members(os.getpgrp()) if p != me]
        if not others:
            return
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        print("usage: vllm_guard.py OWNER_PID GRACE_S -- COMMAND...", file=sys.stderr)
        return 2
    owner, grace, command = int(argv[1]), float(argv[2]), argv[4:]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    if os.getppid() != owner:  # ratchet died before we got here
        return 1
    child = subprocess.Popen(command, preexec_fn=_die_with_parent)
    while child.poll() is None and not stop and os.getppid() == owner:
        time.sleep(0.5)
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    kill_group_but_me()
    child.wait()
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
