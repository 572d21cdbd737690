"""`ratchet eval DIR`: score the harness on a split. The tallies are ratchet.eval_summary's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from ratchet.cli.common import STOPPED, ProjectArg, ctrl_c_flag, fail, fixable, open_full
from ratchet.config import ModelSection
from ratchet.console import console, progress_bar, score_pm, table

AGAIN = "finished rollouts are in the ledger; run the same command again to finish"


def model_override(project: Path, model: str | None, base_url: str | None) -> ModelSection | None:
    """The project's [model] section with --model / --base-url applied, or None without them."""
    if model is None and base_url is None:
        return None
    from ratchet.config import load_project

    with fixable():
        current = load_project(project).model
    update: dict = {}
    if model:
        update["name"] = model
    if base_url:
        update.update(backend="openai", base_url=base_url)
    return current.model_copy(update=update)


def eval_(
    project: Path = ProjectArg,
    split: str = typer.Option("dev", help="train | dev | holdout | test (test is sealed: use `ratchet test --unseal`)."),
    epochs: int | None = typer.Option(None, help="Repeats of every task (default: \\[eval] epochs)."),
    limit: int | None = typer.Option(None, help="Only the first N tasks of the split."),
    seed: int | None = typer.Option(None, help="Evaluation seed (default: \\[eval] seed)."),
    model: str | None = typer.Option(None, help="Model name (overrides \\[model] name)."),
    base_url: str | None = typer.Option(None, help="An OpenAI-compatible endpoint; switches the backend to openai."),
    output: Path | None = typer.Option(None, "--json",
                                          help="Write the result as JSON here (default: .ratchet/eval-SPLIT.json)."),
) -> None:
    """Score the project's harness on a split: accuracy with its standard error (clustered by task).

    Every rollout is written to the ledger as it finishes; running the same command again after an
    interruption finishes the missing rollouts only.
    """
    from ratchet.eval_summary import summarize
    from ratchet.evaluate import EvalInterrupted
    from ratchet.evolve import demos, memory_skill
    from ratchet.harness.loader import load_harness

    if split == "test":
        fail("the test split is sealed; `ratchet test PROJECT --unseal` scores it and records the unseal")
    if split not in ("train", "dev", "holdout"):
        fail(f"unknown split {split!r}; use train, dev or holdout")
    proj = open_full(project, model=model_override(project, model, base_url))
    with fixable():
        harness = load_harness(proj.cfg.harness_dir)
    if (offered := demos.offer_latest(proj, harness)) is not None:  # what `ctx.demos` gave it in its latest run
        console.print(offered, highlight=False)
    if (served := memory_skill.offer_latest(proj, harness)) is not None:  # what `ctx.skill("memory")` reads
        console.print(served, highlight=False)
    tasks = proj.tasks(split, limit or proj.cfg.eval.limit)
    if not tasks:
        fail(f"the {split} split is empty; raise [suite] size or the split fraction")
    ep = epochs or proj.cfg.eval.epochs
    sd = proj.cfg.eval.seed if seed is None else seed

    async def go(interrupted: list[bool]):
        try:
            with progress_bar(f"eval {split}") as update:
                return await proj.evaluator.evaluate(harness, tasks, split, ep, sd, progress=update,
                                                     should_stop=lambda: bool(interrupted))
        finally:
            await proj.aclose()

    try:
        with ctrl_c_flag() as interrupted, fixable(then=AGAIN):
            result = asyncio.run(go(interrupted))
    except EvalInterrupted as e:
        fail(f"{e}; run the same command again to finish", code=STOPPED)
    except KeyboardInterrupt:
        fail("interrupted; finished rollouts are in the ledger - run the same command again to finish", code=STOPPED)
    summary = summarize(result, harness.fingerprint, proj.model.name, proj.suite.name)
    console.print(table(
        f"{proj.cfg.project.name}: {proj.suite.name} / {split}",
        ["harness", "model", "tasks", "epochs", "accuracy ± se", "tokens", "seconds", "reused"],
        [[harness.fingerprint[:10], proj.model.name, result.n_tasks, ep, score_pm(result.mean, result.se),
          result.tokens, f"{result.seconds:.1f}", result.reused]],
    ))
    console.print(f"accuracy {score_pm(result.mean, result.se)} (standard error clustered by task; "
                  f"{result.n_tasks} tasks x {ep} epochs)", highlight=False)
    console.print("outcomes: " + ", ".join(f"{k} {v}" for k, v in summary.signals.items()))
    if summary.common_error is not None:
        console.print(f"most common error ({summary.common_error_count} of {summary.n_rollouts} rollouts): "
                      f"{summary.common_error}", highlight=False, markup=False)
    out = summary.write(output or proj.cfg.state_dir / f"eval-{split}.json")
    console.print(f"wrote {out}")
