"""One flywheel generation on the real embedded model: sample, verify, filter, a few LoRA steps, evaluate,
decide, register - and the registry model loads by name through the local backend."""

import asyncio
import shutil
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "arithmetic"
SMALL = """
[flywheel]
generations = 1
samples_per_task = 3
task_limit = 6
eval_limit = 4
eval_epochs = 1

[flywheel.train]
max_steps = 2
batch_size = 4
lora_r = 4
lora_alpha = 8
max_length = 128
"""


@pytest.mark.slow
def test_one_generation_on_the_embedded_model(tmp_path):
    from ratchet.config import ModelSection
    from ratchet.flywheel import registry
    from ratchet.flywheel.engine import Flywheel
    from ratchet.ledger.flywheel_store import FlywheelStore
    from ratchet.models import build_model
    from ratchet.project import open_project
    from ratchet.types import SamplingParams

    root = tmp_path / "arith"
    shutil.copytree(EXAMPLE / "harness", root / "harness")
    toml = (EXAMPLE / "ratchet.toml").read_text()
    (root / "ratchet.toml").write_text(toml[: toml.index("[flywheel]")] + SMALL)

    proj = open_project(root)
    engine = Flywheel(proj)

    async def go():
        try:
            return await engine.run()
        finally:
            await engine.aclose()
            await proj.aclose()

    summary = asyncio.run(go())
    assert summary.status == "finished"
    store = FlywheelStore(proj.ledger)
    gen = store.generations(summary.run_id)[0]
    assert gen["status"] in ("promoted", "rejected")
    assert gen["counts"]["rollouts"] == 18 and gen["counts"]["filter_sft"]["kept"] >= 1
    assert set(gen["seconds"]) == {"generate", "verify", "filter", "train", "evaluate"}
    name = gen["candidate_model"]
    row = store.model(name)
    assert row["parent"] == "smollm2-135m" and row["metrics"]["train"]["sft"]["steps"] == 2
    kept = store.examples(summary.run_id, status="kept")
    assert all(r["split"] == "train" and r["model"] == "smollm2-135m" for r in kept)
    assert summary.card_path.is_file()

    model = build_model(ModelSection(name=name, max_batch=2), root)  # a registry model, by name
    try:
        reply = asyncio.run(model.chat([{"role": "user", "content": "Calculate 2 + 2."}], SamplingParams(max_tokens=8)))
    finally:
        asyncio.run(model.aclose())
    assert reply.text.strip() and str(registry.registry_model_dir(root, name)) in model.name
