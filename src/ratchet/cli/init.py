"""`ratchet init DIR [--suite KIND[:NAME]]`: a new project."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from ratchet.cli.common import fail, fixable
from ratchet.console import console

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "project"


def init(directory: Path = typer.Argument(..., help="Where to create the project."),
         suite: str | None = typer.Option(None, "--suite", help="reasoning_gym:DATASET, humaneval or jsonl:PATH: a "
                                          "project for that suite with a plain seed harness."),
         effect: float = typer.Option(0.15, help="With --suite reasoning_gym: the gain (in accuracy) the generated "
                                      "suite is sized to detect with 80% power."),
         force: bool = typer.Option(False, help="Write into a non-empty directory.")) -> None:
    """Create a project: ratchet.toml and a seed harness.

    With --suite, the project is for that suite and the seed is plain (one prompt, one model call, a generic
    answer step) with the generic techniques of docs/harness.md declared as knobs; a reasoning-gym suite is
    sized so its dev, holdout and test splits can each detect --effect. Without it, the arithmetic example
    (reasoning-gym basic_arithmetic, with a calculator skill).
    """
    if directory.exists() and not directory.is_dir():
        fail(f"{directory} is a file; choose a directory")
    if directory.exists() and any(directory.iterdir()) and not force:
        fail(f"{directory} is not empty; choose a new directory or pass --force")
    if not 0 < effect <= 0.5:
        fail(f"--effect {effect:g}: give a gain in accuracy between 0 and 0.5, e.g. --effect 0.15")
    if suite is None:
        shutil.copytree(TEMPLATE, directory, dirs_exist_ok=True)
        console.print(f"created {directory}/ratchet.toml and {directory}/harness/. Next: ratchet eval {directory}")
        return
    from ratchet.scaffold import parse_spec, write_project

    with fixable():
        note = write_project(directory, parse_spec(suite), effect)
    console.print(f"created {directory}/ratchet.toml and a plain seed harness in {directory}/harness/", highlight=False)
    console.print(note, highlight=False, markup=False)
    console.print(f"Next: ratchet eval {directory}, then ratchet plan {directory}", highlight=False)
