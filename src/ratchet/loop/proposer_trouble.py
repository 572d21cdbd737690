"""What went wrong with a round's proposers: one that failed before another answered, or all of them.

Read back from what the loop already stores, so a ledger written before this module existed reads too:
the proposal's meta in the run state `proposal/{round}` (`work_view.proposal_meta`; the mix proposer records the arms that failed
before the one that answered: `failed_arms`, `fallback_errors`, `fallback_tokens`) and, for a round with no
proposal, the Decision's attempts (each with its error, its proposer under mix, and its tokens when the
proposer counted them). `ratchet log`, `ratchet show` and the UI show these.

Notices are one-time messages a proposer leaves for the loop (the mix benching a proposer that keeps
failing): `announce` turns each into a ledger event and a printed line, once, even across a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rich.markup import escape

from ratchet.ledger import Ledger
from ratchet.loop.record import CandidateStatus, Decision
from ratchet.loop.work_view import proposal_meta


@dataclass
class ProposerFailure:
    proposer: str
    reason: str
    tokens: int | None  # what its failed attempts cost; None when the proposer did not count them
    attempts: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        cost = f"{self.tokens:,} tokens" if self.tokens is not None else "tokens not counted"
        return f"{self.proposer} failed ({self.attempts} attempt{'s' * (self.attempts != 1)}, {cost}): {self.reason}"


def _tokens(items: list[Mapping[str, Any]]) -> int | None:
    counted = [a["tokens"] for a in items if isinstance(a.get("tokens"), int)]
    return sum(counted) if counted else None


def proposer_failures(ledger: Ledger, row: Mapping[str, Any]) -> list[ProposerFailure]:
    """The proposers that failed in the round of candidate `row`, first first."""
    decision = Decision.read(row.get("decision"))
    if row.get("status") == CandidateStatus.FAILED and not row.get("commit"):  # no proposal: nothing was committed
        by: dict[str, list[Mapping[str, Any]]] = {}
        for a in decision.attempts if isinstance(decision.attempts, list) else []:
            if isinstance(a, Mapping) and "notice" not in a:
                by.setdefault(str(a.get("proposer") or row.get("proposer") or "?"), []).append(a)
        if not by:  # e.g. search with nothing to tune: an error, no attempts
            return [ProposerFailure(str(row.get("proposer") or "?"), decision.reason, None, 1)]
        return [ProposerFailure(name, str(items[-1].get("error") or decision.reason), _tokens(items), len(items))
                for name, items in by.items()]
    meta = proposal_meta(ledger, row)
    names, errors = list(meta.get("failed_arms") or []), list(meta.get("fallback_errors") or [])
    tokens, tries = list(meta.get("fallback_tokens") or []), list(meta.get("fallback_attempts") or [])
    return [ProposerFailure(str(name), str(errors[i]) if i < len(errors) else "",
                            tokens[i] if i < len(tokens) and isinstance(tokens[i], int) else None,
                            tries[i] if i < len(tries) and isinstance(tries[i], int) else 1)
            for i, name in enumerate(names)]


def round_notices(ledger: Ledger, row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The notices the round's proposer left: in its proposal's meta, or in a failed round's attempts."""
    meta = proposal_meta(ledger, row)
    found = [n for n in meta.get("notices") or [] if isinstance(n, Mapping)]
    attempts = Decision.read(row.get("decision")).attempts
    if isinstance(attempts, list):
        found += [a["notice"] for a in attempts if isinstance(a, Mapping) and isinstance(a.get("notice"), Mapping)]
    return found


def announce(ledger: Ledger, row: Mapping[str, Any], say: Callable[[str], None]) -> None:
    """Each notice of the round as a ledger event and a printed line, unless an earlier try of the round did."""
    for notice in round_notices(ledger, row):
        kind = str(notice.get("kind") or "proposer_notice")
        data = {**{k: v for k, v in notice.items() if k != "kind"}, "round": row["round"], "candidate": row["id"]}
        if any(e["data"] == data for e in ledger.events(row["run_id"], kind) if isinstance(e.get("data"), dict)):
            continue
        ledger.add_event(kind, data, run_id=row["run_id"])
        say(escape(str(notice.get("message") or kind)))  # the tiers' consoles read markup; an error may hold "[...]"
