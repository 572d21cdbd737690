"""The `ratchet` command. Commands only: each one parses its options and calls into the package."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
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
    from rich.markup import escape  # a message naming "[eval] max_steps" must not be read as markup

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _stop_on_sigint(flag: list[bool]):
    """First Ctrl-C appends to `flag` (the evaluator then starts no new episode and stops cleanly once
    those in flight end: cancelling them mid-start can hang asyncio); a second one interrupts at once.
    Returns the previous handler, to restore."""

    def handler(signum, frame):  # noqa: ARG001
        if flag:
            raise KeyboardInterrupt
        flag.append(True)

    return signal.signal(signal.SIGINT, handler)


def _fixable(e: BaseException) -> str | None:
    """The message for an error the user can fix (project files, model endpoint, ledger, disk), else None."""
    import errno

    from sqlalchemy.exc import OperationalError

    from ratchet.ledger import LedgerError
    from ratchet.loop.gitrepo import GitError
    from ratchet.models.base import ModelError

    if isinstance(e, (ConfigError, LedgerError, ModelError, GitError)):
        return str(e)
    if isinstance(e, OperationalError):
        return (f"the ledger could not be written ({e.orig}); free disk space, or stop the program that "
                "holds a lock on it, then run the same command again: what was recorded is kept")
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({e}); free space, then run the same command again: what was recorded is kept"
    return None


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
    except Exception as e:
        if (message := _fixable(e)) is None:
            raise
        _fail(message)
    tasks = proj.tasks(split, limit or proj.cfg.eval.limit)
    if not tasks:
        _fail(f"the {split} split is empty; raise [suite] size or the split fraction")
    ep = epochs or proj.cfg.eval.epochs
    sd = proj.cfg.eval.seed if seed is None else seed

    interrupted: list[bool] = []

    async def go():
        try:
            with progress_bar(f"eval {split}") as update:
                return await proj.evaluator.evaluate(harness, tasks, split, ep, sd, progress=update,
                                                     should_stop=lambda: bool(interrupted))
        finally:
            await proj.aclose()

    previous = _stop_on_sigint(interrupted)
    try:
        result = asyncio.run(go())
    except EvalInterrupted as e:
        _fail(f"{e}; run the same command again to finish", code=130)
    except KeyboardInterrupt:
        _fail("interrupted; finished rollouts are in the ledger - run the same command again to finish", code=130)
    except Exception as e:
        if (message := _fixable(e)) is None:
            raise
        _fail(f"{message}\nfinished rollouts are in the ledger; run the same command again to finish")
    finally:
        signal.signal(signal.SIGINT, previous)
    signals: dict[str, int] = {}
    errors: dict[str, int] = {}
    for t in result.trajectories:
        signals[t.failure_signal] = signals.get(t.failure_signal, 0) + 1
        if t.error:
            errors[t.error[:300]] = errors.get(t.error[:300], 0) + 1
    console.print(table(
        f"{proj.cfg.project.name}: {proj.suite.name} / {split}",
        ["harness", "model", "tasks", "epochs", "accuracy ± se", "tokens", "seconds", "reused"],
        [[harness.fingerprint[:10], proj.model.name, result.n_tasks, ep, score_pm(result.mean, result.se),
          result.tokens, f"{result.seconds:.1f}", result.reused]],
    ))
    console.print(f"accuracy {score_pm(result.mean, result.se)} (standard error clustered by task; "
                  f"{result.n_tasks} tasks x {ep} epochs)", highlight=False)
    console.print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(signals.items())))
    if errors:  # say why episodes failed, so a missing skill or a crashing program is named, not just counted
        from ratchet.ledger import redact

        common, count = max(errors.items(), key=lambda kv: kv[1])
        console.print(f"most common error ({count} of {len(result.trajectories)} rollouts): {redact(common)}",
                      highlight=False, markup=False)
    out = output or proj.cfg.state_dir / f"eval-{split}.json"
    payload = {**result.summary(), "harness": harness.fingerprint, "model": proj.model.name, "suite": proj.suite.name,
               "signals": signals, "scores": result.scores}
    out.write_text(json.dumps(payload, indent=2))
    console.print(f"wrote {out}")


def _open(project: Path, **kw):
    from ratchet.project import open_project

    try:
        return open_project(project, **kw)
    except Exception as e:
        if (message := _fixable(e)) is None:
            raise
        _fail(message)


def _open_record(project: Path):
    """Config and ledger only: reading the record should not load a model."""
    from ratchet.project import open_project_ledger

    try:
        return open_project_ledger(project)
    except Exception as e:
        if (message := _fixable(e)) is None:
            raise
        _fail(message)


def _run_id(proj, run: str | None, kind: str = "evolve") -> str:
    if run:
        return run
    latest = proj.ledger.latest_run(kind, proj.cfg.project.name)
    if latest is None:
        _fail(f"no {kind} run of this project in the ledger yet; start one with `ratchet {kind} PROJECT`")
    return latest["id"]


@app.command()
def evolve(
    project: Path = ProjectArg,
    rounds: Optional[int] = typer.Option(None, help="Rounds to run (default: [loop] rounds). With --resume: the new total."),
    proposer: Optional[str] = typer.Option(None, help="search | llm | mix (default: [loop] proposer)."),
    approve: Optional[str] = typer.Option(None, help="never | risky | always: which candidates wait for `ratchet approve`."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest evolve run of this project after a stop, crash or kill."),
    run: Optional[str] = typer.Option(None, help="Continue this run id instead of the latest."),
) -> None:
    """Improve the harness round by round; keep a change only on paired evidence confirmed on holdout.

    Each round: select a parent, analyse its dev failures, propose a change (search over params.toml
    knobs, an LLM patch, or a mix), guard it, evaluate it paired against its parent, decide, and write
    a lesson to the ledger and memory.md. A stop file ([guard] stop_file) or Ctrl-C stops cleanly after
    the current step; `--resume` continues.
    """
    from ratchet.loop.control import StopControl  # noqa: F401  (import check before the model loads)
    from ratchet.loop.evolve import EvolveOptions, evolve as run_evolve

    if proposer and proposer not in ("search", "llm", "mix"):
        _fail(f"unknown proposer {proposer!r}; use search, llm or mix")
    if approve and approve not in ("never", "risky", "always"):
        _fail(f"unknown approval mode {approve!r}; use never, risky or always")
    proj = _open(project)
    opts = EvolveOptions(rounds=rounds, proposer=proposer, approve=approve, resume=resume or bool(run), run_id=run,
                         handle_sigint=True)

    async def go():
        try:
            return await run_evolve(proj, opts, say=lambda m: console.print(m, highlight=False))
        finally:
            await proj.aclose()

    from ratchet.loop.engine import TamperError

    try:
        outcome = asyncio.run(go())
    except (ValueError, TamperError) as e:
        _fail(str(e))
    except Exception as e:
        if (message := _fixable(e)) is None:
            raise
        _fail(f"{message}\nthe run is in the ledger; continue it with: ratchet evolve {project} --resume")
    if outcome.status == "stopped":
        console.print(f"stopped: {outcome.reason}. Continue with: ratchet evolve {project} --resume")
        raise typer.Exit(130 if "Ctrl-C" in outcome.reason else 0)
    console.print(f"finished: {outcome.reason}")
    if outcome.table:
        console.print(table(f"run {outcome.run_id}: seed vs best", ["harness", "candidate", "commit", "dev", "holdout"],
                            [[r["harness"], r["candidate"], r["commit"], f"{r['dev']:.3f}", f"{r['holdout']:.3f}"]
                             for r in outcome.table]))
    console.print(f"the test split is sealed; `ratchet test {project} --unseal` scores seed and best on it (recorded)")


@app.command("log")
def log_(project: Path = ProjectArg, run: Optional[str] = typer.Option(None, help="Run id (default: the latest evolve run)."),
         runs: bool = typer.Option(False, "--runs", help="List the runs instead.")) -> None:
    """The history of a run as a table: round, candidate, parent, change, dev delta with CI, holdout, decision."""
    from ratchet.loop.views import LOG_COLUMNS, log_rows

    proj = _open_record(project)
    if runs:
        console.print(table("runs", ["run", "kind", "status", "rounds", "best dev", "unseals"],
                            [[r["id"], r["kind"], r["status"], (r["summary"] or {}).get("round", "-"),
                              (r["summary"] or {}).get("best_dev", "-"), (r["summary"] or {}).get("unseals", 0)]
                             for r in proj.ledger.runs()]))
        return
    run_id = _run_id(proj, run)
    summary = proj.ledger.run(run_id)["summary"] or {}
    console.print(table(f"run {run_id} ({proj.ledger.run(run_id)['status']})", LOG_COLUMNS, log_rows(proj.ledger, run_id)))
    unseals = proj.ledger.events(run_id, "unseal")
    test = summary.get("test")
    console.print(f"sealed test: unsealed {len(unseals)} time(s)" + (f"; last: seed {test['seed']:.3f}, best {test['best']:.3f}" if test else ""))


CandidateArg = typer.Argument(..., help="Candidate id, a unique prefix of one, or its short name in `ratchet log` (r003: "
                               "round 3 of the latest run, or of --run).")
RunOption = typer.Option(None, "--run", help="Run id for a short candidate name (default: the latest evolve run).")


def _candidate_id(proj, candidate: str, run: str | None) -> str:
    """A full candidate id from what a user typed: an id, a unique prefix, or `rNNN` of a run."""
    if proj.ledger.candidate(candidate) is not None:
        return proj.ledger.candidate(candidate)["id"]
    short = re.fullmatch(r"r?(\d+)", candidate)
    if short:
        run_id = run or _run_id(proj, None, _latest_kind(proj))
        full = f"{run_id}-r{int(short.group(1)):03d}"
        if proj.ledger.candidate(full) is not None:
            return full
    _fail(f"no candidate {candidate!r}; `ratchet log PROJECT` lists them")


def _latest_kind(proj) -> str:
    """The kind of the project's most recent loop run, for short candidate names."""
    runs = [r for k in ("evolve", "research") if (r := proj.ledger.latest_run(k, proj.cfg.project.name))]
    if not runs:
        _fail("no run of this project in the ledger yet; start one with `ratchet evolve PROJECT`")
    return max(runs, key=lambda r: r["created_at"])["kind"]


@app.command()
def show(project: Path = ProjectArg, candidate: str = CandidateArg, run: Optional[str] = RunOption) -> None:
    """One candidate: its diff, rationale, hypothesis, decision figures and lesson."""
    from ratchet.loop.views import show_text

    proj = _open_record(project)
    try:
        console.print(show_text(proj.ledger, _candidate_id(proj, candidate, run)), highlight=False, markup=False)
    except ValueError as e:
        _fail(str(e))


def _set_approval(project: Path, candidate: str, status: str, run: str | None) -> None:
    from ratchet.ui.approval import ApprovalError, record_approval

    proj = _open_record(project)
    row = proj.ledger.candidate(_candidate_id(proj, candidate, run))
    try:
        record_approval(proj.ledger, row["id"], "approve" if status == "approved" else "reject", by="cli")
    except ApprovalError as e:
        _fail(str(e))
    console.print(f"{row['id']}: {status}")


@app.command("approve")
def approve_(project: Path = ProjectArg, candidate: str = CandidateArg, run: Optional[str] = RunOption) -> None:
    """Let a waiting (risky) candidate be evaluated."""
    _set_approval(project, candidate, "approved", run)


@app.command("reject")
def reject_(project: Path = ProjectArg, candidate: str = CandidateArg, run: Optional[str] = RunOption) -> None:
    """Refuse a waiting candidate; the loop records it and moves on."""
    _set_approval(project, candidate, "rejected", run)


@app.command()
def adopt(project: Path = ProjectArg, candidate: str = typer.Argument("best", help="Candidate id, or 'best' of the latest run."),
          run: Optional[str] = typer.Option(None, help="Run id (default: the latest evolve run).")) -> None:
    """Bring a candidate's harness onto your branch (the only command that touches it)."""
    from ratchet.loop.gitrepo import CandidateRepo

    proj = _open_record(project)
    if candidate == "best":
        run_id = _run_id(proj, run)
        commit = CandidateRepo(proj.cfg.harness_dir, run_id, state_dir=proj.cfg.state_dir).best()
    else:
        row = proj.ledger.candidate(_candidate_id(proj, candidate, run))
        if row is None or not row["commit"]:
            _fail(f"no candidate {candidate!r} with a commit; `ratchet log PROJECT` lists them")
        run_id, commit = row["run_id"], row["commit"]
    new = CandidateRepo(proj.cfg.harness_dir, run_id, state_dir=proj.cfg.state_dir).adopt(commit)
    proj.ledger.add_event("adopt", {"candidate": candidate, "commit": commit, "result": new}, run_id=run_id)
    console.print(f"adopted {commit[:10]} onto your branch as {new[:10]}")


@app.command("test")
def test_(project: Path = ProjectArg, unseal: bool = typer.Option(False, "--unseal", help="Really score the sealed test split (recorded)."),
          run: Optional[str] = typer.Option(None, help="Run id (default: the latest evolve run).")) -> None:
    """Score the seed and the best harness of a run on the sealed test split. Every unseal is recorded."""
    from ratchet.loop.sealed import unseal as do_unseal

    proj = _open(project)
    run_id = _run_id(proj, run)
    previous = len(proj.ledger.events(run_id, "unseal"))
    if not unseal:
        _fail(f"the test split is sealed (unsealed {previous} time(s) so far for {run_id}); pass --unseal to score it")

    async def go():
        try:
            return await do_unseal(proj, run_id)
        finally:
            await proj.aclose()

    rec = asyncio.run(go())
    earlier = {r["harness"]: r for r in (proj.ledger.run(run_id)["summary"] or {}).get("table", [])}

    def score(label: str, split: str) -> str:
        value = earlier.get(label, {}).get(split)
        return "-" if value is None else f"{100 * value:.1f}%"

    console.print(table(f"{run_id}: seed vs best (test unseal #{rec['unseal_number']})",
                        ["harness", "commit", "dev", "holdout", "test ± se", "test tasks"],
                        [[k, rec[k]["commit"], score(k, "dev"), score(k, "holdout"), score_pm(rec[k]["mean"], rec[k]["se"]),
                          rec[k]["n_tasks"]] for k in ("seed", "best")]))


from ratchet.ui_cli import report as report_cmd, ui as ui_cmd  # noqa: E402  (light: FastAPI loads on use)

app.command("ui")(ui_cmd)
from ratchet.research_cli import research as research_command  # noqa: E402

app.command("research")(research_command)
from ratchet.flywheel_cli import data_app as data_command, flywheel as flywheel_command, models as models_command  # noqa: E402

app.command("flywheel")(flywheel_command)
app.command("models")(models_command)
app.add_typer(data_command, name="data")
app.command("report")(report_cmd)


def main() -> None:  # pragma: no cover - console entry for `python -m ratchet`
    try:
        app()
    except ConfigError as e:
        err_console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
