"""Over 40+ rounds of changes with no effect, the loop keeps at most an alpha-level share of them."""

import asyncio
from pathlib import Path

from conftest import write_harness
from ratchet.config import GuardSection, LoopSection
from ratchet.ledger import Ledger
from ratchet.loop.control import StopControl
from ratchet.loop.engine import LoopEngine
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.noise import NOISE_PARAMS, NoiseArena, NoiseKnobProposer


def run_noise_loop(tmp: Path, rounds: int, seed: int) -> list[dict]:
    harness = write_harness(tmp / "harness", "def solve(task, ctx):\n    return ctx.llm(task.input)\n", NOISE_PARAMS)
    ledger = Ledger(f"sqlite:///{tmp / 'ledger.sqlite'}")
    run_id = ledger.create_run("evolve", "noise", {})
    loop = LoopSection(rounds=rounds, epochs=2, alpha=0.05, seed=seed, slice_fraction=0.4)
    guard = GuardSection()
    control = StopControl(guard, rounds, tmp / "STOP")
    engine = LoopEngine(NoiseArena(seed=seed), CandidateRepo(harness, run_id, state_dir=tmp / ".ratchet"),
                        NoiseKnobProposer(seed), ledger, run_id, loop, guard, control, tmp / "memory.md")

    async def go():
        await engine.start()
        for r in range(1, rounds + 1):
            await engine.run_round(r)

    asyncio.run(go())
    return ledger.candidates(run_id)


def test_no_effect_changes_are_not_kept(tmp_path):
    rows = run_noise_loop(tmp_path, rounds=40, seed=3)
    assert len(rows) == 40
    assert all(r["status"] in ("accepted", "rejected") for r in rows)
    accepted = sum(r["status"] == "accepted" for r in rows)
    dev_passed = sum(bool((r["decision"].get("dev") or {}).get("accepted")) for r in rows)
    assert dev_passed <= 5  # alpha = 0.05 of 40 is 2 in expectation; 5 is far in the tail
    assert accepted <= 2  # holdout confirmation removes most of the dev false positives
