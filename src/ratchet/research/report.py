"""Research results in the metric's own units: the round line, the closing table and results.tsv
(one row per candidate, like autoresearch's). Scores inside the loop are higher-is-better; here a
minimised metric is turned back (value = sign * score), so a lower bpb reads as a lower bpb."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ratchet.config import LoopSection
from ratchet.loop.decision import DecisionStats
from ratchet.loop.record import CandidateStatus, Decision
from ratchet.power import POWER, min_detectable_effect, noise_from_scores, split_warnings
from ratchet.research.config import ResearchSection

TSV_COLUMNS = ["round", "candidate", "commit", "proposer", "status", "dev_parent", "dev_candidate", "dev_delta",
               "ci_low", "ci_high", "p_value", "holdout_parent", "holdout_candidate", "holdout", "description"]


def to_metric(spec: ResearchSection, score: float | None) -> float | None:
    return None if score is None else spec.sign * score


def power_lines(spec: ResearchSection, loop: LoopSection, seed_dev: dict[str, list[float]]) -> list[str]:
    """What the seed counts can confirm, from the spread of the seed's dev trials (ratchet.power's variance bound):
    a warning per seed count that cannot confirm [loop] min_effect, or, with no min_effect, the smallest change
    the holdout seeds detect."""
    if not seed_dev:
        return []
    noise = noise_from_scores(seed_dev)
    sizes = {"dev": (spec.seeds, loop.epochs), "holdout": (spec.holdout_seeds, loop.epochs)}
    lines = [f"warning: {line}" for line in
             split_warnings(noise, sizes, loop.min_effect, loop.alpha, unit="seeds", use_default=False)]
    if loop.min_effect <= 0:
        mde = min_detectable_effect(spec.holdout_seeds, loop.epochs, noise, loop.alpha)
        detects = "no change at all" if mde == float("inf") else f"a change of {spec.metric} of {mde:.4g} or more"
        lines.append(f"power: {spec.holdout_seeds} holdout seeds detect {detects} with {POWER:.0%} power at alpha "
                     f"{loop.alpha:g} (from the seed's spread over {len(seed_dev)} dev seeds); set [loop] min_effect "
                     "to be warned when that is too coarse")
    return lines


def delta_interval(spec: ResearchSection, stats: DecisionStats) -> tuple[float, float, float]:
    """(delta, low, high) of candidate minus parent in metric units."""
    ends = sorted([spec.sign * stats.ci_low, spec.sign * stats.ci_high])
    return spec.sign * stats.mean_diff, ends[0], ends[1]


def _f(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def describe(row: dict[str, Any], proposal: dict[str, Any] | None) -> str:
    """What the candidate changed, in one line: the knob moves of a search proposal, else its summary."""
    changed = ((proposal or {}).get("meta") or {}).get("changed")
    return "; ".join(changed) if changed else " ".join((row["summary"] or "").split())


def round_line(spec: ResearchSection, row: dict[str, Any], proposal: dict[str, Any] | None = None) -> str:
    d = Decision.from_json(row["decision"])
    stats, hold = d.stats, d.holdout
    figures = ""
    if stats:
        delta, low, high = delta_interval(spec, stats)
        figures = (f" {spec.metric} {_f(to_metric(spec, stats.mean_parent))} -> {_f(to_metric(spec, stats.mean_cand))}"
                   f" (delta {delta:+.4g} [{low:+.4g}, {high:+.4g}], p={stats.p_value:.3g}"
                   f"{', first slice' if d.stopped_early else ''})")
    if hold:
        figures += f"; holdout {'confirmed' if hold.confirmed else 'not confirmed'}"
    if row["status"] == CandidateStatus.FAILED:
        figures += f" {d.reason[:120]}"
    return f"round {row['round']:>3} [{row['proposer']}] {describe(row, proposal)[:60]}:{figures} -> {row['status'].upper()}"


def tsv_rows(spec: ResearchSection, candidates: list[dict[str, Any]],
             proposals: dict[int, dict[str, Any]] | None = None) -> list[list[str]]:
    rows = []
    for c in candidates:
        d = Decision.from_json(c["decision"])
        stats, hold = d.stats, d.holdout
        delta = delta_interval(spec, stats) if stats else (None, None, None)
        rows.append([str(c["round"]), c["id"], (c["commit"] or "")[:10], c["proposer"], c["status"],
                     _f(to_metric(spec, stats.mean_parent if stats else None)),
                     _f(to_metric(spec, stats.mean_cand if stats else None)),
                     _f(delta[0], "+.4g"), _f(delta[1], "+.4g"), _f(delta[2], "+.4g"),
                     _f(stats.p_value if stats else None, ".3g"),
                     _f(to_metric(spec, hold.mean_parent if hold else None)),
                     _f(to_metric(spec, hold.mean_cand if hold else None)),
                     ("confirmed" if hold.confirmed else "not confirmed") if hold else "-",
                     describe(c, (proposals or {}).get(c["round"]))[:200]])
    return rows


def tsv_text(spec: ResearchSection, candidates: list[dict[str, Any]],
             proposals: dict[int, dict[str, Any]] | None = None) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    writer.writerows(tsv_rows(spec, candidates, proposals))
    return buf.getvalue()


def write_tsv(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def final_rows(spec: ResearchSection, table: list[dict[str, Any]]) -> list[list[str]]:
    """The closing table for the terminal: one row per version (seed, best) plus the paired comparison."""
    return [[r["version"], r["candidate"], r["commit"], _f(r["dev"]), _f(r["holdout"]), str(r["holdout_seeds"])]
            for r in table]
