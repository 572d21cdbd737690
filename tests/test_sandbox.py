"""The sandbox: limits, timeouts, isolation (bwrap) and cleanup, on both backends where they apply."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from ratchet.config import SandboxSection
from ratchet.sandbox import (
    Sandbox,
    SandboxLimits,
    bwrap_argv,
    bwrap_works,
    describe_end,
    python_argv,
)

HAS_BWRAP = bwrap_works()
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not usable here")
BACKENDS = [pytest.param("bwrap", marks=needs_bwrap), "rlimit"]


def run_py(code: str, backend: str = "bwrap", **limit_kw) -> object:
    limits = SandboxLimits(**{"wall_s": 10.0, **limit_kw})
    return asyncio.run(Sandbox(limits, backend).run(python_argv("main.py"), files={"main.py": code}))


def processes_with(marker: str, settle_s: float = 2.0) -> list[int]:
    """Pids (in our namespace) whose command line contains `marker`, after giving SIGKILL time to land."""
    deadline = time.monotonic() + settle_s
    while (found := _scan(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _scan(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


# -- basics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_files_in_a_private_dir_with_stdin(backend: str) -> None:
    code = "import os, sys\nprint(open('data/in.txt').read(), sys.stdin.read().upper(), sorted(os.listdir('.')))\n"
    sb = Sandbox(SandboxLimits(wall_s=10), backend)
    assert sb.backend_name == backend
    r = asyncio.run(sb.run(python_argv("main.py"), files={"main.py": code, "data/in.txt": "hi"}, stdin=b"abc"))
    assert r.returncode == 0 and not r.timed_out and r.reason is None, r
    assert r.stdout.strip() == "hi ABC ['data', 'main.py']"


@pytest.mark.parametrize("backend", BACKENDS)
def test_exit_code_and_stderr_come_back(backend: str) -> None:
    r = run_py("import sys\nprint('oops', file=sys.stderr)\nsys.exit(3)", backend)
    assert r.returncode == 3 and "oops" in r.stderr and not r.ok


def test_work_dir_paths_must_stay_inside() -> None:
    with pytest.raises(ValueError, match="relative path inside"):
        asyncio.run(Sandbox(backend="rlimit").run(["true"], files={"../escape.py": "x"}))
    with pytest.raises(ValueError, match="relative path inside"):
        asyncio.run(Sandbox(backend="rlimit").run(["true"], files={"/etc/x": "x"}))


def test_limits_from_section() -> None:
    s = SandboxSection(memory_mb=256, cpu_s=5, max_procs=8, file_mb=2, output_kb=16)
    assert SandboxLimits.from_section(s, wall_s=7.5) == SandboxLimits(256, 5, 8, 2, 16, 7.5)


def test_describe_end_names_the_cause() -> None:
    assert describe_end(None, True, 5.0, "", False) == "timeout after 5s"
    assert describe_end(1, False, 5.0, "Traceback...\nMemoryError\n", False) == "memory limit"
    assert describe_end(-9, False, 5.0, "", True) == "killed by signal 9; output truncated"
    assert describe_end(0, False, 5.0, "", False) is None


def test_bwrap_command_binds_only_what_python_needs(tmp_path: Path) -> None:
    extra = tmp_path / "lib"
    extra.mkdir()
    cmd = bwrap_argv(["python", "x.py"], tmp_path / "work", [extra], {"HOME": "/sandbox"}, 16, drop_to_uid=None)
    assert "--clearenv" in cmd and "--unshare-all" in cmd and "--die-with-parent" in cmd
    binds = {cmd[i + 1] for i, a in enumerate(cmd) if a in ("--ro-bind", "--bind", "--ro-bind-try")}
    prefix = str(Path(sys.base_prefix).resolve())
    assert str(extra) in binds and (prefix in binds or prefix.startswith("/usr"))
    home = str(Path.home())
    assert home not in binds and "/" not in binds and "/work" not in binds and "/etc" not in binds
    assert cmd[-2:] == ["python", "x.py"]
    rooted = bwrap_argv(["p"], tmp_path, [], {}, 16, drop_to_uid=234567)
    assert "--unshare-net" in rooted and "--unshare-all" not in rooted and "--no-new-privs" in rooted


# -- limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_loop_is_killed_at_the_wall_timeout(backend: str) -> None:
    sb = Sandbox(SandboxLimits(wall_s=1.0), backend)
    r = asyncio.run(sb.run(python_argv("m.py"), files={"m.py": "while True: pass"}))
    assert r.timed_out and r.returncode is None and r.reason == "timeout after 1s"
    assert 0.9 < r.seconds < 4.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_limit_kills_a_spinning_program(backend: str) -> None:
    r = run_py("while True: pass", backend, cpu_s=1, wall_s=15.0)
    assert not r.timed_out and r.returncode is not None and r.returncode < 0
    assert r.reason in ("cpu limit", "killed by signal 9") and r.seconds < 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_bomb_is_contained(backend: str) -> None:
    r = run_py("chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 * 1024))", backend, memory_mb=256)
    assert r.returncode != 0 and r.reason == "memory limit", r
    assert run_py("print(2 + 2)", backend).stdout.strip() == "4"  # the parent (and the next run) carry on


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_output_is_truncated_while_read(backend: str) -> None:
    r = run_py("import sys\nfor _ in range(4000):\n    sys.stdout.write('x' * 10000)", backend, output_kb=64)
    assert r.returncode == 0 and "output truncated" in (r.reason or "")
    assert len(r.stdout) < 64 * 1024 + 200 and r.stdout.rstrip().endswith("truncated at 64 KiB ...]")


@pytest.mark.parametrize("backend", BACKENDS)
def test_file_size_limit(backend: str) -> None:
    r = run_py("open('big.bin', 'wb').write(b'0' * (3 * 1024 * 1024))", backend, file_mb=1)
    assert r.returncode != 0 and r.reason == "file size limit", r


@needs_bwrap
def test_fork_bomb_is_contained_and_the_parent_keeps_working() -> None:
    marker = f"forkbomb-{uuid.uuid4().hex}"
    code = f"# {marker}\nimport os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    sb = Sandbox(SandboxLimits(max_procs=16, wall_s=2.0), "bwrap")
    r = asyncio.run(sb.run(python_argv("main.py", marker), files={"main.py": code}))
    assert r.timed_out
    assert processes_with(marker) == []
    assert asyncio.run(sb.run(python_argv("m.py"), files={"m.py": "print('alive')"})).stdout == "alive\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_leftover_background_processes_are_killed(backend: str) -> None:
    marker = f"bg-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'],"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print('started')\n"
    )
    r = run_py(code, backend)
    assert r.returncode == 0 and r.stdout == "started\n" and r.seconds < 5
    assert processes_with(marker) == []


# -- isolation (bwrap) --------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_parent_secrets_are_not_in_the_environment(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    r = run_py("import os, json\nprint(json.dumps(dict(os.environ)))", backend)
    env = json.loads(r.stdout)
    assert "OPENAI_API_KEY" not in env and "sk-test-secret" not in r.stdout
    allowed = {"PATH", "HOME", "TMPDIR", "LANG", "PWD", "PYTHONDONTWRITEBYTECODE", "PYTHONIOENCODING"}
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and set(env) <= allowed


@needs_bwrap
def test_network_is_unreachable_even_loopback_of_the_parent() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        code = (
            "import socket\n"
            "for addr in [('127.0.0.1', PORT), ('1.1.1.1', 80)]:\n"
            "    try:\n"
            "        socket.create_connection(addr, timeout=2); print('connected', addr)\n"
            "    except OSError as e:\n"
            "        print('refused', type(e).__name__)\n"
        ).replace("PORT", str(port))
        r = run_py(code)
    finally:
        server.close()
    assert r.returncode == 0 and "connected" not in r.stdout and r.stdout.count("refused") == 2, r


@needs_bwrap
def test_writes_outside_the_work_dir_fail(tmp_path: Path) -> None:
    outside = tmp_path / "pwned.txt"
    code = (
        "import os\n"
        f"for path in ['/root/pwned.txt', '/work/pwned.txt', '/usr/pwned.txt', {str(outside)!r}]:\n"
        "    try:\n"
        "        open(path, 'w').write('x'); print('wrote', path)\n"
        "    except OSError as e:\n"
        "        print('denied', path)\n"
        "open('/tmp/scratch', 'w').write('ok')\n"  # the private /tmp works
    )
    r = run_py(code)
    assert r.returncode == 0 and "wrote" not in r.stdout and r.stdout.count("denied") == 4, r
    assert not outside.exists() and not Path("/root/pwned.txt").exists() and not Path("/work/pwned.txt").exists()


@needs_bwrap
def test_home_and_project_files_are_not_readable(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    code = (
        "import os\n"
        f"for path in [os.path.expanduser('~/.bashrc'), '/root/.bashrc', '/etc/shadow', {str(secret)!r}]:\n"
        "    try:\n"
        "        print('read', path, open(path).read()[:10])\n"
        "    except OSError:\n"
        "        print('denied', path)\n"
        "print('home', os.path.expanduser('~'), sorted(os.listdir(os.path.expanduser('~'))))\n"
        "print('root', sorted(os.listdir('/root')) if os.path.isdir('/root') else [])\n"
    )
    r = run_py(code)
    assert r.returncode == 0 and "read " not in r.stdout and "top secret" not in r.stdout, r
    assert "home /sandbox ['main.py']" in r.stdout
    assert "root ['.pyenv']" in r.stdout or "root []" in r.stdout  # only the bound interpreter prefix


# -- interactive ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_spawn_speaks_json_lines_and_cleans_up(backend: str) -> None:
    echo = (
        "import json, sys\n"
        "for line in sys.stdin:\n"
        "    msg = json.loads(line)\n"
        "    print('log', len(msg['text']), file=sys.stderr)\n"
        "    print(json.dumps({'n': len(msg['text'])}), flush=True)\n"
    )

    async def go() -> tuple[list[int], str, Path, int]:
        sb = Sandbox(SandboxLimits(wall_s=10), backend)
        async with await sb.spawn(python_argv("echo.py"), files={"echo.py": echo}) as p:
            sizes = []
            for n in (3, 2_000_000):  # a 2 MB line: longer than asyncio's default 64 KiB limit
                p.proc.stdin.write((json.dumps({"text": "a" * n}) + "\n").encode())
                await p.proc.stdin.drain()
                sizes.append(json.loads(await p.proc.stdout.readline())["n"])
            await asyncio.sleep(0.1)
            return sizes, p.stderr_text(), p.workdir, p.proc.pid

    sizes, stderr, workdir, pid = asyncio.run(go())
    assert sizes == [3, 2_000_000] and "log 3" in stderr
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


_NESTED = """
import asyncio, json
from ratchet.sandbox import Sandbox, SandboxLimits, python_argv

THREADS = "import threading, time\\nts = [threading.Thread(target=time.sleep, args=(1,)) for _ in range(4)]\\n" \\
          "[t.start() for t in ts]; [t.join() for t in ts]; print('ok')"

async def main():
    box = Sandbox(SandboxLimits(wall_s=60.0), "auto")  # nested bwrap needs user namespaces; else rlimit
    runs = await asyncio.gather(*[box.run(python_argv("t.py"), files={"t.py": THREADS}) for _ in range(24)])
    print(json.dumps([r.stdout.strip() or r.stderr.strip()[-200:] for r in runs]))

asyncio.run(main())
"""


@needs_bwrap
def test_boxes_inside_a_box_can_start_threads() -> None:
    """A research trial's command may run ratchet, whose episodes get boxes of their own (the two-tier
    example): 24 concurrent inner boxes of four threads each all run under the outer box's process limit.
    (With a fixed limit of 64 per inner box, counted over the shared uid, most failed to start a thread.)"""
    from ratchet.research.command import ratchet_source

    outer = Sandbox(SandboxLimits(wall_s=120.0, max_procs=512, memory_mb=8192, cpu_s=240), "bwrap")
    res = asyncio.run(outer.run(python_argv("main.py"), files={"main.py": _NESTED}, ro_binds=[ratchet_source()]))
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == ["ok"] * 24


@needs_bwrap
@pytest.mark.parametrize("prlimit", [True, False], ids=["prlimit", "preexec_fn"])
def test_the_box_runs_under_the_same_limits_whichever_sets_them(prlimit: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """prlimit's exec (vfork-able, the default) and the preexec_fn fallback give the program the same limits."""
    import ratchet.sandbox.box as box
    from ratchet.sandbox.host import box_rlimits

    if not prlimit:
        monkeypatch.setattr(box, "PRLIMIT", None)
    elif box.PRLIMIT is None:
        pytest.skip("prlimit (util-linux) is not installed")
    code = ("import json, resource\nnames = {'cpu': 'CPU', 'as': 'AS', 'nproc': 'NPROC', 'fsize': 'FSIZE', 'core': 'CORE'}\n"
            "print(json.dumps({k: resource.getrlimit(getattr(resource, 'RLIMIT_' + v)) for k, v in names.items()}))")
    limits = {"memory_mb": 300, "cpu_s": 7, "file_mb": 3}
    r = run_py(code, "bwrap", **limits)
    assert r.returncode == 0, r.stderr
    got = {k: tuple(v) for k, v in json.loads(r.stdout).items()}
    want = box_rlimits(SandboxLimits(**{"wall_s": 10.0, **limits}), got["nproc"][0])
    assert got == want
