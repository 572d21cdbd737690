"""`[loop] population = K`: Holm's correction, the phantom-acceptance bound with K candidates per round, the
naming (r003, r003b) that the ledger, log, show and resume use, and the ledger upgrade that allows it."""

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from conftest import PROJECT_TOML, fake_project, make_project_dir, write_harness
from executor_fixture import scripted_project
from ratchet.config import GuardSection, LoopSection
from ratchet.ledger import Ledger
from ratchet.loop.control import StopControl
from ratchet.loop.engine import LoopEngine
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.noise import NOISE_PARAMS, NoiseArena, NoiseKnobProposer
from ratchet.loop.population import holm, member_suffix


def test_holm_steps_down_and_passes_everything_bonferroni_passes():
    passed, thresholds = holm([0.01, 0.04, 0.03], 0.05)
    assert thresholds == [0.05 / 3, 0.05 / 1, 0.05 / 2]
    assert passed == [True, False, False]  # 0.03 >= 0.025 stops the procedure, so 0.04 is not tested
    assert holm([0.001, 0.02], 0.05)[0] == [True, True]  # Bonferroni (0.025 each) would pass both too
    assert holm([0.001, 0.03], 0.05)[0] == [True, True]  # ...but not 0.03: Holm's second threshold is 0.05
    rng = random.Random(0)
    for _ in range(500):
        ps = [rng.random() * 0.1 for _ in range(rng.randint(1, 6))]
        bonferroni = [p < 0.05 / len(ps) for p in ps]
        assert all(h or not b for h, b in zip(holm(ps, 0.05)[0], bonferroni))
    assert [member_suffix(k) for k in range(3)] == ["", "b", "c"]


def run_noise_population(tmp: Path, rounds: int, population: int, seed: int) -> list[dict]:
    harness = write_harness(tmp / "harness", "def solve(task, ctx):\n    return ctx.llm(task.input)\n", NOISE_PARAMS)
    ledger = Ledger(f"sqlite:///{tmp / 'ledger.sqlite'}")
    run_id = ledger.create_run("evolve", "noise", {})
    loop = LoopSection(rounds=rounds, epochs=2, alpha=0.05, seed=seed, slice_fraction=0.4, population=population)
    guard = GuardSection()
    engine = LoopEngine(NoiseArena(seed=seed), CandidateRepo(harness, run_id, state_dir=tmp / ".ratchet"),
                        NoiseKnobProposer(seed), ledger, run_id, loop, guard, StopControl(guard, rounds, tmp / "STOP"),
                        tmp / "memory.md")

    async def go():
        await engine.start()
        for r in range(1, rounds + 1):
            result = await engine.run_round(r)
            assert len(result.members) == population

    asyncio.run(go())
    return ledger.candidates(run_id)


def test_no_effect_changes_with_population_3_keep_at_most_an_alpha_share(tmp_path):
    rounds = 25
    rows = run_noise_population(tmp_path, rounds=rounds, population=3, seed=5)
    assert len(rows) == 3 * rounds
    assert all(r["status"] in ("accepted", "rejected") for r in rows)
    by_round: dict[int, list[dict]] = {}
    for r in rows:
        by_round.setdefault(r["round"], []).append(r)
    assert all(sum(r["status"] == "accepted" for r in rs) <= 1 for rs in by_round.values())  # one winner at most
    # Holm keeps the chance that any of a round's 3 no-effect changes passes dev at alpha = 0.05: 1.25 rounds of 25
    # in expectation (uncorrected, 1 - 0.95^3 = 14% of rounds: 3.6); holdout confirmation removes most of the rest
    dev_passed_rounds = sum(any((r["decision"].get("dev") or {}).get("accepted") for r in rs) for rs in by_round.values())
    assert dev_passed_rounds <= 4
    assert sum(r["status"] == "accepted" for r in rows) <= 2


def test_population_round_names_resumes_and_shows(tmp_path):
    from typer.testing import CliRunner

    from ratchet.cli import app
    from ratchet.evolve.run import EvolveOptions, evolve

    toml = PROJECT_TOML.replace("rounds = 4", "rounds = 2\npopulation = 2")
    root = make_project_dir(tmp_path / "p", n_tasks=30, toml=toml)

    def run(**opts):
        proj = fake_project(root)
        try:
            return asyncio.run(evolve(proj, EvolveOptions(**opts), say=lambda m: None))
        finally:
            asyncio.run(proj.aclose())

    first = run(rounds=1)
    assert first.status == "finished" and [m.candidate_id.rsplit("-", 1)[-1] for m in first.rounds[0].members] == [
        "r001", "r001b"]
    done = run(rounds=2, resume=True)
    assert done.run_id == first.run_id and [r.round for r in done.rounds] == [2]
    ledger = Ledger(f"sqlite:///{root / '.ratchet' / 'ledger.sqlite'}")
    rows = ledger.candidates(first.run_id)
    assert [r["id"].rsplit("-", 1)[-1] for r in rows] == ["r001", "r001b", "r002", "r002b"]
    assert all(r["status"] in ("accepted", "rejected", "duplicate") for r in rows)
    assert len({r["fingerprint"] for r in rows}) == 4  # the siblings of a round differ
    assert [les["round"] for les in ledger.lessons(first.run_id)] == [1, 2]  # one lesson per round
    assert sum(r["status"] == "accepted" for r in rows if r["round"] == 1) <= 1
    shown = CliRunner().invoke(app, ["show", str(root), "r001b"])
    assert shown.exit_code == 0 and f"candidate {first.run_id}-r001b" in shown.output, shown.output
    assert CliRunner().invoke(app, ["log", str(root)]).exit_code == 0


def test_a_ledger_with_one_candidate_per_round_is_upgraded_in_place(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    ledger = Ledger(url)
    run_id = ledger.create_run("evolve", "p", {})
    with ledger.engine.begin() as c:  # the table as an older ratchet made it: (run_id, round) unique
        sql = c.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'candidates'")).scalar()
        c.execute(sa.text("DROP TABLE candidates"))
        c.execute(sa.text(sql.rstrip().rstrip(")") + ", CONSTRAINT uq_candidate_round UNIQUE (run_id, round))"))
    ledger.add_candidate(id=f"{run_id}-r001", run_id=run_id, round=1, proposer="search", status="rejected",
                         decision={}, cost={})
    ledger.close()
    ledger = Ledger(url)  # opening it drops the constraint, keeping the rows
    ledger.add_candidate(id=f"{run_id}-r001b", run_id=run_id, round=1, proposer="search", status="rejected",
                         decision={}, cost={})
    assert [c["id"] for c in ledger.candidates(run_id)] == [f"{run_id}-r001", f"{run_id}-r001b"]


def test_ray_is_not_imported_unless_asked_for(tmp_path):
    root = scripted_project(tmp_path / "p", n_tasks=4)
    code = ("import sys; from ratchet.project import open_project; from ratchet.research.run import ResearchTier; "
            f"p = open_project({str(root)!r}); print(type(p.evaluator.executor).__name__, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["LocalExecutor", "False"], out.stderr[-2000:]
