"""Power before spending, for a harness project: `ratchet plan`'s figures and the warnings `ratchet evolve`
prints at the start of a run (the math is `ratchet.power`'s).

The seed evaluation a plan rests on is the one `ratchet evolve` starts with: the harness on every dev
task, [loop] epochs, the run's first evaluation seed. So a plan made before a run costs the run nothing
(it reuses those rollouts), and a plan made after one reuses the run's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ratchet.config import ProjectConfig
from ratchet.evaluate import EvalResult
from ratchet.harness.loader import Harness
from ratchet.loop.reconcile import Report
from ratchet.loop.record import Decision
from ratchet.power import Noise, SplitPlan, noise_from_scores, plan_split, split_warnings
from ratchet.power_check import Comparison
from ratchet.project import Project
from ratchet.stats import paired_differences, score_table

CONFIRMING = ("holdout", "test")  # the splits a run's claims rest on: evolve warns about these


def seed_eval_seed(cfg: ProjectConfig) -> int:
    """The evaluation seed of a run's first evaluation (`LoopEngine.eval_seed(0)`, offset by [eval] seed as
    the harness arena does)."""
    return cfg.eval.seed + cfg.loop.seed * 100_003


def split_sizes(project: Project, limit: int | None = None) -> dict[str, tuple[int, int]]:
    """(tasks, epochs) per split as the loop uses them: dev and holdout at [loop] epochs, the sealed test
    split at [eval] epochs (what `ratchet test --unseal` runs)."""
    cfg = project.cfg
    n = {s: len(project.tasks(s)) for s in ("dev", "holdout", "test")}
    if limit:
        n["dev"] = min(n["dev"], limit)
    return {"dev": (n["dev"], cfg.loop.epochs), "holdout": (n["holdout"], cfg.loop.epochs),
            "test": (n["test"], cfg.eval.epochs)}


def plans(noise: Noise, sizes: Mapping[str, tuple[int, int]], effect: float, alpha: float) -> list[SplitPlan]:
    return [plan_split(split, n, epochs, effect, noise, alpha) for split, (n, epochs) in sizes.items()]


def run_warnings(project: Project, seed_dev: Mapping[str, Sequence[float]]) -> list[str]:
    """The start-of-run warnings of `ratchet evolve`, from the seed's dev scores of the run."""
    if not seed_dev:
        return []
    cfg = project.cfg
    sizes = {s: v for s, v in split_sizes(project).items() if s in CONFIRMING}
    return split_warnings(noise_from_scores(seed_dev), sizes, cfg.loop.min_effect, cfg.loop.alpha)


async def seed_dev_eval(project: Project, harness: Harness, limit: int | None = None,
                        progress: Callable[[int, int], None] | None = None,
                        should_stop: Callable[[], bool] | None = None) -> EvalResult:
    """The seed on dev as a run starts with it (resumable; reused from the ledger when it was run before)."""
    tasks = project.tasks("dev", limit)
    if not tasks:
        raise ValueError("the dev split is empty; raise [suite] size or the dev fraction")
    return await project.evaluator.evaluate(harness, tasks, "dev", project.cfg.loop.epochs, seed_eval_seed(project.cfg),
                                            progress=progress, should_stop=should_stop)


def run_comparisons(project: Project, run_id: str) -> list[Comparison]:
    """The paired comparisons a run made, for `ratchet plan --check`: every round's dev comparison (its
    per-task differences are in the decision) and the seed-vs-best rows of the closing report on holdout and
    test (their evaluations' rollouts are in the ledger)."""
    ledger, run = project.ledger, project.ledger.run(run_id) or {}
    epochs = ((run.get("config") or {}).get("loop") or {}).get("epochs") or project.cfg.loop.epochs  # the run's own
    out = []
    for cand in sorted(ledger.candidates(run_id), key=lambda c: (c["round"], c["id"])):
        decision = Decision.read(cand["decision"])
        if decision.dev is not None and decision.per_task:
            out.append(Comparison(f"round {cand['round']}: {cand['summary']}", "dev",
                                  tuple(decision.per_task.values()), epochs))
    report = Report.from_json((run.get("summary") or {}).get("report"))
    for row in report.rows if report else []:
        ids = row.eval_ids or {}
        if row.split == "dev" or not (ids.get("seed") and ids.get("best")) or ids["seed"] == ids["best"]:
            continue
        seed, best = (score_table(ledger.rollouts(ids[side])) for side in ("seed", "best"))
        diffs = paired_differences(seed, best)
        out.append(Comparison(f"seed vs best ({row.measured_with})", row.split, tuple(diffs.values()), row.epochs))
    return out
