"""The proposer workspace: a directory the loop writes before each proposal, for proposers that work on files
(the `agent` and `command` proposers) - the filesystem view of its own history that a coding agent reads.

    .ratchet/workspaces/<run>/r<NNN>/
      BRIEF.md         what to do, what may be edited, the knobs, the budget, how to finish
      harness/         the parent's harness files (the copy a proposer edits)
      trajectories/    INDEX.md and one file per selected dev rollout: every model call with its sampling
                       parameters, tool calls and results, output, scorer feedback, process signals
                       (loop/trajectory_view.py: the selection rule and the size bounds)
      history.md       every earlier candidate of the run: change, hypothesis, effect with interval, decision
      lessons.md       the lessons recalled for this round
      failures.md      only for an arena without trajectories (research): its dev failure report

What it never holds: a holdout or test task, rollout or figure (history shows holdout only as
"confirmed"/"not confirmed"), a gold answer (the arena cuts it from the scorer's feedback), scorer source,
suite data, or a protected file of the harness dir. It is rewritten whole when a round is proposed again
after a kill, and left in place afterwards as the record of what the proposer saw (safe to delete).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratchet.globs import matches_any
from ratchet.harness.loader import MAX_FILE_BYTES
from ratchet.harness.params import HarnessParams
from ratchet.ledger import redact
from ratchet.loop.guard import DEFAULT_PROTECTED
from ratchet.loop.probe import EpisodeProbe, probe_for
from ratchet.loop.record import Decision
from ratchet.loop.trajectory_view import ViewLimits, file_name, render, select, summary_line
from ratchet.types import Trajectory

if TYPE_CHECKING:
    from ratchet.loop.engine import LoopEngine
    from ratchet.loop.proposers.base import ProposalContext

WORKSPACES = "workspaces"
PROPOSAL_FILE = "PROPOSAL.md"  # what an external coding agent writes: RATIONALE: and HYPOTHESIS: lines
HISTORY_DIFF_CHARS = 1500


@dataclass
class WorkspaceInputs:
    run_id: str
    round: int
    files: dict[str, str]  # the parent's harness files
    params: HarnessParams
    trajectories: list[tuple[Trajectory, str]] | None  # (dev rollout, task input); None: the arena gives none
    history: list[dict[str, Any]] = field(default_factory=list)  # history_entries()
    lessons: list[str] = field(default_factory=list)
    failure_summary: dict[str, int] = field(default_factory=dict)
    failures_prompt: str = ""  # used only when there are no trajectories
    parent_score: float | None = None
    protected: Sequence[str] = ()
    max_diff_lines: int | None = None
    budget: dict[str, list] = field(default_factory=dict)  # StopControl.budget_table()
    agent_limits: tuple[int, int] | None = None  # (steps, tokens) of the agent proposer
    can_probe: bool = False


def workspace_dir(state_dir: Path, run_id: str, round_: int, member: str = "") -> Path:
    """<state>/workspaces/<run>/r<NNN> (r<NNN>b, c, ... for the other members of a population round)."""
    return Path(state_dir) / WORKSPACES / run_id / f"r{round_:03d}{member}"


def visible_files(files: dict[str, str], protected: Sequence[str] = ()) -> dict[str, str]:
    """The harness files a proposer may see: protected ones (scorers, data, the project file) stay out, and so
    do files too large for a harness (the sandbox would refuse them anyway)."""
    return {p: t for p, t in files.items() if matches_any(p, DEFAULT_PROTECTED) is None
            and matches_any(p, list(protected)) is None and len(t.encode()) <= MAX_FILE_BYTES}


def harness_copy(root: Path) -> dict[str, str]:
    """The harness files under `root`/harness (a workspace or a proposer's copy of one): regular UTF-8 files of
    at most MAX_FILE_BYTES. Never follows a symbolic link, so a program that edited the copy cannot make the
    parent read a file from outside it; such a file raises ValueError."""
    base = Path(root) / "harness"
    out: dict[str, str] = {}
    if base.is_symlink() or not base.is_dir():
        raise ValueError("harness/ is missing or a symbolic link; keep the harness files in harness/")
    for dirpath, dirnames, filenames in os.walk(base):  # os.walk does not descend into linked dirs
        for name in sorted(filenames) + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            rel = path.relative_to(base).as_posix()
            if path.is_symlink():
                raise ValueError(f"harness/{rel} is a symbolic link; write real files")
            if not path.is_file() or "__pycache__" in rel.split("/"):
                continue
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"harness/{rel} is over {MAX_FILE_BYTES // 1024} KiB; harness files must be small text")
            try:
                out[rel] = path.read_text()
            except UnicodeDecodeError:
                raise ValueError(f"harness/{rel} is not UTF-8 text") from None
    return out


def history_entries(ledger: Any, run_id: str, before_round: int) -> list[dict[str, Any]]:
    """Every earlier candidate of the run, read through Decision; holdout appears only as its verdict."""
    out = []
    for c in ledger.candidates(run_id):
        if c["round"] >= before_round:
            continue
        d = Decision.from_json(c["decision"])
        stats = d.stats
        reason = d.reason if d.holdout is None else ""  # a holdout reason quotes released holdout figures
        out.append({"round": c["round"], "proposer": c["proposer"], "change": c["summary"], "hypothesis": c["hypothesis"],
                    "status": c["status"], "reason": reason, "stopped_early": d.stopped_early,
                    "effect": None if stats is None else [stats.mean_diff, stats.ci_low, stats.ci_high, stats.p_value],
                    "holdout": None if d.holdout is None else bool(d.holdout.confirmed), "diff": c["diff"] or ""})
    return out


def _history_md(history: list[dict[str, Any]]) -> str:
    if not history:
        return "# History\n\nNo earlier candidates in this run: this is the first round.\n"
    lines = ["# History", "", "Every earlier candidate of this run, oldest first. Effects are paired dev differences "
             "(candidate minus parent) with their 90% interval; holdout is shown only as confirmed or not.", ""]
    for h in history:
        lines.append(f"## round {h['round']} ({h['proposer']}): {h['status']}")
        lines.append(f"- change: {h['change']}")
        lines.append(f"- hypothesis: {h['hypothesis'] or '-'}")
        if h["effect"]:
            diff, low, high, p = h["effect"]
            slice_note = " (first dev slice only: stopped early)" if h["stopped_early"] else ""
            lines.append(f"- effect on dev: {diff:+.3f} [{low:+.3f}, {high:+.3f}], p={p:.3g}{slice_note}")
        if h["holdout"] is not None:
            lines.append(f"- holdout: {'confirmed' if h['holdout'] else 'not confirmed'}")
        if h["reason"]:
            lines.append(f"- decision: {h['reason']}")
        if h["diff"]:
            diff_text = h["diff"] if len(h["diff"]) <= HISTORY_DIFF_CHARS else (
                h["diff"][:HISTORY_DIFF_CHARS] + f"\n[... {len(h['diff']) - HISTORY_DIFF_CHARS} more characters]")
            lines += ["", "```diff", diff_text.rstrip("\n"), "```"]
        lines.append("")
    return "\n".join(lines)


def _knobs_md(params: HarnessParams) -> list[str]:
    lines = []
    for k in params.knobs.values():
        domain = f"range [{k.low}, {k.high}]" if k.low is not None else (
            f"one of {list(k.choices)}" if k.choices else k.type)
        lines.append(f"- `{k.name}` = {k.value!r} ({domain}){': ' + k.doc if k.doc else ''}")
    lines.append(f"- `[skills]` library = {params.skills_library}, enabled = {params.skills_enabled} "
                 "(built in: calculator, python, memory)")
    return lines


def _brief_md(w: WorkspaceInputs, index: list[str]) -> str:
    score = "unknown" if w.parent_score is None else f"{w.parent_score:.3f}"
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(w.failure_summary.items(), key=lambda kv: -kv[1])) or "none"
    budget = ", ".join(f"{k} {used}/{'-' if limit is None else limit}" for k, (used, limit) in w.budget.items())
    lines = [
        f"# Round {w.round}: improve the harness", "",
        "You improve an AI agent's harness: the code and text around a fixed language model, which runs it on "
        "tasks scored by a verifier you cannot see. Read the failing trajectories, find the most common cause, "
        "and make ONE focused change under `harness/` that should fix it. The loop then scores your change "
        "against the parent on the same dev tasks and seeds, and keeps it only on paired evidence that a "
        "held-out split confirms.", "",
        f"The parent scores {score} on dev. Failure counts on dev: {counts}.", "",
        "## What may be edited (under harness/)", "",
        "- `harness.py`: the program, `solve(task, ctx)` (ctx.llm, ctx.sample, ctx.prompt, ctx.skill, ctx.params, "
        "ctx.rules, ctx.extract, ctx.answer, ctx.vote; see the file)",
        "- `prompts/NAME.md`: prompt texts; `rules.md`: rules the program may put in its prompts",
        "- `skills/NAME.py`: a new skill, a module with a top-level `def run(...)`, called as "
        "`ctx.skill(\"NAME\", ...)` inside the sandbox; to use it, add NAME to both `library` and `enabled` of the "
        "`[skills]` table in params.toml (a new skill is checked, imported once in the sandbox, and may wait "
        "for a person's approval)",
        "- `params.toml`: `value =` lines, inside their ranges or choices; the `[skills]` `library` and `enabled` "
        "lists. Changing a knob's type, range or choices is allowed but flagged as risky", "",
        "Off limits (a change there is rejected): scorers, suite data, ratchet.toml"
        + (f", and {', '.join(w.protected)}" if w.protected else "") + "."
        + (f" A diff over {w.max_diff_lines} changed lines is rejected." if w.max_diff_lines else ""), "",
        "## Knobs (params.toml)", "", *_knobs_md(w.params), "",
        "## What is here", "",
        "- `harness/`: the parent's files; your change is the difference you leave there",
        "- `trajectories/INDEX.md`: the dev rollouts shown, and the rule that chose them" if w.trajectories is not None
        else "- `failures.md`: the dev failure report (this tier records no per-task trajectories)",
        "- `history.md`: every earlier candidate and what became of it (do not repeat a rejected change)",
        "- `lessons.md`: lessons recalled from earlier rounds", "",
        "You never see holdout or test tasks, gold answers, or the scorer's source.", "",
        "## Budget", "", f"Run budget used/limit: {budget or 'no limits'}.",
    ]
    if w.agent_limits:
        lines.append(f"Agent proposer: at most {w.agent_limits[0]} steps and {w.agent_limits[1]} tokens this round.")
    if w.can_probe:
        lines.append("`run_episode` (agent proposer) runs your working copy on one dev or train task in the sandbox "
                     "and costs one rollout of the budget.")
    lines += ["", "## How to finish", "",
              "- agent proposer: call `finish` with a rationale and a falsifiable hypothesis",
              f"- an external coding agent: edit the files under `harness/`, then write `{PROPOSAL_FILE}` in this "
              "directory with a line `RATIONALE: why this change, citing the failures` and a line "
              "`HYPOTHESIS: a falsifiable prediction, e.g. format failures drop and the dev score rises`", ""]
    if index:
        lines += ["## Trajectories shown", "", *index, ""]
    return "\n".join(lines)


def _trajectory_files(w: WorkspaceInputs, limits: ViewLimits) -> tuple[dict[str, str], list[str], list[str]]:
    """(files under trajectories/, index lines, lines about what did not fit)."""
    rollouts = {id(t): text for t, text in (w.trajectories or [])}
    files: dict[str, str] = {}
    index, left_out, total = [], [], 0
    chosen = select([t for t, _ in w.trajectories or []], limits.failures, limits.successes)
    for i, t in enumerate(chosen, 1):
        name = file_name(i, t)
        text = render(t, rollouts[id(t)], "dev", limits.file_bytes)
        size = len(text.encode())
        if total + size > limits.total_bytes:
            left_out.append(f"- {t.task_id}: {summary_line(t)} (over the {limits.total_bytes}-byte total)")
            continue
        total += size
        files[name] = text
        index.append(f"- `trajectories/{name}`: task {t.task_id}, {summary_line(t)}")
    return files, index, left_out


def _index_md(w: WorkspaceInputs, index: list[str], left_out: list[str], limits: ViewLimits) -> str:
    n = len(w.trajectories or [])
    failed = sum(t.score < 1.0 for t, _ in w.trajectories or [])
    lines = ["# Dev trajectories of the parent", "",
             f"{failed} of {n} dev rollouts failed. Shown: up to {limits.failures} failures, grouped by failure "
             "signal and taken round-robin across signals (larger groups first), shortest first within a signal, one "
             f"per task; then up to {limits.successes} successes, shortest first. Each file is at most "
             f"{limits.file_bytes} bytes (long texts are cut in the middle), all of them at most "
             f"{limits.total_bytes} bytes.", "", *(index or ["(no rollouts recorded for the parent yet)"])]
    if left_out:
        lines += ["", "Chosen but left out for space:", *left_out]
    return "\n".join(lines) + "\n"


def write_workspace(dest: Path, w: WorkspaceInputs, limits: ViewLimits = ViewLimits()) -> Path:
    """Write the workspace to `dest` (replacing an older one whole) and return it."""
    out: dict[str, str] = {f"harness/{p}": t for p, t in visible_files(w.files, w.protected).items()}
    index: list[str] = []
    if w.trajectories is not None:
        traj_files, index, left_out = _trajectory_files(w, limits)
        out.update({f"trajectories/{n}": t for n, t in traj_files.items()})
        out["trajectories/INDEX.md"] = _index_md(w, index, left_out, limits)
    else:
        out["failures.md"] = "# Dev failures\n\n" + (w.failures_prompt.strip() or "(none recorded)") + "\n"
    out["history.md"] = _history_md(w.history)
    out["lessons.md"] = "# Lessons recalled for this round\n\n" + (
        "\n".join(f"- {les}" for les in w.lessons) if w.lessons else "(none yet)") + "\n"
    out["BRIEF.md"] = _brief_md(w, index)
    # secrets a model or a harness printed are cut as the ledger cuts them; the harness files stay as they are
    out = {rel: text if rel.startswith("harness/") else redact(text) for rel, text in out.items()}
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, text in out.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if dest.exists():  # renamed away first: a kill while deleting must not leave half a workspace at `dest`
        old = dest.with_name(f"{dest.name}.old.{os.getpid()}")
        os.replace(dest, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def open_round(engine: LoopEngine, ctx: ProposalContext, parent_commit: str,
               cand_id: str) -> tuple[Path | None, EpisodeProbe | None]:
    """The candidate's workspace (written when the proposer works on files) and its probe, for the engine's
    ProposalContext. Probes are charged through the engine's spend path, as every rollout is."""
    run_id, ledger = engine.run_id, engine.ledger

    def budget_left() -> str | None:
        return engine.control.budget_reason(rounds=False) or engine.control.stop_reason()

    probe = probe_for(engine.arena, engine._spend_rollout, budget_left, ctx.seed,
                      note=lambda e: ledger.add_event("probe", {"round": ctx.round, **e}, run_id=run_id))
    if not getattr(engine.proposer, "uses_workspace", False):
        return None, probe
    get_trajectories = getattr(engine.arena, "proposer_trajectories", None)
    loop = engine.loop
    inputs = WorkspaceInputs(
        run_id=run_id, round=ctx.round, files=ctx.files, params=ctx.params,
        trajectories=get_trajectories(parent_commit) if get_trajectories else None,
        history=history_entries(ledger, run_id, ctx.round), lessons=ctx.lessons, failure_summary=ctx.failure_summary,
        failures_prompt=ctx.failures_prompt, parent_score=ctx.parent_score, protected=engine.guard.protected,
        max_diff_lines=engine.guard.max_diff_lines, budget=engine.control.budget_table(),
        agent_limits=(loop.agent_max_steps, loop.agent_max_tokens) if engine.proposer.name == "agent" else None,
        can_probe=probe is not None)
    limits = ViewLimits(failures=loop.max_failures_shown)
    member = cand_id.removeprefix(f"{run_id}-r{ctx.round:03d}")
    return write_workspace(workspace_dir(engine.repo.state_dir, run_id, ctx.round, member), inputs, limits), probe


__all__ = ["PROPOSAL_FILE", "WorkspaceInputs", "harness_copy", "history_entries", "open_round", "visible_files",
           "workspace_dir", "write_workspace"]
