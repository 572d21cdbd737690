"""A research project: the `[research]` table of ratchet.toml (what to run, how to read its metric, what
may change; `ratchet.config.ResearchSection`), checked against the rest of the file.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ratchet.config import ConfigError, ProjectConfig, ResearchSection, read_project_file, validate_project

__all__ = ["ResearchProject", "ResearchSection", "load_research", "min_seeds", "parse_research"]


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
    cfg = validate_project(raw, root, source)  # no harness dir: the repo is the research target
    spec = cfg.research
    assert spec is not None  # the table is there (checked above), so validation typed it
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
    raw, path = read_project_file(project_dir, "A research project needs ratchet.toml with a [research] table.")
    return parse_research(raw, path.parent.resolve(), path)
