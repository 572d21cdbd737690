"""Train the next model: TRL SFT on verified replies, DPO on verified pairs, PEFT LoRA by default.

The output is always a plain HF model dir (LoRA adapters are merged in and also kept under
`adapter/` for audit), so the next generation, the evaluator and any other tool load it like any model.
CPU works for small runs (the embedded 135M model, a few hundred steps); a GPU is used when present.
GRPO (the suite's verifier as reward) needs a GPU and says so on a CPU-only machine.
Seeded: the same data and config give the same weights on the same hardware.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.config import ConfigError
from ratchet.flywheel.config import TrainConfig
from ratchet.flywheel.datasets import Example
from ratchet.flywheel.tool_turns import rendered_prompt

TRAIN_CONFIG_FILE = "ratchet_train.json"


class TrainInterrupted(RuntimeError):
    """Training was stopped (stop file, Ctrl-C); nothing was written to the model dir."""


@dataclass
class TrainResult:
    path: Path
    method: str
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def pick_train_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"[flywheel.train] device = {device!r} but CUDA is not available; use \"auto\" or \"cpu\"")
    return device


def sft_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows: the loss falls on the reply only, never on the prompt.

    Tool turns are rendered as the model reads them at inference (models/tool_prompt.py): the offered tools'
    specs in the system message, earlier calls as <tool_call> blocks, results as <tool_response> user turns,
    and the target's own tool calls as <tool_call> blocks after its text."""
    return [{"prompt": rendered_prompt(e.prompt, e.tools), "completion": [{"role": "assistant", "content": e.target}]}
            for e in examples]


def pair_rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    rows = []
    for e in examples:
        if e.rejected is None:
            raise ValueError(f"example {e.id} has no rejected reply; DPO needs pairs")
        rows.append({"prompt": rendered_prompt(e.prompt, e.tools), "chosen": [{"role": "assistant", "content": e.target}],
                     "rejected": [{"role": "assistant", "content": e.rejected}]})
    return rows


def _common_args(cfg: TrainConfig, out: Path, device: str, n_rows: int) -> dict[str, Any]:
    import torch

    bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return dict(
        output_dir=str(out / "trainer"), learning_rate=cfg.lr, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=min(cfg.batch_size, max(1, n_rows)), gradient_accumulation_steps=cfg.grad_accum,
        seed=cfg.seed, data_seed=cfg.seed, logging_steps=5, save_strategy="no", report_to="none",
        use_cpu=device == "cpu", bf16=bf16, lr_scheduler_type="cosine", warmup_steps=0, disable_tqdm=True,
        dataloader_num_workers=0, **{_checkpointing_key(): False},  # recomputation only slows small models
    )


def _checkpointing_key() -> str:
    """transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old name warns)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def _peft_config(cfg: TrainConfig) -> Any:
    if cfg.full_finetune:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM")


def _load(base_dir: Path, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # train in fp32 on CPU; on GPU the Trainer's bf16 autocast handles precision
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    return model.to(device), tokenizer


def _finish(trainer: Any, adapter_dir: Path, lora: bool) -> Any:
    """Merge LoRA (keeping the adapter for audit) and return the plain model."""
    model = trainer.model
    if lora:
        model.save_pretrained(adapter_dir)
        model = model.merge_and_unload()
    return model


def _partial_dir(out: Path) -> Path:
    """A fresh `<out>.partial` to build the model dir in (a stopped or killed training leaves only this)."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _write_model_dir(model: Any, tokenizer: Any, tmp: Path, out: Path, base_dir: Path, cfg: TrainConfig,
                     metrics: dict[str, Any], method: str, started: float) -> TrainResult:
    """Save the trained model, its tokenizer and ratchet_train.json in `tmp`, then rename it to `out`:
    the model dir appears complete or not at all. The one finisher of SFT, DPO and GRPO."""
    model.to("cpu").save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(tmp / "trainer", ignore_errors=True)
    seconds = time.monotonic() - started
    (tmp / TRAIN_CONFIG_FILE).write_text(json.dumps({"base": str(base_dir), "config": cfg.model_dump(mode="json"),
                                                     "metrics": metrics, "seconds": round(seconds, 1)}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return TrainResult(path=out, method=method, metrics=metrics, seconds=seconds)


def _losses(trainer: Any) -> dict[str, Any]:
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {"steps": int(trainer.state.global_step),
            "loss_first": logs[0]["loss"] if logs else None, "loss_last": logs[-1]["loss"] if logs else None,
            "train_loss": next((e.get("train_loss") for e in reversed(trainer.state.log_history) if "train_loss" in e), None)}


def _stop_callback(should_stop: Callable[[], bool] | None) -> list[Any]:
    if should_stop is None:
        return []
    from transformers import TrainerCallback

    class StopWhenAsked(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if should_stop():
                control.should_training_stop = True
            return control

    return [StopWhenAsked()]


def _check_stopped(should_stop: Callable[[], bool] | None, stage: str) -> None:
    if should_stop is not None and should_stop():
        raise TrainInterrupted(f"training stopped during {stage}; the partial model was discarded")


def train_model(base_dir: Path, sft: Sequence[Example], pairs: Sequence[Example], cfg: TrainConfig, out: Path,
                log: Callable[[str], None] | None = None, should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train from `base_dir` on the examples with `cfg.method`; write a loadable HF model dir at `out`."""
    if cfg.grpo:
        raise ConfigError("GRPO runs through train_grpo (it needs the suite's verifier as reward), not train_model")
    method = cfg.method
    if method in ("sft", "both") and not sft:
        raise ValueError("no SFT examples to train on: every candidate was filtered out (see the data card)")
    if method == "dpo" and not pairs:
        raise ValueError("no preference pairs to train on: DPO needs tasks with both a verified-good and a "
                         "verified-bad reply to the same prompt; raise samples_per_task or use method = \"sft\"")
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    device = pick_train_device(cfg.device)
    started = time.monotonic()
    set_seed(cfg.seed)
    tmp = _partial_dir(out)
    model, tokenizer = _load(base_dir, device)
    metrics: dict[str, Any] = {"device": device, "n_sft": len(sft), "n_pairs": len(pairs)}
    lora = not cfg.full_finetune

    if method in ("sft", "both"):
        args = SFTConfig(**_common_args(cfg, tmp, device, len(sft)), max_length=cfg.max_length,
                         completion_only_loss=True, packing=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(sft_rows(sft)),
                             processing_class=tokenizer, peft_config=_peft_config(cfg),
                             callbacks=_stop_callback(should_stop))
        trainer.train()
        _check_stopped(should_stop, "sft")
        metrics["sft"] = _losses(trainer)
        model = _finish(trainer, tmp / "adapters" / "sft", lora)
        if log:
            log(f"sft: {metrics['sft']}")
    if method in ("dpo", "both") and pairs:
        args = DPOConfig(**_common_args(cfg, tmp, device, len(pairs)), beta=cfg.dpo_beta, max_length=cfg.max_length)
        trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(pair_rows(pairs)),
                             processing_class=tokenizer, peft_config=_peft_config(cfg),
                             callbacks=_stop_callback(should_stop))
        trainer.train()
        _check_stopped(should_stop, "dpo")
        metrics["dpo"] = _losses(trainer)
        model = _finish(trainer, tmp / "adapters" / "dpo", lora)
        if log:
            log(f"dpo: {metrics['dpo']}")
    elif method == "both":
        metrics["dpo"] = "skipped: no pairs"

    return _write_model_dir(model, tokenizer, tmp, out, base_dir, cfg, metrics, method, started)


def train_grpo(base_dir: Path, prompts: Sequence[tuple[list[dict[str, str]], str]],
               reward: Callable[[str, str], Any], cfg: TrainConfig, out: Path, require_gpu: bool = True,
               should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """GRPO (R1-style RL on verifiable rewards): `prompts` are (messages, task id); `reward(task_id, text)`
    returns a score in [0, 1] (may be a coroutine: the suite's async scorer). GPU only; `require_gpu=False`
    lets a test run a step or two on CPU. `should_stop` (the stop file, Ctrl-C) ends it after the current
    step, as for SFT and DPO, and nothing is written."""
    device = pick_train_device(cfg.device)
    if require_gpu and not device.startswith("cuda"):
        raise ConfigError("[flywheel.train] grpo = true needs a CUDA GPU (it samples many completions per step); "
                          "this machine has none. Set grpo = false to train with SFT/DPO on CPU.")
    from datasets import Dataset
    from transformers import set_seed
    from trl import GRPOConfig, GRPOTrainer

    started = time.monotonic()
    set_seed(cfg.seed)
    tmp = _partial_dir(out)
    model, tokenizer = _load(base_dir, device)

    def reward_fn(prompts: list, completions: list, task_id: list[str], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        return [float(_resolve(reward(t, x))) for t, x in zip(task_id, texts)]

    common = _common_args(cfg, tmp, device, len(prompts))
    common["max_steps"] = cfg.grpo_steps
    common["per_device_train_batch_size"] = cfg.grpo_generations
    args = GRPOConfig(**common, num_generations=cfg.grpo_generations, max_completion_length=cfg.max_length)
    data = Dataset.from_list([{"prompt": list(m), "task_id": t} for m, t in prompts])
    trainer = GRPOTrainer(model=model, reward_funcs=[reward_fn], args=args, train_dataset=data,
                          processing_class=tokenizer, peft_config=_peft_config(cfg), callbacks=_stop_callback(should_stop))
    trainer.train()
    _check_stopped(should_stop, "grpo")
    metrics = {"device": device, "grpo": _losses(trainer), "n_prompts": len(prompts)}
    model = _finish(trainer, tmp / "adapters" / "grpo", not cfg.full_finetune)
    return _write_model_dir(model, tokenizer, tmp, out, base_dir, cfg, metrics, "grpo", started)


def _resolve(value: Any) -> Any:
    """Run a coroutine to completion from the trainer's (synchronous) reward callback."""
    if asyncio.iscoroutine(value):
        return asyncio.run(value)
    return value

