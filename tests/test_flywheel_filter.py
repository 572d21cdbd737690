"""Verification verdicts, SFT/pair candidates from rollouts, and the filter's checks in order."""

from ratchet.flywheel.datasets import PAIR, SFT, Provenance
from ratchet.flywheel.filter import (
    filter_examples,
    grpo_prompts,
    jaccard,
    normalize,
    pair_candidates,
    rollout_counts,
    sft_candidates,
)
from ratchet.flywheel.verify import JudgeVerdict, verdict_for
from ratchet.types import Trajectory

PROMPT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Calculate 2 + 2."}]


def traj(task="t1", epoch=0, reply="4", score=1.0, **kw) -> Trajectory:
    call = {"request": PROMPT, "params": {"temperature": 0.7, "seed": 100 + epoch}, "replies": [reply]}
    return Trajectory(task_id=task, epoch=epoch, seed=epoch, messages=[call], output=reply, score=score, **kw)


def prov(t: Trajectory, call_index: int, seed: int) -> Provenance:
    return Provenance(run_id="r", generation=1, task_id=t.task_id, split="train", model="m", harness="h",
                      harness_commit=None, verifier="v", score=t.score, seed=seed, eval_id="e", epoch=t.epoch,
                      call_index=call_index)


def verified(*trajs, **kw):
    return [(t, verdict_for(t, 1.0, **kw)) for t in trajs]


def test_verdict_keeps_outcome_and_process_signals_apart():
    ok = verdict_for(traj(), 1.0)
    assert ok.good and ok.outcome == 1.0 and ok.signals["tool_errors"] == 0
    tool = verdict_for(traj(tool_errors=2), 1.0)
    assert not tool.good and tool.reasons == ["tool_errors"] and tool.outcome == 1.0
    assert verdict_for(traj(tool_errors=2), 1.0, drop_tool_errors=False).good
    assert verdict_for(traj(loop=True), 1.0).reasons == ["loop"]
    assert verdict_for(traj(score=0.0), 1.0).reasons == ["low_score"]
    judged = verdict_for(traj(), 1.0, JudgeVerdict(score=0.3), judge_min=0.7)
    assert judged.reasons == ["judge_low"]
    assert verdict_for(traj(), 1.0, JudgeVerdict(score=None), judge_min=0.7).reasons == ["judge_unparsed"]


def test_sft_candidates_use_good_rollouts_and_call_seeds():
    rollouts = verified(traj(epoch=0, reply="4"), traj(epoch=1, reply="5", score=0.0))
    out = sft_candidates(rollouts, prov)
    assert [(e.kind, e.reply, e.provenance.seed) for e in out] == [(SFT, "4", 100)]
    assert out[0].sft_record()["messages"][-1] == {"role": "assistant", "content": "4"}


def test_constitution_revision_replaces_the_reply():
    t = traj(reply="four-ish")
    rollouts = [(t, verdict_for(t, 1.0, JudgeVerdict(score=0.9, revision="4"), judge_min=0.5))]
    assert sft_candidates(rollouts, prov)[0].reply == "4"


def test_pairs_need_same_prompt_and_a_wrong_not_crashed_rejected():
    rollouts = verified(traj(epoch=0, reply="4"), traj(epoch=1, reply="5", score=0.0),
                        traj(epoch=2, reply="", score=0.0, error="timeout: ..."),
                        traj(task="t2", epoch=0, reply="7", score=0.0))
    pairs = pair_candidates(rollouts, prov, max_pairs_per_task=4)
    assert [(p.kind, p.reply, p.rejected, p.provenance.rejected_epoch) for p in pairs] == [(PAIR, "4", "5", 1)]
    rec = pairs[0].pair_record()
    assert rec["prompt"] == PROMPT and rec["chosen"][0]["content"] == "4" and rec["rejected"][0]["content"] == "5"


def test_filter_order_dedup_near_dup_length_and_cap():
    replies = ["2 + 2 = 4", "2 + 2 = 4.", "2+2 = 4 !", "So 2 + 2 = 4 as computed", "x" * 50, "4", "The sum is 4"]
    cands = sft_candidates(verified(*[traj(epoch=i, reply=r) for i, r in enumerate(replies)]), prov)
    res = filter_examples(cands, None, min_chars=1, max_chars=40, near_dup_threshold=0.9, per_task_cap=2)
    reasons = {d.example.reply: d.reason for d in res.dropped}
    assert reasons["2 + 2 = 4."] == "duplicate"  # normalisation ignores trailing punctuation
    assert reasons["2+2 = 4 !"] == "near_duplicate"  # same tokens, other spacing
    assert reasons["x" * 50] == "too_long"
    assert [e.reply for e in res.kept] == ["2 + 2 = 4", "So 2 + 2 = 4 as computed"]
    assert res.counts["per_task_cap"] == 2 and res.counts["kept"] == 2 and res.counts["candidates"] == 7


def test_near_duplicate_by_token_shingles():
    assert normalize("  Hello   World. ") == "hello world"
    assert jaccard("the answer is 4 because 2 + 2 = 4", "the answer is 4 because 2 + 2 = 4 .") >= 0.9
    cands = sft_candidates(verified(traj(epoch=0, reply="the answer is 4 because 2 + 2 = 4 exactly"),
                                    traj(epoch=1, reply="the answer is 4 because 2 + 2 = 4 exactly , yes")), prov)
    res = filter_examples(cands, None, min_chars=1, max_chars=500, near_dup_threshold=0.8, per_task_cap=5)
    assert [d.reason for d in res.dropped] == ["near_duplicate"]


def test_rollout_counts():
    c = rollout_counts(verified(traj(epoch=0), traj(epoch=1, score=0.0), traj(task="t2", score=0.0)))
    assert c["rollouts"] == 3 and c["verified_good"] == 1 and c["not_good:low_score"] == 2
    assert c["tasks"] == 2 and c["tasks_solved"] == 1


def test_prefer_short_keeps_the_most_concise_replies_under_the_cap():
    replies = ["To add 2 and 2 we count up from 2 and get 4", "2 + 2 = 4", "Adding them gives 4"]
    cands = sft_candidates(verified(*[traj(epoch=i, reply=r) for i, r in enumerate(replies)]), prov)
    res = filter_examples(cands, None, min_chars=1, max_chars=500, near_dup_threshold=0.9, per_task_cap=2,
                          prefer_short=True)
    assert [e.reply for e in res.kept] == ["2 + 2 = 4", "Adding them gives 4"]


def test_grpo_prompts_one_per_task_without_contaminated_ones():
    from ratchet.flywheel.contamination import ContaminationIndex, EvalItem

    index = ContaminationIndex.build([EvalItem("h", "holdout", "input", "Calculate 3 + 3.")], ["Calculate 3 + 3."])
    other = Trajectory(task_id="t3", epoch=0, seed=0, output="6", messages=[
        {"request": [{"role": "user", "content": "Calculate 3 + 3."}], "params": {}, "replies": ["6"]}])
    prompts = grpo_prompts([traj(epoch=1), traj(epoch=0), traj(task="t2"), other], index)
    assert [(task, msgs[-1]["content"]) for msgs, task in prompts] == [("t1", "Calculate 2 + 2."), ("t2", "Calculate 2 + 2.")]
