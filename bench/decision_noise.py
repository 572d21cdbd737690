"""How often does a loop keep a change that does nothing? ratchet's rule vs a bare "mean went up" rule.

Runs the real loop engine with a proposer whose every change sets a knob the harness never reads,
against an arena where every harness succeeds with the same probability on fresh randomness. Every
kept candidate is a false discovery. Prints one row per rule, from one run of this script.

    python bench/decision_noise.py [--rounds 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from ratchet.config import GuardSection, LoopSection
from ratchet.ledger import Ledger
from ratchet.loop.control import StopControl
from ratchet.loop.engine import LoopEngine
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.noise import NOISE_PARAMS, NoiseArena, NoiseKnobProposer


def run(rule: str, rounds: int, seed: int) -> tuple[int, int]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "harness").mkdir()
        (tmp / "harness" / "harness.py").write_text("def solve(task, ctx):\n    return ctx.llm(task.input)\n")
        (tmp / "harness" / "params.toml").write_text(NOISE_PARAMS)
        ledger = Ledger(f"sqlite:///{tmp / 'ledger.sqlite'}")
        run_id = ledger.create_run("evolve", "noise", {})
        loop = LoopSection(rounds=rounds, epochs=2, alpha=0.05, seed=seed, decision_rule=rule)
        guard = GuardSection()
        engine = LoopEngine(NoiseArena(seed=seed), CandidateRepo(tmp / "harness", run_id, state_dir=tmp / ".r"),
                            NoiseKnobProposer(seed), ledger, run_id, loop, guard, StopControl(guard, rounds, tmp / "S"),
                            tmp / "memory.md")

        async def go():
            await engine.start()
            for r in range(1, rounds + 1):
                await engine.run_round(r)

        asyncio.run(go())
        rows = ledger.candidates(run_id)
        ledger.close()
        return sum(r["status"] == "accepted" for r in rows), len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{'rule':<34} {'kept / proposed':>16} {'false discovery rate':>22} {'seconds':>8}")
    rates = {}
    for rule, label in (("paired", "ratchet (paired test + holdout)"), ("mean", "bare 'mean went up'")):
        t0 = time.time()
        kept = total = 0
        for seed in range(args.repeats):
            k, n = run(rule, args.rounds, seed)
            kept, total = kept + k, total + n
        rates[rule] = kept / total
        print(f"{label:<34} {f'{kept} / {total}':>16} {kept / total:>22.3f} {time.time() - t0:>8.1f}")
    if rates["paired"]:
        print(f"the bare rule keeps {rates['mean'] / rates['paired']:.1f}x as many no-effect changes (alpha = 0.05)")
    else:
        print(f"ratchet kept none of the no-effect changes; the bare rule kept {rates['mean']:.0%} (alpha = 0.05)")


if __name__ == "__main__":
    main()
