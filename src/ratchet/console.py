"""Terminal output shared by the commands: a progress bar and plain tables a person can read."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

# Piped or captured output (CI logs, `| tee`) gets no terminal width; rich would wrap tables at 80
# columns, which folds `ratchet log` into unreadable strips. Files are wide; $COLUMNS still wins.
_WIDTH = None if os.environ.get("COLUMNS") else 160
console = Console(stderr=False)
if not console.is_terminal and _WIDTH:
    console = Console(stderr=False, width=_WIDTH)
err_console = Console(stderr=True)


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """Yield a callback(done, total) that drives one rich progress bar on stderr."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=err_console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def table(title: str, columns: list[str], rows: list[list[object]]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    return t


def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def score_pm(mean: float, se: float) -> str:
    return f"{100 * mean:.1f}% ± {100 * se:.1f}"
