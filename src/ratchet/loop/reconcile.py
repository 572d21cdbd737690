"""The closing report that reconciles: seed vs best on dev, holdout and test, each paired, next to what the
rounds' holdout confirmations said, with a sentence wherever the two disagree and what that means.

Why it is needed: a round's confirmation is measured on that round's seeds (and released through
Thresholdout), the closing holdout on the closing seed, the sealed test on the unseal's seed, and small
splits give wide intervals. Read side by side without that context, "round 1: holdout +0.167 confirmed"
above "holdout 0.192 -> 0.200" looks like a contradiction, and a reader cannot tell which to believe. Here
each figure carries its interval, its paired test (best vs seed on the same tasks and seeds), the seed it
was measured with and the smallest gain its split can detect, and `reconcile` says in words whether the
figures agree and, when they do not, whether the split is too small to tell or rules the confirmed gain out.

Pure functions, no I/O: the tiers pass score tables and ledger rows in and store `Report.to_json()` in the
run summary; `ratchet log`, `ratchet test --unseal` and the dashboard read it back with `Report.from_json`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ratchet.loop.decision import decide_dev
from ratchet.loop.record import Decision
from ratchet.power import POWER, min_detectable_effect, noise_from_scores
from ratchet.stats import clustered_mean_se, format_p
from ratchet.types import CandidateStatus, jsonable

Scores = Mapping[str, Sequence[float]]
Z95 = 1.959964  # a side's 95% interval: mean +- Z95 * (SE clustered by task)
NAMES = {"dev": "dev", "holdout": "the closing holdout", "test": "the sealed test"}


@dataclass
class SplitRow:
    """Seed and best on one split, measured on the same tasks with the same evaluation seed, and their paired test.

    Means are per-task means averaged (as the decision rule reports them); `diff` is best minus seed with a
    `ci_level` bootstrap interval over tasks; `p_value` is the one-sided paired test of a gain > 0;
    `detectable` is the smallest gain this split detects with 80% power at `alpha` (None: none at all)."""

    split: str
    seed_mean: float
    seed_se: float | None
    best_mean: float
    best_se: float | None
    diff: float
    ci_low: float
    ci_high: float
    ci_level: float
    p_value: float
    significant: bool
    n_tasks: int
    epochs: int
    measured_with: str  # in words: "round 3's seed", "the closing seed", "unseal #1's seed"
    eval_seed: int | None = None  # the evaluation seed (evals.seed in the ledger)
    detectable: float | None = None
    eval_ids: dict[str, str | None] = field(default_factory=dict)  # "seed" / "best" -> the evaluation's id
    bounds: list[float] | None = None  # the range scores live in ([0, 1] for a suite's), where intervals are cut

    def interval(self, side: str) -> tuple[float | None, float | None]:
        """A side's 95% interval from its clustered SE (None without one: a single task)."""
        mean, se = (self.seed_mean, self.seed_se) if side == "seed" else (self.best_mean, self.best_se)
        if se is None:
            return None, None
        lo, hi = mean - Z95 * se, mean + Z95 * se
        return (lo, hi) if not self.bounds else (max(self.bounds[0], lo), min(self.bounds[1], hi))


@dataclass
class Confirmation:
    """One accepted round on the path from the seed to the best: its dev decision and its holdout confirmation."""

    round: int
    candidate: str
    dev_diff: float | None
    dev_p: float | None
    dev_tasks: int | None
    holdout_diff: float | None  # the real paired holdout difference of that round (its own seeds)
    holdout_p: float | None
    eval_seed: int | None = None


@dataclass
class Report:
    rows: list[SplitRow]
    confirmations: list[Confirmation]
    sentences: list[str]
    alpha: float
    splits: list[str]  # the splits this tier reports (evolve: dev, holdout, test; research: holdout)
    same_harness: bool = False  # nothing was kept: best is the seed
    best_commit: str = ""
    sign: float = 1.0  # displayed value = sign * score (research: a minimised metric reads as itself)
    unit: str = "tasks"

    def row(self, split: str) -> SplitRow | None:
        return next((r for r in self.rows if r.split == split), None)

    def to_json(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Report | None:
        """The stored report (None when a run has none, e.g. one stopped before its closing table)."""
        if not isinstance(d, Mapping) or "rows" not in d:
            return None
        parts = {"rows": [_read(SplitRow, r) for r in d.get("rows") or []],
                 "confirmations": [_read(Confirmation, c) for c in d.get("confirmations") or []]}
        report = _read(cls, {**d, **parts})
        report.splits = list(report.splits or [r.split for r in report.rows])
        report.sign, report.unit = report.sign or 1.0, report.unit or "tasks"
        return report


def _read(cls: Any, d: Mapping[str, Any]) -> Any:
    """A record from stored JSON: unknown keys dropped, missing fields at their default (or None)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in d:
            out[f.name] = d[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            out[f.name] = None
    return cls(**out)


def split_row(split: str, seed_scores: Scores, best_scores: Scores, *, alpha: float, measured_with: str,
              eval_seed: int | None = None, eval_ids: Mapping[str, str | None] | None = None,
              boot_seed: int = 0, bounds: tuple[float, float] | None = None) -> SplitRow | None:
    """Seed vs best on one split from their score tables {task: [score per epoch]}; None when they share no task."""
    shared = [t for t in best_scores if t in seed_scores and len(seed_scores[t]) and len(best_scores[t])]
    if not shared:
        return None
    seed = {t: list(seed_scores[t]) for t in shared}
    best = {t: list(best_scores[t]) for t in shared}
    stats = decide_dev(seed, best, alpha=alpha, min_effect=0.0, seed=boot_seed)
    epochs = min(min(len(v) for v in seed.values()), min(len(v) for v in best.values()))
    mde = _detectable(len(shared), epochs, seed, alpha)
    return SplitRow(split=split, seed_mean=stats.mean_parent, seed_se=_se(seed), best_mean=stats.mean_cand,
                    best_se=_se(best), diff=stats.mean_diff, ci_low=stats.ci_low, ci_high=stats.ci_high,
                    ci_level=stats.ci_level, p_value=stats.p_value, significant=stats.accepted, n_tasks=stats.n_tasks,
                    epochs=epochs, measured_with=measured_with, eval_seed=eval_seed,
                    detectable=mde if math.isfinite(mde) else None, eval_ids=dict(eval_ids or {}),
                    bounds=list(bounds) if bounds else None)


def _detectable(n: int, epochs: int, seed: Scores, alpha: float) -> float:
    try:
        return min_detectable_effect(n, epochs, noise_from_scores(seed), alpha)
    except ValueError:  # no within-task noise at all (every epoch of a task agrees): the root search has no
        return 0.0  # sign change because even the tiniest gain is detected with power 1


def _se(scores: Scores) -> float | None:
    se = clustered_mean_se(scores)[1]
    return se if math.isfinite(se) else None


def lineage_confirmations(candidates: Sequence[Mapping[str, Any]], best_id: str | None,
                          seed_offset: int = 0) -> list[Confirmation]:
    """The accepted rounds from the seed to `best_id` (oldest first), read from the ledger's candidate rows.
    `seed_offset` turns a round's loop seed into its evaluation seed (evolve adds [eval] seed)."""
    by_id = {c["id"]: c for c in candidates}
    chain, cur = [], by_id.get(best_id or "")
    while cur is not None and cur["status"] == CandidateStatus.ACCEPTED and len(chain) <= len(by_id):
        d = Decision.read(cur.get("decision"))  # any ledger's rows: missing figures read as None
        dev, hold = d.dev, d.holdout
        chain.append(Confirmation(round=cur["round"], candidate=cur["id"], dev_diff=dev.mean_diff if dev else None,
                                  dev_p=dev.p_value if dev else None, dev_tasks=dev.n_tasks if dev else None,
                                  holdout_diff=hold.holdout_diff if hold else None, holdout_p=hold.p_value if hold else None,
                                  eval_seed=None if d.seed is None else d.seed + seed_offset))
        cur = by_id.get(cur.get("parent_id") or "")
    return chain[::-1]


def reconcile(rows: Sequence[SplitRow | None], confirmations: Sequence[Confirmation], alpha: float, *,
              splits: Sequence[str] = ("dev", "holdout", "test"), same_harness: bool = False, best_commit: str = "",
              sign: float = 1.0, unit: str = "tasks") -> Report:
    """The report: the rows, the confirmations, and the sentences that say how they fit together."""
    report = Report([r for r in rows if r is not None], list(confirmations), [], alpha, list(splits), same_harness,
                    best_commit, sign, unit)
    report.sentences = sentences(report)
    return report


def with_row(report: Report, row: SplitRow | None) -> Report:
    """The report with one split's row added or replaced (the unseal's test row), its sentences redone."""
    rows = [r for r in report.rows if row is None or r.split != row.split] + ([row] if row else [])
    return reconcile(rows, report.confirmations, report.alpha, splits=report.splits, same_harness=report.same_harness,
                     best_commit=report.best_commit, sign=report.sign, unit=report.unit)


def sentences(report: Report) -> list[str]:
    if report.same_harness:
        return ["No change was kept: the best is the seed, so there is no gain to confirm and seed and best "
                "are the same harness on every split."]
    out = []
    for split in report.splits:
        row = report.row(split)
        if row is None:
            out.append(_missing(split))
        elif split == "dev":
            out += _dev_sentence(report, row)
        else:
            out.append(_confirming_sentence(report, row))
    return out


def _missing(split: str) -> str:
    if split == "test":
        return ("The test split is sealed: `ratchet test PROJECT --unseal` scores seed and best on it once, with the "
                "paired test, and records the unseal.")
    return f"No {split} figure: the {split} split holds no tasks both harnesses were scored on."


def _v(report: Report, x: float | None, spec: str = "+.3f") -> str:
    return "-" if x is None else format(report.sign * x, spec)


def _figure(report: Report, row: SplitRow) -> str:
    lo, hi = sorted((report.sign * row.ci_low, report.sign * row.ci_high))
    return (f"{NAMES.get(row.split, row.split)} ({_v(report, row.diff)} [{lo:+.3f}, {hi:+.3f}], "
            f"p = {format_p(row.p_value)}, {_size(report, row)}, {row.measured_with})")


def _size(report: Report, row: SplitRow) -> str:
    return f"{row.n_tasks} {report.unit} x {row.epochs} epoch{'' if row.epochs == 1 else 's'}"


def _claim(report: Report, key: str) -> tuple[float | None, str]:
    """The gain the kept rounds claimed on dev or holdout, summed over the lineage, and how to say it."""
    held = [c for c in report.confirmations if getattr(c, f"{key}_diff") is not None]
    if not held:
        return None, ""
    total = sum(getattr(c, f"{key}_diff") for c in held)
    what = "holdout confirmation" if key == "holdout" else "dev decision"
    if len(held) == 1:
        c = held[0]
        seeds = "its own seeds" if c.eval_seed is None else f"its own seed {c.eval_seed}"
        return total, f"round {c.round}'s {what} ({_v(report, total)}, p = {format_p(getattr(c, f'{key}_p'))}, on {seeds})"
    rounds = ", ".join(str(c.round) for c in held)
    each = ", ".join(_v(report, getattr(c, f"{key}_diff")) for c in held)
    return total, f"the {what}s of rounds {rounds} ({each}, each on its round's seeds; {_v(report, total)} together)"


def _dev_sentence(report: Report, row: SplitRow) -> list[str]:
    """Dev was decided on: a sentence only when seed vs best on the decision round's seed does not show the gain."""
    claim, said = _claim(report, "dev")
    if claim is None or row.significant:
        return []
    return [f"{said[0].upper() + said[1:]} and {_figure(report, row)} disagree: best vs seed directly is not "
            "significant on dev; the gain was assembled from rounds each measured against its own parent."]


def _confirming_sentence(report: Report, row: SplitRow) -> str:
    """Holdout or test against the confirmations: agree, too small to tell, rules the gain out, or inconclusive."""
    fig = _figure(report, row)
    claim, said = _claim(report, "holdout")
    if claim is None:
        verdict = "a significant gain" if row.significant else f"no significant gain at alpha = {report.alpha:g}"
        return f"{fig[0].upper() + fig[1:]}: {verdict}."
    head = f"{said[0].upper() + said[1:]} and {fig}"
    where = "on fresh seeds" if row.split == "holdout" else "on the sealed test split"
    if row.significant:
        return f"{head} agree: the gain holds {where}."
    below = row.ci_high < claim  # the final interval lies below the confirmed gain
    if row.detectable is None or row.detectable > claim:
        can = ("cannot detect any gain" if row.detectable is None else
               f"detects gains of {row.detectable:.3f} or more")
        tail = "; its interval also lies below the confirmed gain, so the gain is probably smaller" if below else ""
        return (f"{head} disagree: the {row.split} split is too small to tell (on {_size(report, row)} it {can} "
                f"with {POWER:.0%} power at alpha = {report.alpha:g}){tail}; "
                "see `ratchet plan` for the tasks and epochs a gain needs.")
    if below:
        return (f"{head} disagree: {NAMES[row.split]}'s interval lies below the confirmed gain, which this split is "
                "large enough to see: the confirmation overstated it (chance in its own seeds) or the gain does not "
                "carry over to fresh seeds; do not rely on it before a larger measurement (`ratchet plan`).")
    return (f"{head} disagree: the split could detect a gain of that size but did not; the gain is probably "
            "smaller than confirmed. More tasks or epochs would settle it (`ratchet plan`).")
