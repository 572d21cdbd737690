"""The ledger: runs, evaluations, rollouts, candidates, lessons, events and per-run state."""

from ratchet.ledger.store import Ledger, LedgerError, decode_json, new_id, redact, row_dict

__all__ = ["Ledger", "LedgerError", "decode_json", "new_id", "redact", "row_dict"]
