"""The flywheel's commands: `ratchet flywheel`, `ratchet models`, `ratchet data ...`. Commands only.

Registered in cli.py with `app.command("flywheel")(flywheel)`, `app.command("models")(models)` and
`app.add_typer(data_app, name="data")`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Optional

import typer

from ratchet.config import ConfigError
from ratchet.console import console, err_console, progress_bar, table

ProjectArg = typer.Argument(..., help="Project directory (holding ratchet.toml).", exists=True, file_okay=False)
data_app = typer.Typer(help="Flywheel datasets: stats (the data card), export, lineage of one example, contamination.",
                       no_args_is_help=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _light(project: Path):
    """Config, ledger and flywheel store without loading a model (for the read-only commands)."""
    from ratchet.config import load_project
    from ratchet.ledger import Ledger
    from ratchet.ledger.flywheel_store import FlywheelStore

    try:
        cfg = load_project(project)
    except ConfigError as e:
        _fail(str(e))
    ledger = Ledger(cfg.ledger_url)
    return cfg, ledger, FlywheelStore(ledger)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def flywheel(
    project: Path = ProjectArg,
    generations: Optional[int] = typer.Option(None, "--generations", "-g", help="Generations to run (default: the \\[flywheel] generations key)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest flywheel run of this project."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Rollouts per train task (overrides samples_per_task)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N train tasks (overrides task_limit)."),
) -> None:
    """Data flywheel: sample the train split, verify, filter, fine-tune; promote only what holds up on dev and holdout.

    Each generation samples K rollouts per train task, keeps the verified ones (scorer, optional AI judge,
    process signals), drops duplicates, over-long replies and anything containing a dev/holdout/test item,
    fine-tunes (TRL SFT/DPO, LoRA by default), and compares the new model with the current one on dev
    (paired test) and then on holdout. Ctrl-C or the stop file stops it; --resume continues.
    """
    from ratchet.flywheel.config import parse_flywheel, with_overrides
    from ratchet.flywheel.engine import Flywheel
    from ratchet.flywheel.card import card_transposed
    from ratchet.project import open_project

    try:
        proj = open_project(project)
        fw = with_overrides(parse_flywheel(proj.cfg.flywheel), samples_per_task=samples, task_limit=limit)
        engine = Flywheel(proj, fw, on_event=lambda m: err_console.print(m, highlight=False),
                          progress=progress_bar, handle_sigint=True)
    except ConfigError as e:
        _fail(str(e))

    async def go():
        try:
            return await engine.run(generations, resume=resume)
        finally:
            await engine.aclose()
            await proj.aclose()

    summary = asyncio.run(go())
    console.print(table(f"flywheel {summary.run_id} ({summary.status}: {summary.reason})",
                        *card_transposed(summary.generations)))
    timing = [[g["generation"], *[g.get("seconds", {}).get(k, "-") for k in ("generate", "verify", "filter", "train", "evaluate")]]
              for g in summary.generations]
    console.print(table("wall time per stage (s)", ["gen", "generate", "verify", "filter", "train", "evaluate"], timing))
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
        raise typer.Exit(130)


def models(project: Path = ProjectArg,
           lineage: Optional[str] = typer.Option(None, "--lineage", help="Print one model's ancestry.")) -> None:
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


def _run(store, ledger, project_name: str, run: str | None) -> str:
    if run:
        return run
    latest = ledger.latest_run("flywheel", project_name)
    if latest is None:
        _fail("no flywheel run in this project's ledger; run `ratchet flywheel PROJECT` first")
    return latest["id"]


@data_app.command("stats")
def data_stats(project: Path = ProjectArg, run: Optional[str] = typer.Option(None, help="Flywheel run id (default: latest).")) -> None:
    """The data card: examples per generation, filtered counts by reason, contamination hits, decisions."""
    from ratchet.flywheel.card import card_markdown, card_transposed

    cfg, ledger, store = _light(project)
    run_id = _run(store, ledger, cfg.project.name, run)
    gens = store.generations(run_id)
    console.print(table(f"data card: {run_id}", *card_transposed(gens)))
    for line in card_markdown(run_id, gens).splitlines():
        if line.startswith("- "):
            console.print(line, highlight=False)


@data_app.command("export")
def data_export(project: Path = ProjectArg, out: Path = typer.Option(..., "--out", help="Directory for the JSONL files."),
                run: Optional[str] = typer.Option(None, help="Flywheel run id (default: latest)."),
                generation: Optional[int] = typer.Option(None, help="Only this generation (default: all, accumulated)."),
                dropped: bool = typer.Option(False, help="Export the dropped candidates instead (for audit).")) -> None:
    """Write sft.jsonl (messages), pairs.jsonl (prompt/chosen/rejected) and provenance.jsonl; HF `datasets` loads them."""
    from ratchet.flywheel.datasets import Example, export

    cfg, ledger, store = _light(project)
    run_id = _run(store, ledger, cfg.project.name, run)
    rows = store.examples(run_id, generation=generation, status="dropped" if dropped else "kept")
    paths = export([Example.from_json(r["data"]["example"]) for r in rows], out)
    n = {k: sum(1 for _ in p.open()) for k, p in paths.items()}
    console.print(f"{run_id}: wrote {n['sft']} SFT rows to {paths['sft']}, {n['pairs']} pairs to {paths['pairs']}, "
                  f"provenance to {paths['provenance']}")


@data_app.command("lineage")
def data_lineage(example_id: str = typer.Argument(..., help="Example id (or a unique prefix), e.g. from an exported file."),
                 project: Path = typer.Option(Path("."), "--project", "-p", help="Project directory.", exists=True,
                                              file_okay=False)) -> None:
    """Everything about one example: task, split, rollout, model and its ancestry, harness, verifier, seed, and use."""
    from ratchet.flywheel import registry
    from ratchet.suites import build_suite

    cfg, ledger, store = _light(project)
    row = store.example(example_id)
    if row is None:
        _fail(f"no example {example_id!r} in {cfg.ledger_url}")
    ex, detail = row["data"]["example"], row["data"].get("detail") or {}
    prov = ex["provenance"]
    suite = build_suite(cfg.suite, cfg.root)
    task = next((t for t in suite.tasks() if t.id == prov["task_id"]), None)
    rollout = next((t for t in ledger.rollouts(prov["eval_id"]) if t.task_id == prov["task_id"]
                    and t.epoch == prov["epoch"]), None) if not prov.get("star") else None
    used_by = [m["name"] for m in store.models() if m.get("run_id") == prov["run_id"]
               and ex["id"] in (ledger.get_state(prov["run_id"], f"trainset:g{m.get('generation')}", []) or [])]
    info = {
        "example": ex["id"], "kind": ex["kind"], "status": row["status"], "dropped_because": row["reason"],
        "drop_detail": detail or None, "task": {"id": prov["task_id"], "split": prov["split"],
                                                "input": task.input if task else None,
                                                "gold": suite.gold(prov["task_id"]) if task else None},
        "generation": prov["generation"], "run": prov["run_id"],
        "model": {"name": prov["model"], "ancestry": [m["name"] for m in registry.lineage(store, prov["model"])]},
        "harness": {"fingerprint": prov["harness"], "commit": prov["harness_commit"]},
        "verifier": prov["verifier"], "score": prov["score"], "sampling_seed": prov["seed"],
        "rollout": {"eval_id": prov["eval_id"], "epoch": prov["epoch"], "call_index": prov["call_index"],
                    "output": rollout.output if rollout else None, "feedback": rollout.feedback if rollout else None,
                    "signals": ex.get("signals")},
        "pair": {"rejected_score": prov.get("rejected_score"), "rejected_seed": prov.get("rejected_seed"),
                 "rejected_epoch": prov.get("rejected_epoch")} if ex["kind"] == "pair" else None,
        "star_rationalized": prov.get("star", False), "judge": ex.get("judge"),
        "trained_into": used_by,
        "text": {"prompt": ex["prompt"], "reply": ex["reply"], "rejected": ex.get("rejected")},
    }
    console.print_json(json.dumps(info, default=str))


@data_app.command("contamination")
def data_contamination(project: Path = ProjectArg) -> None:
    """Check the train split's task inputs against dev/holdout/test before any generation: what would be dropped."""
    from ratchet.flywheel.config import parse_flywheel
    from ratchet.flywheel.contamination import index_for_suite
    from ratchet.suites import build_suite, tasks_for_split

    cfg, _ledger, _store = _light(project)
    fw = parse_flywheel(cfg.flywheel)
    suite = build_suite(cfg.suite, cfg.root)
    fr = cfg.suite.splits.model_dump()
    index = index_for_suite(suite, fr, cfg.suite.split_salt, n=fw.ngram, threshold=fw.contamination_threshold,
                            boilerplate_df=fw.boilerplate_df)
    split_tasks = {"train": tasks_for_split(suite, "train", fr, cfg.suite.split_salt)}
    rows = []
    for t in split_tasks["train"]:
        hits = index.check(t.input)
        if hits:
            rows.append([t.id, t.input[:60], len(hits), ", ".join(f"{h.split}:{h.task_id}" for h in hits[:3])])
    console.print(table(f"train tasks whose input contains a dev/holdout/test item ({len(rows)}/{len(split_tasks['train'])})",
                        ["train task", "input", "hits", "first hits"], rows[:50]))
    console.print(f"{len(rows)} of {len(split_tasks['train'])} train tasks are contaminated; the flywheel drops every "
                  "example built from them and counts it under 'contamination' in the data card")
