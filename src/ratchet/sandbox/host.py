"""The host side of a box: a fresh uid to run it as, the limits set between fork and exec, the probe for a
working bubblewrap, and the private work dirs (made, swept when their maker was killed, removed)."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ratchet.sandbox.command import BWRAP, INSIDE_WORKDIR, SETPRIV, SandboxLimits, base_env, bwrap_argv, gold_package_dirs

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_UID_RANGE = (200_000, 1_200_000)  # fresh uids for root-run sandboxes; no real account lives there
_SHARED_UID_BOXES = 8  # without a fresh uid, a box's process limit leaves room for this many boxes at once

_libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child must not load libraries


def _tasks_running_as(uid: int) -> int:
    """Processes and threads of `uid` that /proc shows: what RLIMIT_NPROC counts against its limit."""
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    n += len(os.listdir(f"{entry.path}/task"))
    return n


def nproc_limit(limits: SandboxLimits, own_uid: bool) -> int:
    """RLIMIT_NPROC for the child. On a fresh uid it counts only the box's own processes: max_procs. On ours
    (a non-root parent, e.g. a box inside a research trial's box) the kernel counts every process and thread
    of the uid, every concurrent box's included, against each box's limit; so a box gets what the uid runs
    now plus room for several boxes' worth (`_SHARED_UID_BOXES`), within the limit we run under ourselves -
    else 32 concurrent episodes of a nested flywheel fail with "can't start new thread"."""
    if not own_uid:
        return limits.max_procs
    ours = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    room = _tasks_running_as(os.getuid()) + _SHARED_UID_BOXES * limits.max_procs
    return room if ours == resource.RLIM_INFINITY else min(ours, room)


PRLIMIT = shutil.which("prlimit")  # util-linux: sets the limits and execs the box, so no Python runs between fork and exec
_RESOURCES = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC,
              "fsize": resource.RLIMIT_FSIZE, "core": resource.RLIMIT_CORE}


def box_rlimits(limits: SandboxLimits, nproc: int) -> dict[str, tuple[int, int]]:
    """The child's (soft, hard) limits by prlimit's resource name; no address-space cap beside a GPU (CUDA maps
    far more virtual memory than it uses)."""
    mem, fsize = limits.memory_mb * 1024 * 1024, limits.file_mb * 1024 * 1024
    out = {"cpu": (limits.cpu_s, limits.cpu_s + 1)}
    if not limits.gpu_devices:
        out["as"] = (mem, mem)
    out.update(nproc=(nproc, nproc), fsize=(fsize, fsize), core=(0, 0))
    return out


def prlimit_argv(limits: SandboxLimits, nproc: int) -> list[str]:
    """`prlimit --cpu=S:H ... --`: prefixed to the box's command line, it sets the limits in the child and execs
    the rest. With no preexec_fn, Python forks with vfork: a fork of a parent holding a loaded model costs
    milliseconds per box, and an episode is a box."""
    assert PRLIMIT is not None
    return [PRLIMIT, *(f"--{name}={soft}:{hard}" for name, (soft, hard) in box_rlimits(limits, nproc).items()), "--"]


def rlimit_preexec(limits: SandboxLimits, isolate_net: bool, nproc: int):
    """The function run in the child between fork and exec where prlimit cannot serve: the limits, then (rlimit
    backend) a net namespace."""
    rlimits = box_rlimits(limits, nproc)
    uid, gid = os.getuid(), os.getgid()

    def preexec() -> None:
        for name, pair in rlimits.items():
            resource.setrlimit(_RESOURCES[name], pair)
        if isolate_net:
            _enter_empty_net_namespace(uid, gid)

    return preexec


def _enter_empty_net_namespace(uid: int, gid: int) -> None:
    """Best effort: a fresh net namespace has only a down loopback. Failure leaves the network as it was."""
    if uid == 0:
        _libc.unshare(_CLONE_NEWNET)
        return
    if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return
    # map ourselves, or the new user namespace could not create files
    with contextlib.suppress(OSError):
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


@functools.cache
def bwrap_works() -> bool:
    """Run `python -c pass` in a real bwrap sandbox once per process; cache the answer."""
    if not os.access(BWRAP, os.X_OK):
        return False
    workdir, uid = Path(tempfile.mkdtemp(prefix="ratchet-probe-")), fresh_uid()
    try:
        cmd = bwrap_argv([sys.executable, "-c", "pass"], workdir, (), base_env(INSIDE_WORKDIR), 1, uid)
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        release_uid(uid)


_uids_in_use: set[int] = set()


@functools.lru_cache(maxsize=1)
def hidden_dirs() -> tuple[Path, ...]:
    """The gold-answer packages, and the cache of generated suite entries (golds included) in case a
    `$RATCHET_CACHE` under a bound prefix would expose it."""
    from ratchet.models.gguf import cache_root

    return (*gold_package_dirs(), cache_root() / "suites")


def fresh_uid() -> int | None:
    """A fresh unprivileged uid when we are root and can drop to it, else None (keep our own uid)."""
    if os.geteuid() != 0 or not os.access(SETPRIV, os.X_OK):
        return None
    rng = random.SystemRandom()
    while (uid := rng.randrange(*_UID_RANGE)) in _uids_in_use:
        pass
    _uids_in_use.add(uid)
    return uid


def release_uid(uid: int | None) -> None:
    """`uid` (from fresh_uid) is free again: its box and everything it started are gone."""
    _uids_in_use.discard(uid)  # type: ignore[arg-type]


_WORKDIR_PREFIX = "ratchet-sb-"


@functools.lru_cache(maxsize=1)
def sweep_orphan_workdirs() -> None:
    """Remove work dirs left by ratchet processes that were killed (SIGKILL skips every cleanup).

    A dir is named after the process that made it; it is an orphan once that process is gone. Once per process.
    """
    for path in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*-*"):
        pid_text = path.name[len(_WORKDIR_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            remove_tree(path)
        except PermissionError:  # alive, someone else's
            pass


def make_workdir(files: Mapping[str, str | bytes] | None, owner: int | None, template: Path | None = None) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{os.getpid()}-"))
    try:
        if template is not None:  # a private copy: the program may write anywhere in it, the original stays as it was
            shutil.copytree(template, workdir, symlinks=True, dirs_exist_ok=True)
        for rel, content in (files or {}).items():
            target = (workdir / rel).resolve()
            if Path(rel).is_absolute() or workdir.resolve() not in target.parents:
                raise ValueError(f"sandbox file {rel!r} must be a relative path inside the work dir")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        if owner is not None:
            for path in [workdir, *workdir.rglob("*")]:
                os.chown(path, owner, owner, follow_symlinks=False)
    except BaseException:
        remove_tree(workdir)
        raise
    return workdir


def remove_tree(path: Path) -> None:
    root = os.path.abspath(path)

    def make_writable_and_retry(func, p, _exc):  # a program may leave read-only dirs behind
        with contextlib.suppress(OSError):
            parent = os.path.dirname(os.path.abspath(p))
            if parent == root or parent.startswith(root + os.sep):  # never above the tree: that is /tmp, everyone's
                os.chmod(parent, 0o700)
            os.chmod(p, 0o700)
            func(p)

    shutil.rmtree(path, onerror=make_writable_and_retry)
