"""The dashboard (`ratchet ui`) and the static report (`ratchet report`): read the ledger, gate approvals."""
