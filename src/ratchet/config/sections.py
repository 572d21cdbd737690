"""The tables every project has: [project], [model], [suite], [eval], [sandbox], [loop], [guard],
[executor] (and [tracking]); the decision settings live in [loop], shared by every tier."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ratchet.config.base import Section
from ratchet.globs import check_globs


class ProjectSection(Section):
    name: str = "ratchet-project"
    harness: str = "harness"  # path relative to the project dir
    ledger: str = ".ratchet/ledger.sqlite"  # path, or an SQLAlchemy URL (postgresql+psycopg://...)


class ModelSection(Section):
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


class SplitFractions(Section):
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


class SuiteSection(Section):
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


class EvalSection(Section):
    epochs: int = Field(default=1, ge=1)
    seed: int = 0
    concurrency: int = Field(default=32, ge=1)
    limit: int | None = Field(default=None, ge=1)
    max_steps: int = Field(default=8, ge=1)  # model/skill calls per episode
    max_tokens: int = Field(default=4096, ge=1)  # tokens per episode
    timeout_s: float = Field(default=120.0, gt=0)  # an episode's own wall time; its waits on the model not counted
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


class SandboxSection(Section):
    backend: Literal["auto", "bwrap", "rlimit"] = "auto"
    memory_mb: int = Field(default=1024, ge=64)
    cpu_s: int = Field(default=60, ge=1)
    max_procs: int = Field(default=64, ge=1)
    file_mb: int = Field(default=16, ge=1)
    output_kb: int = Field(default=256, ge=1)


class CommandSection(Section):
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


class LoopSection(Section):
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


class GuardSection(Section):
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


class ExecutorSection(Section):
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


_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class TrackingSection(Section):
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

