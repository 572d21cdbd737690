"""The project file, `ratchet.toml`, as typed models.

A project is a directory holding `ratchet.toml` and a harness directory. Every section has defaults,
so a minimal file names only the suite. Errors name the file, the key and what to write instead.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
    backend: Literal["local", "openai", "scripted"] = "local"
    name: str = "smollm2-135m"  # local: a built-in name, an HF model dir, or a registry model name
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # openai: the env var holding the key (the key never enters the ledger)
    concurrency: int = Field(default=16, ge=1)  # openai: requests in flight
    max_batch: int = Field(default=32, ge=1)  # local: rows per forward pass
    device: str = "auto"  # local: auto | cpu | cuda
    dtype: str = "auto"  # local: auto | float32 | bfloat16 | float16
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    script: str | None = None  # scripted: path to a python file defining reply(messages, params) -> str
    cache: bool = True
    usd_per_mtok: float = Field(default=0.0, ge=0)  # price per million tokens, for the money budget


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
    kind: Literal["reasoning_gym", "humaneval", "jsonl", "python"] = "reasoning_gym"
    name: str | None = None  # display name; defaults to the dataset/file name
    dataset: str | None = None  # reasoning_gym: dataset name, e.g. "basic_arithmetic"
    size: int = Field(default=200, ge=1)  # reasoning_gym: tasks generated
    seed: int = 1234  # reasoning_gym: generator seed
    config: dict[str, Any] = Field(default_factory=dict)  # reasoning_gym: dataset config
    path: str | None = None  # jsonl / python: file relative to the project dir
    match: Literal["exact", "normalized", "numeric", "regex"] = "normalized"  # jsonl
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
    loop_repeats: int = Field(default=3, ge=2)  # identical actions in a row that end an episode


class SandboxSection(_Section):
    backend: Literal["auto", "bwrap", "rlimit"] = "auto"
    memory_mb: int = Field(default=1024, ge=64)
    cpu_s: int = Field(default=60, ge=1)
    max_procs: int = Field(default=64, ge=1)
    file_mb: int = Field(default=16, ge=1)
    output_kb: int = Field(default=256, ge=1)


class LoopSection(_Section):
    proposer: Literal["llm", "search", "mix"] = "mix"
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
    proposer_model: ModelSection | None = None  # the llm proposer's model; defaults to [model]
    seed: int = 0


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


class ProjectConfig(_Section):
    project: ProjectSection = Field(default_factory=ProjectSection)
    model: ModelSection = Field(default_factory=ModelSection)
    suite: SuiteSection = Field(default_factory=SuiteSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    sandbox: SandboxSection = Field(default_factory=SandboxSection)
    loop: LoopSection = Field(default_factory=LoopSection)
    guard: GuardSection = Field(default_factory=GuardSection)
    # sections that later tiers own; validated by their modules
    flywheel: dict[str, Any] = Field(default_factory=dict)
    research: dict[str, Any] = Field(default_factory=dict)

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


def _format_validation_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see docs/config.md for the keys of each section)"
        lines.append(f"  [{loc}] {msg}")
    return "\n".join(lines)


def load_project(project_dir: str | Path) -> ProjectConfig:
    """Read `ratchet.toml` from a project dir (or a path to the file itself)."""
    path = Path(project_dir)
    if path.is_dir():
        path = path / PROJECT_FILE
    if not path.exists():
        raise ConfigError(f"{path}: no such file. Run `ratchet init DIR` to create a project, or pass a project dir.")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_project(raw, root=path.parent, source=path)


def parse_project(raw: dict[str, Any], root: Path, source: Path | None = None) -> ProjectConfig:
    try:
        cfg = ProjectConfig.model_validate({**raw, "root": root})
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source or root / PROJECT_FILE, e)) from None
    if not cfg.harness_dir.is_dir():
        raise ConfigError(
            f"{source or root / PROJECT_FILE}: [project] harness = {cfg.project.harness!r} is not a directory "
            f"under {root}; create it (`ratchet init`) or fix the path."
        )
    return cfg
