"""What one evaluation adds up to, for a person and for a file: outcome counts by failure signal, the
most common error (redacted), and the JSON record `ratchet eval` writes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.evaluate import EvalResult

ERROR_CHARS = 300  # errors are grouped on their first characters: the rest is usually a varying detail


@dataclass
class EvalSummary:
    result: EvalResult
    harness: str  # fingerprint
    model: str
    suite: str
    signals: dict[str, int] = field(default_factory=dict)  # failure signal -> rollouts, sorted by name
    common_error: str | None = None  # the most common error, redacted
    common_error_count: int = 0

    @property
    def n_rollouts(self) -> int:
        return len(self.result.trajectories)

    def payload(self) -> dict:
        return {**self.result.summary(), "harness": self.harness, "model": self.model, "suite": self.suite,
                "signals": self.signals, "scores": self.result.scores}

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.payload(), indent=2))
        return path


def summarize(result: EvalResult, harness: str, model: str, suite: str) -> EvalSummary:
    """Tally an evaluation's rollouts: how many ended with each failure signal, and which error was the
    most common one (so a missing skill or a crashing program is named, not just counted)."""
    from ratchet.ledger import redact

    signals = Counter(t.failure_signal for t in result.trajectories)
    errors = Counter(t.error[:ERROR_CHARS] for t in result.trajectories if t.error)
    summary = EvalSummary(result, harness, model, suite, dict(sorted(signals.items())))
    if errors:
        common, summary.common_error_count = max(errors.items(), key=lambda kv: kv[1])
        summary.common_error = redact(common)
    return summary
