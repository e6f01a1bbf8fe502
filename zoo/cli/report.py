"""How the ``zoo`` commands report: the consoles they print with, one-line errors (:func:`friendly`), the
training progress bar, outcome tables and machine-readable (CSV/JSON) output."""

from __future__ import annotations

import functools
import sys

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..errors import ZooError

#: what the commands print with (tests replace it to fix the width)
console = Console()
err_console = Console(stderr=True)


def _line(text: str) -> str:
    """``text`` printable on any console: undecodable bytes of a path (surrogate escapes) shown as ``\\x..``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe_error(err: BaseException) -> str | None:
    """The one line a command prints for ``err``, or None for an unexpected error (a bug: its traceback)."""
    if isinstance(err, ZooError):
        return str(err)
    if isinstance(err, OSError) and err.errno is not None:  # the operating system refused: name the path
        where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
        return (f"{where + ': ' if where else ''}{err.strerror or err}. Check the path, its permissions "
                "(is it yours and writable?) and the free disk space, then run the command again (a build resumes)")
    if isinstance(err, MemoryError):
        return ("not enough memory for this request (too many networks or seeds at once?): ask for fewer, "
                "or split the build with --shard")
    if isinstance(err, UnicodeError):
        return f"a path or value that is not valid text ({err}); rename it"
    return None


def friendly(fn):
    """Report ZooError, operating-system errors (a full disk, a read-only folder) and oversized requests as
    one clear line and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ZooError, OSError, MemoryError, UnicodeError) as err:
            line = describe_error(err)
            if line is None:
                raise
            err_console.print(f"[bold red]error:[/] {escape(_line(line))}", soft_wrap=True)  # one unwrapped line
            raise typer.Exit(2) from None

    return wrapper


def training_progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("network-epochs  [cyan]{task.fields[nets]}[/] networks"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)


def outcome_table(df: pd.DataFrame, title: str = "outcomes") -> Table:
    """Counts of slow_point / limit_cycle / no_learning / unstable per (delay, learning rate)."""
    t = Table(title=title + "  (cells: slow_point / limit_cycle / no_learning / unstable)")
    lrs = sorted(df["lr"].unique(), reverse=True)
    t.add_column("family, delay ms", justify="right", no_wrap=True)
    for lr in lrs:
        t.add_column(f"lr {lr:.3g}", justify="center", no_wrap=True)
    for (fam, d), rows in df.groupby(["family", "delay_ms"]):
        cells = []
        for lr in lrs:
            r = rows[rows["lr"] == lr]["outcome"].value_counts()
            cells.append("/".join(str(int(r.get(k, 0))) for k in ("slow_point", "limit_cycle", "no_learning", "unstable"))
                         if len(rows[rows["lr"] == lr]) else "")
        t.add_row(f"{fam} {d}", *cells)
    return t


def print_outcomes(df: pd.DataFrame, title: str) -> None:
    """Print :func:`outcome_table` wide enough for every learning-rate column (no truncated cells)."""
    width = 30 + 11 * df["lr"].nunique()
    Console(width=max(console.width, width)).print(outcome_table(df, title))


def emit(df: pd.DataFrame, fmt: str) -> None:
    """Print ``df`` as CSV or JSON records on stdout (no wrapping, nothing cut)."""
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    else:
        sys.stdout.write(df.to_json(orient="records", indent=1) + "\n")
