"""Promotion uses the shared decision rule: dev first, holdout confirmation only after dev accepts."""

from ratchet.flywheel.promote import decide_promotion
from ratchet.loop.decision import decide_dev
from ratchet.loop.holdout import Thresholdout

PARENT = {f"t{i}": [0.0, 0.0] for i in range(20)}
BETTER = {f"t{i}": [1.0, 1.0] if i < 15 else [0.0, 0.0] for i in range(20)}


def test_dev_rejection_needs_no_holdout():
    dev = decide_dev(PARENT, PARENT)
    promoted, reason = decide_promotion(dev, None)
    assert not promoted and reason.startswith("dev: rejected")


def test_dev_accept_then_holdout_confirm_promotes():
    dev = decide_dev(PARENT, BETTER)
    assert dev.accepted
    ho = Thresholdout(budget=3, seed=0).confirm(dev.mean_diff, PARENT, BETTER)
    promoted, reason = decide_promotion(dev, ho)
    assert promoted and "confirmed" in reason


def test_holdout_that_disagrees_blocks_promotion():
    dev = decide_dev(PARENT, BETTER)
    ho = Thresholdout(budget=3, seed=0).confirm(dev.mean_diff, PARENT, PARENT)
    promoted, reason = decide_promotion(dev, ho)
    assert not promoted and "holdout: not confirmed" in reason
    assert not decide_promotion(dev, None)[0]
