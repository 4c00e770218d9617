"""Progress bars and messages. Everything goes to stderr, so `--json` output stays clean."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# in logs and CI (not a terminal) use wide lines rather than rich's 80-column default
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)


def info(message: str) -> None:
    console.print(message)


def progress_bar(*, unit_column: bool = True, transient: bool = False) -> Progress:
    """A rich progress bar: description, bar, done/total, %, extra fields, elapsed, ETA.

    Tasks take a `stats` field, shown after the bar (e.g. "loss 2.31 | 12,300 tok/s").
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(bar_width=30)]
    if unit_column:
        columns.append(MofNCompleteColumn())
    columns += [TaskProgressColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    return Progress(*columns, console=console, transient=transient, refresh_per_second=4)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_count(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"
