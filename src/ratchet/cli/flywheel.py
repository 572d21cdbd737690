"""The flywheel's commands: `ratchet flywheel`, `ratchet models`, `ratchet data ...`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

from ratchet.cli.common import ProjectArg, fail, fixable, latest_run_id, open_full, stop_exit_code, stop_policy_help
from ratchet.console import console, err_console, progress_bar, table

data_app = typer.Typer(help="Flywheel datasets: stats (the data card), export, lineage of one example, contamination.",
                       no_args_is_help=True)
RunOpt = typer.Option(None, help="Flywheel run id (default: latest).")


def _light(project: Path):
    """Config, ledger and flywheel store without loading a model (for the read-only commands)."""
    from ratchet.config import load_project
    from ratchet.ledger import Ledger
    from ratchet.ledger.flywheel_store import FlywheelStore

    with fixable():
        cfg = load_project(project)
        ledger = Ledger(cfg.ledger_url)
    return cfg, ledger, FlywheelStore(ledger)


def _settings(cfg, **overrides):
    """The project's [flywheel] settings, with command-line overrides (None: keep)."""
    from ratchet.flywheel.config import parse_flywheel, with_overrides

    with fixable():
        return with_overrides(parse_flywheel(cfg.flywheel), **overrides)


def _power_warnings(tasks, epochs: int, loop) -> list[str]:
    """Before anything is evaluated: can the comparison's holdout confirm [loop] min_effect (or the default effect
    of interest)? Under the binomial bound at 50% accuracy, the worst case (no score exists yet)."""
    from ratchet.power import assumed_noise, split_warnings

    return split_warnings(assumed_noise(0.5), {"holdout": (len(tasks["holdout"]), epochs)}, loop.min_effect, loop.alpha)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


@stop_policy_help
def flywheel(
    project: Path = ProjectArg,
    generations: int | None = typer.Option(None, "--generations", "-g",
                                              help="Generations to run (default: the \\[flywheel] generations key)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest flywheel run of this project."),
    samples: int | None = typer.Option(None, "--samples", help="Rollouts per train task (overrides samples_per_task)."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N train tasks (overrides task_limit)."),
) -> None:
    """Data flywheel: sample the train split, verify, filter, fine-tune; promote only what holds up on dev and holdout.

    Each generation samples K rollouts per train task, keeps the verified ones (scorer, optional AI judge,
    process signals), drops duplicates, over-long replies and anything containing a dev/holdout/test item,
    fine-tunes (TRL SFT/DPO, LoRA by default), and compares the new model with the current one on dev
    (paired test) and then on holdout. Ctrl-C or the stop file stops it; --resume continues.
    """
    from ratchet.flywheel.card import card_transposed
    from ratchet.flywheel.engine import Flywheel

    proj = open_full(project)
    fw = _settings(proj.cfg, samples_per_task=samples, task_limit=limit)
    with fixable():
        engine = Flywheel(proj, fw, on_event=lambda m: err_console.print(m, highlight=False),
                          progress=progress_bar, handle_sigint=True)
    for line in _power_warnings(engine.tasks, fw.eval_epochs, proj.cfg.loop):
        err_console.print(f"warning: {line}", highlight=False, markup=False)

    async def go():
        try:
            return await engine.run(generations, resume=resume)
        finally:
            await engine.aclose()
            await proj.aclose()

    with fixable(then=f"the run is in the ledger; continue it with: ratchet flywheel {project} --resume"):
        summary = asyncio.run(go())
    console.print(table(f"flywheel {summary.run_id} ({summary.status}: {summary.reason})",
                        *card_transposed(summary.generations)))
    stages = ("generate", "verify", "filter", "train", "evaluate")
    timing = [[g["generation"], *[g.get("seconds", {}).get(k, "-") for k in stages]] for g in summary.generations]
    console.print(table("wall time per stage (s)", ["gen", *stages], timing))
    if summary.final_holdout:
        f = summary.final_holdout
        s = f["stats"]
        console.print(f"holdout ({f['n_tasks']} tasks x {f['epochs']} epochs): {f['base']} {_pct(f['base_mean'])} -> "
                      f"{f['final']} {_pct(f['final_mean'])}; paired diff {s['mean_diff']:+.3f} "
                      f"[{s['ci_low']:+.3f}, {s['ci_high']:+.3f}], one-sided p={s['p_value']:.2g}")
    console.print(f"current model: {summary.current_model}   wall time: {summary.wall_s:.0f}s   data card: {summary.card_path}")
    if summary.current_model != summary.base_model:
        console.print(f'use it: set \\[model] name = "{summary.current_model}" in {project}/ratchet.toml')
    if summary.status != "finished":
        console.print(f"stopped: {summary.reason}. Continue with: ratchet flywheel {project} --resume")
        raise typer.Exit(stop_exit_code(summary.status, summary.by_budget))


def models(project: Path = ProjectArg,
           lineage: str | None = typer.Option(None, "--lineage", help="Print one model's ancestry.")) -> None:
    """The model registry: every trained model with its parent, data, status and evaluation."""
    from ratchet.flywheel import registry

    cfg, ledger, store = _light(project)
    if lineage:
        chain = registry.lineage(store, lineage)
        rows = [[m["name"], m.get("status"), m.get("parent") or "", m.get("dataset_hash") or "", m.get("run_id") or "",
                 m.get("generation") or ""] for m in chain]
        console.print(table(f"lineage of {lineage}", ["model", "status", "parent", "dataset", "run", "gen"], rows))
        return
    rows = []
    for m in store.models(project=cfg.project.name):
        met = m.get("metrics") or {}
        rows.append([m["name"], m["status"], m.get("parent") or "", m.get("generation") or "", m.get("dataset_hash") or "",
                     _pct(met.get("dev_mean")), _pct(met.get("holdout_mean")), met.get("train_seconds", "")])
    if not rows:
        console.print("no models in the registry yet; run `ratchet flywheel PROJECT`")
        return
    console.print(table(f"{cfg.project.name}: model registry", ["model", "status", "parent", "gen", "dataset",
                                                                "dev", "holdout", "train s"], rows))
    current = registry.current_model(store, cfg.project.name)
    console.print(f"current (newest promoted): {current or '-'}; \\[model] name in ratchet.toml: {cfg.model.name}")


@data_app.command("stats")
def data_stats(project: Path = ProjectArg, run: str | None = RunOpt) -> None:
    """The data card: examples per generation, filtered counts by reason, contamination hits, decisions."""
    from ratchet.flywheel.card import card_markdown, card_transposed

    cfg, ledger, store = _light(project)
    run_id = latest_run_id(ledger, cfg.project.name, run, "flywheel")
    gens = store.generations(run_id)
    console.print(table(f"data card: {run_id}", *card_transposed(gens)))
    for line in card_markdown(run_id, gens).splitlines():
        if line.startswith("- "):
            console.print(line, highlight=False)


@data_app.command("export")
def data_export(project: Path = ProjectArg, out: Path = typer.Option(..., "--out", help="Directory for the JSONL files."),
                run: str | None = RunOpt,
                generation: int | None = typer.Option(None, help="Only this generation (default: all, accumulated)."),
                dropped: bool = typer.Option(False, help="Export the dropped candidates instead (for audit).")) -> None:
    """Write sft.jsonl (messages), pairs.jsonl (prompt/chosen/rejected) and provenance.jsonl; HF `datasets` loads them."""
    from ratchet.flywheel.datasets import Example, export

    cfg, ledger, store = _light(project)
    run_id = latest_run_id(ledger, cfg.project.name, run, "flywheel")
    rows = store.examples(run_id, generation=generation, status="dropped" if dropped else "kept")
    with fixable():
        paths = export([Example.from_json(r["data"]["example"]) for r in rows], out)
    n = {k: sum(1 for _ in p.open()) for k, p in paths.items()}
    console.print(f"{run_id}: wrote {n['sft']} SFT rows to {paths['sft']}, {n['pairs']} pairs to {paths['pairs']}, "
                  f"provenance to {paths['provenance']}")


@data_app.command("lineage")
def data_lineage(example_id: str = typer.Argument(..., help="Example id (or a unique prefix), e.g. from an exported file."),
                 project: Path = typer.Option(Path("."), "--project", "-p", help="Project directory.", exists=True,
                                              file_okay=False)) -> None:
    """Everything about one example: task, split, rollout, model and its ancestry, harness, verifier, seed, and use."""
    from ratchet.flywheel.audit import example_lineage

    cfg, ledger, store = _light(project)
    with fixable():
        info = example_lineage(cfg, ledger, store, example_id)
    if info is None:
        fail(f"no example {example_id!r} in {cfg.ledger_url}")
    console.print_json(json.dumps(info, default=str))


@data_app.command("contamination")
def data_contamination(project: Path = ProjectArg) -> None:
    """Check the train split's task inputs against dev/holdout/test before any generation: what would be dropped."""
    from ratchet.flywheel.audit import contaminated_train_tasks

    cfg, _ledger, _store = _light(project)
    with fixable():
        found, n_train = contaminated_train_tasks(cfg, _settings(cfg))
    rows = [[c.task_id, c.input[:60], len(c.hits), ", ".join(f"{h.split}:{h.task_id}" for h in c.hits[:3])] for c in found]
    console.print(table(f"train tasks whose input contains a dev/holdout/test item ({len(rows)}/{n_train})",
                        ["train task", "input", "hits", "first hits"], rows[:50]))
    console.print(f"{len(rows)} of {n_train} train tasks are contaminated; the flywheel drops every "
                  "example built from them and counts it under 'contamination' in the data card")
