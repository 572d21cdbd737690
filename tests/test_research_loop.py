"""`ratchet research` end to end on a fast fake experiment (a script whose metric depends on a knob
plus seed noise): the search keeps a real improvement, a planted change within seed noise is not
kept, failed trials fail their candidate with the log tail, only editable paths may change, and a
broken baseline is refused."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ratchet.config import ConfigError
from ratchet.ledger import Ledger
from ratchet.loop.proposers.base import Proposal, ProposalContext
from ratchet.research.config import load_research
from ratchet.research.run import BaselineFailed, ResearchOptions, research, results_path

TOML = """
[project]
name = "fake-research"

[research]
command = "python run.py"
metric = "loss"
direction = "minimize"
budget_s = 20
seeds = 5
holdout_seeds = 5
parallel = 2
editable = ["params.toml"]
brief = "lower the loss"

[loop]
proposer = "search"
rounds = 3
holdout_threshold = 0.05
holdout_noise = 0.005
"""

PARAMS = """[x]
type = "float"
range = [0.0, 1.0]
value = 0.0

[salt]
type = "str"
value = "a"
doc = "mixed into the noise: changes the sample, not the expectation"
"""

# loss = (x - 0.7)^2 + seed noise (sd 0.02); `salt` only reshuffles the noise
RUN = """import os, random, tomllib
p = {k: v["value"] for k, v in tomllib.load(open("params.toml", "rb")).items()}
rng = random.Random(f"{os.environ['RATCHET_SEED']}:{p['salt']}")
print(f"step 1 of 1\\nloss: {(p['x'] - 0.7) ** 2 + rng.gauss(0, 0.02):.6f}")
"""


def make_project(root: Path, toml: str = TOML, run: str = RUN, params: str = PARAMS) -> Path:
    root.mkdir(parents=True)
    (root / "ratchet.toml").write_text(toml)
    (root / "run.py").write_text(run)
    (root / "params.toml").write_text(params)
    return root


class PlantedProposer:
    """Proposes fixed edits, one per round: a stand-in for a proposer whose idea we know the truth of."""

    name = "planted"

    def __init__(self, edits):
        self.edits, self.count = edits, 0

    async def propose(self, ctx: ProposalContext) -> Proposal:
        path, text = self.edits(ctx, self.count)
        self.count += 1
        return Proposal(edits={path: text}, rationale=f"planted change {self.count}", hypothesis="no effect",
                        proposer=self.name)

    def observe(self, proposal, accepted, score) -> None:
        pass

    def switch_strategy(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = state["count"]


def go(root: Path, proposer=None, **opts):
    return asyncio.run(research(load_research(root), ResearchOptions(**opts), say=lambda m: None, proposer=proposer))


def test_search_keeps_a_real_improvement_confirmed_on_fresh_seeds(tmp_path):
    root = make_project(tmp_path / "p")
    out = go(root, rounds=2)
    assert out.status == "finished" and len(out.rounds) == 2
    ledger = Ledger(load_research(root).cfg.ledger_url)
    accepted = ledger.candidates(out.run_id, status="accepted")
    assert accepted, [r.status for r in out.rounds]
    seed_row, best_row = out.table
    assert best_row["holdout"] < seed_row["holdout"] - 0.1  # metric units: loss went down
    assert out.comparison["significant"] and out.comparison["delta"] < 0
    summary = ledger.run(out.run_id)["summary"]
    assert summary["metric"] == "loss" and summary["best_metric"] < summary["seed_metric"]
    tsv = results_path(load_research(root), out.run_id).read_text().splitlines()
    assert tsv[0].startswith("round\tcandidate") and len(tsv) == 3 and "x 0 ->" in tsv[1]
    assert (root / ".ratchet" / "memory.md").exists()
    assert ledger.rollout_count(out.run_id) >= 5 * (1 + 2 * 2)  # every trial is in the ledger


def test_planted_change_within_seed_noise_is_not_kept(tmp_path):
    root = make_project(tmp_path / "p")
    salts = "bcdefgh"

    def reshuffle(ctx, i):  # changes only which noise each seed draws: no effect in expectation
        return "params.toml", ctx.files["params.toml"].replace('value = "a"', f'value = "{salts[i]}"')

    out = go(root, proposer=PlantedProposer(reshuffle), rounds=3)
    ledger = Ledger(load_research(root).cfg.ledger_url)
    rows = ledger.candidates(out.run_id)
    assert [r["status"] for r in rows] == ["rejected"] * 3
    effects = [r["decision"]["dev"]["mean_diff"] for r in rows if r["decision"].get("dev")]
    assert effects and any(e != 0 for e in effects)  # the planted change did move the numbers, within noise
    assert out.comparison == {} and len(out.table) == 1


def test_crashing_candidate_fails_with_its_log_tail_and_the_loop_goes_on(tmp_path):
    run = RUN.replace("print(", "assert p['x'] < 0.5, 'x too large: diverged'\nprint(")
    root = make_project(tmp_path / "p", run=run)

    def too_large(ctx, i):
        return "params.toml", ctx.files["params.toml"].replace("value = 0.0", f"value = 0.{6 + i}")

    out = go(root, proposer=PlantedProposer(too_large), rounds=2)
    ledger = Ledger(load_research(root).cfg.ledger_url)
    rows = ledger.candidates(out.run_id)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    d = rows[0]["decision"]
    assert d["failure"]["status"] == "crash" and "x too large: diverged" in d["failure"]["log_tail"]
    assert rows[0]["cost"] == {}  # no score: a proposer sees the attempt as failed, not as a zero
    events = ledger.events(out.run_id, "trial_failed")
    assert len(events) == 2 and "AssertionError" in events[0]["data"]["log_tail"]
    assert len(ledger.lessons(out.run_id)) == 2


def test_only_editable_paths_may_change(tmp_path):
    root = make_project(tmp_path / "p")

    def edit_script(ctx, i):  # run.py is not in [research] editable
        return "run.py", ctx.files["run.py"].replace("0.7", "0.0")

    out = go(root, proposer=PlantedProposer(edit_script), rounds=1)
    row = Ledger(load_research(root).cfg.ledger_url).candidates(out.run_id)[0]
    assert row["status"] == "guard_rejected" and "not editable" in row["decision"]["reason"]


def test_broken_baseline_is_refused_with_its_output(tmp_path):
    root = make_project(tmp_path / "p", run="print('no metric today')\n")
    with pytest.raises(BaselineFailed, match="no metric today"):
        go(root, rounds=1)


def test_config_errors_say_what_to_fix(tmp_path):
    root = make_project(tmp_path / "p", toml=TOML.replace("seeds = 5\nholdout", "seeds = 3\nholdout"))
    with pytest.raises(ConfigError, match="seeds >= 5"):
        load_research(root)
    (root / "ratchet.toml").write_text(TOML.replace('command = "python run.py"\n', ""))
    with pytest.raises(ConfigError, match=r"research\.command"):
        load_research(root)
    (root / "ratchet.toml").write_text(TOML.replace('direction = "minimize"', 'direction = "down"'))
    with pytest.raises(ConfigError, match="direction"):
        load_research(root)


def test_cli_runs_and_prints_the_table(tmp_path):
    import typer
    from typer.testing import CliRunner

    from ratchet.cli.research import research as research_command

    app = typer.Typer()
    app.command()(research_command)
    root = make_project(tmp_path / "p")
    result = CliRunner().invoke(app, [str(root), "--rounds", "1"])
    assert result.exit_code == 0, result.output
    assert "finished" in result.output and "loss" in result.output and "trials" in result.output
    from ratchet.cli import app as ratchet_app

    log = CliRunner().invoke(ratchet_app, ["log", str(root)])  # the latest loop run: this research run
    assert log.exit_code == 0 and "run research-" in log.output and "r001" in log.output, log.output
    assert "sealed test" not in log.output  # research has no sealed split
    bad = make_project(tmp_path / "q", run="raise SystemExit(3)\n")
    result = CliRunner().invoke(app, [str(bad), "--rounds", "1"])
    assert result.exit_code == 1 and "fails its own command" in result.output
    assert json.loads(json.dumps(result.output))  # plain text, no exception traceback


class EditingModel:
    """A chat model that always answers with one search/replace edit, and remembers what it was shown."""

    name = "editing-fake"

    def __init__(self):
        self.seen: list = []

    async def chat(self, messages, params):
        from ratchet.types import Completion

        self.seen.append(messages)
        reply = ("RATIONALE: the loss is (x - 0.7)^2, so x should be 0.7\nHYPOTHESIS: loss drops by about 0.49\n\n"
                 "params.toml\n<<<<<<< SEARCH\nvalue = 0.0\n=======\nvalue = 0.7\n>>>>>>> REPLACE\n")
        return Completion(texts=[reply], prompt_tokens=10, completion_tokens=10)

    async def aclose(self):
        pass


def test_llm_proposer_sees_the_brief_and_results_and_its_edit_is_kept(tmp_path):
    from ratchet.loop.proposers import build_proposer
    from ratchet.research.proposers import system_prompt

    root = make_project(tmp_path / "p")
    project = load_research(root)
    model = EditingModel()
    out = go(root, proposer=build_proposer("llm", model, 0, system_prompt=system_prompt(project)), rounds=1)
    system, user = model.seen[0][0]["content"], model.seen[0][1]["content"]
    assert "lower the loss" in system and "params.toml" in system and "loss (lower is better)" in system
    assert "The experiment" in user and "seed-0:" in user  # the parent's per-seed dev results
    assert [r.status for r in out.rounds] == ["accepted"]


def test_stop_file_stops_cleanly_and_resume_finishes(tmp_path):
    root = make_project(tmp_path / "p")
    (root / ".ratchet").mkdir()
    first = go(root, rounds=1)
    (root / ".ratchet" / "STOP").write_text("stop")
    stopped = go(root, rounds=2, resume=True)
    assert stopped.status == "stopped" and "stop file" in stopped.reason and stopped.rounds == []
    (root / ".ratchet" / "STOP").unlink()
    done = go(root, rounds=2, resume=True)
    assert done.status == "finished" and done.run_id == first.run_id and [r.round for r in done.rounds] == [2]
    assert done.table and done.table[0]["version"] == "seed"
    ledger = Ledger(load_research(root).cfg.ledger_url)
    assert [c["round"] for c in ledger.candidates(first.run_id)] == [1, 2]  # no round repeated or lost


def test_the_closing_comparison_is_the_reconciled_holdout_row(tmp_path):
    from ratchet.loop.reconcile import Report

    root = make_project(tmp_path / "p")
    out = go(root, rounds=1)
    ledger = Ledger(load_research(root).cfg.ledger_url)
    report = Report.from_json(ledger.run(out.run_id)["summary"]["report"])
    assert report.splits == ["holdout"] and report.unit == "seeds" and report.sign == -1.0  # loss: lower is better
    row = report.row("holdout")  # round 1 keeps x 0 -> 0.7 (the search proposer is seeded)
    assert out.comparison and not report.same_harness
    assert out.comparison["delta"] == -row.diff and out.comparison["p_value"] == row.p_value
    assert out.comparison["n_seeds"] == row.n_tasks and row.measured_with == "the closing seeds"
    assert [c.round for c in report.confirmations] == [1] and "seeds x 1 epoch" in report.sentences[0]
