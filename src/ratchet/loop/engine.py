"""The one loop: select parent -> analyse failures -> propose -> guard -> evaluate (paired) -> decide -> remember.

Every step writes to the ledger before the next begins, and each round's candidate row carries its
status, so a run killed at any point resumes where it was: a round with a row continues from that
row (evaluations resume from their recorded rollouts), a round without one is proposed again from
the proposer state saved after the previous round.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.config import GuardSection, LoopSection
from ratchet.evaluate import EvalInterrupted
from ratchet.harness.params import parse_params
from ratchet.ledger import Ledger
from ratchet.loop import archive as arch
from ratchet.loop.arena import Arena, ArenaFailure
from ratchet.loop.compare import Side, compare, mean_of
from ratchet.loop.control import StopControl
from ratchet.loop.edits import EditError, changed_files, normalize_path
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.guard import check_candidate, proposal_fingerprint
from ratchet.loop.holdout import Thresholdout
from ratchet.loop.lesson import round_lesson
from ratchet.loop.memory import claim_memory, lesson_text, project_lessons, recall, write_memory_md
from ratchet.loop.population import member_suffix, run_population_round, tried_text
from ratchet.loop.proposer_trouble import announce
from ratchet.loop.proposers.base import Proposal, ProposalContext, ProposalError, Proposer
from ratchet.loop.record import FINAL, TO_EVALUATE, CandidateStatus, Decision, proposal_state_key
from ratchet.loop.workspace import open_round
from ratchet.models.metered import MeteredModel
from ratchet.types import Trajectory, jsonable


class LoopStopped(RuntimeError):
    """The loop stopped cleanly (stop file, Ctrl-C, budget); `ratchet evolve --resume` continues it."""


class BudgetReached(LoopStopped):
    """A [guard] budget ran out inside a round: the run stops cleanly there; `--resume` (with a larger
    budget) continues the round where it was."""


class TamperError(RuntimeError):
    """The scorer or suite data changed during a run: every later number would be meaningless."""


@dataclass
class RoundResult:
    round: int
    candidate_id: str
    status: CandidateStatus
    summary: str
    members: list[RoundResult] = field(default_factory=list)  # a population round: every candidate, in order


class LoopEngine:
    def __init__(self, arena: Arena, repo: CandidateRepo, proposer: Proposer, ledger: Ledger, run_id: str,
                 loop: LoopSection, guard: GuardSection, control: StopControl, memory_path: Path,
                 say: Callable[[str], None] = lambda _: None,
                 path_check: Callable[[dict[str, str | None]], list[str]] | None = None,
                 usd: Callable[[int, int], float] = lambda _p, _c: 0.0, proposer_meter: MeteredModel | None = None):
        self.arena, self.repo, self.proposer, self.ledger = arena, repo, proposer, ledger
        self.usd, self.proposer_meter = usd, proposer_meter  # the harness model's prices; the proposer's token count
        self.path_check = path_check  # extra guard on changed paths (research: only editable paths)
        self.run_id, self.loop, self.guard, self.control = run_id, loop, guard, control
        self.memory_path, self.say = memory_path, say
        self.rng = random.Random(loop.seed)
        self.holdout = Thresholdout(loop.holdout_budget, loop.holdout_threshold, loop.holdout_noise, loop.seed)
        self.archive: list[arch.Member] = []
        self.dev_units = arena.units("dev")
        self.holdout_units = arena.units("holdout")
        self.rejections_in_a_row = 0
        self.eval_ids: dict[tuple[str, str, int], str | None] = {}
        self.in_round = False  # budgets are checked between the evaluations of a round

    # -- setup and resume ----------------------------------------------------------------------
    async def start(self) -> None:
        seed = self.repo.ensure_repo()
        expected = self.ledger.get_state(self.run_id, "arena_fingerprint")
        if expected is None:
            self.ledger.set_state(self.run_id, "arena_fingerprint", self.arena.fingerprint())
        state = self.ledger.get_state(self.run_id, "proposer")
        if state:
            self.proposer.load_state_dict(state["state"])
        if (h := self.ledger.get_state(self.run_id, "holdout")) is not None:
            self.holdout = Thresholdout.from_json(h["state"])
        self.rng.setstate(_rng_state(self.ledger.get_state(self.run_id, "rng"), self.rng))
        self.archive = [arch.Member("seed", seed, await self._dev_scores(seed, None, self.eval_seed(0)))]
        for row in self.ledger.candidates(self.run_id, status=CandidateStatus.ACCEPTED):
            scores = await self._dev_scores(row["commit"], row["id"], self.eval_seed(row["round"]))
            self.archive.append(arch.Member(row["id"], row["commit"], scores))
        best = arch.best(self.archive)
        if not self.repo.best_is(best.commit):  # a kill between the ledger write and the ref move
            self.repo.move_best(best.commit)
        # Counted as of the last observed round: a round decided but not yet observed before a kill is
        # observed (and counted) again when it resumes, so counting it here too would count it twice.
        observed = state["round"] if state else 0
        self.rejections_in_a_row = 0
        rounds: dict[int, list[str]] = {}  # round -> its candidates' statuses (several in a population round)
        for c in self.ledger.candidates(self.run_id):
            if c["round"] <= observed:
                rounds.setdefault(c["round"], []).append(c["status"])
        for statuses in reversed(list(rounds.values())):
            if CandidateStatus.ACCEPTED in statuses:
                break
            self.rejections_in_a_row += any(s in FINAL for s in statuses)

    def eval_seed(self, r: int) -> int:
        """Round r's evaluation seed. Parent and candidate share it (paired); each round draws fresh seeds,
        so rounds are independent experiments rather than many comparisons against one noisy parent sample."""
        return self.loop.seed * 100_003 + r

    async def _dev_scores(self, commit: str, candidate_id: str | None, seed: int) -> dict[str, list[float]]:
        return await self.scores(commit, "dev", self.dev_units, candidate_id, seed)

    def check_tamper(self) -> None:
        expected = self.ledger.get_state(self.run_id, "arena_fingerprint")
        actual = self.arena.fingerprint()
        if expected and actual != expected:
            self.ledger.add_event("tamper", {"expected": expected, "actual": actual}, run_id=self.run_id)
            raise TamperError(f"the scorer or suite data changed during the run (fingerprint {expected[:12]} -> "
                              f"{actual[:12]}); restore them, or start a new run to measure against the new ones")

    # -- one round -----------------------------------------------------------------------------
    async def run_round(self, r: int) -> RoundResult:
        self.in_round = True
        try:
            return await self._run_round(r)
        finally:
            self.in_round = False

    async def _run_round(self, r: int) -> RoundResult:
        row = self.ledger.get_state(self.run_id, f"round/{r}")
        if row is None:
            parent = arch.select_parent(self.archive, self.loop.parent_selection, self.rng)
            # one write: the parent and the rng state after drawing it, so a kill cannot separate them
            self.ledger.set_state(self.run_id, f"round/{r}", {"parent": parent.candidate_id,
                                                              "rng": list(_jsonable_rng(self.rng.getstate()))})
        else:
            parent = self._member(row["parent"])
            if "rng" in row:
                self.rng.setstate(_rng_state(row["rng"], self.rng))
        self.ledger.set_state(self.run_id, "rng", list(_jsonable_rng(self.rng.getstate())))
        if self.loop.population > 1:  # K candidates at once, at most one kept (loop/population.py)
            return await run_population_round(self, r, parent)
        cand_id = f"{self.run_id}-r{r:03d}"
        existing = self.ledger.candidate(cand_id)
        if existing is None:
            existing = await self._propose(r, cand_id, parent)
        status = CandidateStatus(existing["status"])
        if status == CandidateStatus.AWAITING_APPROVAL:
            status = await self._await_approval(cand_id)
        if status in TO_EVALUATE:
            status = await self._evaluate(r, cand_id, parent, existing)
        return await self._remember(r, cand_id, parent)

    def _member(self, candidate_id: str) -> arch.Member:
        return next(m for m in self.archive if m.candidate_id == candidate_id)

    def proposal_key(self, r: int, cand_id: str) -> str:
        return proposal_state_key(self.run_id, r, cand_id)

    async def _propose(self, r: int, cand_id: str, parent: arch.Member, k: int = 0) -> dict[str, Any]:
        """Propose, guard and record round r's candidate (the k-th of a population round)."""
        files = self.repo.read_files(parent.commit)
        failures, summary = self.arena.failure_context(parent.commit, self.loop.max_failures_shown)
        lessons = project_lessons(self.ledger, self.run_id, self.memory_path)  # every run's: memory across runs
        ctx = ProposalContext(
            round=r, files=files, params=parse_params(files.get("params.toml", ""), "params.toml"),
            failures_prompt=failures, failure_summary=summary,
            lessons=[lesson_text(les) for les in recall(lessons, summary, query=failures)],
            history=self._history(), seed=self.loop.seed * 100_003 + r + 7919 * k, parent_score=parent.dev_mean)
        ctx.workspace, ctx.probe = open_round(self, ctx, parent.commit, cand_id)  # the proposer's files and probes
        base = dict(id=cand_id, run_id=self.run_id, round=r, parent_id=parent.candidate_id)
        try:
            proposal = await self.proposer.propose(ctx)
        except ProposalError as e:
            self._spend_proposer()
            self.ledger.add_candidate(**base, proposer=getattr(self.proposer, "last_used", self.proposer.name),
                                      summary="(no usable proposal)", rationale=str(e), status=CandidateStatus.FAILED,
                                      decision=Decision("failed", str(e), attempts=e.attempts).to_json())
            return self.ledger.candidate(cand_id)
        self._spend_proposer()
        self.ledger.set_state(self.run_id, self.proposal_key(r, cand_id), proposal.to_json())
        new_files = {p: t for p, t in {**files, **proposal.edits}.items() if t is not None}
        changes = changed_files(files, new_files)
        fingerprint = proposal_fingerprint(new_files)
        summary_line = _summary(proposal)
        row = dict(base, proposer=proposal.proposer, summary=summary_line, rationale=proposal.rationale,
                   hypothesis=proposal.hypothesis, fingerprint=fingerprint)
        if fingerprint in self._seen_fingerprints(parent):
            self.ledger.add_candidate(**row, status=CandidateStatus.DUPLICATE, decision=Decision(
                "duplicate", "identical or near-identical to a harness already tried").to_json())
            return self.ledger.candidate(cand_id)
        outside = uncommittable_paths(changes)
        if outside:  # no commit can hold such a path: reject before git sees it, rather than crash the run
            self.ledger.add_candidate(**row, status=CandidateStatus.GUARD_REJECTED,
                                      decision=Decision("rejected", "; ".join(outside), guard=outside).to_json())
            self.ledger.add_event("guard_reject", {"candidate": cand_id, "reasons": outside}, run_id=self.run_id)
            return self.ledger.candidate(cand_id)
        commit = self.repo.commit_candidate(parent.commit, changes, f"ratchet round {r}: {summary_line}",
                                            number=f"{r}{member_suffix(k)}" if k else r)
        diff = self.repo.diff(parent.commit, commit)
        verdict = check_candidate(changes, diff, self.guard, files)
        reasons = verdict.reasons + (self.path_check(changes) if self.path_check else [])
        if reasons:
            self.ledger.add_candidate(**row, commit=commit, diff=diff, status=CandidateStatus.GUARD_REJECTED,
                                      decision=Decision("rejected", "; ".join(reasons), guard=reasons).to_json())
            self.ledger.add_event("guard_reject", {"candidate": cand_id, "reasons": reasons}, run_id=self.run_id)
            return self.ledger.candidate(cand_id)
        gate = self.guard.approve == "always" or (self.guard.approve == "risky" and verdict.risky)
        status = CandidateStatus.AWAITING_APPROVAL if gate else CandidateStatus.PROPOSED
        self.ledger.add_candidate(**row, commit=commit, diff=diff, status=status,
                                  decision=Decision(risky=verdict.risky_reasons).to_json())
        return self.ledger.candidate(cand_id)

    def _seen_fingerprints(self, parent: arch.Member) -> set[str]:
        seen = {c["fingerprint"] for c in self.ledger.candidates(self.run_id) if c["fingerprint"]}
        seen.add(proposal_fingerprint(self.repo.read_files(parent.commit)))
        seen.add(proposal_fingerprint(self.repo.read_files(self.repo.seed())))
        return seen

    async def _await_approval(self, cand_id: str) -> str:
        self.say(f"waiting for approval of {cand_id}: `ratchet approve {cand_id}` or `ratchet reject {cand_id}` (or the UI)")
        while True:
            status = CandidateStatus(self.ledger.candidate(cand_id)["status"])
            if status != CandidateStatus.AWAITING_APPROVAL:
                if status == CandidateStatus.REJECTED:
                    self.ledger.update_candidate(cand_id, decision=Decision("rejected", "rejected by a person").to_json())
                return status
            if (why := self.control.stop_reason()) is not None:
                raise LoopStopped(why)
            await asyncio.sleep(0.5)

    async def scores(self, commit: str, split: str, units: list[str], cand_id: str | None, seed: int) -> dict[str, list[float]]:
        """One evaluation, its new rollouts charged as they are recorded. Inside a round, a budget that ran
        out stops the run here, between evaluations (the seed's and the closing table's always run)."""
        self.check_tamper()
        if self.in_round and (why := self.control.budget_reason(rounds=False)) is not None:
            raise BudgetReached(why)
        try:
            scores, cost = await self.arena.scores(commit, split, units, self.loop.epochs, seed=seed, run_id=self.run_id,
                                                   candidate_id=cand_id, should_stop=self.control.should_stop,
                                                   on_rollout=self._spend_rollout)
        except EvalInterrupted as e:
            raise LoopStopped(self.control.stop_reason() or str(e)) from None
        self.eval_ids[(commit, split, seed)] = cost.get("eval_id")
        return scores

    def _spend_rollout(self, traj: Trajectory) -> None:
        self.control.spend(1, traj.tokens, self.usd(traj.prompt_tokens, traj.completion_tokens))
        self.save_usage()

    def _spend_proposer(self) -> None:
        if self.proposer_meter is not None:
            tokens, usd = self.proposer_meter.take()
            if tokens or usd:
                self.control.spend(tokens=tokens, usd=usd, proposer=True)
                self.save_usage()

    def save_usage(self) -> None:
        """What the run has spent, in the ledger as it changes: a resumed run continues from it."""
        self.ledger.set_state(self.run_id, "usage", self.control.usage.to_json())

    async def _evaluate(self, r: int, cand_id: str, parent: arch.Member, row: dict[str, Any]) -> CandidateStatus:
        self.ledger.update_candidate(cand_id, status=CandidateStatus.EVALUATING)
        seed, commit = self.eval_seed(r), row["commit"]
        known = Decision(risky=Decision.from_json(row.get("decision")).risky, seed=seed)

        async def score(side: Side, split: str, units) -> dict[str, list[float]]:
            member_commit, member_id = (parent.commit, None) if side == "parent" else (commit, cand_id)
            return await self.scores(member_commit, split, list(units), member_id, seed)

        try:
            out = await compare(score, self.dev_units, self.holdout_units, self.loop, self.holdout, seed=seed, decision=known)
        except ArenaFailure as e:  # e.g. a research trial crashed: a recorded failure, never a score
            return self._finish(cand_id, CandidateStatus.FAILED, Decision("failed", str(e), failure=e.details), {})
        if out.decision.dev is not None:
            out.decision.parent_eval = self.eval_ids.get((parent.commit, "dev", seed))
            out.decision.cand_eval = self.eval_ids.get((commit, "dev", seed))
        if out.decision.holdout is not None:
            self.ledger.set_state(self.run_id, "holdout", {"round": r, "state": self.holdout.to_json()})
        return self._finish(cand_id, out.status, out.decision, out.candidate_dev)

    def _finish(self, cand_id: str, status: CandidateStatus, decision: Decision,
                cand_scores: dict[str, list[float]]) -> CandidateStatus:
        row = self.ledger.candidate(cand_id)
        self.ledger.update_candidate(cand_id, status=status, decision=decision.to_json(),
                                     cost={"dev_mean": mean_of(cand_scores)} if cand_scores else {})
        if status == CandidateStatus.ACCEPTED:
            member = arch.Member(cand_id, row["commit"], cand_scores)
            self.archive.append(member)
            if arch.best(self.archive) is member:
                self.repo.move_best(member.commit)
        return status

    # -- memory ------------------------------------------------------------------------------------
    async def _remember(self, r: int, cand_id: str, parent: arch.Member,
                        siblings: list[dict[str, Any]] | None = None) -> RoundResult:
        """The round's lesson (one per round; a population round's names its other candidates), written from the
        Decision and critiqued by the proposer's model when there is one (loop/lesson.py), after the proposer
        has observed the outcome."""
        row = self.ledger.candidate(cand_id)
        status = CandidateStatus(row["status"])
        for each in [row, *(siblings or [])]:
            announce(self.ledger, each, self.say)  # e.g. mix benching a proposer: once, as an event and a line
        # Observed before the lesson is written: the lesson marks the round complete (driver.completed_rounds),
        # so a kill between the two must find the observation saved, or the resumed run would never make it.
        self._observe(r, [row, *(siblings or [])])
        if not any(x["round"] == r for x in self.ledger.lessons(self.run_id)):  # a resumed round keeps its lesson
            failures, summary = self.arena.failure_context(parent.commit, self.loop.max_failures_shown)
            lesson, refused = await round_lesson(self.run_id, r, row, failures, summary, self.proposer_meter, self.loop.seed)
            self._spend_proposer()  # the critique's tokens
            if refused:
                self.ledger.add_event("critique_refused", {"round": r, "candidate": cand_id, "errors": refused},
                                      run_id=self.run_id)
            if siblings:
                lesson.next_step = f"{lesson.next_step} Also tried this round: {tried_text(siblings)}"[:1200]
            claim_memory(self.ledger, self.run_id, self.memory_path)  # whose lessons these are, before the first
            self.ledger.add_lesson(self.run_id, r, cand_id, lesson_text(lesson), jsonable(lesson.to_json()))
        write_memory_md(self.memory_path, project_lessons(self.ledger, self.run_id, self.memory_path))  # every run's
        return RoundResult(r, cand_id, status, row["summary"])

    def _observe(self, r: int, rows: list[dict[str, Any]]) -> None:
        saved = self.ledger.get_state(self.run_id, "proposer")
        if saved and saved["round"] >= r:
            return  # observed before a crash; the saved state already includes it
        for row in sorted(rows, key=lambda c: c["id"]):  # a population round's in proposal order (r003, r003b, ...)
            proposal_json = self.ledger.get_state(self.run_id, self.proposal_key(r, row["id"]))
            if proposal_json:
                accepted = row["status"] == CandidateStatus.ACCEPTED
                score = (row["cost"] or {}).get("dev_mean")
                self.proposer.observe(Proposal.from_json(proposal_json), accepted, score)
        kept = any(row["status"] == CandidateStatus.ACCEPTED for row in rows)
        self.rejections_in_a_row = 0 if kept else self.rejections_in_a_row + 1
        if self.rejections_in_a_row and self.rejections_in_a_row % self.loop.strategy_switch_after == 0:
            self.proposer.switch_strategy()
            self.ledger.add_event("strategy_switch", {"round": r, "rejections_in_a_row": self.rejections_in_a_row},
                                  run_id=self.run_id)
        self.ledger.set_state(self.run_id, "proposer", {"round": r, "state": self.proposer.state_dict()})

    def _history(self) -> list[dict[str, Any]]:
        return [{"round": c["round"], "proposer": c["proposer"], "summary": c["summary"], "decision": c["status"],
                 "effect": Decision.from_json(c["decision"]).effect}
                for c in self.ledger.candidates(self.run_id)]


def uncommittable_paths(changes: dict[str, str | None]) -> list[str]:
    """Why each proposed path cannot be a harness file (absolute, leaves the harness dir, inside .git)."""
    reasons = []
    for path in changes:
        try:
            normalize_path(path, "candidate edit")
        except EditError as e:
            reasons.append(f"touches {e}")
    return reasons


def _summary(p: Proposal) -> str:
    first = (p.meta.get("summary") or p.rationale or "").strip().splitlines()
    return (first[0] if first else "change")[:160]


def _jsonable_rng(state: tuple) -> tuple:
    return state[0], list(state[1]), state[2]


def _rng_state(saved: Any, rng: random.Random) -> tuple:
    if not saved:
        return rng.getstate()
    return saved[0], tuple(saved[1]), saved[2]
