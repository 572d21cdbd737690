"""The typed decision of a candidate, written and read only through here. Its status, `CandidateStatus`,
lives in `ratchet.types` (re-exported here) so that the ledger, below the loop, can use it too.

The ledger stores a candidate's decision as JSON. Every reader (the round line, `ratchet log` and
`show`, the UI, the research table, memory) goes through `Decision.from_json`, so the shape of that
JSON is defined once, and a stopped-early candidate (slice statistics only) reads the same way as a
fully evaluated one (`decision.stats`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ratchet.loop.decision import DecisionStats
from ratchet.loop.holdout import HoldoutResult
from ratchet.types import FINAL, TO_EVALUATE, CandidateStatus, jsonable

__all__ = ["FINAL", "TO_EVALUATE", "CandidateStatus", "Decision", "HoldoutRecord"]


@dataclass
class HoldoutRecord(HoldoutResult):
    """The Thresholdout answer with the two holdout means (ledger and people only; proposers never see them)."""

    mean_parent: float | None = None
    mean_cand: float | None = None

    @classmethod
    def from_result(cls, result: HoldoutResult, mean_parent: float, mean_cand: float) -> HoldoutRecord:
        return cls(**dataclasses.asdict(result), mean_parent=mean_parent, mean_cand=mean_cand)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HoldoutRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Decision:
    """What was decided about a candidate and on what evidence.

    final: accepted | rejected | failed | duplicate (None while the candidate is still open).
    slice / dev: the paired statistics of the first dev slice (a stopped-early candidate) or of all dev.
    holdout: the Thresholdout confirmation, present only when dev accepted.
    """

    final: str | None = None
    reason: str = ""
    risky: list[str] = field(default_factory=list)  # why the guard called it risky (the approval gate)
    seed: int | None = None  # the round's evaluation seed, shared by parent and candidate
    slice: DecisionStats | None = None
    dev: DecisionStats | None = None
    holdout: HoldoutRecord | None = None
    per_task: dict[str, float] = field(default_factory=dict)  # candidate minus parent, per dev task
    parent_eval: str | None = None
    cand_eval: str | None = None
    guard: list[str] | None = None  # the guard's reasons, for a guard rejection
    attempts: Any = None  # a failed proposal: what the proposer tried
    failure: dict[str, Any] | None = None  # an arena failure's details (a research trial's log tail)

    @property
    def stats(self) -> DecisionStats | None:
        """The statistics that decided: all of dev, or the first slice for a candidate stopped early."""
        return self.dev or self.slice

    @property
    def stopped_early(self) -> bool:
        return self.slice is not None and self.dev is None

    @property
    def effect(self) -> float | None:
        return self.dev.mean_diff if self.dev else None

    def to_json(self) -> dict[str, Any]:
        """The stored shape: only the parts that are there (an empty per-task table is left out), NaN as None."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name == "per_task" and not value):
                continue
            out[f.name] = value.to_json() if hasattr(value, "to_json") else value
        return jsonable(out)

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Decision:
        d = dict(d or {})
        return cls(final=d.get("final"), reason=d.get("reason") or "", risky=list(d.get("risky") or []),
                   seed=d.get("seed"), slice=_stats(d.get("slice")), dev=_stats(d.get("dev")),
                   holdout=HoldoutRecord.from_json(d["holdout"]) if d.get("holdout") else None,
                   per_task=dict(d.get("per_task") or {}), parent_eval=d.get("parent_eval"),
                   cand_eval=d.get("cand_eval"), guard=d.get("guard"), attempts=d.get("attempts"),
                   failure=d.get("failure"))

    @classmethod
    def read(cls, d: Mapping[str, Any] | None) -> Decision:
        """`from_json` for readers that show any ledger's rows (the dashboard, reports): an older ratchet's,
        a hand-written or partial one. A statistics or holdout part with fields missing reads with those
        fields None, where `from_json` would raise; everything else reads as `from_json` reads it."""
        d = dict(d or {})
        parts = {"slice": _partial(DecisionStats, d.pop("slice", None)), "dev": _partial(DecisionStats, d.pop("dev", None)),
                 "holdout": _partial(HoldoutRecord, d.pop("holdout", None))}
        return dataclasses.replace(cls.from_json(d), **parts)


def _partial(cls: Any, d: Any) -> Any:
    """A `cls` record from a possibly incomplete dict: unknown keys dropped, missing fields None."""
    if not isinstance(d, Mapping) or not d:
        return None
    return cls(**{f.name: d.get(f.name) for f in dataclasses.fields(cls)})


def _stats(d: Mapping[str, Any] | None) -> DecisionStats | None:
    return DecisionStats.from_json(d) if d else None


def proposal_state_key(run_id: str, round_: int, cand_id: str) -> str:
    """The ledger state key of a candidate's proposal: proposal/3 (proposal/3b, ... in a population round)."""
    return f"proposal/{round_}{cand_id.removeprefix(f'{run_id}-r{round_:03d}')}"
