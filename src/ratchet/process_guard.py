"""Runs a server command for ratchet and makes sure it does not outlive ratchet: a vLLM server, a local
Ray cluster's head.

    python process_guard.py OWNER_PID GRACE_S -- vllm serve ...

`Guarded` (below) is the parent's side: it starts the guard and stops it.

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
        print("usage: process_guard.py OWNER_PID GRACE_S -- COMMAND...", file=sys.stderr)
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


class Guarded:
    """A command under the guard, in a new session; `stop()` (also registered to run at exit) leaves no process
    of its group behind. Parent side: imported by ratchet, never by the guard script itself."""

    def __init__(self, command: list[str], log_path: str, env: dict[str, str] | None = None, grace_s: float = 15.0):
        import atexit

        self.command, self.log_path, self.grace_s = command, log_path, grace_s
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), str(os.getpid()), str(grace_s), "--", *command],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
        atexit.register(self.stop)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to the guard, which stops the command and kills what is left of its group; SIGKILL to the
        group if that is slow."""
        import atexit

        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(self.grace_s + 10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the guard leads the group; gone already when all went well
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        atexit.unregister(self.stop)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
