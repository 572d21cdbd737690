"""Secrets never reach the ledger, traces, memory, reports or logs, end to end through the CLI.

An API key sits in the environment, the model puts it in its replies (to the harness and to the
proposer), the harness prints it, returns it and raises with it. After `ratchet eval`, `ratchet
evolve`, `ratchet log`, `ratchet show` and `ratchet report`, the key appears in none of their output
and in no file they wrote - while "[REDACTED]" does, which shows the key really flowed through.

Not covered by redaction (see docs/security.md): the model cache (.ratchet/cache.sqlite keeps replies
verbatim, so a cached call returns exactly what the model said) and git objects of a candidate whose
edits themselves contain a secret.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from test_crash_evolve import cli_env, ratchet_argv, scripted_project

OPENAI_KEY = "sk-redactme-0123456789abcdefghijklmn"
SERVICE_TOKEN = "acme-token-Zq93kLmP20xx"  # no key-like shape: caught only because its variable is named *TOKEN

LEAKY_MODEL = '''
import os, re

def reply(messages, params):
    leak = f"(debug: OPENAI_API_KEY={os.environ['OPENAI_API_KEY']} token {os.environ['ACME_SERVICE_TOKEN']})"
    if "You improve an AI agent's harness" in messages[0]["content"]:
        return (f"RATIONALE: the key is {os.environ['OPENAI_API_KEY']}, use it {leak}\\n"
                f"HYPOTHESIS: with {os.environ['ACME_SERVICE_TOKEN']} the score rises\\n\\n"
                "rules.md\\n<<<<<<< SEARCH\\n=======\\nCheck every sum twice.\\n>>>>>>> REPLACE\\n")
    m = re.search(r"(-?\\d+)\\s*\\+\\s*(-?\\d+)", messages[-1]["content"])
    return f"{int(m.group(1)) + int(m.group(2))} {leak}" if m else leak
'''

LEAKY_HARNESS = '''
def solve(task, ctx):
    reply = ctx.llm(task.input)
    print("the model said:", reply)  # into the trajectory's log
    if int(task.id[1:]) % 3 == 0:
        raise RuntimeError(f"cannot parse {reply}")  # into the trajectory's error
    return reply  # into the trajectory's output
'''


def test_secrets_reach_no_ledger_row_file_report_or_output(tmp_path: Path) -> None:
    root = scripted_project(tmp_path / "p")
    (root / "model.py").write_text(LEAKY_MODEL)
    (root / "harness" / "harness.py").write_text(LEAKY_HARNESS)
    text = (root / "ratchet.toml").read_text().replace('proposer = "search"', 'proposer = "llm"')
    (root / "ratchet.toml").write_text(text)
    env = cli_env(tmp_path / "tmp", OPENAI_API_KEY=OPENAI_KEY, ACME_SERVICE_TOKEN=SERVICE_TOKEN)
    secrets = (OPENAI_KEY, SERVICE_TOKEN)

    outputs = []
    for args in (["eval", str(root)], ["evolve", str(root), "--rounds", "2"], ["log", str(root)],
                 ["report", "latest", "--project", str(root), "-o", str(tmp_path / "report.html")]):
        res = subprocess.run(ratchet_argv(*args), env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        outputs.append(res.stdout + res.stderr)
    with sqlite3.connect(root / ".ratchet" / "ledger.sqlite") as c:
        cand = c.execute("select id from candidates order by round").fetchone()[0]
    res = subprocess.run(ratchet_argv("show", str(root), cand), env=env, capture_output=True, text=True, timeout=120)
    outputs.append(res.stdout + res.stderr)

    for out in outputs:
        for secret in secrets:
            assert secret not in out, f"a secret reached the CLI output:\n{out[-1500:]}"
    written = [p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts and p.name != "cache.sqlite"]
    written.append(tmp_path / "report.html")
    assert any(p.name == "ledger.sqlite" for p in written) and any(p.name == "memory.md" for p in written)
    for path in written:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"a secret reached {path.relative_to(tmp_path)}"

    with sqlite3.connect(root / ".ratchet" / "ledger.sqlite") as c:
        rows = " ".join(str(r) for table in ("rollouts", "candidates", "lessons", "run_state", "runs", "events")
                        for r in c.execute(f"select * from {table}"))  # noqa: S608 - fixed table names
    assert rows.count("[REDACTED]") >= 10, "the secrets should have flowed in (and been redacted)"
    cache = (root / ".ratchet" / "cache.sqlite").read_bytes()
    assert OPENAI_KEY.encode() in cache, "the cache keeps replies verbatim (documented): the key did flow"
