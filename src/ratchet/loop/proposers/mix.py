"""Mix a search proposer and an LLM proposer, shifting towards whichever gets accepted more.

The first rounds alternate; then each round picks one by Thompson sampling over Beta(1 + accepted,
1 + not accepted) per proposer, with a random draw seeded by (seed, round, turns so far) so a resumed
run picks the same. When the picked one cannot produce a proposal (e.g. a small model's garbage), the
other one is asked in the same round; the proposal records which failed first, why, and the tokens it
spent (`failed_arms`, `fallback_errors`, `fallback_tokens`, `fallback_attempts`: shown by `ratchet log`, `show` and the UI).
A proposer that produces nothing usable `bench_after` times in a row gets no more turns in the run (unless
every proposer is in that state), and the round it happens says so once (a `notices` entry the loop turns
into a ledger event and a printed line).
"""

from __future__ import annotations

import random
from typing import Any

from ratchet.loop.proposers.base import Proposal, ProposalContext, ProposalError, Proposer
from ratchet.loop.proposers.search import derive_seed


class MixProposer:
    name = "mix"

    def __init__(self, search: Proposer, llm: Proposer, seed: int = 0, bench_after: int = 3):
        self.arms: dict[str, Proposer] = {search.name: search, llm.name: llm}
        if len(self.arms) != 2:
            raise ValueError("MixProposer needs two proposers with different names")
        if bench_after < 1:
            raise ValueError(f"bench_after must be >= 1, got {bench_after}")
        self.seed = seed
        self.bench_after = bench_after
        self.counts = {name: [0, 0] for name in self.arms}  # [accepted, not accepted]
        self.fails_in_a_row = {name: 0 for name in self.arms}  # rounds in a row it produced nothing usable
        self.forced: str | None = None  # set by switch_strategy: the next proposal comes from this one
        self.last: str | None = None  # the proposer of the last observed proposal
        self.last_used = search.name

    def live(self) -> list[str]:
        """The proposers still given turns: not failed `bench_after` times in a row (all of them, if none is left)."""
        live = [n for n in self.arms if self.fails_in_a_row[n] < self.bench_after]
        return live or list(self.arms)

    def _pick(self, round_: int) -> str:
        live = self.live()
        if self.forced in live:
            return self.forced
        turns = sum(a + r for a, r in self.counts.values())
        if turns < len(self.arms) and list(self.arms)[turns] in live:  # alternate until each has had a turn
            return list(self.arms)[turns]
        rng = random.Random(derive_seed(self.seed, round_, turns, "mix"))
        draws = {name: rng.betavariate(1 + a, 1 + r) for name, (a, r) in sorted(self.counts.items())}
        return max(sorted(n for n in draws if n in live), key=draws.__getitem__)

    def _notice(self, name: str, error: str, benching: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The one-time notice when this round's failure is the one that benches `name` (and another stays)."""
        left = [n for n in self.live() if n != name and n not in {b["proposer"] for b in benching}]
        if self.fails_in_a_row[name] + 1 != self.bench_after or not left:
            return None
        return {"kind": "proposer_benched", "proposer": name, "failures": self.bench_after, "last_error": error[:300],
                "message": f"mix: the {name} proposer produced nothing usable {self.bench_after} times in a row "
                           f"(last: {error[:160]}); it gets no more turns in this run"}

    async def propose(self, ctx: ProposalContext) -> Proposal:
        """Leaves the state alone when a proposal comes back (observe() records it all), so a run
        killed in between resumes exactly; when both fail, the failures are counted here."""
        first = self._pick(ctx.round)
        order = [first] + [n for n in self.live() if n != first]
        failed: list[str] = []
        errors: list[str] = []
        tokens: list[int | None] = []
        tries: list[int] = []
        notices: list[dict[str, Any]] = []
        attempts: list[dict[str, Any]] = []
        for name in order:
            self.last_used = name  # for the ledger's record of a failed round; not part of the state
            try:
                proposal = await self.arms[name].propose(ctx)
            except ProposalError as e:
                failed.append(name)
                errors.append(str(e))
                counted = [a["tokens"] for a in e.attempts if isinstance(a.get("tokens"), int)]
                tokens.append(sum(counted) if counted else None)
                tries.append(max(1, len(e.attempts)))
                notices += [n for n in [self._notice(name, str(e), notices)] if n]
                attempts += [{"proposer": name, **a} for a in e.attempts] or [{"proposer": name, "error": str(e)}]
                continue
            proposal.meta = {**proposal.meta, "via": self.name, "forced": self.forced is not None,
                             "failed_arms": failed, "fallback_errors": errors, "fallback_tokens": tokens,
                             "fallback_attempts": tries,
                             **({"notices": notices} if notices else {})}
            return proposal
        for name in failed:
            self.counts[name][1] += 1  # a failed proposal counts against its proposer
            self.fails_in_a_row[name] += 1
        self.forced = None
        attempts += [{"proposer": self.name, "notice": n} for n in notices]
        raise ProposalError("mix: neither proposer produced a proposal: " + " | ".join(errors), attempts)

    def observe(self, proposal: Proposal, accepted: bool, score: float | None) -> None:
        if proposal.proposer not in self.arms:
            return
        for name in proposal.meta.get("failed_arms", []):
            self.counts[name][1] += 1
            self.fails_in_a_row[name] += 1
        if proposal.meta.get("forced"):
            self.forced = None
        self.last = proposal.proposer
        self.fails_in_a_row[proposal.proposer] = 0
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
                "forced": self.forced, "last": self.last, "fails_in_a_row": dict(self.fails_in_a_row),
                "arms": {name: arm.state_dict() for name, arm in self.arms.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = state["seed"]
        self.counts = {k: list(v) for k, v in state["counts"].items()}
        self.forced, self.last = state["forced"], state["last"]
        # a run saved before benching existed resumes with no failures counted in a row
        self.fails_in_a_row = {name: 0 for name in self.arms} | dict(state.get("fails_in_a_row") or {})
        for name, arm_state in state["arms"].items():
            self.arms[name].load_state_dict(arm_state)
