"""`[executor] kind = "ray"` on a real local Ray cluster (2 CPUs, one per module): an evaluation equals the local
executor's on the same seeds, research trials run as parallel Ray tasks, an evolve round with population = 2
decides as the local one does, and a worker killed mid-episode is retried, or recorded as a failed episode -
never lost, never recorded twice. Skipped where Ray is not installed (`pip install -e ".[ray]"`)."""

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='Ray is not installed: pip install -c constraints.txt -e ".[ray]"')

from executor_fixture import ARITH_REPLY, scripted_project  # noqa: E402
from procs import alive, cmdline, descendants  # noqa: E402
from ratchet.executors import LocalExecutor, episode_config  # noqa: E402
from ratchet.executors.ray import RayExecutor  # noqa: E402
from ratchet.harness.loader import load_harness  # noqa: E402
from ratchet.project import open_project  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster takes seconds to start; the module runs in about 1.5 minutes

RAY = 'kind = "ray"\nepisode_num_cpus = 1'
# a third of the tasks at a temperature the model answers wrongly at: a mixed score table, not all ones or zeros
MIXED = "def solve(task, ctx):\n    return ctx.llm(task.input, temperature=0.9 if int(task.id[1:]) % 3 == 0 else 0.0)\n"


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def evaluate(root: Path, ledger: str, executor: RayExecutor | None = None, local: bool = False):
    async def go():
        proj = open_project(root, ledger_url=f"sqlite:///{root / ledger}")
        if local or executor is not None:
            proj.evaluator.executor = executor or LocalExecutor()
        try:
            harness = load_harness(proj.cfg.harness_dir)
            result = await proj.evaluator.evaluate(harness, proj.tasks("dev"), "dev", epochs=2, seed=7)
            return result, len(proj.ledger.rollouts(result.eval_id))
        finally:
            await proj.aclose()

    return asyncio.run(go())


def table(result) -> dict:
    return {(t.task_id, t.epoch): (t.output, t.score, t.seed) for t in result.trajectories}


def test_evaluation_equals_the_local_one_and_a_killed_worker_is_retried_or_recorded(tmp_path, cluster):
    root = scripted_project(tmp_path / "p", n_tasks=30, executor=RAY)
    (root / "harness" / "harness.py").write_text(MIXED)
    local, _ = evaluate(root, "local.sqlite", local=True)
    assert 0 < local.mean < 1
    remote, recorded = evaluate(root, "ray.sqlite")
    assert table(remote) == table(local) and remote.mean == local.mean
    assert recorded == local.n_rollouts

    (root / "kill-armed").write_text("")  # the next model call in a worker kills that worker, once
    retried, recorded = evaluate(root, "kill.sqlite")
    assert (root / "killed").exists()  # a worker did die mid-episode...
    assert table(retried) == table(local) and recorded == local.n_rollouts  # ...and Ray reran it: nothing lost or doubled

    (root / "killed").unlink()
    proj = open_project(root)
    no_retry = RayExecutor(proj.cfg.executor.model_copy(update={"max_retries": 0}), episode_config(proj.cfg))
    asyncio.run(proj.aclose())
    recorded_once, recorded = evaluate(root, "norerun.sqlite", executor=no_retry)
    lost = [t for t in recorded_once.trajectories if t.error and "Ray worker" in t.error]
    assert len(lost) == 1 and lost[0].score == 0.0 and lost[0].output is None  # recorded as a failed episode
    assert recorded == local.n_rollouts
    others = {k: v for k, v in table(recorded_once).items() if k != (lost[0].task_id, lost[0].epoch)}
    assert others == {k: v for k, v in table(local).items() if k in others}


RESEARCH_TOML = """
[project]
name = "ray-research"

[research]
command = "python run.py"
metric = "loss"
budget_s = 30
seeds = 5
holdout_seeds = 5
parallel = 2
editable = ["params.toml"]

[loop]
proposer = "search"
rounds = 1
holdout_threshold = 0.05
holdout_noise = 0.005

[executor]
kind = "ray"
trial_num_cpus = 1
"""
RESEARCH_PARAMS = '[x]\ntype = "float"\nrange = [0.0, 1.0]\nvalue = 0.0\n'
# loss = (x - 0.7)^2 + seed noise; each trial prints when it started and ended, to show two ran at once
RESEARCH_RUN = """import os, random, time, tomllib
start = time.time()
x = tomllib.load(open("params.toml", "rb"))["x"]["value"]
time.sleep(0.3)
print(f"start {start:.3f} end {time.time():.3f}")
print(f"loss: {(x - 0.7) ** 2 + random.Random(os.environ['RATCHET_SEED']).gauss(0, 0.02):.6f}")
"""


def test_research_trials_run_in_parallel_and_an_evolve_population_round_decides_as_locally(tmp_path, cluster):
    research_trials_run_as_parallel_ray_tasks(tmp_path)
    evolve_population_2_through_ray_decides_as_the_local_executor_does(tmp_path)


def research_trials_run_as_parallel_ray_tasks(tmp_path):
    from ratchet.ledger import Ledger
    from ratchet.research.config import load_research
    from ratchet.research.run import ResearchOptions, research

    root = tmp_path / "r"
    root.mkdir()
    (root / "ratchet.toml").write_text(RESEARCH_TOML)
    (root / "run.py").write_text(RESEARCH_RUN)
    (root / "params.toml").write_text(RESEARCH_PARAMS)
    out = asyncio.run(research(load_research(root), ResearchOptions(), say=lambda m: None))
    assert out.status == "finished" and len(out.rounds) == 1 and out.table
    ledger = Ledger(load_research(root).cfg.ledger_url)
    keyed = [(e["id"], t) for e in ledger.evals(out.run_id) for t in ledger.rollouts(e["id"])]
    trials = [t for _, t in keyed]
    assert len(trials) >= 10 and len({(ev, t.task_id, t.epoch) for ev, t in keyed}) == len(trials)  # each once
    spans = sorted((float(a), float(b)) for t in trials for a, b in re.findall(r"start ([\d.]+) end ([\d.]+)", t.log))
    assert len(spans) == len(trials)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))  # two trials overlapped


def evolve_population_2_through_ray_decides_as_the_local_executor_does(tmp_path):
    from ratchet.evolve.run import EvolveOptions, evolve

    def run(root: Path):
        proj = open_project(root)
        try:
            out = asyncio.run(evolve(proj, EvolveOptions(rounds=1), say=lambda m: None))
            rows = proj.ledger.candidates(out.run_id)
            return out, [(r["id"].rsplit("-", 1)[-1], r["status"], r["fingerprint"],
                          (r["decision"].get("dev") or {}).get("mean_diff")) for r in rows]
        finally:
            asyncio.run(proj.aclose())

    local_out, local_rows = run(scripted_project(tmp_path / "local", n_tasks=30, loop="population = 2"))
    ray_out, ray_rows = run(scripted_project(tmp_path / "ray", n_tasks=30, loop="population = 2", executor=RAY))
    assert [m.candidate_id.rsplit("-", 1)[-1] for m in ray_out.rounds[0].members] == ["r001", "r001b"]
    assert ray_rows == local_rows  # the same candidates, decisions and dev effects
    def figures(out):  # commit and run ids hold timestamps
        return [(row["harness"], row["candidate"].rsplit("-", 1)[-1], row["dev"], row["holdout"]) for row in out.table]

    assert figures(ray_out) == figures(local_out)


def test_sigkill_of_ratchet_leaves_no_ray_process(tmp_path):
    """The local cluster a run starts is under the process guard: a SIGKILL of ratchet takes all of it along
    (ray.init()'s own cluster left two agent processes for about a minute), and leaves no pointer to itself in
    /tmp/ray for a later plain ray.init() to join."""
    pointer = Path(ray._private.utils.get_ray_address_file(None))  # what a plain ray.init() joins (Ray's own lookup)
    before = pointer.read_text() if pointer.exists() else None
    root = scripted_project(tmp_path / "p", n_tasks=30, executor='kind = "ray"\nnum_cpus = 2')
    (root / "reply.py").write_text("import time\n" + ARITH_REPLY.replace("def reply(messages, params):\n",
                                                                         "def reply(messages, params):\n    time.sleep(2)\n"))
    proc = subprocess.Popen([sys.executable, "-m", "ratchet.cli", "eval", str(root)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline, tree = time.monotonic() + 180, set()
        while time.monotonic() < deadline:  # until a Ray worker runs an episode
            tree = descendants(proc.pid)
            if any(b"ray::" in cmdline(p) for p in tree):
                break
            assert proc.poll() is None, "ratchet eval ended before its Ray workers ran"
            time.sleep(0.5)
        assert any(b"raylet" in cmdline(p) for p in tree), [(cmdline(p)[:80]) for p in tree]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = alive(tree)
    assert not left, f"left behind after 30 s: {[cmdline(p)[:100] for p in left]}"
    after = pointer.read_text() if pointer.exists() else None
    assert after == before, "the run's Ray head pointed this machine's ray.init() at itself, and is now gone"
