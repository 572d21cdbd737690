"""The agent proposer: a scripted meta-agent (a ChatModel whose replies are a fixed sequence of JSON actions)
drives the real loop. It reads its workspace, is refused a holdout episode, writes a new skill, enables it,
checks it with run_episode, and finishes; the loop accepts the change on paired evidence and the skill runs
in the sandbox. Malformed actions come back as errors the agent sees; they never end the proposal."""

import asyncio
import json
import re

import pytest

from conftest import PROJECT_TOML, SEED_PARAMS, fake_project, make_project_dir
from ratchet.evolve.run import EvolveOptions, evolve
from ratchet.harness.params import parse_params
from ratchet.ledger import Ledger
from ratchet.loop.proposers.agent import AgentProposer
from ratchet.loop.proposers.agent_tools import ToolError, parse_action
from ratchet.loop.proposers.base import ProposalContext, ProposalError
from ratchet.loop.record import Decision
from ratchet.loop.views import show_text
from ratchet.loop.workspace import WorkspaceInputs, write_workspace
from ratchet.models.scripted import ScriptedModel
from ratchet.suites import tasks_for_split
from ratchet.types import CandidateStatus

SKILL = '''import re


def run(text):
    """Compute the 'A op B' in a task's text exactly."""
    m = re.search(r"(-?\\d+)\\s*([+*-])\\s*(-?\\d+)", text)
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    return {"+": a + b, "-": a - b, "*": a * b}[op]
'''
HARNESS = '''def solve(task, ctx):
    if "arith" in ctx.skills_enabled:
        return str(ctx.skill("arith", task.input))
    return ctx.llm(task.input)
'''
META_AGENT = '''import json

ACTIONS = [
    "Let me look around first.",  # malformed: no JSON action
    {"tool": "read", "args": {"path": "BRIEF.md"}},
    {"tool": "list", "args": {"path": "trajectories"}},
    {"tool": "run_episode", "args": {"task_id": HOLDOUT_ID}},  # refused: holdout
    {"tool": "write", "args": {"path": "harness/skills/arith.py", "content": SKILL}},
    {"tool": "edit", "args": {"path": "harness/params.toml", "search": 'value = "plain"',
                              "replace": 'value = "plain"\\n\\n[skills]\\nlibrary = ["arith"]\\nenabled = ["arith"]'}},
    {"tool": "write", "args": {"path": "harness/harness.py", "content": HARNESS}},
    {"tool": "run_episode", "args": {"task_id": DEV_ID}},
    {"tool": "run_episode", "args": {"task_id": TRAIN_ID}},
    {"tool": "finish", "args": {"rationale": "every dev failure is an arithmetic slip at temperature 0.9",
                                "hypothesis": "with an exact arith skill, wrong_answer failures vanish on dev",
                                "summary": "add an arith skill and use it"}},
]


def reply(messages, params):
    n = sum(m["role"] == "assistant" for m in messages)
    action = ACTIONS[min(n, len(ACTIONS) - 1)]
    return action if isinstance(action, str) else json.dumps(action)
'''


def _agent_project(tmp_path):
    toml = PROJECT_TOML.replace('proposer = "search"', 'proposer = "agent"') + (
        '\n[loop.proposer_model]\nbackend = "scripted"\nname = "meta-agent"\nscript = "meta_agent.py"\ncache = false\n')
    root = make_project_dir(tmp_path / "p", n_tasks=24, toml=toml)
    proj = fake_project(root)
    splits = {s: [t.id for t in tasks_for_split(proj.suite, s, proj.cfg.suite.splits, proj.cfg.suite.split_salt)]
              for s in ("train", "dev", "holdout", "test")}
    asyncio.run(proj.aclose())
    script = (f"HOLDOUT_ID = {splits['holdout'][0]!r}\nDEV_ID = {splits['dev'][0]!r}\nTRAIN_ID = {splits['train'][0]!r}\n"
              f"SKILL = {SKILL!r}\n"
              f"HARNESS = {HARNESS!r}\n" + META_AGENT)
    (root / "meta_agent.py").write_text(script)
    return root, splits


def test_scripted_meta_agent_writes_a_skill_that_the_loop_accepts(tmp_path):
    root, splits = _agent_project(tmp_path)
    proj = fake_project(root)
    try:
        outcome = asyncio.run(evolve(proj, EvolveOptions(rounds=1), say=lambda m: None))
    finally:
        asyncio.run(proj.aclose())
    assert outcome.status == "finished", outcome.reason
    ledger = Ledger(proj.cfg.ledger_url)
    cand = ledger.candidates(outcome.run_id)[0]
    d = Decision.from_json(cand["decision"])
    assert cand["status"] == CandidateStatus.ACCEPTED, (cand["status"], d.reason)
    assert d.dev.p_value < 0.05 and d.dev.mean_diff > 0.5 and d.holdout.confirmed
    assert any("adds a new skill skills/arith.py" in r for r in d.risky)  # the approval gate's risky reason
    assert "skills/arith.py" in cand["diff"] and 'enabled = ["arith"]' in cand["diff"]

    # the skill ran inside the sandboxed episodes the decision rests on (worker-side tool calls)
    rollouts = ledger.rollouts(d.cand_eval)
    assert rollouts and all(r.score == 1.0 for r in rollouts)
    assert all(any(c["name"] == "arith" and not c.get("error") for c in r.tool_calls) for r in rollouts)

    # every step is in the ledger: malformed and refused steps as errors, the probe counted
    steps = ledger.get_state(outcome.run_id, "proposal/1")["meta"]["steps"]
    assert [s.get("tool") for s in steps] == [None, "read", "list", "run_episode", "write", "edit", "write",
                                              "run_episode", "run_episode", "finish"]
    assert "no JSON action" in steps[0]["error"]
    assert "holdout split" in steps[3]["error"] and "never shown" in steps[3]["error"]
    assert steps[7]["result"].startswith("score 1.00")
    probes = ledger.events(outcome.run_id, "probe")
    usage = ledger.get_state(outcome.run_id, "usage")
    assert [e["data"]["split"] for e in probes] == ["dev", "train"]  # the holdout one never ran
    assert usage["rollouts"] == ledger.rollout_count(outcome.run_id) + 2  # the probes are charged, not recorded
    assert steps[8]["result"].startswith("score 1.00")
    assert usage["proposer_tokens"] > 0

    shown = show_text(ledger, cand["id"])
    assert "agent steps (10, 2 errors" in shown and "run_episode(task_id=" in shown and "ERROR task" in shown

    # the workspace the agent read: dev trajectories only, no holdout/test task, no gold answer
    ws = root / ".ratchet" / "workspaces" / outcome.run_id / "r001"
    text = "\n".join(p.read_text() for p in ws.rglob("*") if p.is_file())
    assert (ws / "BRIEF.md").is_file() and (ws / "harness" / "harness.py").is_file()
    assert sorted(p.name for p in (ws / "trajectories").iterdir() if p.name != "INDEX.md")
    for tid in splits["holdout"] + splits["test"]:
        i = int(tid[1:])
        assert not re.search(rf"\b{tid}\b", text) and f"Calculate {i} + {2 * i + 1}." not in text
    golds = {f"q{i}": 3 * i + 1 for i in range(24)}
    for tid in splits["dev"]:
        assert f"the answer '{golds[tid]}'" not in text
    assert "gold answer withheld" in text


def _ctx(tmp_path, probe=None):
    files = {"harness.py": "def solve(task, ctx):\n    return ctx.llm(task.input)\n", "params.toml": SEED_PARAMS}
    params = parse_params(SEED_PARAMS)
    ws = write_workspace(tmp_path / "ws" / "r001", WorkspaceInputs("run", 1, files, params, []))
    return ProposalContext(round=1, files=files, params=params, failures_prompt="", failure_summary={}, lessons=[],
                           history=[], seed=1, workspace=ws, probe=probe)


def test_malformed_actions_are_retried_then_the_step_limit_fails_the_proposal(tmp_path):
    replies = ["not json at all", '{"tool": "fly", "args": {}}', '{"tool": "read"}',
               '{"tool": "read", "args": {"path": "../../etc/passwd"}}', '{"tool": "finish", "args": {"rationale": "x", '
               '"hypothesis": "y"}}', '{"tool": "run_episode", "args": {"task_id": "q1"}}']
    agent = AgentProposer(ScriptedModel(replies), max_steps=6)
    with pytest.raises(ProposalError) as info:
        asyncio.run(agent.propose(_ctx(tmp_path)))
    steps = info.value.attempts
    assert len(steps) == 6 and all(s.get("error") for s in steps)
    errors = [s["error"] for s in steps]
    assert "no JSON action" in errors[0] and "unknown tool 'fly'" in errors[1]
    assert "needs the argument 'path'" in errors[2] and "leaves the harness dir" in errors[3]
    assert "nothing changed yet" in errors[4] and "not available here" in errors[5]
    assert "used all 6 steps" in str(info.value)
    log = (tmp_path / "ws" / "r001.steps.jsonl").read_text().splitlines()
    assert len(log) == 6


def test_agent_edits_only_the_working_copy_and_finishes(tmp_path):
    actions = [{"tool": "write", "args": {"path": "BRIEF.md", "content": "x"}},  # not a harness file
               {"tool": "write", "args": {"path": "harness/scorers/s.py", "content": "x = 1"}},  # not a harness glob
               {"tool": "edit", "args": {"path": "params.toml", "search": "value = 0.9", "replace": "value = 0.1"}},
               {"tool": "grep", "args": {"pattern": "value = 0\\.1"}},
               {"tool": "finish", "args": {"rationale": "cooler", "hypothesis": "dev rises"}}]
    ctx = _ctx(tmp_path)
    agent = AgentProposer(ScriptedModel([json.dumps(a) for a in actions]), max_steps=8)
    proposal = asyncio.run(agent.propose(ctx))
    steps = proposal.meta["steps"]
    assert "not a harness file" in steps[0]["error"] and "would not reach the sandbox" in steps[1]["error"]
    assert steps[3]["result"].startswith("harness/params.toml:")
    assert list(proposal.edits) == ["params.toml"] and "value = 0.1" in proposal.edits["params.toml"]
    assert "value = 0.9" in (ctx.workspace / "harness" / "params.toml").read_text()  # the workspace is untouched
    assert (proposal.rationale, proposal.hypothesis) == ("cooler", "dev rises")


@pytest.mark.parametrize("text, message", [
    ('{"tool": "read", "args": "nope"}', "must be a JSON object"),
    ('{"tool": "read", "args": {"path": 3}}', "must be a string"),
    ('{"tool": "read", "args": {"path": "a", "start": "x"}}', "must be a integer"),
])
def test_parse_action_errors_say_what_to_write(text, message):
    with pytest.raises(ToolError, match=message):
        parse_action(text)


def test_parse_action_tolerates_fences_prose_and_raw_newlines():
    tool, args = parse_action('Sure.\n```json\n{"tool": "write", "args": {"path": "rules.md", "content": "a\nb"}}\n```')
    assert tool == "write" and args["content"] == "a\nb"
    assert parse_action('{"name": "read", "arguments": {"path": "BRIEF.md"}}') == ("read", {"path": "BRIEF.md"})


def test_a_refused_request_is_retried_shorter_then_fails_the_proposal(tmp_path):
    from ratchet.models.base import ModelError

    calls = []

    def refuse_first(messages, params):
        calls.append((sum(len(m["content"]) for m in messages), params.max_tokens))
        if len(calls) == 1:
            raise ModelError("HTTP 400: this model's maximum context length is 2048 tokens")
        if len(calls) == 2:
            return json.dumps({"tool": "edit", "args": {"path": "params.toml", "search": "value = 0.9",
                                                        "replace": "value = 0.2"}})
        return json.dumps({"tool": "finish", "args": {"rationale": "r", "hypothesis": "h"}})

    proposal = asyncio.run(AgentProposer(ScriptedModel(refuse_first)).propose(_ctx(tmp_path)))
    assert "refused the request" in proposal.meta["steps"][0]["error"] and calls[1][1] == calls[0][1] // 2
    assert "value = 0.2" in proposal.edits["params.toml"]

    def always_refuse(messages, params):
        raise ModelError("HTTP 400: too long")

    with pytest.raises(ProposalError, match="refused the request even with the conversation cut"):
        asyncio.run(AgentProposer(ScriptedModel(always_refuse)).propose(_ctx(tmp_path / "again")))


def test_tool_calls_are_actions_and_go_back_as_tool_turns(tmp_path):
    """A model that calls the tools (here by the prompt convention, as the local backend does) acts through
    them: the calls are parsed, checked like JSON actions, and answered as tool turns."""
    def call(name, **args):
        return f'<tool_call>{json.dumps({"name": name, "arguments": args})}</tool_call>'

    actions = [call("read", path="BRIEF.md"), call("read", path=7),  # a bad argument: an error it sees
               call("edit", path="params.toml", search="value = 0.9", replace="value = 0.1"),
               call("finish", rationale="cooler", hypothesis="dev rises")]
    model = ScriptedModel(actions)
    proposal = asyncio.run(AgentProposer(model, max_steps=6).propose(_ctx(tmp_path)))
    steps = proposal.meta["steps"]
    assert [s.get("tool") for s in steps] == ["read", None, "edit", "finish"] and "must be a string" in steps[1]["error"]
    assert "value = 0.1" in proposal.edits["params.toml"]
    system, last = model.calls[0][0][0]["content"], model.calls[-1][0]
    assert '"name": "run_episode"' in system and "<tools>" in system  # the tools were offered as functions
    responses = [m["content"] for m in last if "<tool_response>" in m["content"]]
    assert len(responses) == 3 and "BRIEF.md" in responses[0] and "ERROR" in responses[1]
