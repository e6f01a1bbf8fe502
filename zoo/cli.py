"""The ``zoo`` command line: thin commands over the library functions users call from Python."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .errors import ZooError, check_choice

app = typer.Typer(help="Build, package, publish and load the RNN short-term-memory model zoo.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)


def _friendly(fn):
    """Report ZooError (and bad values) as one clear line and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ZooError as err:
            err_console.print(f"[bold red]error:[/] {err}")
            raise typer.Exit(2) from None

    return wrapper


def _version(value: bool):
    if value:
        console.print(f"zoo {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False):
    """rnn-stm-zoo command line."""


# ---------------------------------------------------------------- shared options
Preset = Annotated[str, typer.Option("--preset", "-p", help="sweep preset (see `zoo presets`)")]
Family = Annotated[Optional[str], typer.Option(help="restrict to one family")]
Lr = Annotated[Optional[list[float]], typer.Option("--lr", help="learning rate (repeatable)")]
Delay = Annotated[Optional[list[int]], typer.Option("--delay", help="delay in ms (repeatable)")]
Seeds = Annotated[Optional[int], typer.Option(help="seeds 0..N-1")]
Epochs = Annotated[Optional[int], typer.Option(help="replace the family's epoch rule")]
Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:1 or auto")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="networks per batch (default: 32 on CPU, from free memory on CUDA)")]


def _plan(preset, family, lr, delay, seeds, epochs, shard_size=None):
    from .build import plan_build

    return plan_build(preset, family=family, lrs=lr or None, delays=delay or None, seeds=seeds, epochs=epochs,
                      shard_size=shard_size)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("network-epochs  [cyan]{task.fields[nets]}[/] networks"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)


def _train(out: Path, plan, shard, device, batch_size, executor, address, label: bool):
    from .build import Build, format_bytes

    b = Build(out, plan)
    shards = plan.select(shard)
    est = plan.estimate_bytes()
    total_nets = sum(len(s) for s in shards)
    console.print(f"[bold]{plan.preset}[/]: {len(plan.configs)} networks in {len(plan.shards)} shards; "
                  f"running {len(shards)} shard(s) ({total_nets} networks) on {device} with executor {executor}. "
                  f"Estimated release size: {format_bytes(est['total'])} (weights {format_bytes(est['weights'])}, "
                  f"curves {format_bytes(est['curves'])} before compression).")
    total_epochs = sum(c.epochs for s in shards for c in s.configs)
    check_choice("executor", executor, ("local", "ray"))
    with _progress() as prog:
        task = prog.add_task("training", total=total_epochs, nets=f"0/{total_nets}")
        done_nets = [0]

        def on_shard(s, state):
            done_nets[0] += len(s)
            if state == "done":
                prog.advance(task, sum(c.epochs for c in s.configs))
            prog.update(task, nets=f"{done_nets[0]}/{total_nets}")

        def progress(n):
            prog.advance(task, n)

        if executor == "ray":
            from .executors import run_ray

            states = run_ray(b, shards, device=device, batch_size=batch_size, address=address, label=label,
                             progress=progress, on_shard=on_shard)
        else:
            from .executors import run_local

            states = run_local(b, shards, device=device, batch_size=batch_size, label=label, progress=progress,
                               on_shard=on_shard)
    locked = [k for k, v in states.items() if v == "locked"]
    if locked:
        console.print(f"[yellow]{len(locked)} shard(s) are being built by another worker:[/] {', '.join(locked[:10])}")
    return b


def outcome_table(df: pd.DataFrame, title: str = "outcomes") -> Table:
    """Counts of slow_point / limit_cycle / no_learning / unstable per (delay, learning rate)."""
    t = Table(title=title + "  (cells: slow_point / limit_cycle / no_learning / unstable)")
    lrs = sorted(df["lr"].unique(), reverse=True)
    t.add_column("delay ms", justify="right")
    for lr in lrs:
        t.add_column(f"lr {lr:.3g}", justify="center")
    for (fam, d), rows in df.groupby(["family", "delay_ms"]):
        cells = []
        for lr in lrs:
            r = rows[rows["lr"] == lr]["outcome"].value_counts()
            cells.append("/".join(str(int(r.get(k, 0))) for k in ("slow_point", "limit_cycle", "no_learning", "unstable"))
                         if len(rows[rows["lr"] == lr]) else "")
        t.add_row(f"{fam} {d}", *cells)
    return t


# ---------------------------------------------------------------- commands
@app.command()
@_friendly
def build(preset: Preset = "sample", family: Family = None, lr: Lr = None, delay: Delay = None, seeds: Seeds = None,
          epochs: Epochs = None, out: Annotated[Path, typer.Option(help="release folder")] = Path("zoo-release"),
          device: Device = "cpu", batch_size: BatchSize = None,
          shard: Annotated[Optional[str], typer.Option(help="only shard I/N (or a shard id); packaging is left to `zoo package`")] = None,
          executor: Annotated[str, typer.Option(help="local or ray")] = "local",
          address: Annotated[Optional[str], typer.Option(help="Ray cluster address (executor ray)")] = None,
          shard_size: Annotated[Optional[int], typer.Option(help="networks per shard (default: the preset's)")] = None):
    """Train -> label -> package a zoo (resumable: re-run the same command to finish an interrupted build)."""
    plan = _plan(preset, family, lr, delay, seeds, epochs, shard_size)
    b = _train(out, plan, shard, device, batch_size, executor, address, label=True)
    if shard is not None:
        console.print(f"shard(s) {shard} finished; when all are, run `zoo package {out}`")
        return
    df = b.package()
    console.print(outcome_table(df, f"{plan.preset}: {len(df)} networks"))
    console.print(f"release written to [bold]{out}[/]")


@app.command()
@_friendly
def train(preset: Preset = "sample", family: Family = None, lr: Lr = None, delay: Delay = None, seeds: Seeds = None,
          epochs: Epochs = None, out: Annotated[Path, typer.Option()] = Path("zoo-release"), device: Device = "cpu",
          batch_size: BatchSize = None, shard: Annotated[Optional[str], typer.Option()] = None,
          executor: Annotated[str, typer.Option()] = "local", address: Annotated[Optional[str], typer.Option()] = None,
          shard_size: Annotated[Optional[int], typer.Option()] = None):
    """Train shards only (no labels); then `zoo label` and `zoo package`."""
    plan = _plan(preset, family, lr, delay, seeds, epochs, shard_size)
    _train(out, plan, shard, device, batch_size, executor, address, label=False)


@app.command()
@_friendly
def label(source: Annotated[Path, typer.Argument(help="a build folder or a packaged release")],
          device: Device = "cpu", force: Annotated[bool, typer.Option(help="relabel labelled shards too")] = False):
    """Label trained networks (a build's shards, or re-label a packaged release without retraining)."""
    from .build import STATE_DIR, Build, relabel_release
    from .store import METADATA_PATH

    if (source / STATE_DIR / "plan.json").exists() and not (source / METADATA_PATH).exists():
        n = Build(source).label_shards(device, force=force)
        console.print(f"labelled {n} shard(s)")
    elif (source / METADATA_PATH).exists():
        df = relabel_release(source, device)
        console.print(outcome_table(df, f"relabelled {len(df)} networks"))
    else:
        raise ZooError(f"{source} is neither a build folder nor a zoo release")


@app.command()
@_friendly
def package(out: Annotated[Path, typer.Argument(help="the build folder")],
            partial: Annotated[bool, typer.Option(help="package even if some shards are missing")] = False):
    """Merge finished shards into the release (metadata, dataset card, manifest)."""
    from .build import Build

    df = Build(out).package(partial=partial)
    console.print(outcome_table(df, f"{len(df)} networks packaged"))


@app.command()
@_friendly
def info(source: Annotated[Optional[str], typer.Argument(help="folder or ORG/NAME[@REV]; default: the bundled sample")] = None):
    """Counts by family, outcome and delay."""
    from .api import load_zoo

    z = load_zoo(source, fetch=False)
    df = z.metadata
    console.print(f"{z}  {z.info.get('preset', '')}  label version {z.info.get('label_version', '?')}"
                  + ("  [yellow](partial)[/]" if z.info.get("partial") else ""))
    for col in ("family", "outcome", "delay_ms"):
        t = Table(title=f"by {col}")
        t.add_column(col)
        t.add_column("networks", justify="right")
        for k, v in df[col].value_counts(dropna=False).sort_index().items():
            t.add_row(str(k), str(v))
        console.print(t)


@app.command(name="ls")
@_friendly
def ls_(source: Annotated[Optional[str], typer.Argument()] = None, family: Family = None, delay: Delay = None,
        lr: Lr = None, mechanism: Annotated[Optional[str], typer.Option()] = None,
        outcome: Annotated[Optional[str], typer.Option()] = None, seed: Annotated[Optional[list[int]], typer.Option()] = None,
        limit: Annotated[int, typer.Option(help="rows to show (0 = all)")] = 50):
    """List networks matching filters."""
    from .api import load_zoo

    z = load_zoo(source, family=family, delay=delay or None, lr=lr or None, mechanism=mechanism, outcome=outcome,
                 seed=seed or None, fetch=False)
    cols = [c for c in ("net_id", "family", "delay_ms", "lr", "seed", "outcome", "psd_ratio", "final_accuracy")
            if c in z.metadata]
    t = Table(title=f"{len(z)} networks")
    for c in cols:
        t.add_column(c)
    shown = z.metadata if limit == 0 else z.metadata.head(limit)
    for _, r in shown.iterrows():
        t.add_row(*[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    console.print(t)


@app.command()
@_friendly
def presets():
    """List the sweep presets."""
    from .grids import grid_summary, list_presets, load_preset

    t = Table(title="presets")
    for c in ("name", "networks", "network-epochs", "description"):
        t.add_column(c)
    for name in list_presets():
        p = load_preset(name)
        s = grid_summary(p.configs())
        t.add_row(name, str(s["networks"]), f"{s['network_epochs']:.3g}", p.description)
    console.print(t)


def run():  # pragma: no cover - console entry point for `python -m zoo`
    app(prog_name="zoo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
