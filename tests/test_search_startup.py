"""The search proposer's one-knob startup: each early trial moves exactly one knob of the parent."""

from __future__ import annotations

import asyncio
import json

import pytest

from ratchet.config import LoopSection
from ratchet.harness.params import parse_params
from ratchet.loop.proposers import build_proposer
from ratchet.loop.proposers.search import SearchProposer, point_of, search_space
from test_proposers import FILES, PARAMS, context


def _run(proposer: SearchProposer, rounds: int) -> list[dict]:
    points = []
    for r in range(rounds):
        p = asyncio.run(proposer.propose(context(r)))
        proposer.observe(p, False, 0.1 * r)
        points.append(p.meta)
    return points


def test_one_knob_startup_moves_exactly_one_knob_per_trial_and_never_repeats():
    parent = point_of(parse_params(PARAMS), search_space(parse_params(PARAMS)))
    metas = _run(SearchProposer(seed=5, startup="one_knob"), 4)  # the scored parent and these 4: the 5 startup trials
    for meta in metas:
        moved = [k for k in parent if meta["search_point"][k] != parent[k]]
        assert len(moved) == 1 and len(meta["changed"]) == 1, meta
        assert meta["source"].startswith("one-knob move")
    assert len({json.dumps(m["search_point"], sort_keys=True) for m in metas}) == 4
    after = _run(SearchProposer(seed=5, startup="one_knob"), 6)[-1]
    assert after["source"] == "TPE"  # past the startup, TPE takes over


def test_the_loop_setting_reaches_the_proposer_and_survives_a_resume():
    s = build_proposer("search", None, 3, loop=LoopSection(search_startup="one_knob"))
    assert s.startup == "one_knob"
    _run(s, 2)
    restored = SearchProposer(seed=3)
    restored.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert restored.startup == "one_knob"
    assert asyncio.run(restored.propose(context(2))).edits == asyncio.run(s.propose(context(2))).edits
    with pytest.raises(ValueError, match="one_knob"):
        SearchProposer(startup="coordinate")
    assert FILES["params.toml"] == PARAMS
