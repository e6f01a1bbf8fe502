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


def friendly(fn):
    """Report ZooError (and bad values) as one clear line and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ZooError as err:
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)  # one unwrapped line
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


def print_power(rows: list[dict]) -> None:
    """The power planner's table (:func:`zoo.analysis.power`): per design and boundary, the expected width
    of the joint fit's 95 % interval of the exponent."""
    if not rows:
        console.print("power: no design with a delay axis in this plan")
        return
    for design in dict.fromkeys(r["design"] for r in rows):
        t = Table(title=f"joint fit's expected precision on {design} ({rows[0]['draws']} synthetic zoos, truth "
                        "beta_LC = 2.5, beta_SP = 4.5)")
        for c in ("exponent", "median CI width", "10-90 % of widths", "median |error|", "CI excludes an end of theory's range",
                  "no exponent"):
            t.add_column(c, overflow="fold")
        for r in rows:
            if r["design"] == design:
                t.add_row("beta_LC" if r["kind"] == "critical_delay" else "beta_SP", f"{r['median_width']:.2f}",
                          f"{r['width_p10']:.2f} - {r['width_p90']:.2f}", f"{r['median_abs_error']:.2f}",
                          f"{r['excludes_an_end']:.0%} of draws", f"{r['no_exponent']:.0%} of draws")
        console.print(t)
