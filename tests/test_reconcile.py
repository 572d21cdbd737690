"""The reconciled closing report on constructed numbers: figures that agree with a round's confirmation,
figures on a split too small to tell, figures that rule the confirmed gain out, and the bookkeeping
(the lineage's confirmations, the unseal's row, the JSON the summary stores)."""

import json
import math

from ratchet.loop.reconcile import Confirmation, Report, lineage_confirmations, reconcile, split_row, with_row
from ratchet.loop.views import REPORT_COLUMNS, report_notes, report_rows


def table(n: int, solved: int, epochs: int = 1, prefix: str = "t") -> dict[str, list[float]]:
    """n tasks, the first `solved` of them right on every epoch."""
    return {f"{prefix}{i:03d}": [1.0 if i < solved else 0.0] * epochs for i in range(n)}


def gain(n: int, before: int, after: int, epochs: int = 1) -> tuple[dict, dict]:
    """Seed right on `before` tasks; best right on those and up to `after` (a paired, one-way gain)."""
    return table(n, before, epochs), table(n, after, epochs)


ROUND_1 = Confirmation(round=1, candidate="run-r001", dev_diff=0.21, dev_p=0.001, dev_tasks=33, holdout_diff=0.167,
                       holdout_p=0.01, eval_seed=1)


def test_figures_that_agree_with_the_confirmation_say_so():
    seed, best = gain(40, 8, 24)
    row = split_row("holdout", seed, best, alpha=0.05, measured_with="the closing seed", eval_seed=100)
    assert row.n_tasks == 40 and row.epochs == 1 and math.isclose(row.diff, 0.4) and row.significant
    assert row.ci_low > 0 and row.p_value < 0.001 and row.detectable is not None and row.detectable < 0.4
    lo, hi = row.interval("seed")
    assert lo < row.seed_mean == 0.2 < hi
    report = reconcile([row], [ROUND_1], 0.05, splits=("holdout",))
    (sentence,) = report.sentences
    assert sentence.startswith("Round 1's holdout confirmation (+0.167") and "agree: the gain holds on fresh seeds" in sentence
    assert "the closing seed" in sentence and "40 tasks x 1 epoch" in sentence


def test_a_split_too_small_to_tell_is_named_with_what_it_can_detect():
    seed, best = gain(19, 4, 5)  # +0.053 on 19 tasks: what the run showed next to a +0.167 confirmation
    row = split_row("holdout", seed, best, alpha=0.05, measured_with="the closing seed")
    assert not row.significant and row.detectable > ROUND_1.holdout_diff
    (sentence,) = reconcile([row], [ROUND_1], 0.05, splits=("holdout",)).sentences
    assert "disagree: the holdout split is too small to tell" in sentence
    assert f"detects gains of {row.detectable:.3f} or more with 80% power" in sentence and "`ratchet plan`" in sentence
    tiny = split_row("test", *gain(3, 0, 1), alpha=0.05, measured_with="unseal #1's seed")
    assert tiny.detectable is None  # 3 tasks: no test at alpha 0.05 can reject
    (said,) = reconcile([tiny], [ROUND_1], 0.05, splits=("test",)).sentences
    assert "the test split is too small to tell" in said and "cannot detect any gain" in said


def test_a_large_split_that_does_not_see_the_gain_rules_it_out():
    seed, best = gain(300, 60, 62, epochs=2)  # +0.007 where a powered split should have seen +0.3
    row = split_row("test", seed, best, alpha=0.05, measured_with="unseal #1's seed", eval_seed=7)
    assert row.detectable < 0.3 and row.ci_high < 0.3 and row.epochs == 2
    claim = Confirmation(round=2, candidate="run-r002", dev_diff=0.35, dev_p=1e-6, dev_tasks=40, holdout_diff=0.3,
                         holdout_p=0.002)
    (sentence,) = reconcile([row], [claim], 0.05, splits=("test",)).sentences
    assert "the sealed test's interval lies below the confirmed gain, which this split is large enough to see" in sentence
    assert "unseal #1's seed" in sentence and "300 tasks x 2 epochs" in sentence


def test_several_confirmations_are_summed_and_dev_is_explained_when_it_disagrees():
    rounds = [ROUND_1, Confirmation(3, "run-r003", 0.1, 0.01, 33, 0.05, 0.03)]
    dev = split_row("dev", *gain(33, 10, 11), alpha=0.05, measured_with="round 3's seed")
    hold = split_row("holdout", *gain(60, 10, 40), alpha=0.05, measured_with="the closing seed")
    text = reconcile([dev, hold], rounds, 0.05, splits=("dev", "holdout")).sentences
    assert len(text) == 2
    assert "dev decisions of rounds 1, 3 (+0.210, +0.100" in text[0] and "+0.310 together" in text[0]
    assert "not significant on dev" in text[0]
    assert "holdout confirmations of rounds 1, 3" in text[1] and "agree" in text[1]


def test_nothing_kept_and_a_sealed_test_are_said_in_words():
    same = table(20, 5)
    rows = [split_row(s, same, same, alpha=0.05, measured_with="round 0's seed") for s in ("dev", "holdout")]
    assert rows[0].diff == 0.0 and rows[0].p_value == 1.0 and not rows[0].significant
    (only,) = reconcile(rows, [], 0.05, same_harness=True).sentences
    assert only.startswith("No change was kept")
    kept = reconcile([split_row("holdout", *gain(40, 8, 24), alpha=0.05, measured_with="the closing seed")], [ROUND_1],
                     0.05)
    assert [s.split(":")[0] for s in kept.sentences][::2] == ["No dev figure", "The test split is sealed"]
    unsealed = with_row(kept, split_row("test", *gain(17, 2, 3), alpha=0.05, measured_with="unseal #1's seed"))
    assert [r.split for r in unsealed.rows] == ["holdout", "test"] and "is sealed" not in " ".join(unsealed.sentences)
    assert "the sealed test (+0.059" in unsealed.sentences[-1] and "too small to tell" in unsealed.sentences[-1]
    assert split_row("test", table(5, 1), table(5, 2, prefix="other"), alpha=0.05, measured_with="x") is None


def test_the_stored_json_reads_back_and_renders():
    single = split_row("test", {"only": [1.0, 0.0]}, {"only": [1.0, 1.0]}, alpha=0.05, measured_with="unseal #1's seed")
    assert single.seed_se is None and single.interval("seed") == (None, None)  # one task: no clustered SE
    hold = split_row("holdout", *gain(40, 8, 24), alpha=0.05, measured_with="the closing seed", eval_seed=3,
                     eval_ids={"seed": "ev-a", "best": "ev-b"})
    report = reconcile([hold, single], [ROUND_1], 0.05, best_commit="abc")
    stored = json.loads(json.dumps(report.to_json()))
    back = Report.from_json(stored)
    assert back == report and back.row("holdout").eval_ids == {"seed": "ev-a", "best": "ev-b"}
    assert Report.from_json(None) is None and Report.from_json({"unrelated": 1}) is None
    partial = Report.from_json({"rows": [], "alpha": 0.05})  # an older or hand-written summary
    assert partial.splits == [] and partial.sign == 1.0 and partial.confirmations == []
    rows = report_rows(report)
    assert len(rows[0]) == len(REPORT_COLUMNS) and rows[0][0] == "holdout" and rows[0][-1] == "the closing seed (3)"
    assert rows[0][2].startswith("0.600 [") and rows[0][4].endswith(" *") and rows[1][1] == "0.500"
    assert report_notes(report)[1:] == report.sentences


def test_a_minimised_metric_reads_in_its_own_direction():
    seed, best = gain(12, 2, 10)  # scores are higher-is-better; the metric is -score (say, a loss)
    row = split_row("holdout", seed, best, alpha=0.05, measured_with="the closing seed")
    report = reconcile([row], [], 0.05, splits=("holdout",), sign=-1.0, unit="seeds")
    assert "(-0.667 [" in report.sentences[0] and "12 seeds x 1 epoch" in report.sentences[0]
    assert report_rows(report)[0][1].startswith("-0.167")


def test_the_lineage_runs_from_the_seed_to_the_best_only():
    def cand(cid, rnd, parent, status, hold=None):
        decision = {"final": status, "seed": rnd, "dev": {"n_tasks": 30, "mean_parent": 0.2, "mean_cand": 0.4,
                                                          "mean_diff": 0.2, "ci_low": 0.1, "ci_high": 0.3,
                                                          "p_value": 0.001, "alpha": 0.05, "accepted": True, "reason": ""}}
        if hold is not None:
            decision["holdout"] = {"confirmed": True, "holdout_diff": hold, "noisy_diff": hold, "ci_low": 0.0,
                                   "ci_high": 0.3, "p_value": 0.02, "budget_left": 3, "reason": "confirmed"}
        return {"id": cid, "round": rnd, "parent_id": parent, "status": status, "decision": decision}

    rows = [cand("r1", 1, None, "accepted", 0.15), cand("r2", 2, "r1", "rejected"), cand("r3", 3, "r1", "accepted", 0.05),
            cand("r4", 4, None, "accepted", 0.2)]  # r4: kept on another branch, not the best's lineage
    chain = lineage_confirmations(rows, "r3", seed_offset=100)
    assert [(c.round, c.holdout_diff, c.eval_seed) for c in chain] == [(1, 0.15, 101), (3, 0.05, 103)]
    assert lineage_confirmations(rows, "seed") == [] and lineage_confirmations(rows, None) == []
