"""How the ``zoo`` commands report: the consoles they print with, one-line errors (:class:`FriendlyErrors`, the app's one handler), the
training progress bar, tables that fit the terminal, outcome tables and machine-readable (CSV/JSON) output.

Tables never wrap a net id or a number: such cells are ``no_wrap``, and on a terminal too narrow for every
column the least important columns are dropped (:func:`fitted_table`, with a note saying which) or, for the
outcome table, its learning-rate columns are split over several tables (:func:`print_outcomes`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from ..errors import ZooError
from ..labels import OUTCOME_DISPLAY_ORDER as CELL_ORDER

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


#: ``zoo --debug``: errors show their traceback (kept in the click context's ``meta``)
DEBUG_KEY = "zoo.debug"


class FriendlyErrors(TyperGroup):
    """The ``zoo`` app's one error handler: ZooError, operating-system errors (a full disk, a read-only folder)
    and oversized requests of any command become one clear line and exit 2, instead of a traceback
    (``zoo --debug COMMAND`` shows it); any other error is a bug and keeps its traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ZooError, OSError, MemoryError, UnicodeError) as err:
            line = describe_error(err)
            if line is None or ctx.meta.get(DEBUG_KEY):
                raise
            err_console.print(f"[bold red]error:[/] {escape(_line(line))}", soft_wrap=True)  # one unwrapped line
            raise typer.Exit(2) from None


def training_progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("network-epochs  [cyan]{task.fields[nets]}[/] networks"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)


def outcome_table(df: pd.DataFrame, title: str = "outcomes", lrs: Sequence[float] | None = None) -> Table:
    """Counts of slow_point / limit_cycle / no_learning / unstable per (delay, learning rate) (``lrs``: the
    learning-rate columns, default all of ``df``'s, largest first)."""
    t = Table(title=title + f"  (cells: {' / '.join(CELL_ORDER)})")
    lrs = sorted(df["lr"].unique(), reverse=True) if lrs is None else list(lrs)
    t.add_column("family, delay ms", justify="right", no_wrap=True)
    for lr in lrs:
        t.add_column(f"lr {lr:.3g}", justify="center", no_wrap=True)
    for (fam, d), rows in df.groupby(["family", "delay_ms"]):
        cells = []
        for lr in lrs:
            r = rows[rows["lr"] == lr]["outcome"].value_counts()
            cells.append("/".join(str(int(r.get(k, 0))) for k in CELL_ORDER) if len(rows[rows["lr"] == lr]) else "")
        t.add_row(f"{fam} {d}", *cells)
    return t


def _fits(table: Table, con: Console) -> bool:
    """Whether a table of unwrappable cells fits ``con`` at its natural width."""
    return Measurement.get(con, con.options.update_width(10**6), table).maximum <= con.width


def print_outcomes(df: pd.DataFrame, title: str, con: Console | None = None) -> None:
    """Print :func:`outcome_table`; on a terminal too narrow for every learning-rate column, as several tables
    of consecutive learning rates (no cell is cut or wrapped)."""
    con = con or console
    lrs = sorted(df["lr"].unique(), reverse=True)
    parts: list[list[float]] = []
    for lr in lrs:
        if parts and _fits(outcome_table(df, title, parts[-1] + [lr]), con):
            parts[-1].append(lr)
        else:
            parts.append([lr])
    for i, part in enumerate(parts):
        con.print(outcome_table(df, title + (f" ({i + 1}/{len(parts)})" if len(parts) > 1 else ""), part))


@dataclass(frozen=True)
class Column:
    """A column of :func:`fitted_table`: ``text`` cells may wrap at spaces (free text), others never wrap (ids,
    numbers); on a narrow terminal columns are dropped lowest ``priority`` first (the rightmost of equals
    first), ``keep`` columns never."""

    name: str
    text: bool = False
    keep: bool = False
    justify: str = "left"
    priority: int = 0


def fitted_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]],
                 con: Console | None = None) -> tuple[Table, list[str]]:
    """A table that fits ``con``'s width: net ids and numbers never wrap; if the table cannot fit, columns are
    left out (see :class:`Column`). Returns the table and the names of the columns left out."""
    con = con or console
    plain = [[Text.from_markup(str(cell)) for cell in r] for r in rows]

    def need(i: int) -> int:  # the narrowest column i can be: its longest word (text) or longest cell
        cells = [columns[i].name] + [r[i].plain for r in plain]
        return max(max((len(w) for w in c.split()), default=0) if columns[i].text else len(c) for c in cells)

    shown = list(range(len(columns)))
    droppable = sorted((i for i, c in enumerate(columns) if not c.keep), key=lambda i: (columns[i].priority, -i),
                       reverse=True)
    while droppable and 1 + sum(need(i) + 3 for i in shown) > con.width:  # 3: the padding and a border
        shown.remove(droppable.pop())
    t = Table(title=title)
    for i in shown:
        c = columns[i]
        t.add_column(c.name, justify=c.justify, no_wrap=not c.text, overflow="fold", min_width=need(i))
    for r in rows:
        t.add_row(*[r[i] for i in shown])
    return t, [c.name for i, c in enumerate(columns) if i not in shown]


def print_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    """Print :func:`fitted_table` and say which columns a narrow terminal left out."""
    table, dropped = fitted_table(title, columns, rows)
    console.print(table)
    if dropped:
        console.print(f"(left out to fit {console.width} columns: {', '.join(dropped)}; use a wider terminal or "
                      "--format csv)", highlight=False)


def print_facts(title: str, facts: Sequence[tuple[str, str]]) -> None:
    """``title`` then one ``name  value`` line per fact; a long value wraps at spaces inside its own column."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    for name, value in facts:
        grid.add_row(name, value)
    console.print(title, highlight=False, soft_wrap=True)
    console.print(Padding(grid, (0, 0, 0, 2), expand=False), highlight=False)


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
        cols = [Column("exponent", keep=True)] + [
            Column(c, text=True, keep=keep) for c, keep in (("median CI width", True), ("10-90 % of widths", False),
                                                            ("median |error|", False),
                                                            ("CI excludes an end of theory's range", False),
                                                            ("no exponent", False))]
        rows_ = [("beta_LC" if r["kind"] == "critical_delay" else "beta_SP", f"{r['median_width']:.2f}",
                  f"{r['width_p10']:.2f}-{r['width_p90']:.2f}", f"{r['median_abs_error']:.2f}",
                  f"{r['excludes_an_end']:.0%}", f"{r['no_exponent']:.0%}") for r in rows if r["design"] == design]
        print_table(f"joint fit's expected precision on {design} ({rows[0]['draws']} synthetic zoos, truth "
                    "beta_LC = 2.5, beta_SP = 4.5; the last two columns: share of draws)", cols, rows_)
