"""The shipped research examples: their configs load, and (slow) tinylm and tabular run for real.

The slow tinylm test is the planted no-op on the real training script: a change of `shuffle_salt`
moves every seed's result by seed noise and nothing else, and the loop must not keep it."""

import asyncio
import shutil
from pathlib import Path

import pytest

from ratchet.harness.params import parse_params
from ratchet.ledger import Ledger
from ratchet.research.config import load_research
from ratchet.research.run import ResearchOptions, research

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
from test_research_loop import PlantedProposer  # noqa: E402


@pytest.mark.parametrize("name", ["tinylm", "tabular", "twotier"])
def test_example_configs_load(name):
    project = load_research(EXAMPLES / name)
    assert project.spec.seeds >= 5 and project.spec.editable
    params = parse_params((project.repo_dir / "params.toml").read_text(), "params.toml")
    assert params.knobs  # something for the search proposer to tune
    assert project.spec.protected_problems({"ratchet.toml": "x"})  # the project file is never editable


def copy_example(name: str, dest: Path) -> Path:
    shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns(".ratchet", "__pycache__"))
    return dest


@pytest.mark.slow
def test_tinylm_planted_noop_is_not_kept(tmp_path):
    pytest.importorskip("torch")
    root = copy_example("tinylm", tmp_path / "tinylm")
    params = (root / "params.toml").read_text()
    (root / "params.toml").write_text(params.replace("range = [50, 400]\nvalue = 100", "range = [10, 400]\nvalue = 20"))

    def reshuffle(ctx, i):
        return "params.toml", ctx.files["params.toml"].replace('value = "a"', f'value = "{"bcd"[i]}"')

    out = asyncio.run(research(load_research(root), ResearchOptions(rounds=1), say=lambda m: None,
                               proposer=PlantedProposer(reshuffle)))
    row = Ledger(load_research(root).cfg.ledger_url).candidates(out.run_id)[0]
    assert row["status"] == "rejected", row["decision"]
    d = row["decision"].get("dev") or row["decision"]["slice"]
    assert d["mean_diff"] != 0  # the salt really changed the runs; only not beyond seed noise
    assert out.table[0]["holdout"] > 3  # bits per byte of a 20-step model: sane, finite


@pytest.mark.slow
def test_tabular_example_runs_a_round(tmp_path):
    pytest.importorskip("sklearn")
    root = copy_example("tabular", tmp_path / "tabular")
    out = asyncio.run(research(load_research(root), ResearchOptions(rounds=1), say=lambda m: None))
    assert out.status == "finished" and len(out.rounds) == 1
    assert 0 < out.table[0]["holdout"] < 3  # log-loss of the seed recipe
