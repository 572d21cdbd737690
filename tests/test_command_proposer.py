"""The command proposer: a real external program (a small Python script standing in for Claude Code, Codex or
aider) runs in the sandbox in a copy of the round's workspace, edits the harness and writes PROPOSAL.md; the
loop evaluates its diff. The same program cannot read the suite data, the ledger, the scorer source or your
home, sees only the environment variables the config names, and has no network."""

import asyncio
import json
import socket
import textwrap
from pathlib import Path

import pytest

import ratchet
from conftest import PROJECT_TOML, SEED_PARAMS, fake_project, make_project_dir
from ratchet.config import CommandSection, ConfigError
from ratchet.evolve.run import EvolveOptions, evolve
from ratchet.harness.params import parse_params
from ratchet.ledger import Ledger
from ratchet.loop.proposers.base import ProposalContext, ProposalError
from ratchet.loop.proposers.command import CommandProposer, read_proposal_text
from ratchet.loop.views import show_text
from ratchet.loop.workspace import WorkspaceInputs, write_workspace
from ratchet.sandbox import python_roots
from ratchet.types import CandidateStatus

AGENT = '''
import json, os, socket, sys
from pathlib import Path

def can_read(path):
    try:
        Path(path).read_bytes()
        return True
    except OSError:
        return False

def can_list(path):
    try:
        os.listdir(path)
        return True
    except OSError:
        return False

def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False

secrets = json.loads(sys.argv[1])
seen = {"brief": Path("BRIEF.md").is_file(), "suite": can_read(secrets["suite"]), "ledger": can_read(secrets["ledger"]),
        "scorer": can_read(secrets["scorer"]), "home": can_read(secrets["home"]), "project": can_list(secrets["project"]),
        "real_home": os.listdir(secrets["real_home"]) if can_list(secrets["real_home"]) else [],
        "secret_env": os.environ.get("RATCHET_TEST_API_KEY"), "allowed_env": os.environ.get("RATCHET_TEST_ALLOWED"),
        "network": can_connect(secrets["port"]), "cwd": os.getcwd()}
print(json.dumps(seen))
params = Path("harness/params.toml")
params.write_text(params.read_text().replace("value = 0.9", "value = 0.1"))
Path("PROPOSAL.md").write_text("RATIONALE: the replies are off by one at temperature 0.9\\n"
                               "HYPOTHESIS: at temperature 0.1 wrong answers vanish on dev\\n")
'''


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    yield server.getsockname()[1]
    server.close()


def test_external_program_edits_the_harness_and_cannot_reach_secrets(tmp_path, monkeypatch, listener):
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    (agent_dir / "agent.py").write_text(AGENT)
    root = make_project_dir(tmp_path / "p", n_tasks=24)
    home = tmp_path / "home"  # the user's home, as the ratchet process sees it, with a credential in it
    (home / ".config").mkdir(parents=True)
    (home / ".config" / "credentials").write_text("token = sk-in-your-home\n")
    real_home = Path.home()
    monkeypatch.setenv("HOME", str(home))
    secrets = {"suite": str(root / "tasks.jsonl"), "ledger": str(root / ".ratchet" / "ledger.sqlite"),
               "scorer": str(Path(ratchet.__file__).parent / "suites" / "jsonl.py"),
               "home": str(home / ".config" / "credentials"), "real_home": str(real_home), "project": str(root),
               "port": listener}
    command = textwrap.dedent(f"""
        [loop.command]
        argv = ["python", "{agent_dir / 'agent.py'}", {json.dumps(json.dumps(secrets))}]
        env = ["RATCHET_TEST_ALLOWED", "RATCHET_TEST_UNSET"]
        ro_paths = ["{agent_dir}"]
        timeout_s = 60
        """)
    (root / "ratchet.toml").write_text(PROJECT_TOML.replace('proposer = "search"', 'proposer = "command"') + command)
    monkeypatch.setenv("RATCHET_TEST_API_KEY", "sk-not-for-the-agent")
    monkeypatch.setenv("RATCHET_TEST_ALLOWED", "passed-by-name")
    monkeypatch.delenv("RATCHET_TEST_UNSET", raising=False)
    proj = fake_project(root)
    try:
        outcome = asyncio.run(evolve(proj, EvolveOptions(rounds=1), say=lambda m: None))
    finally:
        asyncio.run(proj.aclose())
    assert Path(secrets["ledger"]).is_file() and Path(secrets["suite"]).is_file()  # they exist: the sandbox hid them
    ledger = Ledger(proj.cfg.ledger_url)
    cand = ledger.candidates(outcome.run_id)[0]
    assert cand["status"] == CandidateStatus.ACCEPTED, cand["decision"]
    assert cand["rationale"] == "the replies are off by one at temperature 0.9"
    assert cand["hypothesis"] == "at temperature 0.1 wrong answers vanish on dev"
    assert "-value = 0.9" in cand["diff"] and "+value = 0.1" in cand["diff"]

    meta = ledger.get_state(outcome.run_id, "proposal/1")["meta"]
    seen = json.loads(meta["output_tail"].splitlines()[0])
    assert seen["brief"] and seen["cwd"] == "/sandbox"
    assert not any(seen[k] for k in ("suite", "ledger", "scorer", "home", "project", "network")), seen
    assert seen["secret_env"] is None and seen["allowed_env"] == "passed-by-name"
    # of the real home only the path to the interpreter is there (bound read-only so that python runs)
    interpreter = {r.relative_to(real_home).parts[0] for r in python_roots() if real_home in r.parents}
    assert set(seen["real_home"]) <= interpreter
    assert meta["env_passed"] == ["RATCHET_TEST_ALLOWED"] and meta["env_missing"] == ["RATCHET_TEST_UNSET"]
    assert "command: python" in show_text(ledger, cand["id"])


def _ctx(tmp_path) -> ProposalContext:
    files = {"harness.py": "def solve(task, ctx):\n    return ctx.llm(task.input)\n", "params.toml": SEED_PARAMS}
    params = parse_params(SEED_PARAMS)
    ws = write_workspace(tmp_path / "state" / "workspaces" / "run" / "r001", WorkspaceInputs("run", 1, files, params, []))
    return ProposalContext(round=1, files=files, params=params, failures_prompt="", failure_summary={}, lessons=[],
                           history=[], seed=1, workspace=ws)


def _run(tmp_path, code: str, **spec):
    script = tmp_path / "bin" / "a.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(code)
    proposer = CommandProposer(CommandSection(argv=["python", str(script)], ro_paths=[str(script.parent)], timeout_s=20,
                                              **spec))
    return asyncio.run(proposer.propose(_ctx(tmp_path)))


def test_without_proposal_md_the_rationale_falls_back(tmp_path):
    p = _run(tmp_path, "from pathlib import Path\nPath('harness/rules.md').write_text('Answer with a number.\\n')\n")
    assert p.edits == {"rules.md": "Answer with a number.\n"}
    assert "no RATIONALE line" in p.rationale and "rules.md" in p.rationale and "no HYPOTHESIS" in p.hypothesis


@pytest.mark.parametrize("code, message", [
    ("import sys\nprint('boom')\nsys.exit(3)\n", "exited with code 3"),
    ("pass\n", "changed nothing under harness/"),
    ("import os\nos.symlink('/etc/passwd', 'harness/rules.md')\n", "symbolic link"),
    ("from pathlib import Path\nPath('harness/harness.py').write_text('def solve(:\\n')\n", "syntax error"),
    ("from pathlib import Path\nPath('harness/skills').mkdir()\nPath('harness/skills/s.py').write_text('x = 1\\n')\n",
     "defines no top-level function run"),
])
def test_a_failed_run_is_a_failed_proposal_with_the_reason(tmp_path, code, message):
    with pytest.raises(ProposalError, match=message) as info:
        _run(tmp_path, code)
    assert info.value.attempts and "returncode" in info.value.attempts[0]


def test_ro_paths_may_not_show_the_project_or_home(tmp_path):
    proposer = CommandProposer(CommandSection(argv=["python", "x.py"], ro_paths=[str(tmp_path)]))
    with pytest.raises(ConfigError, match="holds the project, its state or your home"):
        asyncio.run(proposer.propose(_ctx(tmp_path)))
    assert CommandSection(argv=["x"], env=["A"]).network is False
    with pytest.raises(ValueError, match="variable names"):
        CommandSection(argv=["x"], env=["$HOME"])


def test_proposal_md_labels():
    text = "# Proposal\n**RATIONALE:** the format\nfails often\n\nHYPOTHESIS: format failures drop\nextra\n"
    assert read_proposal_text(text) == {"RATIONALE": "the format fails often", "HYPOTHESIS": "format failures drop extra"}


def test_network_true_reaches_the_host_and_false_does_not(tmp_path, listener):
    code = ("import socket, sys\nfrom pathlib import Path\ntry:\n    socket.create_connection(('127.0.0.1', "
            f"{listener}), timeout=2).close()\n    ok = 'yes'\nexcept OSError:\n    ok = 'no'\n"
            "Path('harness/rules.md').write_text(ok + '\\n')\n")
    assert _run(tmp_path, code, network=True).edits == {"rules.md": "yes\n"}
    assert _run(tmp_path, code).edits == {"rules.md": "no\n"}
