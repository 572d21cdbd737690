"""The `ratchet` command. Commands only: each one parses its options and calls into the package."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Optional

import typer

from ratchet.config import ConfigError, ModelSection
from ratchet.console import console, err_console, progress_bar, score_pm, table

app = typer.Typer(
    help="ratchet: an AI agent that improves its own harness, data and training recipe - and proves it.\n\n"
    "Start with `ratchet init DIR`, then `ratchet eval DIR` and `ratchet evolve DIR`.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

TEMPLATE = Path(__file__).parent / "templates" / "project"
ProjectArg = typer.Argument(..., help="Project directory (holding ratchet.toml).", exists=True, file_okay=False)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _model_override(project: Path, model: str | None, base_url: str | None) -> ModelSection | None:
    if model is None and base_url is None:
        return None
    from ratchet.config import load_project

    current = load_project(project).model
    update: dict = {}
    if model:
        update["name"] = model
    if base_url:
        update.update(backend="openai", base_url=base_url)
    return current.model_copy(update=update)


@app.command()
def init(directory: Path = typer.Argument(..., help="Where to create the project."),
         force: bool = typer.Option(False, help="Write into a non-empty directory.")) -> None:
    """Create a project: ratchet.toml and a plain seed harness (reasoning-gym arithmetic on the embedded model)."""
    if directory.exists() and any(directory.iterdir()) and not force:
        _fail(f"{directory} is not empty; choose a new directory or pass --force")
    shutil.copytree(TEMPLATE, directory, dirs_exist_ok=True)
    console.print(f"created {directory}/ratchet.toml and {directory}/harness/. Next: ratchet eval {directory}")


@app.command("eval")
def eval_(
    project: Path = ProjectArg,
    split: str = typer.Option("dev", help="train | dev | holdout | test (test is sealed: use `ratchet test --unseal`)."),
    epochs: Optional[int] = typer.Option(None, help="Repeats of every task (default: [eval] epochs)."),
    limit: Optional[int] = typer.Option(None, help="Only the first N tasks of the split."),
    seed: Optional[int] = typer.Option(None, help="Evaluation seed (default: [eval] seed)."),
    model: Optional[str] = typer.Option(None, help="Model name (overrides [model] name)."),
    base_url: Optional[str] = typer.Option(None, help="An OpenAI-compatible endpoint; switches the backend to openai."),
    output: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON here (default: .ratchet/eval-SPLIT.json)."),
) -> None:
    """Score the project's harness on a split: accuracy with its standard error (clustered by task).

    Every rollout is written to the ledger as it finishes; running the same command again after an
    interruption finishes the missing rollouts only.
    """
    from ratchet.evaluate import EvalInterrupted
    from ratchet.project import open_project
    from ratchet.harness.loader import load_harness

    if split == "test":
        _fail("the test split is sealed; `ratchet test PROJECT --unseal` scores it and records the unseal")
    if split not in ("train", "dev", "holdout"):
        _fail(f"unknown split {split!r}; use train, dev or holdout")
    try:
        proj = open_project(project, model=_model_override(project, model, base_url))
        harness = load_harness(proj.cfg.harness_dir)
    except ConfigError as e:
        _fail(str(e))
    tasks = proj.tasks(split, limit or proj.cfg.eval.limit)
    if not tasks:
        _fail(f"the {split} split is empty; raise [suite] size or the split fraction")
    ep = epochs or proj.cfg.eval.epochs
    sd = proj.cfg.eval.seed if seed is None else seed

    async def go():
        try:
            with progress_bar(f"eval {split}") as update:
                return await proj.evaluator.evaluate(harness, tasks, split, ep, sd, progress=update)
        finally:
            await proj.aclose()

    try:
        result = asyncio.run(go())
    except EvalInterrupted as e:
        _fail(f"{e}; run the same command again to finish", code=130)
    except KeyboardInterrupt:
        _fail("interrupted; finished rollouts are in the ledger - run the same command again to finish", code=130)
    signals: dict[str, int] = {}
    for t in result.trajectories:
        signals[t.failure_signal] = signals.get(t.failure_signal, 0) + 1
    console.print(table(
        f"{proj.cfg.project.name}: {proj.suite.name} / {split}",
        ["harness", "model", "tasks", "epochs", "accuracy ± se", "tokens", "seconds", "reused"],
        [[harness.fingerprint[:10], proj.model.name, result.n_tasks, ep, score_pm(result.mean, result.se),
          result.tokens, f"{result.seconds:.1f}", result.reused]],
    ))
    console.print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(signals.items())))
    out = output or proj.cfg.state_dir / f"eval-{split}.json"
    payload = {**result.summary(), "harness": harness.fingerprint, "model": proj.model.name, "suite": proj.suite.name,
               "signals": signals, "scores": result.scores}
    out.write_text(json.dumps(payload, indent=2))
    console.print(f"wrote {out}")


def main() -> None:  # pragma: no cover - console entry for `python -m ratchet`
    try:
        app()
    except ConfigError as e:
        err_console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
