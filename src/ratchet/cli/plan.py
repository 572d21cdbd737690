"""`ratchet plan DIR`: what each split can detect, from the seed's dev scores, before a run spends anything."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import typer
from rich.markup import escape

from ratchet.cli.common import STOPPED, ProjectArg, RunOption, ctrl_c_flag, fail, fixable, open_full, run_id_for
from ratchet.console import console, progress_bar, score_pm, table


def _effect(value: float | None) -> str:
    return "-" if value is None or math.isinf(value) else f"{value:.3f}"


def plan(
    project: Path = ProjectArg,
    effect: float | None = typer.Option(None, help="The gain to plan for, in the score's units (default: "
                                        "\\[loop] min_effect, or 0.15 when that is 0)."),
    limit: int | None = typer.Option(None, help="Score the seed on only the first N dev tasks (cheaper, rougher)."),
    output: Path | None = typer.Option(None, "--json", help="Write the plan as JSON here (default: .ratchet/plan.json)."),
    check: bool = typer.Option(False, "--check", help="After a run: set the plan beside what the run's paired comparisons "
                               "measured (the latest evolve run, or --run)."),
    run: str | None = RunOption,
) -> None:
    """Estimate, from the seed's dev scores, the smallest gain each split detects with 80% power at \\[loop] alpha,
    and the tasks and epochs a given gain needs.

    The seed evaluation is the one `ratchet evolve` starts with (dev, \\[loop] epochs, the run's first seed),
    resumable and reused from the ledger, so planning first costs a run nothing. The noise of a paired
    difference comes from the seed's epoch-to-epoch variation (2 or more epochs) or, with one epoch, from a
    conservative binomial bound; the figures assume the gain is similar on every task (ratchet/power.py).
    With --check, the spread of every paired comparison the run made (each round on dev, seed vs best on
    holdout and test) is set beside the spread the plan predicted, and each split's detectable gain is
    recomputed at the measured spread (ratchet/power_check.py).
    """
    from ratchet.evaluate import EvalInterrupted
    from ratchet.evolve import demos
    from ratchet.evolve.plan import plans, seed_dev_eval, split_sizes
    from ratchet.harness.loader import load_harness
    from ratchet.power import POWER, effect_of_interest, noise_from_scores, shortfall

    if effect is not None and not (effect > 0 and math.isfinite(effect)):
        fail(f"--effect {effect:g}: give a positive gain, e.g. --effect 0.1")
    if limit is not None and limit < 2:
        fail(f"--limit {limit}: the estimate needs at least 2 dev tasks")
    proj = open_full(project)
    check_run = run_id_for(proj, run) if check else None  # before the seed is scored: a missing run fails fast
    with fixable():
        harness = load_harness(proj.cfg.harness_dir)
    if (offered := demos.offer_latest(proj, harness)) is not None:
        console.print(offered, highlight=False)
    loop = proj.cfg.loop

    async def go(interrupted: list[bool]):
        try:
            with progress_bar("seed on dev") as update:
                return await seed_dev_eval(proj, harness, limit, progress=update, should_stop=lambda: bool(interrupted))
        finally:
            await proj.aclose()

    try:
        with ctrl_c_flag() as interrupted, fixable(then="finished rollouts are in the ledger; run the same command again"):
            result = asyncio.run(go(interrupted))
    except EvalInterrupted as e:
        fail(f"{e}; run the same command again to finish", code=STOPPED)
    except KeyboardInterrupt:
        fail("interrupted; finished rollouts are in the ledger - run the same command again to finish", code=STOPPED)
    noise = noise_from_scores(result.scores)
    gain, what = (effect, "--effect") if effect is not None else effect_of_interest(loop.min_effect)
    rows = plans(noise, split_sizes(proj), gain, loop.alpha)
    console.print(f"seed on dev: {score_pm(result.mean, result.se)} on {result.n_tasks} tasks x {result.epochs} epochs "
                  f"({result.reused} of {result.n_rollouts} rollouts reused from the ledger)", highlight=False)
    console.print(f"noise: {noise.describe()}", highlight=False, markup=False)
    console.print(table(
        escape(f"{proj.cfg.project.name}: paired one-sided test at alpha {loop.alpha:g}, {POWER:.0%} power; gain of "
               f"interest {gain:g} ({what})"),
        ["split", "tasks", "epochs", "detects (80% power)", f"power at {gain:g}", f"tasks for {gain:g}",
         f"epochs for {gain:g}"],
        [[p.split, p.n, p.epochs, _effect(p.mde), f"{p.power:.0%}", p.tasks or "-", p.epochs_for_effect or "-"]
         for p in rows]))
    for p in rows:
        line = shortfall(p, gain, what)
        console.print(f"warning: {line}" if line else f"the {p.split} split can confirm a gain of {gain:g}",
                      highlight=False, markup=False)
    payload = {"noise": {"mean": noise.mean, "within": noise.within, "binary": noise.binary, "source": noise.source,
                         "n_tasks": noise.n_tasks, "epochs": noise.epochs},
               "seed_eval": result.eval_id, "alpha": loop.alpha, "power": POWER, "effect": gain,
               "splits": [p.to_json() for p in rows]}
    if check_run:
        payload["check"] = _check(proj, check_run, noise, rows, loop.alpha)
    out = output or proj.cfg.state_dir / "plan.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {out}")


def _check(proj, run_id: str, noise, rows, alpha: float) -> dict:
    """Print the plan beside what run `run_id` measured; return it for the JSON."""
    from ratchet.evolve.plan import run_comparisons
    from ratchet.power_check import check, split_checks, summary

    checked = check(run_comparisons(proj, run_id), noise)
    if not checked:
        fail(f"run {run_id} made no paired comparison with 2 or more tasks yet; check again after its first round")
    console.print(table(escape(f"{run_id}: each comparison's spread of per-task differences, measured vs planned"),
                        ["comparison", "split", "tasks", "gain", "spread", "planned spread", "ratio"],
                        [[escape(c.label[:60]), c.split, c.n, f"{c.delta:+.3f}", f"{c.sd:.3f}", f"{c.predicted_sd:.3f}",
                          "-" if math.isinf(c.ratio) else f"{c.ratio:.2f}"] for c in checked]))
    splits = split_checks(rows, checked, alpha)
    console.print(table("detectable gain (80% power): planned vs at the measured spread",
                        ["split", "tasks", "epochs", "planned", "measured", "from"],
                        [[s.split, s.n, s.epochs, _effect(s.planned), _effect(s.measured), s.basis] for s in splits]))
    if (line := summary(checked)) is not None:
        console.print(line, highlight=False, markup=False)
    return {"run": run_id, "comparisons": [c.to_json() for c in checked], "splits": [s.to_json() for s in splits]}
