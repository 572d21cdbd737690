"""Tool calling in the harness: ctx.llm(..., tools=[...]) and ctx.call(tool_call), through the real sandbox,
on a scripted model speaking the prompt convention (the local backend's), with every step in the trajectory."""

import asyncio
import json

from ratchet.harness.budget import EpisodeLimits
from ratchet.harness.runtime import EpisodeServices, run_episode
from ratchet.models.scripted import ScriptedModel
from ratchet.sandbox import Sandbox, SandboxLimits
from ratchet.types import Task

AGENT = '''
def solve(task, ctx):
    messages = [{"role": "user", "content": task.input}]
    for _ in range(4):
        reply = ctx.llm(messages, tools=["python", "calculator", "double"])
        messages.append(reply)
        if not reply["tool_calls"]:
            return reply["content"]
        for call in reply["tool_calls"]:
            messages.append(ctx.call(call))
    return None
'''
DOUBLE = 'def run(x: int):\n    """Double a number."""\n    return 2 * x\n'
PARAMS = '[skills]\nlibrary = ["calculator", "python", "double"]\nenabled = ["calculator", "python", "double"]\n'


def call(name, **args):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'


def scripted(turns):
    """Replies by turn: the number of tool responses in the conversation so far picks the next reply."""
    seen = []

    def reply(messages, params):
        seen.append(messages)
        done = sum("<tool_response>" in (m["content"] or "") for m in messages)
        return turns[min(done, len(turns) - 1)]

    return ScriptedModel(reply), seen


def episode(harness_factory, model, code=AGENT):
    h = harness_factory(code, PARAMS, **{"skills__double.py": DOUBLE})
    services = EpisodeServices(model=model, sandbox=Sandbox(SandboxLimits(wall_s=30)),
                               limits=EpisodeLimits(max_steps=12, max_tokens=5000, timeout_s=30, loop_repeats=3))
    return asyncio.run(run_episode(h, Task("t1", "What is 6*7, doubled?"), services, seed=0))


def test_tool_calls_round_trip_through_skills_in_the_sandbox(harness_factory):
    model, seen = scripted([call("python", code="print(6 * 7)"), call("double", x=42), "The answer is 84."])
    t = episode(harness_factory, model)
    assert t.output == "The answer is 84." and t.error is None and t.tool_errors == 0
    system = seen[0][0]["content"]  # the tools' specs reached the model, a skill file's from its signature
    assert '"name": "python"' in system and '"name": "double"' in system and "Double a number." in system
    assert "<tool_response>\n42\n</tool_response>" in seen[1][-1]["content"]  # the python skill's stdout
    assert [c["name"] for c in t.tool_calls] == ["python", "double"]
    assert [c["call_id"] for c in t.tool_calls] == ["call_0", "call_0"]
    assert t.tool_calls[1]["result"] == "84"
    assert t.messages[0]["tools"] == ["python", "calculator", "double"]
    assert t.messages[0]["tool_calls"][0]["function"]["name"] == "python"
    assert t.messages[2]["tool_calls"] == []


def test_a_bad_tool_call_is_an_error_the_model_reads_not_a_crash(harness_factory):
    model, seen = scripted(['<tool_call>{"name": "rm", "arguments": {}}</tool_call>',
                            '<tool_call>{"name": "double", "arguments": "x=2"}</tool_call>',
                            call("python", code="raise SystemExit(3)"), "gave up"])
    t = episode(harness_factory, model)
    assert t.output == "gave up" and t.error is None
    responses = [m["content"] for m in seen[-1] if "<tool_response>" in (m["content"] or "")]
    assert "ERROR: there is no tool 'rm'" in responses[0]
    assert "the arguments of double are not valid JSON" in responses[1]
    assert "[exit code 3]" in responses[2]
    assert t.tool_errors == 3


def test_without_tools_llm_still_returns_text(harness_factory):
    t = episode(harness_factory, ScriptedModel(["plain"]), code="def solve(task, ctx):\n    return ctx.llm(task.input)\n")
    assert t.output == "plain" and "tools" not in t.messages[0]
