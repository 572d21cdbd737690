"""The loop detector's three rules (repeat, cycle, near-repeat), what they must not flag, and one real episode."""

import asyncio
from pathlib import Path

import pytest

from ratchet.config import ConfigError, parse_project
from ratchet.harness.budget import EpisodeBudget, EpisodeLimits
from ratchet.harness.loop_detector import LoopDetector
from ratchet.harness.runtime import run_episode
from ratchet.types import Task

SYSTEM = {"role": "system", "content": "You are a careful agent. " * 40}  # a long prompt every call shares


def llm(*messages):
    return {"op": "llm", "name": None, "messages": [SYSTEM, *messages], "params": {"n": 1}, "args": None, "kwargs": None}


def tool(name, *args):
    return {"op": "tool", "name": name, "args": list(args)}


def first_stop(detector, actions):
    """(index, reason) of the first action the detector stops, or (None, None)."""
    for i, action in enumerate(actions):
        if (why := detector.check(action)) is not None:
            return i, why
    return None, None


def test_a_b_a_b_cycle_ends_at_the_fourth_action():
    actions = [llm({"role": "user", "content": "Find the capital of France."}), tool("search", "capital of France"),
               llm({"role": "user", "content": "Find the capital of France."}), tool("search", "capital of France")]
    i, why = first_stop(LoopDetector(), actions)
    assert i == 3 and why.startswith("loop (cycle): the last 4 actions are a cycle of 2")


def test_a_stuck_conversation_is_a_cycle_though_no_request_repeats():
    # the agent appends the same reply and tool result each turn: every request is longer than the last
    question = {"role": "user", "content": "What is 17 * 23?"}
    turn = [{"role": "assistant", "content": "Action: calculator 17*23"}, {"role": "user", "content": "Observation: 391"}]
    actions = [llm(question), tool("calculator", "17*23"), llm(question, *turn), tool("calculator", "17*23"),
               llm(question, *turn, *turn), tool("calculator", "17*23")]
    i, why = first_stop(LoopDetector(), actions)
    assert why is not None and why.startswith("loop (cycle)") and i <= 5


def test_near_identical_long_replies_are_a_near_repeat():
    q = {"role": "user", "content": "Summarise the report."}
    reply = "The report says that revenue grew in every quarter, driven by the new product line and lower costs"
    history = [q]
    actions = []
    for k in range(4):  # the same long reply with one word changed, sent back with the same complaint
        history = history + [{"role": "assistant", "content": reply.replace("every", ["each", "all", "every", "most"][k])},
                             {"role": "user", "content": "Too long. Shorter, please."}]
        actions.append(llm(*history))
    i, why = first_stop(LoopDetector(), actions)
    # the first call's new part is the whole conversation; calls 2, 3 and 4 each add a near-identical turn
    assert i == 3 and why.startswith("loop (near-repeat): 3 llm actions in a row")
    assert first_stop(LoopDetector(near=1.0), actions) == (None, None)  # similarity 1.0: the rule is off


def test_progress_is_never_a_loop():
    q = {"role": "user", "content": "Compute the table."}
    react, history = [], [q]
    for k in range(6):  # a ReAct agent: distinct steps, short tool calls one character apart
        history = history + [{"role": "assistant", "content": f"Action: calculator 12+{k}"},
                             {"role": "user", "content": f"Observation: {12 + k}"}]
        react += [llm(*history), tool("calculator", f"12+{k}")]
    assert first_stop(LoopDetector(), react) == (None, None)
    # the seed harness's format retry: short, different answers sent back with the same long error
    error = {"role": "user", "content": "Your reply could not be read: the reply has no line starting with 'Answer:'; "
                                        "end it with a line 'Answer: <answer>'. Reply again."}
    retries = [llm(q, {"role": "assistant", "content": str(40 + k)}, error) for k in range(5)]
    assert first_stop(LoopDetector(), retries) == (None, None)
    # distinct questions asked one after another
    assert first_stop(LoopDetector(), [llm({"role": "user", "content": f"{k} + 1"}) for k in range(8)]) == (None, None)


def test_the_rules_are_configurable_and_bad_values_say_what_to_write():
    cycle = [tool("a", "1"), tool("b", "2")] * 3
    assert first_stop(LoopDetector(window=0), cycle) == (None, None)  # window 0: no cycle rule
    assert first_stop(LoopDetector(window=4), cycle)[0] == 3
    with pytest.raises(ValueError, match="window must be 0"):
        LoopDetector(window=3)
    with pytest.raises(ConfigError, match="loop_window"):
        parse_project({"eval": {"loop_window": 2}}, root=Path("."))
    with pytest.raises(ConfigError, match="loop_similarity"):
        parse_project({"eval": {"loop_similarity": 1.5}}, root=Path("."))
    budget = EpisodeBudget(EpisodeLimits(loop_window=0, loop_similarity=1.0))
    assert (budget.detector.window, budget.detector.near) == (0, 1.0)


def test_an_episode_that_cycles_is_ended_and_says_which_rule(harness_factory, services):
    h = harness_factory("def solve(task, ctx):\n    while True:\n        ctx.llm('1 + 1')\n        ctx.llm('2 + 2')\n")
    t = asyncio.run(run_episode(h, Task("t1", "q"), services, seed=0))
    assert t.loop and t.failure_signal == "loop" and t.output is None
    assert t.error.startswith("loop (cycle)") and t.steps == 3
