"""Approving or rejecting a candidate that waits at the approval gate: the one write a person makes.

A waiting loop polls the candidate's status and goes on when it leaves "awaiting_approval". The status
change and its "approval" event are written in one transaction, and only while the candidate is still
waiting, so two people clicking at once (or a click racing a CLI command) record exactly one decision.
The dashboard and `ratchet approve` / `ratchet reject` both call `record_approval`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from ratchet.ledger import schema as s
from ratchet.ledger.store import Ledger, redact
from ratchet.types import CandidateStatus

WAITING = CandidateStatus.AWAITING_APPROVAL
DECISIONS = {"approve": CandidateStatus.APPROVED, "reject": CandidateStatus.REJECTED}


class ApprovalError(ValueError):
    """The approval cannot be recorded; the message says why."""


@dataclass(frozen=True)
class ApprovalRecord:
    candidate: str
    run_id: str
    decision: str  # approved | rejected: the candidate's new status
    by: str  # ui | cli


def record_approval(ledger: Ledger, cand_id: str, action: str, by: str, note: str = "") -> ApprovalRecord:
    """Move a waiting candidate to approved/rejected and write an "approval" event, atomically."""
    if action not in DECISIONS:
        raise ApprovalError(f"unknown action {action!r}; use one of {sorted(DECISIONS)}")
    cand = ledger.candidate(cand_id)
    if cand is None:
        raise ApprovalError(f"no candidate {cand_id!r} in the ledger")
    new_status = DECISIONS[action].value
    now = time.time()
    data = {"candidate": cand["id"], "decision": new_status, "by": by}
    if note:
        data["note"] = note
    with ledger.engine.begin() as c:
        moved = c.execute(sa.update(s.candidates)
                          .where(s.candidates.c.id == cand["id"], s.candidates.c.status == WAITING.value)
                          .values(status=new_status, updated_at=now)).rowcount
        if not moved:
            current = c.execute(sa.select(s.candidates.c.status).where(s.candidates.c.id == cand["id"])).scalar_one()
            raise ApprovalError(f"candidate {cand['id']} is {current!r}, not {WAITING.value!r}; nothing to decide")
        c.execute(sa.insert(s.events).values(run_id=cand["run_id"], kind="approval", data=redact(data), created_at=now))
    return ApprovalRecord(candidate=cand["id"], run_id=cand["run_id"], decision=new_status, by=by)
