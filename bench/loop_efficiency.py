"""ratchet's loop vs plain Optuna TPE and random search, at the same rollout budget, on one project.

    python bench/loop_efficiency.py [--project examples/arithmetic] [--rounds 8] [--only-knobs temperature,max_tokens]
                                    [--backend vllm]

The baselines do what most optimisers of prompts and knobs do: evaluate each trial once on dev and keep
the best dev mean. ratchet keeps a change only on a paired test confirmed on holdout. All three search the
same space (the knobs of params.toml and the skill switches) with the same model and suite, and spend the
same number of rollouts. Printed from one run: the final holdout and test score of what each method
kept, and the gap between its dev gain and its test gain (how much of its gain was selection noise).

`--only-knobs` searches only the named knobs (no skill switches): on the arithmetic example that takes
away the calculator, which every method finds at once, and leaves knobs whose effects are near noise.
`--backend` sets the copied project's `[model] backend` (vllm: the same model, served faster on 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import optuna
import tomlkit

from ratchet.evolve.run import EvolveOptions, evolve
from ratchet.harness.loader import harness_from_files, load_harness
from ratchet.harness.params import HarnessParams, parse_params, render_params
from ratchet.loop.gitrepo import CandidateRepo
from ratchet.loop.proposers.search import _params_at, point_of, search_space
from ratchet.project import open_project

ROOT = Path(__file__).resolve().parents[1]


async def score(project, harness, split: str, seed: int) -> float:
    res = await project.evaluator.evaluate(harness, project.tasks(split), split, 1, seed)
    return res.mean


async def baseline(project, sampler: optuna.samplers.BaseSampler, trials: int, seed_harness) -> tuple[object, float]:
    space = search_space(seed_harness.params)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(point_of(seed_harness.params, space))  # the seed is trial 0, as in the loop
    best, best_dev = seed_harness, -1.0
    for _ in range(trials):
        trial = study.ask(space)
        files = {**seed_harness.files, "params.toml": render_params(_params_at(seed_harness.params, trial.params))}
        harness = harness_from_files(seed_harness.root, files)
        dev = await score(project, harness, "dev", seed=trial.number + 1)  # each trial: one fresh evaluation
        study.tell(trial, dev)
        if dev > best_dev:
            best, best_dev = harness, dev
    return best, best_dev


def set_backend(project_dir: Path, backend: str) -> None:
    path = project_dir / "ratchet.toml"
    doc = tomlkit.parse(path.read_text())
    doc["model"]["backend"] = backend
    path.write_text(tomlkit.dumps(doc))


def restrict_knobs(project_dir: Path, names: list[str]) -> None:
    """Keep only `names` in the copied harness's params.toml, and no skill switches."""
    from ratchet.config import load_project

    path = load_project(project_dir).harness_dir / "params.toml"
    params = parse_params(path.read_text(), path)
    unknown = set(names) - set(params.knobs)
    if unknown:
        raise SystemExit(f"--only-knobs: {', '.join(sorted(unknown))} not in {path}; it declares {', '.join(params.knobs)}")
    path.write_text(render_params(HarnessParams(knobs={n: params.knobs[n] for n in names})))


async def run(args: argparse.Namespace) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="ratchet-bench-"))
    shutil.copytree(ROOT / args.project, work / "p", ignore=shutil.ignore_patterns(".ratchet", "memory.md"))
    if args.only_knobs:
        restrict_knobs(work / "p", args.only_knobs.split(","))
    if args.backend:
        set_backend(work / "p", args.backend)
    project = open_project(work / "p")
    seed_harness = load_harness(project.cfg.harness_dir)
    rows = []
    try:
        seed_dev = await score(project, seed_harness, "dev", seed=0)
        seed_test = await score(project, seed_harness, "test", seed=0)
        t0 = time.time()
        out = await evolve(project, EvolveOptions(rounds=args.rounds, proposer="search"), say=lambda m: print("  " + m))
        repo = CandidateRepo(project.cfg.harness_dir, out.run_id, state_dir=project.cfg.state_dir)
        kept = load_harness(repo.worktree(repo.best()))
        budget = project.ledger.rollout_count(out.run_id)
        rows.append(("ratchet (paired + holdout)", kept, out.table[1]["dev"] - out.table[0]["dev"], budget, time.time() - t0))
        n_dev = len(project.tasks("dev"))
        trials = max(1, budget // n_dev)
        for name, sampler in (("optuna TPE, best dev mean", optuna.samplers.TPESampler(seed=args.seed)),
                              ("random search, best dev mean", optuna.samplers.RandomSampler(seed=args.seed))):
            t0 = time.time()
            best, best_dev = await baseline(project, sampler, trials, seed_harness)
            rows.append((name, best, best_dev - seed_dev, trials * n_dev, time.time() - t0))
        space = f"knobs {args.only_knobs}" if args.only_knobs else "all knobs and skills"
        print(f"\nproject {args.project} ({space}), model {project.model.name} on {project.cfg.model.backend}; "
              f"seed harness: dev {seed_dev:.3f}, test {seed_test:.3f}")
        print(f"{'method':<30} {'rollouts':>8} {'dev gain':>9} {'holdout':>8} {'test':>7} {'test gain':>10} {'gap':>7} {'s':>6}")
        for name, harness, dev_gain, rollouts, secs in rows:
            hold = await score(project, harness, "holdout", seed=10_007)
            test = await score(project, harness, "test", seed=0)
            gain = test - seed_test
            print(f"{name:<30} {rollouts:>8} {dev_gain:>+9.3f} {hold:>8.3f} {test:>7.3f} {gain:>+10.3f} "
                  f"{dev_gain - gain:>+7.3f} {secs:>6.0f}")
        print("gap = dev gain - test gain: the part of a method's claimed gain that did not hold up on sealed data")
    finally:
        await project.aclose()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", default="examples/arithmetic")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only-knobs", default="", help="comma-separated knobs to search (default: all, and the skills)")
    ap.add_argument("--backend", default="", help="the engine for the project's model (default: the project's own)")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
