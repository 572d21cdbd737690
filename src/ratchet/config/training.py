"""The flywheel's tables: [flywheel], [flywheel.train], [flywheel.judge] (docs/flywheel.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ratchet.config.base import Section

# -- [flywheel]: generation, filtering, data mixing, training, evaluation (docs/flywheel.md) -----------------

# the decision settings the flywheel reads from [loop] (they were [flywheel] keys once)
DECISION_KEYS = ("alpha", "min_effect", "holdout_budget", "holdout_threshold", "holdout_noise")


class JudgeSection(Section):
    """`[flywheel.judge]`: an AI judge for tasks without a checker (RLAIF), or on top of one."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["rubric", "constitution"] = "rubric"
    text: str = ""  # the rubric or the constitution (principles), inline
    path: str | None = None  # or a file with it, relative to the project dir
    min_score: float = Field(default=0.7, ge=0, le=1)  # judge score an example needs to be kept
    model: str | dict[str, Any] | None = None  # a model name, or a [model]-style table; default: the generating model
    max_tokens: int = Field(default=256, ge=1)
    pairwise: bool = False  # RLAIF pairs on every task; tasks without a checker always get them (flywheel/rlaif.py)
    # checker-failed rollouts also graded, only to measure judge-vs-checker agreement; None: 16 when the judge
    # gates something the checker does not (tasks without a checker, or pairwise), else 0
    audit_failed: int | None = Field(default=None, ge=0)
    lenient_rate: float = Field(default=0.2, ge=0, le=1)  # judge passes this share of checker-failed ones: flagged
    lenient_min: int = Field(default=5, ge=1)  # checker-failed rollouts the judge must have graded before the flag can show

    @model_validator(mode="after")
    def _one_source(self) -> JudgeSection:
        if bool(self.text.strip()) == bool(self.path):
            raise ValueError('give the rubric/constitution as text = "..." or path = "file" (one of them)')
        return self


class TrainSection(Section):
    """`[flywheel.train]`: how the next model is trained (flywheel/train.py)."""

    model_config = ConfigDict(frozen=True)

    method: Literal["sft", "dpo", "both"] = "sft"
    full_finetune: bool = False  # False: PEFT LoRA (the default)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lr: float = Field(default=2e-4, gt=0)
    epochs: float = 2.0
    max_steps: int = -1  # > 0 caps the optimiser steps (overrides epochs)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=256, ge=8)  # tokens per training sequence (GRPO: per completion)
    dpo_beta: float = 0.1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:N]
    grpo: bool = False  # GRPO with the suite's verifier as reward; needs a GPU
    grpo_steps: int = Field(default=50, ge=1)
    grpo_generations: int = Field(default=8, ge=1)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v not in ("auto", "cpu") and not v.startswith("cuda"):
            raise ValueError(f"device = {v!r}; use auto, cpu or cuda[:N]")
        return v

    @model_validator(mode="after")
    def _length(self) -> TrainSection:
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("set epochs > 0 or max_steps > 0")
        return self


class FlywheelSection(Section):
    """`[flywheel]`: one generation's sampling, verification, filtering, data and comparison sizes.

    The decision rule itself (alpha, min_effect, Thresholdout) is `[loop]`'s, as in evolve and research."""

    model_config = ConfigDict(frozen=True)

    # generate
    samples_per_task: int = Field(default=8, ge=1)  # K rollouts per train task and generation
    temperature: float | None = Field(default=None, ge=0, le=5)  # None: keep the harness's sampling temperature
    task_limit: int | None = Field(default=None, ge=1)  # only the first N train tasks (small runs)
    seed: int = 0
    # verify and filter
    min_score: float = Field(default=1.0, ge=0, le=1)  # verified-good threshold on the outcome score
    max_chars: int = 2000  # longest completion kept
    min_chars: int = Field(default=1, ge=1)
    per_task_cap: int = Field(default=4, ge=1)  # examples kept per task and generation (balance)
    prefer_short: bool = True  # the cap keeps a task's shortest verified replies first
    near_dup_threshold: float = Field(default=0.9, gt=0, le=1)  # token-shingle Jaccard: at or above, two replies are one
    drop_tool_errors: bool = True  # process signals: drop rollouts whose tools failed
    drop_loops: bool = True
    # "outcome": the checks above; "outcome+process": also drop a right answer with a process finding (flywheel/process.py)
    filter: Literal["outcome", "outcome+process"] = "outcome"
    process_max_steps: int | None = Field(default=None, ge=1)  # the over_budget finding: more steps than this
    # contamination
    ngram: int = Field(default=8, ge=2, json_schema_extra={"why": "single tokens match everywhere"})
    contamination_threshold: float = Field(default=0.5, gt=0, le=1)  # share of an eval item's n-grams in an example
    boilerplate_df: float = Field(default=0.2, gt=0, le=1)  # n-grams in more than this share of inputs are template
    # data
    fresh_ratio: float = Field(default=0.5, gt=0, le=1, json_schema_extra={"why": "1 = newest generation only"})
    max_pairs_per_task: int = Field(default=4, ge=0)
    star_rationalize: bool = False  # STaR: hint the gold answer for failed train tasks
    star_max_tasks: int = Field(default=64, ge=0)
    # evaluate (the dev and holdout comparison; the decision settings are [loop]'s)
    eval_epochs: int = Field(default=4, ge=1)
    eval_limit: int | None = Field(default=None, ge=2, json_schema_extra={"why": "a paired test needs tasks"})
    eval_seed: int = 0
    generations: int = Field(default=2, ge=1)
    train: TrainSection = Field(default_factory=TrainSection)
    judge: JudgeSection | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved_to_loop(cls, data: Any) -> Any:
        moved = [k for k in DECISION_KEYS if isinstance(data, dict) and k in data]
        if moved:
            raise ValueError(f"{', '.join(moved)} moved to [loop]: evolve, research and the flywheel share one set of "
                             "decision settings; write them under [loop] (see docs/config.md)")
        return data

    @model_validator(mode="after")
    def _lengths(self) -> FlywheelSection:
        if self.min_chars > self.max_chars:
            raise ValueError("need 1 <= min_chars <= max_chars")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


# -- [research]: what to run, how to read its metric, what may change (docs/research.md) --------------------
