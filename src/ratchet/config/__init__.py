"""The project file, `ratchet.toml`, as typed models: one tree for every tier.

A project is a directory holding `ratchet.toml` and a harness directory (a research project: the
repository it edits). Every section has defaults, so a minimal file names only the suite. `[loop]` holds
the one set of decision settings that evolve, research and the flywheel share. Errors name the file,
the key and what to write instead; unknown keys are errors, because a misspelt knob that silently keeps
its default wastes a run.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from ratchet.config.base import PROJECT_FILE, ConfigError, Section
from ratchet.config.errors import Problem, config_problems, format_config_error
from ratchet.config.research import ResearchSection
from ratchet.config.sections import (
    CommandSection,
    EvalSection,
    ExecutorSection,
    GuardSection,
    LoopSection,
    ModelSection,
    ProjectSection,
    SandboxSection,
    SplitFractions,
    SuiteSection,
    TrackingSection,
)
from ratchet.config.training import DECISION_KEYS, FlywheelSection, JudgeSection, TrainSection

__all__ = [
    "DECISION_KEYS", "PROJECT_FILE", "CommandSection", "ConfigError", "EvalSection", "ExecutorSection",
    "FlywheelSection", "GuardSection", "JudgeSection", "LoopSection", "ModelSection", "Problem", "ProjectConfig",
    "ProjectSection", "ResearchSection", "SandboxSection", "Section", "SplitFractions", "SuiteSection",
    "TrackingSection", "TrainSection", "config_problems", "format_config_error", "load_project",
    "load_record_config", "parse_project", "read_project_file", "validate_project",
]


class ProjectConfig(Section):
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
        raise ConfigError(format_config_error(source or root / PROJECT_FILE, e, ProjectConfig)) from None


def parse_project(raw: dict[str, Any], root: Path, source: Path | None = None) -> ProjectConfig:
    """A harness project (evolve, eval, the flywheel): the sections, and a harness dir that exists."""
    cfg = validate_project(raw, root, source)
    if not cfg.harness_dir.is_dir():
        raise ConfigError(
            f"{source or root / PROJECT_FILE}: [project] harness = {cfg.project.harness!r} is not a directory "
            f"under {root}; create it (`ratchet init`) or fix the path."
        )
    return cfg
