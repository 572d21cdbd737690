"""Training: a few LoRA steps of TRL SFT and DPO on the real embedded model (slow), GRPO refused on CPU."""

import json

import pytest

from ratchet.config import ConfigError
from ratchet.flywheel.config import TrainConfig
from ratchet.flywheel.datasets import PAIR, SFT, Example, Provenance
from ratchet.flywheel.train import pair_rows, sft_rows, train_grpo, train_model


def ex(i: int, kind: str = SFT) -> Example:
    p = Provenance(run_id="r", generation=1, task_id=f"t{i}", split="train", model="m", harness="h",
                   harness_commit=None, verifier="v", score=1.0, seed=i, eval_id="e", epoch=0, call_index=0)
    prompt = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": f"Calculate {i} + 1."}]
    return Example(kind=kind, prompt=prompt, reply=f"{i} + 1 = {i + 1}", rejected=f"{i + 5}" if kind == PAIR else None,
                   provenance=p)


def test_rows_put_the_loss_on_the_reply_only():
    row = sft_rows([ex(1)])[0]
    assert row["prompt"][-1]["role"] == "user" and row["completion"] == [{"role": "assistant", "content": "1 + 1 = 2"}]
    assert pair_rows([ex(1, PAIR)])[0]["rejected"] == [{"role": "assistant", "content": "6"}]
    with pytest.raises(ValueError):
        pair_rows([ex(1)])


def test_grpo_is_refused_without_a_gpu(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        train_grpo(tmp_path, [([{"role": "user", "content": "hi"}], "t")], lambda t, x: 1.0, TrainConfig(grpo=True),
                   tmp_path / "out")


def test_no_data_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no SFT examples"):
        train_model(tmp_path, [], [], TrainConfig(), tmp_path / "out")
    with pytest.raises(ValueError, match="no preference pairs"):
        train_model(tmp_path, [ex(1)], [], TrainConfig(method="dpo"), tmp_path / "out")


@pytest.mark.slow
def test_lora_sft_then_dpo_on_the_embedded_model_gives_a_loadable_model(tmp_path):
    import torch
    from safetensors.torch import load_file

    from ratchet.models.gguf import resolve_local_model

    base = resolve_local_model("smollm2-135m")
    cfg = TrainConfig(method="both", max_steps=2, batch_size=2, lora_r=4, lora_alpha=8, lr=1e-3, max_length=64)
    out = tmp_path / "m"
    result = train_model(base, [ex(i) for i in range(4)], [ex(i, PAIR) for i in range(4)], cfg, out)
    assert result.metrics["sft"]["steps"] == 2 and result.metrics["dpo"]["steps"] == 2
    assert (out / "config.json").is_file() and (out / "adapters" / "sft" / "adapter_config.json").is_file()
    assert json.loads((out / "ratchet_train.json").read_text())["config"]["seed"] == 0
    assert resolve_local_model(str(out)) == out.resolve()
    before, after = load_file(str(base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    key = next(k for k in after if "q_proj.weight" in k)
    assert not torch.equal(before[key], after[key])  # the merged LoRA moved the weights
    assert not (tmp_path / "m.partial").exists()


@pytest.mark.slow
def test_grpo_code_path_runs_a_step_on_cpu_when_allowed(tmp_path):
    """The GPU path, exercised on CPU (one tiny step) so that it is not first run on the GPU machine."""
    from ratchet.models.gguf import resolve_local_model

    async def reward(task_id, text):  # an async scorer, as suites have
        return float("2" in text)

    prompts = [([{"role": "user", "content": f"Calculate {i} + 1."}], f"t{i}") for i in range(2)]
    cfg = TrainConfig(grpo=True, grpo_steps=1, grpo_generations=2, max_length=8, lora_r=4, lora_alpha=8, device="cpu")
    result = train_grpo(resolve_local_model("smollm2-135m"), prompts, reward, cfg, tmp_path / "g", require_gpu=False)
    assert result.method == "grpo" and result.metrics["grpo"]["steps"] == 1 and (tmp_path / "g" / "config.json").is_file()
