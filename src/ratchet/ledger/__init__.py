"""The ledger: runs, evaluations, rollouts, candidates, lessons, events and per-run state."""

from ratchet.ledger.store import Ledger, LedgerError, new_id, redact

__all__ = ["Ledger", "LedgerError", "new_id", "redact"]
