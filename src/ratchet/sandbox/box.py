"""Running a program in a box: `Sandbox.run` (to the end, with a wall timeout and capped output) and
`Sandbox.spawn` (a line protocol over pipes, for the harness worker); either way the whole process group
is killed and the work dir removed when it is over."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ratchet.sandbox.command import BWRAP, INSIDE_WORKDIR, SandboxLimits, SandboxResult, base_env, bwrap_argv, describe_end
from ratchet.sandbox.host import (
    PRLIMIT,
    bwrap_works,
    fresh_uid,
    hidden_dirs,
    make_workdir,
    nproc_limit,
    prlimit_argv,
    release_uid,
    remove_tree,
    rlimit_preexec,
    sweep_orphan_workdirs,
)

PIPE_LIMIT = 64 * 1024 * 1024  # StreamReader limit for the interactive pipes: one JSON line may be long
_READ_CHUNK = 64 * 1024
_DRAIN_GRACE_S = 2.0  # after the kill, how long to wait for the pipes to reach EOF


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
        """`hide`: dirs masked inside the sandbox; None means the gold-answer packages (GOLD_PACKAGES) and
        the cache of generated suite entries.
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
        sweep_orphan_workdirs()
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
            hide = hidden_dirs() if self.hide is None else tuple(self.hide)
            cmd = bwrap_argv(argv, workdir, ro_binds, base_env(INSIDE_WORKDIR, env), tmp_mb, uid, hide, self.network,
                             self.limits.gpu_devices)
            run_env, cwd, isolate_net = {}, None, False
        else:
            cmd, run_env, cwd, isolate_net = list(argv), base_env(str(workdir), env), workdir, not self.network
        nproc = nproc_limit(self.limits, uid is None)
        preexec = None
        if PRLIMIT and not isolate_net:
            cmd = [*prlimit_argv(self.limits, nproc), *cmd]
        else:  # a net namespace needs a call in the child
            preexec = rlimit_preexec(self.limits, isolate_net, nproc)
        return await asyncio.create_subprocess_exec(
            *cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=run_env, cwd=cwd,
            start_new_session=True, preexec_fn=preexec, limit=limit,
        )  # fmt: skip

    def _owner(self) -> int | None:
        return fresh_uid() if self.backend_name == "bwrap" else None

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
        workdir = make_workdir(files, uid, Path(workdir_from) if workdir_from is not None else None)
        start = time.monotonic()
        readers: asyncio.Future | None = None
        proc: asyncio.subprocess.Process | None = None
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
            if proc is not None:
                _release_pipes(proc)
            remove_tree(workdir)
            release_uid(uid)

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
        workdir = make_workdir(files, uid)
        try:
            proc = await self._start(argv, workdir, uid, ro_binds, env, subprocess.PIPE, PIPE_LIMIT)
        except BaseException:
            remove_tree(workdir)
            release_uid(uid)
            raise
        return SandboxProcess(proc, workdir, uid, self.limits.output_kb * 1024 if drain_stderr else None)


def _release_pipes(proc: asyncio.subprocess.Process) -> None:
    """Close the process's pipes now. Its transport closes itself only once every pipe reaches EOF, which a pipe
    still held by a process that escaped the kill (a fork bomb's child) never does before the event loop ends,
    and a transport that outlives its loop fails when collected ("Event loop is closed"). asyncio's Process has
    no public close, hence its transport's."""
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


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
            _release_pipes(self.proc)
            remove_tree(self.workdir)
            release_uid(self._uid)

    async def __aenter__(self) -> SandboxProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kill()
