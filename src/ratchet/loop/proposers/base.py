"""What every proposer takes and returns: a context in, a proposal (full new file texts) out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ratchet.harness.params import HarnessParams


class ProposalError(RuntimeError):
    """A proposer that could not produce a usable change; the loop records it as a failed proposal.

    `attempts` keeps what was tried (raw answers, errors) for the ledger."""

    def __init__(self, message: str, attempts: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.attempts = attempts or []


@dataclass
class Proposal:
    edits: dict[str, str | None]  # harness path -> full new text; None deletes the file
    rationale: str
    hypothesis: str
    proposer: str
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable; proposer-specific

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Proposal:
        return cls(**d)


@dataclass
class ProposalContext:
    round: int
    files: dict[str, str]  # the parent's harness files
    params: HarnessParams  # the parent's params.toml
    failures_prompt: str  # the failure report, written for a proposer
    failure_summary: dict[str, int]  # failure signal -> count
    lessons: list[str]  # recalled from memory, most relevant first
    history: list[dict[str, Any]]  # earlier rounds: round, proposer, summary, decision, effect
    seed: int
    parent_score: float | None = None  # the parent's dev mean, when known
    workspace: Path | None = None  # the round's workspace (loop/workspace.py), for proposers that work on files
    probe: Any = None  # loop.probe.EpisodeProbe: run_episode on a working copy, import new skills; None if the arena has none


@runtime_checkable
class Proposer(Protocol):
    name: str
    # A proposer with `uses_workspace = True` (agent, command) gets the round's workspace written for it
    # (ProposalContext.workspace, loop/workspace.py); the others get None there.

    async def propose(self, ctx: ProposalContext) -> Proposal: ...

    def observe(self, proposal: Proposal, accepted: bool, score: float | None) -> None:
        """What became of a proposal: accepted or not, and its dev mean (None when never evaluated)."""

    def switch_strategy(self) -> None:
        """Called by the loop after many rejections in a row: explore differently."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state; load_state_dict(state_dict()) makes the next proposal identical."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ModelProposerState:
    """What the model-driven proposers (llm, agent) remember between rounds: how many proposals were
    observed and kept, and how many more should push for a different kind of change after a strategy switch."""

    proposed: int = 0
    accepted: int = 0
    bold_left: int = 0

    def observe(self, proposal: Proposal, accepted: bool, score: float | None) -> None:
        self.proposed += 1
        self.accepted += bool(accepted)
        if proposal.meta.get("bold"):
            self.bold_left = max(0, self.bold_left - 1)

    def switch_strategy(self) -> None:
        self.bold_left = 2

    def state_dict(self) -> dict[str, Any]:
        return {"proposed": self.proposed, "accepted": self.accepted, "bold_left": self.bold_left}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.proposed, self.accepted, self.bold_left = state["proposed"], state["accepted"], state["bold_left"]
