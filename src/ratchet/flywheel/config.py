"""The `[flywheel]` table of ratchet.toml as dataclasses: generation, filtering, data mixing, training, evaluation.

Every key has a default, so `[flywheel]` may be empty. Unknown keys are errors that name the key and
the keys that exist, because a misspelt knob that silently keeps its default wastes a training run.

    [flywheel]
    samples_per_task = 8       # K rollouts per train task and generation
    temperature = 1.0          # sampling temperature of generation (the harness's own value when unset)
    min_score = 1.0            # verified-good threshold on the outcome score
    ...
    [flywheel.train]
    method = "sft"             # sft | dpo | both
    lora_r = 16
    ...
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ratchet.config import ConfigError

TrainMethod = Literal["sft", "dpo", "both"]
JudgeKind = Literal["rubric", "constitution"]


@dataclass(frozen=True)
class JudgeConfig:
    """An AI judge for tasks without a checker (RLAIF), or on top of one."""

    kind: JudgeKind = "rubric"
    text: str = ""  # the rubric or the constitution (principles), inline
    path: str | None = None  # or a file with it, relative to the project dir
    min_score: float = 0.7  # judge score in [0, 1] an example needs to be kept
    model: str | dict[str, Any] | None = None  # a model name, or a [model]-style table; default: the generating model
    max_tokens: int = 256


@dataclass(frozen=True)
class TrainConfig:
    method: TrainMethod = "sft"
    full_finetune: bool = False  # False: PEFT LoRA (the default)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lr: float = 2e-4
    epochs: float = 2.0
    max_steps: int = -1  # > 0 caps the optimiser steps (overrides epochs)
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 256  # tokens per training sequence
    dpo_beta: float = 0.1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    grpo: bool = False  # GRPO with the suite's verifier as reward; needs a GPU
    grpo_steps: int = 50
    grpo_generations: int = 8


@dataclass(frozen=True)
class FlywheelConfig:
    # generate
    samples_per_task: int = 8
    temperature: float | None = None  # None: keep the harness's sampling temperature
    task_limit: int | None = None  # only the first N train tasks (small runs)
    seed: int = 0
    # verify and filter
    min_score: float = 1.0
    max_chars: int = 2000  # longest completion kept
    min_chars: int = 1
    per_task_cap: int = 4  # examples kept per task and generation (balance)
    prefer_short: bool = True  # the cap keeps a task's shortest verified replies first
    near_dup_threshold: float = 0.9  # token-shingle Jaccard at or above which two replies of a task are one
    drop_tool_errors: bool = True  # process signals: drop rollouts whose tools failed
    drop_loops: bool = True
    # contamination
    ngram: int = 8
    contamination_threshold: float = 0.5  # share of an eval item's n-grams found in an example
    boilerplate_df: float = 0.2  # n-grams in more than this share of the suite's inputs are template text
    # data
    fresh_ratio: float = 0.5  # share of the training set that comes from the newest generation
    max_pairs_per_task: int = 4
    star_rationalize: bool = False  # STaR: hint the gold answer for failed train tasks
    star_max_tasks: int = 64
    # evaluate and promote
    eval_epochs: int = 4  # epochs of the dev and holdout comparison
    eval_limit: int | None = None  # only the first N dev and holdout tasks (small runs, tests)
    eval_seed: int = 0
    alpha: float = 0.05
    min_effect: float = 0.0
    holdout_budget: int = 10
    holdout_threshold: float = 0.04
    holdout_noise: float = 0.02
    generations: int = 2
    train: TrainConfig = field(default_factory=TrainConfig)
    judge: JudgeConfig | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_keys(cls: type, raw: dict[str, Any], where: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    _check_keys(cls, raw, where)
    kwargs = dict(raw)
    for f in dataclasses.fields(cls):
        if f.name in kwargs and f.name == "lora_targets":
            kwargs[f.name] = tuple(kwargs[f.name])
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _range(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{where}: {message}")


def validate(cfg: FlywheelConfig) -> None:
    w = "[flywheel]"
    _range(cfg.samples_per_task >= 1, w, "samples_per_task must be >= 1")
    _range(cfg.temperature is None or 0.0 <= cfg.temperature <= 5.0, w, "temperature must be in [0, 5]")
    _range(cfg.task_limit is None or cfg.task_limit >= 1, w, "task_limit must be >= 1")
    _range(0.0 <= cfg.min_score <= 1.0, w, "min_score must be in [0, 1]")
    _range(1 <= cfg.min_chars <= cfg.max_chars, w, "need 1 <= min_chars <= max_chars")
    _range(cfg.per_task_cap >= 1, w, "per_task_cap must be >= 1")
    _range(0.0 < cfg.near_dup_threshold <= 1.0, w, "near_dup_threshold must be in (0, 1]")
    _range(cfg.ngram >= 2, w, "ngram must be >= 2 (single tokens match everywhere)")
    _range(0.0 < cfg.contamination_threshold <= 1.0, w, "contamination_threshold must be in (0, 1]")
    _range(0.0 < cfg.boilerplate_df <= 1.0, w, "boilerplate_df must be in (0, 1]")
    _range(0.0 < cfg.fresh_ratio <= 1.0, w, "fresh_ratio must be in (0, 1] (1 = newest generation only)")
    _range(cfg.eval_epochs >= 1, w, "eval_epochs must be >= 1")
    _range(cfg.eval_limit is None or cfg.eval_limit >= 2, w, "eval_limit must be >= 2 (a paired test needs tasks)")
    _range(0.0 < cfg.alpha < 0.5, w, "alpha must be in (0, 0.5)")
    _range(cfg.holdout_budget >= 1, w, "holdout_budget must be >= 1")
    _range(cfg.generations >= 1, w, "generations must be >= 1")
    t, wt = cfg.train, "[flywheel.train]"
    _range(t.method in ("sft", "dpo", "both"), wt, f"method = {t.method!r}; use sft, dpo or both")
    _range(t.lora_r >= 1 and t.lora_alpha >= 1, wt, "lora_r and lora_alpha must be >= 1")
    _range(0.0 <= t.lora_dropout < 1.0, wt, "lora_dropout must be in [0, 1)")
    _range(t.lr > 0, wt, "lr must be > 0")
    _range(t.epochs > 0 or t.max_steps > 0, wt, "set epochs > 0 or max_steps > 0")
    _range(t.batch_size >= 1 and t.grad_accum >= 1, wt, "batch_size and grad_accum must be >= 1")
    _range(t.max_length >= 16, wt, "max_length must be >= 16 tokens")
    _range(t.device in ("auto", "cpu") or t.device.startswith("cuda"), wt, "device must be auto, cpu or cuda[:N]")
    if cfg.judge is not None:
        j, wj = cfg.judge, "[flywheel.judge]"
        _range(j.kind in ("rubric", "constitution"), wj, f"kind = {j.kind!r}; use rubric or constitution")
        _range(bool(j.text.strip()) != bool(j.path), wj, "give the rubric/constitution as text = \"...\" or path = \"file\" (one of them)")
        _range(0.0 <= j.min_score <= 1.0, wj, "min_score must be in [0, 1]")


def parse_flywheel(raw: dict[str, Any] | None) -> FlywheelConfig:
    """The [flywheel] table (a dict from ratchet.toml) as a validated FlywheelConfig."""
    raw = dict(raw or {})
    train_raw = raw.pop("train", {}) or {}
    judge_raw = raw.pop("judge", None)
    if not isinstance(train_raw, dict):
        raise ConfigError("[flywheel] train must be a table: [flywheel.train]")
    if judge_raw is not None and not isinstance(judge_raw, dict):
        raise ConfigError("[flywheel] judge must be a table: [flywheel.judge]")
    _check_keys(FlywheelConfig, raw, "[flywheel]")
    train = _build(TrainConfig, train_raw, "[flywheel.train]")
    judge = _build(JudgeConfig, judge_raw, "[flywheel.judge]") if judge_raw is not None else None
    try:
        cfg = FlywheelConfig(**raw, train=train, judge=judge)
    except TypeError as e:
        raise ConfigError(f"[flywheel]: {e}") from None
    validate(cfg)
    return cfg


def with_overrides(cfg: FlywheelConfig, **changes: Any) -> FlywheelConfig:
    """A copy with command-line overrides (None values are ignored), validated again."""
    changes = {k: v for k, v in changes.items() if v is not None}
    out = dataclasses.replace(cfg, **changes)
    validate(out)
    return out
