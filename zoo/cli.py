"""The ``zoo`` command line: thin commands over the library functions users call from Python."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

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

from . import layout
from .errors import ZooError, check_choice
from .version import __version__

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
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)  # one unwrapped line
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
Preset = Annotated[str | None, typer.Option("--preset", "-p", help="sweep preset (see `zoo presets`); default: the "
                                             "paper definition of --family, else `sample`")]
Family = Annotated[str | None, typer.Option(help="restrict to one family")]
Lr = Annotated[list[float] | None, typer.Option("--lr", help="learning rate (repeatable)")]
Delay = Annotated[list[int] | None, typer.Option("--delay", help="delay in ms (repeatable)")]
Seeds = Annotated[int | None, typer.Option(help="seeds 0..N-1")]
Epochs = Annotated[int | None, typer.Option(help="replace the family's epoch rule")]
Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:1 or auto")]
BatchSize = Annotated[int | None, typer.Option("--batch-size", help="networks per batch (default: 32 on CPU, from free memory on CUDA)")]


Snapshots = Annotated[str | None, typer.Option(help="also store weights along training: log (epochs 0, 1, 2, "
                                                   "5, 10, ..., final); default: none")]


def _plan(preset, family, lr, delay, seeds, epochs, shard_size=None, snapshots=None):
    from .plan import plan_build

    return plan_build(preset, family=family, lrs=lr or None, delays=delay or None, seeds=seeds, epochs=epochs,
                      shard_size=shard_size, snapshots=snapshots)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("network-epochs  [cyan]{task.fields[nets]}[/] networks"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console)


def _train(out: Path, plan, shard, device, batch_size, executor, address, label: bool):
    from .build import Build
    from .plan import format_bytes, free_bytes

    b = Build(out, plan)
    shards = plan.select(shard)
    est = plan.estimate_bytes()
    total_nets = sum(len(s) for s in shards)
    where = device
    if executor == "local":  # which kernels train here (the Triton kernels are checked now, on a GPU)
        import torch

        from . import kernels
        from .train import resolve_device

        where = f"{device} ({kernels.backend_for(torch.empty(0, device=resolve_device(device)))} kernels)"
    console.print(f"[bold]{plan.describe()}[/]: {len(plan.configs)} networks in {len(plan.shards)} shards; "
                  f"running {len(shards)} shard(s) ({total_nets} networks) on {where} with executor {executor}. "
                  f"Estimated release size: {format_bytes(est['total'])} (weights {format_bytes(est['weights'])}, "
                  f"curves {format_bytes(est['curves'])} before compression).")
    for rule in plan.epoch_rules():
        console.print(f"  {rule}")
    if free_bytes(out) < est["total"]:
        console.print(f"[yellow]warning:[/] only {format_bytes(free_bytes(out))} free at {out}")
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


# ---------------------------------------------------------------- commands
@app.command()
@_friendly
def build(preset: Preset = None, family: Family = None, lr: Lr = None, delay: Delay = None, seeds: Seeds = None,
          epochs: Epochs = None, out: Annotated[Path, typer.Option(help="release folder")] = Path("zoo-release"),
          device: Device = "cpu", batch_size: BatchSize = None,
          shard: Annotated[str | None, typer.Option(help="only shard I/N (or a shard id); packaging is left to `zoo package`")] = None,
          executor: Annotated[str, typer.Option(help="local or ray")] = "local",
          address: Annotated[str | None, typer.Option(help="Ray cluster address (executor ray)")] = None,
          shard_size: Annotated[int | None, typer.Option(help="networks per shard (default: the preset's)")] = None,
          snapshots: Snapshots = None):
    """Train -> label -> package a zoo (resumable: re-run the same command to finish an interrupted build)."""
    plan = _plan(preset, family, lr, delay, seeds, epochs, shard_size, snapshots)
    b = _train(out, plan, shard, device, batch_size, executor, address, label=True)
    if shard is not None:
        console.print(f"shard(s) {shard} finished; when all are, run `zoo package {out}`")
        return
    df = b.package()
    print_outcomes(df, f"{plan.describe()}: {len(df)} networks")
    console.print(f"release written to [bold]{out}[/]")


@app.command()
@_friendly
def train(preset: Preset = None, family: Family = None, lr: Lr = None, delay: Delay = None, seeds: Seeds = None,
          epochs: Epochs = None, out: Annotated[Path, typer.Option()] = Path("zoo-release"), device: Device = "cpu",
          batch_size: BatchSize = None, shard: Annotated[str | None, typer.Option()] = None,
          executor: Annotated[str, typer.Option()] = "local", address: Annotated[str | None, typer.Option()] = None,
          shard_size: Annotated[int | None, typer.Option()] = None, snapshots: Snapshots = None):
    """Train shards only (no labels); then `zoo label` and `zoo package`."""
    plan = _plan(preset, family, lr, delay, seeds, epochs, shard_size, snapshots)
    _train(out, plan, shard, device, batch_size, executor, address, label=False)


@app.command()
@_friendly
def label(source: Annotated[Path, typer.Argument(help="a build folder or a packaged release")],
          device: Device = "cpu", force: Annotated[bool, typer.Option(help="relabel labelled shards too")] = False):
    """Label trained networks (a build's shards, or re-label a packaged release without retraining)."""
    from .build import Build
    from .layout import STATE_DIR
    from .release import relabel_release
    from .store import METADATA_PATH

    if (source / STATE_DIR / "plan.json").exists() and not (source / METADATA_PATH).exists():
        n = Build(source).label_shards(device, force=force)
        console.print(f"labelled {n} shard(s)")
    elif (source / METADATA_PATH).exists():
        df = relabel_release(source, device)
        print_outcomes(df, f"relabelled {len(df)} networks")
    else:
        raise ZooError(f"{source} is neither a build folder nor a zoo release")


@app.command()
@_friendly
def package(out: Annotated[Path, typer.Argument(help="the build folder")],
            partial: Annotated[bool, typer.Option(help="package even if some shards are missing")] = False):
    """Merge finished shards into the release (metadata, dataset card, manifest)."""
    from .build import Build

    df = Build(out).package(partial=partial)
    print_outcomes(df, f"{len(df)} networks packaged")


@app.command(name="plan")
@_friendly
def plan_(preset: Preset = None, family: Family = None, lr: Lr = None, delay: Delay = None, seeds: Seeds = None,
          epochs: Epochs = None, shard_size: Annotated[int | None, typer.Option(help="networks per shard")] = None,
          out: Annotated[Path | None, typer.Option(help="also report free disk space there")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="print JSON (n_shards, n_networks, ...)")] = False,
          snapshots: Snapshots = None):
    """Shards, networks, network-epochs and the release size estimate of a build (trains nothing)."""
    import json

    from .plan import format_bytes, plan_summary

    s = plan_summary(_plan(preset, family, lr, delay, seeds, epochs, shard_size, snapshots), out)
    if as_json:
        print(json.dumps(s, indent=1))
        return
    est = s["estimate_bytes"]
    console.print(f"[bold]{s['built_from']}[/]: {s['n_shards']} shards of up to {s['shard_size']} "
                  f"networks, {s['n_networks']} networks, {s['network_epochs']:,} network-epochs; estimated release "
                  f"size {format_bytes(est['total'])} (weights {format_bytes(est['weights'])}, curves "
                  f"{format_bytes(est['curves'])} before compression"
                  + (f", snapshots {format_bytes(est['snapshots'])}" if "snapshots" in est else "") + ")"
                  + (f"; free at {out}: {format_bytes(s['free_bytes'])}" if out is not None else ""))
    for rule in s["epoch_rules"]:
        console.print(f"  {rule}")


@app.command()
@_friendly
def verify(source: Annotated[str | None, typer.Argument(help="folder or ORG/NAME[@REV]; default: the bundled sample")] = None,
           sample: Annotated[int, typer.Option(help="networks to retrain (0 = all)")] = 4,
           seed: Annotated[int, typer.Option(help="seed of the random choice")] = 0,
           net_id: Annotated[list[str] | None, typer.Option("--net-id", help="retrain these (repeatable)")] = None,
           device: Device = "cpu",
           atol: Annotated[float, typer.Option(help="tolerance for weights and curves (0 = bitwise)")] = 0.0):
    """Retrain a random sample of networks from their recorded config and seed; compare weights, curves, labels."""
    from .verify import expected_result, verify_zoo

    kind, why = expected_result(source, net_ids=net_id or None, device=device)
    console.print(f"[bold]expected here:[/] {kind}" + (" (weights, curves and labels equal to the last bit)"
                                                       if kind == "bitwise" else " (small differences, see "
                                                       "README Reproducibility; pass --atol)") + f": {escape(why)}",
                  soft_wrap=True)
    rep = verify_zoo(source, sample=sample, seed=seed, net_ids=net_id or None, device=device, atol=atol)
    t = Table(title=f"retrained {len(rep.checks)} of {rep.n_networks} networks")
    for c in ("net_id", "weights", "max |dw|", "max |d curve|", "labels", "result"):
        t.add_column(c, overflow="fold")  # wrapped, never cut
    for c in rep.checks:
        t.add_row(c.net_id, "bitwise" if c.weights_bitwise else "differ", f"{c.weights_max_abs_diff:.3g}",
                  f"{max(c.curves_max_abs_diff.values(), default=0.0):.3g}",
                  ("equal" if not c.label_diffs else "differ") if c.labels_checked else "skipped",
                  "[green]OK[/]" if c.ok else "[bold red]MISMATCH[/]: " + escape("; ".join(c.problems)))
    console.print(t)
    for note in rep.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(escape(rep.summary()))
    if not rep.ok:
        raise typer.Exit(1)


OutFormat = Annotated[str, typer.Option("--format", help="table, csv or json (machine-readable)")]


def _emit(df: pd.DataFrame, fmt: str) -> None:
    """Print ``df`` as CSV or JSON records on stdout (no wrapping, nothing cut)."""
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    else:
        sys.stdout.write(df.to_json(orient="records", indent=1) + "\n")


@app.command()
@_friendly
def info(source: Annotated[str | None, typer.Argument(help="folder or ORG/NAME[@REV]; default: the bundled sample")] = None,
         fmt: OutFormat = "table"):
    """Counts by family, outcome and delay, and the build provenance."""
    import json

    from .api import load_zoo
    from .provenance import describe

    check_choice("format", fmt, ("table", "csv", "json"))
    z = load_zoo(source, fetch=False)
    df = z.metadata
    counts = {col: {str(k): int(v) for k, v in df[col].value_counts(dropna=False).sort_index().items()}
              for col in ("family", "outcome", "delay_ms") if col in df}
    if fmt == "json":
        print(json.dumps({"source": z.source.description, "n_networks": len(z), "info": z.info, "counts": counts},
                         indent=1, default=str))
        return
    if fmt == "csv":
        _emit(pd.DataFrame([(c, k, v) for c, kv in counts.items() for k, v in kv.items()],
                           columns=["column", "value", "networks"]), fmt)
        return
    console.print(f"{z}  {z.info.get('preset', '')}  label version {z.info.get('label_version', '?')}"
                  + ("  [yellow](partial)[/]" if z.info.get("partial") else ""), soft_wrap=True)
    for col, kv in counts.items():
        t = Table(title=f"by {col}")
        t.add_column(col, overflow="fold")
        t.add_column("networks", justify="right")
        for k, v in kv.items():
            t.add_row(k, str(v))
        console.print(t)
    for label, value in describe(z.info.get("provenance") or {}):
        console.print(f"[bold]{label}:[/] {escape(value)}", soft_wrap=True, highlight=False)


@app.command(name="ls")
@_friendly
def ls_(source: Annotated[str | None, typer.Argument()] = None, family: Family = None, delay: Delay = None,
        lr: Lr = None, mechanism: Annotated[str | None, typer.Option()] = None,
        outcome: Annotated[str | None, typer.Option()] = None, seed: Annotated[list[int] | None, typer.Option()] = None,
        limit: Annotated[int, typer.Option(help="rows to show (0 = all)")] = 50, fmt: OutFormat = "table"):
    """List networks matching filters (``--format csv|json``: every metadata column, machine-readable)."""
    from .api import load_zoo

    check_choice("format", fmt, ("table", "csv", "json"))
    z = load_zoo(source, family=family, delay=delay or None, lr=lr or None, mechanism=mechanism, outcome=outcome,
                 seed=seed or None, fetch=False)
    shown = z.metadata if limit == 0 else z.metadata.head(limit)
    if fmt != "table":
        _emit(shown, fmt)
        return
    cols = [c for c in ("net_id", "family", "delay_ms", "lr", "seed", "outcome", "psd_ratio", "final_accuracy")
            if c in z.metadata]
    t = Table(title=f"{len(z)} networks")
    for c in cols:
        t.add_column(c, overflow="fold")  # wrapped, never cut: a net_id must stay whole
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


@app.command(name="import-reference")
@_friendly
def import_reference_(src: Annotated[Path, typer.Argument(help="the authors' results folder (lr*_delay_*/process_*/), or its parent")],
                      family: Annotated[str, typer.Option(help="the family these networks belong to")],
                      out: Annotated[Path, typer.Option(help="new release folder")],
                      label: Annotated[bool, typer.Option(help="recompute our labels (simulates learned networks)")] = True,
                      device: Device = "cpu",
                      show: Annotated[int, typer.Option(help="problems to print (0 = all)")] = 50):
    """Import the authors' original per-network files into a release (their label kept as reference_outcome)."""
    from .reference import import_reference

    rep = import_reference(src, family, out, label=label, device=device,
                           progress=lambda sid, n: console.print(f"  {sid}: {n} networks"))
    console.print(rep.summary(), soft_wrap=True)
    if rep.problems:  # one block per problem, the folder's full relative path on its own line (never cut)
        shown = rep.problems if show == 0 else rep.problems[:show]
        console.print(f"[bold]{len(rep.problems)} problem(s)[/] (all in {out}/zoo.json import_problems):",
                      soft_wrap=True)
        for p in shown:
            console.print(escape(p["folder"]), soft_wrap=True, highlight=False)
            console.print(f"    problem: {escape(p['problem'])}", soft_wrap=True, highlight=False)
            console.print(f"    action:  {escape(p['action'])}", soft_wrap=True, highlight=False)
    console.print(f"reference labels: {rep.reference_outcomes}; ours: {rep.outcomes}")


@app.command()
@_friendly
def push(folder: Annotated[Path, typer.Argument(help="a release folder")],
         repo: Annotated[str, typer.Option("--repo", help="Hub dataset ORG/NAME")],
         revision: Annotated[str | None, typer.Option(help="tag the upload (e.g. v1.0)")] = None,
         private: Annotated[bool, typer.Option(help="create the dataset private")] = False,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="list the files and size; upload nothing")] = False):
    """Upload a release folder to a Hub dataset (manifest verified first)."""
    from . import hub
    from .plan import format_bytes

    files = hub.push(folder, repo, revision=revision, private=private, dry_run=dry_run)
    total = sum((folder / f).stat().st_size for f in files)
    if dry_run:
        for f in files:
            console.print(f"{(folder / f).stat().st_size:>14,d}  {f}", highlight=False)
        console.print(f"dry run: {len(files)} files, {format_bytes(total)} ({total:,d} bytes) would be uploaded "
                      f"to {repo}" + (f" and tagged {revision}" if revision else ""))
    else:
        console.print(f"uploaded {len(files)} files ({format_bytes(total)}) to {repo}"
                      + (f", tagged {revision}" if revision else ""))


@app.command()
@_friendly
def pull(repo: Annotated[str, typer.Argument(help="Hub dataset ORG/NAME[@REV]")], family: Family = None,
         delay: Delay = None, lr: Lr = None, mechanism: Annotated[str | None, typer.Option()] = None,
         outcome: Annotated[str | None, typer.Option()] = None,
         seed: Annotated[list[int] | None, typer.Option()] = None,
         out: Annotated[Path | None, typer.Option(help="write a (partial) release folder here")] = None,
         revision: Annotated[str | None, typer.Option(help="tag, branch or commit")] = None,
         snapshots: Annotated[bool, typer.Option(help="also the stored snapshots of the selected networks")] = False):
    """Download a release (or the shards of the networks matching the filters) into the Hub cache or --out."""
    from . import hub
    from .api import select
    from .plan import format_bytes

    rid, _ = hub.parse_repo_id(repo)
    blobs = hub.hub_cache_dir() / f"datasets--{rid.replace('/', '--')}" / "blobs"
    before = {b.name for b in blobs.iterdir()} if blobs.is_dir() else set()
    src = hub.HubSource(repo, revision)
    meta = src.read_metadata()
    filters = dict(family=family, delay=delay or None, lr=lr or None, mechanism=mechanism, outcome=outcome,
                   seed=seed or None)
    ids = None
    if any(v is not None for v in filters.values()):
        ids = list(select(meta, **filters)["net_id"])
        if not ids:
            raise ZooError(f"no network of {src.label} matches the filters")
    manifest = src.read_manifest()
    files = sorted([r for r in manifest if not r.startswith(hub.SHARD_DIRS)]
                   + hub.files_for_networks(meta, ids, snapshots=snapshots)) + [layout.MANIFEST_PATH]
    path = hub.pull(repo, revision=revision, out=out, net_ids=ids, snapshots=snapshots)
    sizes = {f: (src.root / f).stat().st_size for f in files}
    new = [f for f in files if (src.root / f).resolve().name not in before]
    n_sel = len(ids) if ids is not None else len(meta)
    console.print(f"{src.label} (commit {src.commit[:12]}): {n_sel} of {len(meta)} networks, {len(files)} files, "
                  f"{format_bytes(sum(sizes.values()))}; downloaded now: {len(new)} files, "
                  f"{format_bytes(sum(sizes.get(f, 0) for f in new))}")
    for f in files:
        console.print(f"{sizes.get(f, 0):>14,d}  {f}" + ("" if f in new else "  (cached)"), highlight=False)
    console.print(f"{'release folder' if out else 'cache snapshot'}: {path}")


@app.command()
@_friendly
def figures(source: Annotated[str | None, typer.Argument(help="folder or ORG/NAME[@REV]; default: the bundled sample")] = None,
            family: Family = None,
            out: Annotated[Path, typer.Option(help="folder for the figures")] = Path("figures"),
            fmt: Annotated[list[str] | None, typer.Option("--format", help="png, pdf or svg (repeatable; default: png and pdf)")] = None,
            n_boot: Annotated[int, typer.Option("--n-boot", help="bootstrap replicates for the exponents' CIs")] = 200,
            method: Annotated[str, typer.Option(help="boundary fits: package (default) or paper (the authors' "
                                                     "figure scripts)")] = "package"):
    """Phase diagrams, critical-delay scaling, psd_ratio histograms and example trajectories, per family and per
    pooled panel (no-post = nopost + nopost-narrow, as in the paper); --family takes a family or a panel."""
    from .analysis.phases import METHODS
    from .figures import make_figures

    check_choice("method", method, METHODS)
    rep = make_figures(source, out, family=family, formats=tuple(fmt or ("png", "pdf")), n_boot=n_boot,
                       method=method, log=lambda line: console.print(line, highlight=False))
    console.print(f"{len(rep.written)} file(s) written to {out}; {len(rep.skipped)} figure(s) skipped")


@app.command()
@_friendly
def kernels(device: Device = "cpu",
            require_c: Annotated[bool, typer.Option("--require-c", help="exit 2 if the C kernels cannot be built")] = False,
            as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False):
    """Build the C training kernels now (builders only; reading a zoo needs no compiler) and report which
    backend trains on DEVICE, with its compiler, matrix products and cache folder."""
    import json

    from .kernels import kernels_report
    from .train import resolve_device

    rep = kernels_report(resolve_device(device))
    if as_json:
        print(json.dumps(rep, indent=1, default=str))
    else:
        c = rep["c"]
        console.print(f"training on {rep['device']}: [bold]{rep['backend']}[/] kernels (requested: {rep['requested']})",
                      highlight=False)
        if c["available"]:
            console.print(f"C kernels: {c['path']}\n  compiler: {c['compiler']}; OpenMP: {c['openmp']}; matrix "
                          f"products: {c['gemm']}", highlight=False)
        else:
            console.print(f"[yellow]{escape(rep['advice'])}[/]", highlight=False)
        if "triton" in rep:
            console.print(f"Triton: {rep['triton']}", highlight=False)
    if require_c and not rep["c"]["available"]:
        raise typer.Exit(2)


@app.command()
@_friendly
def diagnose(source: Annotated[str | None, typer.Argument(help="folder or ORG/NAME[@REV]; default: the bundled sample")] = None,
             family: Family = None, delay: Delay = None, lr: Lr = None,
             learned: Annotated[bool | None, typer.Option("--learned/--all-outcomes", help="only learned networks")] = None,
             write: Annotated[bool, typer.Option(help="store diagnostics/networks.parquet in the release folder and refresh its manifest")] = False,
             out: Annotated[Path | None, typer.Option(help="also save the table (.parquet or .csv)")] = None,
             device: Device = "cpu",
             chunk_size: Annotated[int, typer.Option("--chunk-size", help="networks simulated together")] = 32):
    """Dynamics diagnostics per network (fixed points, limit cycles, dyn_mechanism) and their agreement
    with the reference labels."""
    from .analysis import diagnose_zoo, mechanism_agreement, mechanism_confusion, write_diagnostics
    from .api import LocalSource, load_zoo

    z = load_zoo(source, family=family, delay=delay or None, lr=lr or None, learned=learned)
    if write and not isinstance(z.source, LocalSource):
        raise ZooError("--write needs a local release folder (download it with `zoo pull --out DIR` first)")
    with Progress(TextColumn("[bold]diagnosing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as prog:
        task = prog.add_task("diagnose", total=len(z))
        df = diagnose_zoo(z, chunk_size=chunk_size, device=None if device == "cpu" else device,
                          progress=lambda n: prog.advance(task, n))
    counts = Table(title=f"{len(df)} networks by dyn_state")
    counts.add_column("dyn_state")
    counts.add_column("networks", justify="right")
    for k, v in df["dyn_state"].value_counts().sort_index().items():
        counts.add_row(str(k), str(v))
    console.print(counts)
    if z.metadata["mechanism"].notna().any():
        conf = mechanism_confusion(df, z.metadata)
        t = Table(title="reference mechanism (rows) vs dyn_mechanism (columns), learned networks")
        t.add_column("reference")
        for c in conf.columns:
            t.add_column(str(c), justify="right")
        for idx, r in conf.iterrows():
            t.add_row(str(idx), *[str(int(v)) for v in r])
        console.print(t)
        console.print(f"agreement: {mechanism_agreement(df, z.metadata):.1%}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False) if out.suffix == ".csv" else df.to_parquet(out, index=False)
        console.print(f"table written to {out}")
    if write:
        path = write_diagnostics(z.source.folder, df)
        console.print(f"stored {path} and refreshed the manifest")


def run():  # pragma: no cover - console entry point for `python -m zoo`
    app(prog_name="zoo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
