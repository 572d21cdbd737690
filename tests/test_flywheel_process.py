"""Process checks on planted bad trajectories (one per finding kind, and a clean one), kept apart from the
outcome, and the filter = "outcome+process" mode that drops a right answer with a process finding."""

import pytest

from ratchet.config import ConfigError
from ratchet.flywheel.card import card_markdown, card_rows
from ratchet.flywheel.config import parse_flywheel
from ratchet.flywheel.datasets import Provenance
from ratchet.flywheel.filter import filter_examples, process_drops, rollout_counts, sft_candidates
from ratchet.flywheel.process import FINDING_KINDS, ProcessReport, numbers, process_report
from ratchet.flywheel.verify import verdict_for
from ratchet.types import Trajectory

TASK = [{"role": "user", "content": "What is 6 * 7? Use python."}]


def python(code: str, stdout: str = "", returncode: int = 0, error: str | None = None) -> dict:
    return {"name": "python", "args": [code], "kwargs": {},
            "result": {"stdout": stdout, "stderr": "", "returncode": returncode, "error": error}}


def rollout(tool_calls, output="42", steps=3, score=1.0, shown=None, **kw) -> Trajectory:
    """A two-call agent: the model writes code, sees the tool results (all, or `shown`) in its second request, answers."""
    if shown is None:
        shown = "\n".join(c["result"]["stdout"] for c in tool_calls if isinstance(c.get("result"), dict))
    messages = [{"request": TASK, "params": {"seed": 1}, "replies": ["print(6 * 7)"]},
                {"request": [*TASK, {"role": "assistant", "content": "print(6 * 7)"},
                             {"role": "user", "content": f"The program printed:\n{shown}\nYour answer?"}],
                 "params": {"seed": 2}, "replies": [output]}]
    return Trajectory(task_id="t", epoch=0, seed=0, messages=messages, tool_calls=tool_calls, output=output,
                      score=score, steps=steps, **kw)


def kinds(traj: Trajectory, **kw) -> list[str]:
    return process_report(traj, **kw).kinds


def test_a_clean_trajectory_has_no_findings():
    report = process_report(rollout([python("print(6 * 7)", "42\n")]), max_steps=4)
    assert report.ok and report.findings == [] and report.kinds == []


@pytest.mark.parametrize("traj, kind", [
    (rollout([python("print(6 * 7", "", returncode=1)], output="42"), "tool_error"),
    (rollout([python("print(6 * 7)", "42\n")], tool_errors=2), "tool_error"),  # counted by the runtime, not recorded
    (rollout([python("print(6 * 7)", "42\n")], loop=True, error="loop (repeat): the same llm was repeated 3 times"),
     "loop"),
    (rollout([python("print(6 * 7)", "42\n"), python("print(6 * 7)", "42\n")]), "repeated_call"),
    (rollout([python("print(17)", "17\n"), python("print(6 * 7)", "42\n")], shown="42"), "unused_result"),
    (rollout([python("print(6 * 7)", "42\n")], steps=9), "over_budget"),
    (rollout([python("print(6 * 7)", "42\n")], output="The answer is 41."), "contradicts_tool"),
])
def test_each_planted_bad_trajectory_gives_its_finding(traj, kind):
    assert kind in FINDING_KINDS
    assert kinds(traj, max_steps=4) == [kind]  # exactly the planted fault, nothing else


def test_unused_result_spares_used_and_last_results():
    used = rollout([python("print(6)", "6\n"), python("print(6 * 7)", "42\n")])  # both shown to the model
    assert kinds(used) == []
    only_last = rollout([python("print(6 * 7)", "42\n")])
    only_last.messages = only_last.messages[:1]  # the program answered from the result: the last call is exempt
    assert "unused_result" not in kinds(only_last)


def test_the_contradiction_rule_reads_the_last_numeric_result_and_compares_values():
    assert numbers("x = 1,234.5 and -3 (5-2)") == [1234.5, -3.0, 5.0, 2.0]
    agree = rollout([python("print(1, 6 * 7)", "1 42\n")], output="So the result is 42.0")
    assert "contradicts_tool" not in kinds(agree)
    later = rollout([python("print(41)", "41\n"), python("print(6 * 7)", "42\n")], output="41")
    assert "contradicts_tool" in kinds(later)  # the *last* numeric result said 42
    failed_last = rollout([python("print(6 * 7)", "42\n"), python("oops", "", returncode=1)], output="42")
    assert "contradicts_tool" not in kinds(failed_last)  # a failed call produced no number
    assert "contradicts_tool" not in kinds(rollout([python("print(6 * 7)", "42\n")], output="I cannot say."))
    assert "contradicts_tool" not in kinds(rollout([], output="41"))  # no tool result to contradict
    finding = process_report(rollout([python("print(6 * 7)", "42\n")], output="41")).findings[0]
    assert finding.step == 0 and "41" in finding.detail and "42" in finding.detail
    assert ProcessReport.from_json(process_report(later).to_json()).kinds == ["contradicts_tool"]


def prov(t: Trajectory, call_index: int, seed: int) -> Provenance:
    return Provenance(run_id="r", generation=1, task_id=t.task_id, split="train", model="m", harness="h",
                      harness_commit=None, verifier="v", score=t.score, seed=seed, eval_id="e", epoch=t.epoch,
                      call_index=call_index)


def test_outcome_mode_keeps_and_outcome_plus_process_drops_a_right_answer_with_a_finding():
    clean = rollout([python("print(6 * 7)", "42\n")])
    lying = rollout([python("print(6 * 7)", "42\n")], output="42")
    lying.tool_calls = [python("print(6 * 7)", "41\n")]  # the tool said 41, the (right) answer says 42
    lying.epoch = 1
    outcome = [(t, verdict_for(t, 1.0)) for t in (clean, lying)]
    assert all(v.good for _t, v in outcome)  # default mode: unchanged behaviour
    assert outcome[1][1].process.kinds == ["contradicts_tool"] and outcome[1][1].outcome == 1.0  # stored apart

    both = [(t, verdict_for(t, 1.0, filter_mode="outcome+process")) for t in (clean, lying)]
    assert both[0][1].good and both[1][1].reasons == ["process:contradicts_tool"]
    assert both[1][1].good_by_outcome and not both[1][1].good_by_outcome_and_process
    assert len(sft_candidates(both, prov)) == 2  # two calls of the clean rollout
    dropped = process_drops(both, prov)
    assert {d.reason for d in dropped} == {"process:contradicts_tool"} and len(dropped) == 2
    assert dropped[0].detail["findings"][0]["kind"] == "contradicts_tool"
    res = filter_examples(sft_candidates(both, prov), None, min_chars=1, max_chars=100, near_dup_threshold=0.9,
                          per_task_cap=8, dropped_before=dropped)
    assert res.counts["process:contradicts_tool"] == 2 and res.counts["kept"] == 2

    counts = rollout_counts(both)
    assert (counts["verified_good"], counts["verified_outcome"], counts["verified_outcome_process"]) == (1, 2, 1)
    assert counts["process_findings"] == {"contradicts_tool": 1}
    gen = {"generation": 1, "model": "m", "status": "filtered",
           "counts": {**counts, "filter_mode": "outcome+process", "filter_sft": res.counts}}
    row = card_rows([gen])[0]
    assert "2 / 1*" in row and "contradicts_tool 1" in row, row
    assert "outcome / +process" in card_markdown("run", [gen])


def test_filter_mode_is_a_validated_config_key():
    assert parse_flywheel({}).filter == "outcome" and parse_flywheel({}).process_max_steps is None
    assert parse_flywheel({"filter": "outcome+process", "process_max_steps": 6}).filter == "outcome+process"
    with pytest.raises(ConfigError, match="filter"):
        parse_flywheel({"filter": "process"})


def test_the_openai_tool_shape_is_read_too():
    """ctx.llm(tools=...) / ctx.call: the result comes back as a `tool` message; each call has its own call_id."""
    call = {"id": "c1", "type": "function", "function": {"name": "python", "arguments": '{"code": "print(6 * 7)"}'}}
    request = [*TASK, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "c1", "name": "python", "content": "42"}]
    first = {**python("print(6 * 7)", "42\n"), "kwargs": {"code": "print(6 * 7)"}, "args": [], "call_id": "c1"}
    traj = Trajectory(task_id="t", epoch=0, seed=0, output="42", score=1.0, steps=3, tool_calls=[first],
                      messages=[{"request": TASK, "replies": [""], "tool_calls": [call]},
                                {"request": request, "replies": ["42"]}])
    assert kinds(traj) == []
    traj.tool_calls = [{**first, "call_id": "c0"}, first]  # the same call twice, under two call ids
    assert kinds(traj) == ["repeated_call"]
