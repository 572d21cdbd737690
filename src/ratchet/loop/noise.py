"""A null experiment for the decision rule: candidates that change nothing that matters.

`NoiseKnobProposer` proposes a new value of a knob the harness never reads, and `NoiseArena` scores
every harness with the same success probability and fresh randomness (a non-deterministic endpoint).
Any candidate the loop keeps in this setting is a false discovery. Used by the test suite and by
bench/decision_noise.py, which contrasts ratchet's rule with a bare "mean went up" rule.
"""

from __future__ import annotations

import random
from typing import Any

from ratchet.harness.params import render_params, with_values
from ratchet.loop.proposers.base import Proposal, ProposalContext

NOISE_PARAMS = """[unused]
type = "float"
range = [0.0, 1.0]
value = 0.5
"""


class NoiseKnobProposer:
    name = "noise"

    def __init__(self, seed: int = 0):
        self.seed, self.count = seed, 0

    async def propose(self, ctx: ProposalContext) -> Proposal:
        self.count += 1
        value = round(random.Random(self.seed * 7919 + self.count).random(), 6)
        params = with_values(ctx.params, {"unused": value})
        return Proposal(edits={"params.toml": render_params(params)}, rationale=f"set unused = {value}",
                        hypothesis="the harness does not read this knob; there should be no effect", proposer=self.name)

    def observe(self, proposal: Proposal, accepted: bool, score: float | None) -> None:
        pass

    def switch_strategy(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = state["count"]


class NoiseArena:
    """Every harness succeeds with probability p on every unit, independently on every run."""

    name = "noise"

    def __init__(self, n_dev: int = 40, n_holdout: int = 30, p: float = 0.5, seed: int = 0):
        self._units = {"dev": [f"d{i}" for i in range(n_dev)], "holdout": [f"h{i}" for i in range(n_holdout)]}
        self.p, self.rng = p, random.Random(seed)
        self._cache: dict[tuple[str, str, int, str, int], float] = {}

    def units(self, split: str) -> list[str]:
        return self._units[split]

    async def scores(self, commit, split, units, epochs, *, seed, run_id, candidate_id, should_stop, on_rollout=None):
        out = {}
        for u in units:  # evaluations are resumable: the same (commit, unit, epoch) keeps its outcome
            out[u] = [self._cache.setdefault((commit, split, seed, u, e), float(self.rng.random() < self.p))
                      for e in range(epochs)]
        return out, {"rollouts": len(units) * epochs, "tokens": 0}

    def failure_context(self, commit: str, max_examples: int) -> tuple[str, dict[str, int]]:
        return "", {}

    def fingerprint(self) -> str:
        return "noise"
