"""What every table of ratchet.toml shares: the file's name, the error type, the strict base model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

PROJECT_FILE = "ratchet.toml"


class ConfigError(ValueError):
    """A project file or harness file that cannot be used; the message says what to fix."""


class Section(BaseModel):
    """A table of ratchet.toml: unknown keys are errors (a misspelt knob that keeps its default wastes a run)."""

    model_config = ConfigDict(extra="forbid")
