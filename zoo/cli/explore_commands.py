"""``zoo explore``: write the browser explorer of a zoo (a thin call of :func:`zoo.explore.build_explorer`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import report
from .options import Lr


def explore(source: Annotated[str | None, typer.Argument(help="release folder, ORG/NAME or ORG/NAME@REV, or a "
                                                              "metadata .parquet table (cells only); default: the bundled sample")] = None,
            out: Annotated[Path, typer.Option("--out", "-o", help="folder to write (open its index.html)")] = Path("explorer"),
            family: Annotated[list[str] | None, typer.Option(help="family or pooled panel, e.g. no-post (repeatable)")] = None,
            delay_min: Annotated[float | None, typer.Option("--delay-min", help="shortest delay (ms)")] = None,
            delay_max: Annotated[float | None, typer.Option("--delay-max", help="longest delay (ms)")] = None,
            lr: Lr = None,
            mechanism: Annotated[list[str] | None, typer.Option(help="limit_cycle or slow_point (repeatable)")] = None,
            outcome: Annotated[list[str] | None, typer.Option(help="no_learning, unstable, limit_cycle or slow_point "
                                                                    "(repeatable)")] = None,
            per_cell: Annotated[int | None, typer.Option("--per-cell", help="networks per cell with precomputed "
                                                         "panels (curves, outputs, trajectory); 0: none; default: "
                                                         "zoo.explore.DEFAULT_PER_CELL")] = None,
            max_points: Annotated[int | None, typer.Option("--max-points", help="points per series at most; default: "
                                                           "zoo.explore.DEFAULT_MAX_POINTS")] = None,
            n_boot: Annotated[int, typer.Option("--n-boot", help="bootstrap replicates of the exponent intervals")] = 200):
    """Write a self-contained explorer (OUT/index.html, no server, nothing fetched): phase diagrams with the fitted
    boundaries, scaling, each cell's networks and load_zoo call, and per-network dynamics."""
    from ..explore import DEFAULT_MAX_POINTS, DEFAULT_PER_CELL, build_explorer

    delay = None if delay_min is None and delay_max is None else (delay_min, delay_max)
    with Progress(TextColumn("[bold]simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("networks"),
                  TimeElapsedColumn(), console=report.console, transient=True) as bar:
        task = bar.add_task("explore", total=None)
        rep = build_explorer(source, out, family=family or None, delay=delay, lr=lr or None,
                             mechanism=mechanism or None, outcome=outcome or None,
                             per_cell=DEFAULT_PER_CELL if per_cell is None else per_cell,
                             max_points=DEFAULT_MAX_POINTS if max_points is None else max_points, n_boot=n_boot,
                             progress=lambda done, total: bar.update(task, completed=done, total=total))
    for note in rep.notes:
        report.console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    report.console.print(escape(rep.summary()), soft_wrap=True)
