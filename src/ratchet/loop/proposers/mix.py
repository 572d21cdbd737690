"""Mix a search proposer and an LLM proposer, shifting towards whichever gets accepted more.

The first rounds alternate; then each round picks one by Thompson sampling over Beta(1 + accepted,
1 + not accepted) per proposer, with a random draw seeded by (seed, round, turns so far) so a resumed
run picks the same. When the picked one cannot produce a proposal (e.g. a small model's garbage), the
other one is asked in the same round.
"""

from __future__ import annotations

import random
from typing import Any

from ratchet.loop.proposers.base import Proposal, ProposalContext, ProposalError, Proposer
from ratchet.loop.proposers.search import derive_seed


class MixProposer:
    name = "mix"

    def __init__(self, search: Proposer, llm: Proposer, seed: int = 0):
        self.arms: dict[str, Proposer] = {search.name: search, llm.name: llm}
        if len(self.arms) != 2:
            raise ValueError("MixProposer needs two proposers with different names")
        self.seed = seed
        self.counts = {name: [0, 0] for name in self.arms}  # [accepted, not accepted]
        self.forced: str | None = None  # set by switch_strategy: the next proposal comes from this one
        self.last: str | None = None  # the proposer of the last observed proposal
        self.last_used = search.name

    def _pick(self, round_: int) -> str:
        if self.forced is not None:
            return self.forced
        turns = sum(a + r for a, r in self.counts.values())
        if turns < len(self.arms):  # alternate until each has had a turn
            return list(self.arms)[turns]
        rng = random.Random(derive_seed(self.seed, round_, turns, "mix"))
        draws = {name: rng.betavariate(1 + a, 1 + r) for name, (a, r) in sorted(self.counts.items())}
        return max(sorted(draws), key=draws.__getitem__)

    async def propose(self, ctx: ProposalContext) -> Proposal:
        """Leaves the state alone when a proposal comes back (observe() records it all), so a run
        killed in between resumes exactly; when both fail, the failures are counted here."""
        first = self._pick(ctx.round)
        order = [first] + [n for n in self.arms if n != first]
        failed: list[str] = []
        errors: list[str] = []
        attempts: list[dict[str, Any]] = []
        for name in order:
            self.last_used = name  # for the ledger's record of a failed round; not part of the state
            try:
                proposal = await self.arms[name].propose(ctx)
            except ProposalError as e:
                failed.append(name)
                errors.append(str(e))
                attempts += [{"proposer": name, **a} for a in e.attempts] or [{"proposer": name, "error": str(e)}]
                continue
            proposal.meta = {**proposal.meta, "via": self.name, "forced": self.forced is not None,
                             "failed_arms": failed, "fallback_errors": errors}
            return proposal
        for name in failed:
            self.counts[name][1] += 1  # a failed proposal counts against its proposer
        self.forced = None
        raise ProposalError("mix: neither proposer produced a proposal: " + " | ".join(errors), attempts)

    def observe(self, proposal: Proposal, accepted: bool, score: float | None) -> None:
        if proposal.proposer not in self.arms:
            return
        for name in proposal.meta.get("failed_arms", []):
            self.counts[name][1] += 1
        if proposal.meta.get("forced"):
            self.forced = None
        self.last = proposal.proposer
        self.counts[proposal.proposer][0 if accepted else 1] += 1
        self.arms[proposal.proposer].observe(proposal, accepted, score)

    def switch_strategy(self) -> None:
        """After a streak of rejections: hand the next round to the other proposer, and let both explore."""
        if self.last is not None:
            self.forced = next(n for n in self.arms if n != self.last)
        for arm in self.arms.values():
            arm.switch_strategy()

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "counts": {k: list(v) for k, v in self.counts.items()},
                "forced": self.forced, "last": self.last,
                "arms": {name: arm.state_dict() for name, arm in self.arms.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.counts = {k: list(v) for k, v in state["counts"].items()}
        self.forced, self.last = state["forced"], state["last"]
        for name, arm_state in state["arms"].items():
            self.arms[name].load_state_dict(arm_state)
