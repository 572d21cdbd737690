"""`ratchet init DIR`: copy the project template."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from ratchet.cli.common import fail
from ratchet.console import console

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "project"


def init(directory: Path = typer.Argument(..., help="Where to create the project."),
         force: bool = typer.Option(False, help="Write into a non-empty directory.")) -> None:
    """Create a project: ratchet.toml and a plain seed harness (reasoning-gym arithmetic on the embedded model)."""
    if directory.exists() and any(directory.iterdir()) and not force:
        fail(f"{directory} is not empty; choose a new directory or pass --force")
    shutil.copytree(TEMPLATE, directory, dirs_exist_ok=True)
    console.print(f"created {directory}/ratchet.toml and {directory}/harness/. Next: ratchet eval {directory}")
