"""Bad input through the real CLI: broken project and harness files, missing skills, a proposer that
answers garbage, a model endpoint that is down, slow, rate-limited or replies garbage, a full disk and
a locked ledger. Each gives a clear message naming what to fix (exit code 2, no traceback), and
nothing recorded is lost: running the same command again, once the cause is gone, finishes the work.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from test_crash_evolve import assert_same_run, cli_env, ratchet_argv, run_record, scripted_project

KEY = "sk-badinput-0123456789abcdefghijk"


def cli(*args: str, env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """`ratchet ARGS` as a real process (the installed entry point, its exit code and output)."""
    res = subprocess.run(ratchet_argv(*args), env=env, capture_output=True, text=True, timeout=timeout)
    return res.returncode, " ".join((res.stdout + res.stderr).split())  # rich wraps long lines


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch):
    """`ratchet ARGS` in this process (typer's CliRunner): the same command code without a new
    interpreter's start-up, for the many quick cases. An uncaught exception fails the test."""
    from typer.testing import CliRunner

    from ratchet.cli import app
    from ratchet.console import console, err_console

    for c in (console, err_console):
        monkeypatch.setattr(c, "width", 250)  # no wrapping inside the paths the messages name

    def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, " ".join(result.output.split())

    return run


def assert_clear_failure(code: int, out: str, *needles: str) -> None:
    assert code == 2, f"exit code {code}: {out[-2000:]}"
    assert "Traceback" not in out, out[-3000:]
    for needle in needles:
        assert needle in out, f"{needle!r} not in: {out[-1500:]}"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def ledger_rows(root: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(root / ".ratchet" / "ledger.sqlite") as c:
        return c.execute(sql).fetchall()


# -- the project file, params.toml, the harness ----------------------------------------------------------

PROJECT_CASES = {
    "not TOML": (lambda r: (r / "ratchet.toml").write_text((r / "ratchet.toml").read_text() + "this is = = not toml\n"),
                 ["ratchet.toml", "not valid TOML", "line"]),
    "unknown key": (lambda r: edit(r / "ratchet.toml", "concurrency = 16", "concurency = 16"), ["[eval.concurency]", "unknown key"]),
    "wrong type": (lambda r: edit(r / "ratchet.toml", "max_steps = 4", 'max_steps = "four"'), ["[eval.max_steps]", "integer"]),
    "splits": (lambda r: edit(r / "ratchet.toml", "train = 0.2", "train = 0.5"), ["[suite.splits]", "sum to 1"]),
    "backend": (lambda r: edit(r / "ratchet.toml", 'backend = "scripted"', 'backend = "gpt"'), ["[model.backend]", "scripted"]),
    "harness dir": (lambda r: edit(r / "ratchet.toml", 'harness = "harness"', 'harness = "nope"'), ["harness = 'nope'", "not a directory"]),
    "suite file": (lambda r: edit(r / "ratchet.toml", 'path = "tasks.jsonl"', 'path = "missing.jsonl"'), ["[suite] path", "missing.jsonl"]),
    "suite data": (lambda r: (r / "tasks.jsonl").write_text((r / "tasks.jsonl").read_text() + '{"id": broken\n'),
                   ["tasks.jsonl:17", "not valid JSON"]),
    "model script": (lambda r: edit(r / "ratchet.toml", 'script = "model.py"', 'script = "gone.py"'), ["gone.py", "does not exist"]),
    "params not TOML": (lambda r: (r / "harness" / "params.toml").write_text("[[[\n"), ["params.toml", "not valid TOML"]),
    "param range": (lambda r: edit(r / "harness" / "params.toml", "value = 0.9", "value = 7.5"),
                    ["params.toml", "[temperature]", "outside range"]),
    "knob type": (lambda r: (r / "harness" / "params.toml").write_text('[t]\ntype = "complex"\nvalue = 1\n'),
                  ["params.toml", "[t]", "type = 'complex'"]),
    "skill not in library": (lambda r: (r / "harness" / "params.toml").write_text('[skills]\nlibrary = ["calculator"]\nenabled = ["web"]\n'),
                             ["params.toml", "[skills]", "not in library"]),
    "harness syntax": (lambda r: (r / "harness" / "harness.py").write_text("def solve(task, ctx) return 1\n"),
                       ["harness.py:1", "syntax error"]),
    "no harness.py": (lambda r: (r / "harness" / "harness.py").unlink(), ["no harness.py", "solve(task, ctx)"]),
}


@pytest.mark.parametrize("case", list(PROJECT_CASES))
def test_broken_project_files_are_named_with_what_to_fix(case: str, tmp_path: Path, run_cli) -> None:
    root = scripted_project(tmp_path / "p")
    breaks, needles = PROJECT_CASES[case]
    breaks(root)
    assert_clear_failure(*run_cli("eval", str(root)), *needles)
    assert_clear_failure(*run_cli("evolve", str(root), "--rounds", "1"), *needles)
    if case in ("not TOML", "harness syntax"):  # and the installed command says the same
        assert_clear_failure(*cli("eval", str(root), env=cli_env(tmp_path / "tmp")), *needles)


@pytest.mark.parametrize("program, params, needle", [
    ("x = 1\n", None, "harness.py defines no solve(task, ctx)"),
    ("def solve(task, ctx):\n    return ctx.skill('web', task.input)\n",
     '[skills]\nlibrary = ["web"]\nenabled = ["web"]\n', "skill 'web' has no file skills/web.py"),
])
def test_a_harness_that_fails_on_every_task_says_why(program: str, params: str | None, needle: str, tmp_path: Path,
                                                     run_cli) -> None:
    root = scripted_project(tmp_path / "p")
    (root / "harness" / "harness.py").write_text(program)
    if params:
        (root / "harness" / "params.toml").write_text(params)
    code, out = run_cli("eval", str(root))
    assert code == 0 and "Traceback" not in out, out[-2000:]
    assert re.search(r"most common error \((\d+) of \1 rollouts\)", out) and needle in out, out[-1500:]


def test_a_proposer_answering_garbage_is_recorded_and_the_loop_goes_on(tmp_path: Path, run_cli) -> None:
    root = scripted_project(tmp_path / "p")
    edit(root / "ratchet.toml", 'proposer = "search"', 'proposer = "llm"')
    with (root / "model.py").open("a") as f:
        f.write("\n_answer = reply\n\ndef reply(messages, params):\n"
                "    if \"You improve an AI agent's harness\" in messages[0]['content']:\n"
                "        return 'lol \\x00 {{{ <<<<<<< SEARCH\\n======='\n"
                "    return _answer(messages, params)\n")
    code, out = run_cli("evolve", str(root), "--rounds", "2")
    assert code == 0 and "finished: round budget reached (2)" in out, out[-2000:]
    rows = ledger_rows(root, "select round, status, rationale from candidates order by round")
    assert [(r, s) for r, s, _ in rows] == [(1, "failed"), (2, "failed")]
    assert all("no usable proposal after 3 attempts" in why for _, _, why in rows)
    code, out = run_cli("log", str(root))
    assert code == 0 and out.count("(no usable proposal)") == 2


# -- a model endpoint that misbehaves -----------------------------------------------------------------------


class Endpoint:
    """An OpenAI-compatible loopback server whose behaviour the test switches: ok, slow, ratelimit,
    badjson, error (HTTP 503) or down (closed: connection refused)."""

    def __init__(self) -> None:
        self.mode, self.requests, self.fail_after = "ok", 0, None
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                endpoint.requests += 1
                mode = endpoint.mode
                if endpoint.fail_after is not None and endpoint.requests > endpoint.fail_after:
                    mode = "error"
                if mode == "slow":
                    time.sleep(2.0)
                if mode == "ratelimit" and endpoint.requests % 2:
                    return self._send(429, b'{"error": "rate limited"}', {"Retry-After": "0.1"})
                if mode == "error":
                    return self._send(503, b'{"error": "overloaded"}')
                if mode == "badjson":
                    return self._send(200, b"<html>502 Bad Gateway</html>")
                m = re.search(r"(-?\d+)\s*\+\s*(-?\d+)", body["messages"][-1]["content"])
                text = str(int(m.group(1)) + int(m.group(2))) if m else "?"
                reply = {"choices": [{"message": {"content": text}}] * body.get("n", 1),
                         "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
                self._send(200, json.dumps(reply).encode())

            def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    for k, v in {"content-type": "application/json", "content-length": str(len(data)), **(headers or {})}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): fine
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def endpoint():
    ep = Endpoint()
    try:
        yield ep
    finally:
        ep.close()


def openai_project(root: Path, url: str, n_tasks: int = 16) -> Path:
    scripted_project(root, n_tasks=n_tasks)
    edit(root / "ratchet.toml", 'backend = "scripted"', f'backend = "openai"\nbase_url = "{url}"\ntimeout_s = 0.5\nmax_retries = 1')
    edit(root / "ratchet.toml", 'script = "model.py"\n', "")
    edit(root / "harness" / "params.toml", "value = 0.9", "value = 0.0")
    return root


@pytest.mark.parametrize("mode, needles", [
    ("down", ["failed after 2 attempt(s)", "connection error"]),
    ("slow", ["failed after 2 attempt(s)", "timed out after 0.5 s"]),
    ("error", ["failed after 2 attempt(s)", "HTTP 503"]),
    ("badjson", ["not valid JSON", "502 Bad Gateway"]),
])
def test_an_endpoint_failure_stops_the_eval_and_records_no_false_failures(mode: str, needles: list[str], tmp_path: Path,
                                                                         run_cli) -> None:
    with endpoint() as ep:
        root, first_url = openai_project(tmp_path / "p", ep.url), ep.url
        env = {"OPENAI_API_KEY": KEY}
        if mode == "down":
            ep.close()
        else:
            ep.mode = mode
        code, out = run_cli("eval", str(root), env=env)
        assert_clear_failure(code, out, ep.url, *needles, "run the same command again")
        assert KEY not in out
        assert ledger_rows(root, "select count(*) from rollouts") == [(0,)], "an outage was recorded as task failures"
    with endpoint() as ep:  # the endpoint is back (on a new port): the same command finishes the work
        edit(root / "ratchet.toml", first_url, ep.url)
        code, out = run_cli("eval", str(root), env=env)
        assert code == 0 and "100.0%" in out and "outcomes: ok" in out, out[-2000:]


def test_a_rate_limited_endpoint_is_retried_to_the_right_answers(tmp_path: Path, run_cli) -> None:
    with endpoint() as ep:
        ep.mode = "ratelimit"
        root = openai_project(tmp_path / "p", ep.url)
        edit(root / "ratchet.toml", "max_retries = 1", "max_retries = 4")
        code, out = run_cli("eval", str(root), env={"OPENAI_API_KEY": KEY})
        assert code == 0 and "100.0%" in out, out[-2000:]
        n = ledger_rows(root, "select count(*) from rollouts")[0][0]
        assert n > 0 and ep.requests >= 2 * n, "every call was refused once and retried"


@pytest.mark.slow
def test_an_outage_mid_evolve_loses_nothing_and_resumes_to_the_same_result(tmp_path: Path) -> None:
    with endpoint() as ep:
        root, ref = openai_project(tmp_path / "p", ep.url), openai_project(tmp_path / "ref", ep.url)
        for r in (root, ref):  # temperature 0.9: the endpoint ignores it, so rounds are cheap rejections
            edit(r / "harness" / "params.toml", "value = 0.0", "value = 0.9")
        env = cli_env(tmp_path / "tmp", OPENAI_API_KEY=KEY)
        code, out = cli("evolve", str(ref), "--rounds", "3", env=env)
        assert code == 0, out[-2000:]
        ep.requests, ep.fail_after = 0, 25  # the endpoint dies after 25 calls, mid-round
        code, out = cli("evolve", str(root), "--rounds", "3", env=env)
        assert_clear_failure(code, out, "HTTP 503", "--resume")
        # not a bare "503": a rollout's timing (e.g. "seconds": 0.3503) may contain it
        assert not [r for r in ledger_rows(root, "select data from rollouts") if "unavailable" in r[0] or "HTTP 503" in r[0]]
        ep.fail_after = None
        code, out = cli("evolve", str(root), "--rounds", "3", "--resume", env=env)
        assert code == 0, out[-2000:]
    assert_same_run(run_record(root), run_record(ref))


# -- a full disk -----------------------------------------------------------------------------------------


@contextmanager
def tiny_disk(path: Path, size: str):
    """A small tmpfs at `path` (needs root and mount rights; skips otherwise)."""
    path.mkdir(parents=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({res.stderr.strip() or 'mount failed'}); the full-disk "
                    "case is then covered only by the simulated ENOSPC tests in test_crash_files.py")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_mid_evolve_is_named_and_the_run_resumes(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", "900k") as disk:
        root = scripted_project(disk / "p", n_tasks=16)
        (root / "harness" / "harness.py").write_text("def solve(task, ctx):\n    print('x' * 3900)\n    return ctx.llm(task.input)\n")
        env = cli_env(tmp_path / "tmp")
        code, out = cli("evolve", str(root), "--rounds", "4", env=env)
        assert_clear_failure(code, out, "run the same command again" if "ledger" in out else "disk")
        assert re.search(r"disk is full|No space left|disk full", out), out[-1500:]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        code, out = cli("evolve", str(root), "--rounds", "4", "--resume", env=env)
        assert code == 0 and "finished: round budget reached (4)" in out, out[-2000:]
        assert ledger_rows(root, "pragma integrity_check") == [("ok",)]
        assert ledger_rows(root, "select round from candidates order by round") == [(1,), (2,), (3,), (4,)]
        assert ledger_rows(root, "select count(*) from (select 1 from rollouts group by eval_id, task_id, epoch having count(*) > 1)") == [(0,)]
        fsck = subprocess.run(["git", "fsck", "--no-progress"], cwd=root / "harness", capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stderr


# -- a locked ledger ---------------------------------------------------------------------------------------


@contextmanager
def locked_ledger(root: Path, seconds: float | None):
    """Another program holds the ledger's write lock (BEGIN EXCLUSIVE) for `seconds` (None: until the end)."""
    conn = sqlite3.connect(root / ".ratchet" / "ledger.sqlite", timeout=1, check_same_thread=False, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(seconds, lambda: conn.execute("COMMIT")) if seconds else None
    if timer:
        timer.start()
    try:
        yield
    finally:
        if timer:
            timer.join()
        else:
            conn.execute("COMMIT")
        conn.close()


def test_a_briefly_locked_ledger_is_waited_for(tmp_path: Path, run_cli) -> None:
    root = scripted_project(tmp_path / "p")
    assert run_cli("eval", str(root), "--split", "train")[0] == 0
    before = ledger_rows(root, "select count(*) from rollouts")[0][0]
    with locked_ledger(root, seconds=3):
        code, out = run_cli("eval", str(root))
    assert code == 0, out[-2000:]
    assert ledger_rows(root, "select count(*) from rollouts")[0][0] > before


@pytest.mark.slow
def test_a_ledger_locked_for_good_is_named_and_nothing_is_lost(tmp_path: Path) -> None:
    root = scripted_project(tmp_path / "p")
    env = cli_env(tmp_path / "tmp")
    assert cli("eval", str(root), "--split", "train", env=env)[0] == 0
    before = ledger_rows(root, "select count(*) from rollouts")[0][0]
    started = time.monotonic()
    with locked_ledger(root, seconds=None):
        code, out = cli("eval", str(root), env=env, timeout=120)
    assert_clear_failure(code, out, "database is locked", "lock")
    assert time.monotonic() - started < 90
    assert ledger_rows(root, "select count(*) from rollouts")[0][0] == before
    code, out = cli("eval", str(root), env=env)
    assert code == 0, out[-2000:]
