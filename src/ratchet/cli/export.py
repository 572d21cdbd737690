"""`ratchet export inspect PROJECT [RUN]`: a run's evaluations as Inspect AI eval logs (docs/inspect.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from ratchet.cli.common import ProjectArg, fail, fixable, latest_run_id, open_record
from ratchet.console import console, table

export_app = typer.Typer(help="Write ratchet's record in other tools' formats: `ratchet export inspect PROJECT [RUN]`.",
                         no_args_is_help=True)


@export_app.command("inspect")
def inspect_(
    project: Path = ProjectArg,
    run: str | None = typer.Argument(None, help="Run id (default: the project's latest evolve run)."),
    evals: list[str] = typer.Option([], "--eval", help="Export this evaluation (an id from the ledger, e.g. from "
                                    "`ratchet eval`'s .ratchet/eval-dev.json) instead of a run; repeatable."),
    out: Path | None = typer.Option(None, "--out", help="Directory for the logs (default: \\[eval] inspect_logs, else "
                                    ".ratchet/inspect-logs; a run's logs go in a folder named after it)."),
    fmt: str = typer.Option("eval", "--format", help="eval (Inspect's compressed log) or json."),
) -> None:
    """Write one Inspect eval log per evaluation of a run: per-sample scores (a sample per task x epoch), the
    model, the task, and the candidate's decision statistics in the metadata. `inspect view --log-dir DIR`
    opens them; `inspect_ai.log.read_eval_log` reads them."""
    from ratchet.export.inspect_log import (
        FORMATS,
        NEEDS_INSPECT,
        SuiteView,
        candidate_links,
        export_run,
        inspect_available,
        write_eval_logs,
    )

    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}; use eval or json")
    if not inspect_available():
        fail(f"ratchet export inspect: {NEEDS_INSPECT}")
    proj = open_record(project)
    cfg, ledger = proj.cfg, proj.ledger
    base = out or cfg.root / (cfg.eval.inspect_logs or ".ratchet/inspect-logs")
    with fixable():
        from ratchet.suites import build_suite

        try:
            view = SuiteView.of(build_suite(cfg.suite, cfg.root))
        except ValueError as e:
            fail(f"{e}\n(the export reads each task's input and target from the project's suite)")
        if evals:
            rows = []
            for eval_id in evals:
                if (row := ledger.eval(eval_id)) is None:
                    fail(f"no evaluation {eval_id!r} in the ledger; `ratchet eval` writes its id to .ratchet/eval-SPLIT.json")
                rows.append(row)
            run_ids = {r["run_id"] for r in rows}
            run_id = run_ids.pop() if len(run_ids) == 1 else None
            written = write_eval_logs(ledger, rows, base / "evals", view,
                                      candidate_links(ledger, run_id, rows, cfg.eval.seed), fmt)
        else:
            run_id = latest_run_id(ledger, cfg.project.name, run)
            if ledger.run(run_id) is None:
                fail(f"no run {run_id!r} in the ledger; `ratchet log {project} --runs` lists them")
            written = export_run(ledger, run_id, base / run_id, view, cfg.eval.seed, fmt)
    ledger.close()
    if not written:
        fail("the run has no evaluations yet; nothing to export")
    console.print(table(f"{len(written)} Inspect eval logs", ["log"], [[str(p.name)] for p in written]))
    console.print(f"wrote {len(written)} logs to {written[0].parent}; open them with: inspect view --log-dir {written[0].parent}",
                  highlight=False)
